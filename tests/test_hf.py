"""tying on Hugging Face transformers models built from tiny configs (nothing is downloaded):
declared ties read from config + class, verify / summary / save / load / materialize, and
``tying inspect`` on ``save_pretrained`` folders."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

transformers = pytest.importorskip("transformers")

import tying  # noqa: E402
from tying.cli.main import app  # noqa: E402
from tying.hf import declare_ties, declared_ties, read_pretrained  # noqa: E402

transformers.utils.logging.set_verbosity_error()  # tiny configs trigger config warnings

V, D = 50, 16  # vocabulary, width
_LLAMA = dict(num_hidden_layers=1, hidden_size=D, num_attention_heads=2, num_key_value_heads=2, intermediate_size=32, vocab_size=V)
_SEQ2SEQ = dict(
    encoder_layers=1, decoder_layers=1, d_model=D, encoder_attention_heads=2, decoder_attention_heads=2,
    encoder_ffn_dim=32, decoder_ffn_dim=32, vocab_size=V, max_position_embeddings=32,
)
CONFIGS = {
    "gpt2": lambda: (transformers.GPT2LMHeadModel, transformers.GPT2Config(n_layer=1, n_embd=D, n_head=2, vocab_size=V, n_positions=32)),
    "bert": lambda: (
        transformers.BertForMaskedLM,
        transformers.BertConfig(
            num_hidden_layers=1, hidden_size=D, num_attention_heads=2, intermediate_size=32, vocab_size=V, max_position_embeddings=32
        ),
    ),
    "t5": lambda: (
        transformers.T5ForConditionalGeneration,
        transformers.T5Config(num_layers=1, num_decoder_layers=1, d_model=D, d_kv=8, num_heads=2, d_ff=32, vocab_size=V),
    ),
    "bart": lambda: (transformers.BartForConditionalGeneration, transformers.BartConfig(**_SEQ2SEQ)),
    "marian": lambda: (transformers.MarianMTModel, transformers.MarianConfig(**_SEQ2SEQ, pad_token_id=0, decoder_start_token_id=0)),
    "llama": lambda: (transformers.LlamaForCausalLM, transformers.LlamaConfig(**_LLAMA, tie_word_embeddings=True)),
    "llama-untied": lambda: (transformers.LlamaForCausalLM, transformers.LlamaConfig(**_LLAMA, tie_word_embeddings=False)),
}
_THREE_WAY = ("lm_head.weight", "model.decoder.embed_tokens.weight", "model.encoder.embed_tokens.weight")
# What each model declares, {target: source}: the class's mapping (and its sub-model's), chains resolved.
DECLARED = {
    "gpt2": {"lm_head.weight": "transformer.wte.weight"},
    "bert": {
        "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
        "cls.predictions.decoder.bias": "cls.predictions.bias",  # the MLM head's tied bias
    },
    "t5": dict.fromkeys(("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight"), "shared.weight"),
    "bart": dict.fromkeys(_THREE_WAY, "model.shared.weight"),
    # Marian's class says lm_head -> model.decoder.embed_tokens, which itself reads model.shared.
    "marian": dict.fromkeys(_THREE_WAY, "model.shared.weight"),
    "llama": {"lm_head.weight": "model.embed_tokens.weight"},
    "llama-untied": {},
}
runner = CliRunner()


def build(name: str, seed: int = 0, device: str | None = None) -> nn.Module:
    cls, config = CONFIGS[name]()
    torch.manual_seed(seed)
    with torch.device(device or "cpu"):
        return cls(config).eval()


def inputs(name: str) -> dict[str, torch.Tensor]:
    ids = torch.tensor([[3, 7, 1, 4, 9]])
    seq2seq = name in ("t5", "bart", "marian")
    return {"input_ids": ids, **({"decoder_input_ids": ids[:, :3]} if seq2seq else {})}


def logits(model: nn.Module, name: str) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs(name)).logits


def assert_same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k, v in sa.items():
        assert v.dtype == sb[k].dtype and torch.equal(v, sb[k]), k


def assert_tied(model: nn.Module, name: str) -> None:
    for target, source in DECLARED[name].items():
        assert model.get_parameter(target) is model.get_parameter(source), target


def test_llama_untied_keeps_head_and_embeddings_apart() -> None:
    model = build("llama-untied")
    assert declared_ties(model) == {} and declare_ties(model) == []
    assert tying.find_ties(model) == [] and tying.verify(model).ok
    assert model.lm_head.weight is not model.model.embed_tokens.weight


@pytest.mark.parametrize("name", [n for n in CONFIGS if n != "llama-untied"])
def test_declared_ties_match_the_model_and_verify(name: str) -> None:
    model = build(name)
    assert declared_ties(model) == DECLARED[name]
    groups = {g.paths[0]: set(g.paths[1:]) for g in tying.find_ties(model)}
    want: dict[str, set[str]] = {}
    for target, source in DECLARED[name].items():
        want.setdefault(source, set()).add(target)
    assert groups == want
    # transformers ties by identity only: tying sees sharing nobody declared to it ...
    report = tying.verify(model, raise_error=False)
    assert not report.broken and sorted(map(sorted, report.undeclared)) == sorted(sorted([s, *t]) for s, t in want.items())
    # ... until the declaration is recorded (once: declaring again adds nothing).
    added = declare_ties(model)
    assert {t.target: t.source for t in added} == DECLARED[name] and all(t.transform is None for t in added)
    assert declare_ties(model) == []
    assert tying.verify(model).ok


def test_summary_counts_the_three_way_tie_once() -> None:
    model = build("t5")
    s = tying.summary(model)
    shared = V * D
    assert s.total_parameters - s.unique_parameters == 3 * shared
    assert s.bytes_saved == 3 * shared * 4
    assert s.unique_parameters == sum(p.numel() for p in model.parameters())  # parameters() deduplicates
    [row] = s.rows
    assert row.paths == ("shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight")


@pytest.mark.parametrize("name", list(CONFIGS))
def test_save_load_round_trip_is_exact_and_keeps_ties(name: str, tmp_path: Path) -> None:
    model = build(name)
    declare_ties(model)
    path = tmp_path / "m.safetensors"
    tying.save(model, path)
    info = tying.read_checkpoint(path)
    assert {t.target: t.source for t in info.spec.ties} == DECLARED[name]
    assert set(info.aliases) == set(DECLARED[name])  # each tie group stored once
    unique = sum(t.numel() * t.element_size() for k, t in model.state_dict().items() if k not in DECLARED[name])
    assert path.stat().st_size == 8 + info.header_size + unique

    fresh = build(name, seed=1)  # other values; the file's ties are recorded on load
    result = tying.load(fresh, path)
    assert {t.target: t.source for t in result.applied_ties} == DECLARED[name]
    assert_same_state(model, fresh)
    assert_tied(fresh, name)
    assert tying.verify(fresh).ok
    assert torch.equal(logits(model, name), logits(fresh, name))


def test_bert_tied_decoder_bias_survives_load(tmp_path: Path) -> None:
    model = build("bert")
    declare_ties(model)
    with torch.no_grad():
        model.cls.predictions.bias.add_(torch.arange(V, dtype=torch.float32))
    tying.save(model, tmp_path / "bert.safetensors")
    fresh = build("bert", seed=1)
    tying.load(fresh, tmp_path / "bert.safetensors")
    head = fresh.cls.predictions
    assert head.decoder.bias is head.bias
    assert torch.equal(head.decoder.bias, torch.arange(V, dtype=torch.float32))  # the bias was zero-initialised


@pytest.mark.parametrize("name", ["gpt2", "t5"])
def test_load_reads_save_pretrained_files_once_declared(name: str, tmp_path: Path) -> None:
    model = build(name)
    model.save_pretrained(tmp_path)  # drops the tied targets from model.safetensors
    file = tmp_path / "model.safetensors"
    assert not set(DECLARED[name]) & {t.name for t in tying.read_checkpoint(file).tensors}
    with pytest.raises(tying.CheckpointError, match="missing key 'lm_head.weight'"):
        tying.load(build(name, seed=1), file)  # nothing says where the dropped keys come from
    fresh = build(name, seed=1)
    declare_ties(fresh)
    tying.load(fresh, file)
    assert_same_state(model, fresh)
    assert_tied(fresh, name)


def test_from_pretrained_reads_a_tying_checkpoint(tmp_path: Path) -> None:
    model = build("t5")
    declare_ties(model)
    model.config.save_pretrained(tmp_path)
    tying.save(model, tmp_path / "model.safetensors")
    loaded = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path)
    assert_same_state(model, loaded)
    assert_tied(loaded, "t5")


@pytest.mark.parametrize("name", ["gpt2", "bert", "t5", "llama"])
def test_materialize_keeps_ties_where_to_empty_breaks_them(name: str, tmp_path: Path) -> None:
    reference = build(name)
    declare_ties(reference)
    tying.save(reference, tmp_path / "ref.safetensors")

    meta = build(name, device="meta")
    declare_ties(meta)
    assert_tied(meta, name)  # transformers ties on the meta device too
    plain = copy.deepcopy(meta)

    plain.to_empty(device="cpu")  # one new tensor per registration: untied
    report = tying.verify(plain, raise_error=False)
    assert {b.tie.target for b in report.broken} == set(DECLARED[name])
    assert all(plain.get_parameter(t) is not plain.get_parameter(s) for t, s in DECLARED[name].items())
    tying.retie(plain)
    assert tying.verify(plain).ok

    tying.materialize(meta, "cpu", init=meta._init_weights)  # each tie group allocated and initialised once
    assert_tied(meta, name)
    assert tying.verify(meta).ok
    assert all(torch.isfinite(p).all() for p in meta.parameters())
    tying.load(meta, tmp_path / "ref.safetensors")
    # Non-persistent buffers (Llama's rotary inv_freq) come from _init_weights, not the file.
    assert torch.equal(logits(reference, name), logits(meta, name))


# --------------------------------------------------------------------------- vocabulary resizing

_VOCAB_BIASES = ("cls.predictions.bias", "final_logits_bias")  # BERT's tied bias, the seq2seq logit bias buffer


def _resizable(name: str) -> nn.Module:
    """``build(name)`` with its vocabulary biases made non-zero (they start at zero), so that kept
    and new entries are told apart."""
    model = build(name)
    with torch.no_grad():
        for key, t in [*model.named_parameters(), *model.named_buffers()]:
            if key in _VOCAB_BIASES:
                t.copy_(torch.randn(t.shape, generator=torch.Generator().manual_seed(3)))
    return model


def _vocab_sizes(config) -> dict[str, int]:
    return {k: getattr(config, k) for k in ("vocab_size", "decoder_vocab_size") if hasattr(config, k)}


def _assert_resized(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor], old: int, new: int) -> set[str]:
    """Every tensor equal, or resized along one dimension from ``old`` to ``new`` with its kept
    entries exact; returns the resized keys."""
    assert before.keys() == after.keys()
    resized = set()
    for k, a in before.items():
        b = after[k]
        if a.shape == b.shape:
            assert torch.equal(a, b), k
            continue
        [dim] = [d for d in range(a.dim()) if a.shape[d] != b.shape[d]]
        assert (a.shape[dim], b.shape[dim]) == (old, new), k
        keep = min(old, new)
        assert torch.equal(a.narrow(dim, 0, keep), b.narrow(dim, 0, keep)), k
        resized.add(k)
    return resized


@pytest.mark.parametrize("new", [70, 30], ids=["grow", "shrink"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_resize_vocab_keeps_ties_kept_rows_and_logits(name: str, new: int, tmp_path: Path) -> None:
    model = _resizable(name)
    declare_ties(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    objects = list(model.parameters())
    old_logits = logits(model, name)

    result = tying.resize_vocab(model, new)

    assert result.old_size == V and result.new_size == new
    assert all(a is b for a, b in zip(model.parameters(), objects, strict=True))  # in place: no Parameter replaced
    assert_tied(model, name)
    assert tying.verify(model).ok
    resized = _assert_resized(before, model.state_dict(), V, new)
    vocab = {"final_logits_bias"} if name in ("bart", "marian") else set()
    assert [p.paths for p in result.buffers] == [(k,) for k in sorted(vocab)]
    assert resized == {k for p in (*result.parameters, *result.buffers) for k in p.paths}
    assert _vocab_sizes(model.config) == dict.fromkeys(_vocab_sizes(model.config), new)
    # The kept tokens' logits are unchanged (their rows, biases included, are), new ones appear;
    # up to float32 rounding: a matrix product with another number of output rows may block its
    # reductions differently.
    new_logits = logits(model, name)
    assert new_logits.shape == (*old_logits.shape[:-1], new)
    keep = min(V, new)
    torch.testing.assert_close(new_logits[..., :keep], old_logits[..., :keep], rtol=1e-6, atol=1e-6)
    # transformers' losses reshape the logits by the config's vocabulary size.
    batch = inputs(name)
    labels = torch.full_like(batch.get("decoder_input_ids", batch["input_ids"]), new - 1)
    assert torch.isfinite(model(**batch, labels=labels).loss)

    path = tying.save(model, tmp_path / "resized.safetensors")
    torch.manual_seed(1)
    fresh = type(model)(model.config).eval()  # the updated config builds the new shapes
    tying.load(fresh, path)
    assert_same_state(model, fresh)
    assert_tied(fresh, name)
    assert torch.equal(logits(fresh, name), new_logits)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_resize_vocab_resizes_what_resize_token_embeddings_does(name: str) -> None:
    """transformers' own resize (new modules, re-tied by ``tie_weights``) as the reference: the same
    shapes, the same ties, the same config sizes and the same kept values."""
    ours, theirs = _resizable(name), _resizable(name)
    tying.resize_vocab(ours, 70)
    theirs.resize_token_embeddings(70, mean_resizing=False)
    a, b = ours.state_dict(), theirs.state_dict()
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
    for k, v in a.items():  # both built from one seed: equal but for the new entries
        kept = tuple(slice(0, V) if n == 70 else slice(None) for n in v.shape)
        assert torch.equal(v[kept], b[k][kept]), k
    assert [g.paths for g in tying.find_ties(ours)] == [g.paths for g in tying.find_ties(theirs)]
    assert _vocab_sizes(ours.config) == _vocab_sizes(theirs.config)


def test_resize_vocab_updates_a_composite_models_text_config() -> None:
    """Llava keeps its vocabulary size in ``config.text_config`` (the root config has none)."""
    text = transformers.LlamaConfig(**_LLAMA, tie_word_embeddings=True)
    vision = transformers.CLIPVisionConfig(
        hidden_size=D, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=8, patch_size=4
    )
    config = transformers.LlavaConfig(vision_config=vision, text_config=text, image_token_index=V - 1, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = transformers.LlavaForConditionalGeneration(config).eval()
    declare_ties(model)
    ids = torch.tensor([[3, 7, 1, 4, 9]])
    with torch.no_grad():
        old_logits = model(input_ids=ids).logits
    assert not hasattr(model.config, "vocab_size") and model.config.text_config.vocab_size == V

    result = tying.resize_vocab(model, 60)
    assert [p.paths for p in result.parameters] == [("model.language_model.embed_tokens.weight", "lm_head.weight")]
    assert model.config.text_config.vocab_size == 60 and model.model.language_model.vocab_size == 60
    assert model.lm_head.weight is model.model.language_model.embed_tokens.weight and tying.verify(model).ok
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits[..., :V], old_logits, rtol=1e-6, atol=1e-6)
    assert torch.isfinite(model(input_ids=ids, labels=torch.full_like(ids, 59)).loss)


def _untied_llama_declared_tied(folder: Path) -> nn.Module:
    """An untied Llama saved with a config that claims tie_word_embeddings=True (the merged-adapter
    failure: two different matrices, a config that says they are one)."""
    model = build("llama-untied")
    model.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": True}))
    return model


def test_verify_reports_a_config_that_contradicts_the_weights(tmp_path: Path) -> None:
    original = _untied_llama_declared_tied(tmp_path)
    loaded = transformers.LlamaForCausalLM.from_pretrained(tmp_path)  # warns and leaves them untied
    assert torch.equal(loaded.lm_head.weight, original.lm_head.weight)
    assert declared_ties(loaded) == DECLARED["llama"]
    declare_ties(loaded)
    [broken] = tying.verify(loaded, raise_error=False).broken
    assert broken.tie.target == "lm_head.weight" and "different values" in broken.reason
    with pytest.raises(tying.CheckpointError, match="declared ties are broken"):
        tying.save(loaded, tmp_path / "inconsistent.safetensors")


def _inspect(folder: Path) -> str:
    result = runner.invoke(app, ["inspect", str(folder)], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("name", ["gpt2", "bert", "t5", "bart", "llama"])
def test_inspect_folder_reports_dropped_tie_targets(name: str, tmp_path: Path) -> None:
    build(name).save_pretrained(tmp_path)
    info = read_pretrained(tmp_path)
    assert info.config_flags == {"tie_word_embeddings": True}
    assert {t.target: t.source for t in info.ties} == DECLARED[name]
    assert {t.status for t in info.ties} == {"dropped"}
    assert info.missing == [] and info.unexpected == []
    out = _inspect(tmp_path)
    cls = type(build(name))
    assert f"transformers checkpoint: {cls.__name__}" in out and "config tie flags: tie_word_embeddings=True" in out
    assert f"class tied-weights keys (transformers {transformers.__version__}): {cls._tied_weights_keys!r}" in out
    assert f"{len(DECLARED[name])} declared {'tie' if len(DECLARED[name]) == 1 else 'ties'} vs the files" in out
    assert out.count("not stored: filled from its group on load") == len(DECLARED[name])


def test_inspect_folder_flags_different_copies_and_untied_configs(tmp_path: Path) -> None:
    _untied_llama_declared_tied(tmp_path / "lying")
    [tie] = read_pretrained(tmp_path / "lying").ties
    assert (tie.target, tie.status) == ("lm_head.weight", "different copies")
    assert "stored twice with DIFFERENT values: the declared tie does not hold in this file" in _inspect(tmp_path / "lying")

    build("llama-untied").save_pretrained(tmp_path / "untied")
    info = read_pretrained(tmp_path / "untied")
    assert info.config_flags == {"tie_word_embeddings": False} and info.ties == [] and info.missing == []
    assert "no declared ties" in _inspect(tmp_path / "untied")


def test_inspect_sharded_folder_and_missing_keys(tmp_path: Path) -> None:
    build("gpt2").save_pretrained(tmp_path, max_shard_size="8KB")
    info = read_pretrained(tmp_path)
    assert len(info.files) > 1 and [t.status for t in info.ties] == ["dropped"]
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    del index["weight_map"]["transformer.wte.weight"]  # the tie's only stored member
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    info = read_pretrained(tmp_path)
    assert [t.status for t in info.ties] == ["none stored"]
    assert info.missing == ["transformer.wte.weight", "lm_head.weight"]
    assert info.unexpected == []


def test_inspect_folder_without_a_known_class_or_weights(tmp_path: Path) -> None:
    build("gpt2").save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "architectures": ["MyCustomLM"]}))
    info = read_pretrained(tmp_path)
    assert "no model class 'MyCustomLM'" in info.unresolved and info.ties == []
    assert "declared ties not resolved" in _inspect(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**config, "n_embd": 15}))  # GPT-2 needs n_embd % n_head == 0
    assert read_pretrained(tmp_path).unresolved.startswith("cannot build GPT2LMHeadModel from config.json")
    (tmp_path / "model.safetensors").rename(tmp_path / "pytorch_model.bin")
    result = runner.invoke(app, ["inspect", str(tmp_path)])
    assert result.exit_code == 1 and "tying never unpickles" in result.output


class _ListFormLM(nn.Module):
    """The transformers 4.x surface tying.hf reads: ``_tied_weights_keys`` lists targets only."""

    _tied_weights_keys = ["lm_head.weight", r"predictions\.decoder\.bias"]

    def __init__(self, tie_word_embeddings: bool) -> None:
        super().__init__()
        self.config = SimpleNamespace(tie_word_embeddings=tie_word_embeddings)
        self.embed = nn.Embedding(10, 4)
        self.lm_head = nn.Linear(4, 10, bias=False)  # not tied by identity: the config says it should be
        self.predictions = nn.Module()
        self.predictions.bias = nn.Parameter(torch.zeros(10))
        self.predictions.decoder = nn.Linear(4, 10)
        self.predictions.decoder.bias = self.predictions.bias  # what 4.x's _tie_weights code does

    def get_input_embeddings(self) -> nn.Module:
        return self.embed

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head


def test_list_form_tied_weights_keys() -> None:
    model = _ListFormLM(tie_word_embeddings=True)
    assert declared_ties(model) == {"lm_head.weight": "embed.weight", "predictions.decoder.bias": "predictions.bias"}
    declare_ties(model)
    [broken] = tying.verify(model, raise_error=False).broken
    assert broken.tie == tying.Tie("embed.weight", "lm_head.weight")
    assert declared_ties(_ListFormLM(tie_word_embeddings=False)) == {"predictions.decoder.bias": "predictions.bias"}
    with pytest.raises(TypeError, match="not a transformers model"):
        declared_ties(nn.Linear(2, 2))


def test_import_tying_without_transformers(tmp_path: Path) -> None:
    build("gpt2").save_pretrained(tmp_path)
    code = (
        "import sys; sys.modules['transformers'] = None\n"  # makes `import transformers` fail
        "import tying, tying.hf, tying.cli.main\n"
        f"info = tying.hf.read_pretrained({str(tmp_path)!r})\n"
        "assert info.unresolved.startswith('transformers is not installed'), info.unresolved\n"
        "assert info.config_flags == {'tie_word_embeddings': True} and len(info.files) == 1\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)



def test_materialize_finds_the_transformers_initialiser_without_importing_tying_hf() -> None:
    """The core never imports tying.hf; materialize loads it once transformers is loaded, so a
    transformers model gets its own initialise_weights (which alone re-creates the rotary buffers)."""
    code = (
        "import sys, torch, transformers, tying\n"
        "assert 'tying.hf' not in sys.modules\n"
        f"config = transformers.LlamaConfig(**{_DEC!r})\n"
        "with torch.device('meta'):\n"
        "    model = transformers.LlamaForCausalLM(config)\n"
        "tying.materialize(model, 'cpu')\n"
        "assert 'tying.hf' in sys.modules\n"
        "assert tying.hf.declared_ties(model) == {'lm_head.weight': 'model.embed_tokens.weight'}\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)

# Architectures whose meta build lost non-persistent buffers (rotary inv_freq, position_ids,
# token_type_ids) on the default materialize path before tying used the model's own initialiser.
_ENC = dict(num_hidden_layers=1, hidden_size=D, num_attention_heads=2, intermediate_size=32, vocab_size=V, max_position_embeddings=32)
_DEC = dict(_LLAMA, max_position_embeddings=32, tie_word_embeddings=True)
META_ARCHS = {
    **{name: CONFIGS[name] for name in ("gpt2", "bert", "t5", "bart", "marian", "llama", "llama-untied")},
    "roberta": lambda: (transformers.RobertaForMaskedLM, transformers.RobertaConfig(**_ENC, pad_token_id=1)),
    "distilbert": lambda: (
        transformers.DistilBertForMaskedLM,
        transformers.DistilBertConfig(n_layers=1, dim=D, n_heads=2, hidden_dim=32, vocab_size=V, max_position_embeddings=32),
    ),
    "electra": lambda: (transformers.ElectraForMaskedLM, transformers.ElectraConfig(**_ENC, embedding_size=D)),
    "albert": lambda: (transformers.AlbertForMaskedLM, transformers.AlbertConfig(**_ENC, embedding_size=8)),
    "mistral": lambda: (transformers.MistralForCausalLM, transformers.MistralConfig(**_DEC)),
    "qwen2": lambda: (transformers.Qwen2ForCausalLM, transformers.Qwen2Config(**_DEC)),
    "qwen3": lambda: (transformers.Qwen3ForCausalLM, transformers.Qwen3Config(**_DEC, head_dim=8)),
    "gemma": lambda: (transformers.GemmaForCausalLM, transformers.GemmaConfig(**_DEC, head_dim=8)),
    "gemma2": lambda: (transformers.Gemma2ForCausalLM, transformers.Gemma2Config(**_DEC, head_dim=8)),
    "phi3": lambda: (transformers.Phi3ForCausalLM, transformers.Phi3Config(**_DEC, pad_token_id=0)),
    "gptj": lambda: (
        transformers.GPTJForCausalLM,
        transformers.GPTJConfig(n_layer=1, n_embd=D, n_head=2, rotary_dim=4, vocab_size=V, n_positions=32, tie_word_embeddings=True),
    ),
    "codegen": lambda: (
        transformers.CodeGenForCausalLM,
        transformers.CodeGenConfig(n_layer=1, n_embd=D, n_head=2, rotary_dim=4, vocab_size=V, n_positions=32, tie_word_embeddings=True),
    ),
    "gpt-neo": lambda: (
        transformers.GPTNeoForCausalLM,
        transformers.GPTNeoConfig(
            num_layers=2, hidden_size=D, num_heads=2, attention_types=[[["global", "local"], 1]], vocab_size=V,
            max_position_embeddings=32, window_size=4,
        ),
    ),
}


@pytest.mark.parametrize("name", list(META_ARCHS))
def test_meta_build_materialize_load_gives_the_original_logits(name: str, tmp_path: Path) -> None:
    """The default path — build under torch.device('meta'), materialize(model, 'cpu'), load tying's
    own file — computes exactly the original's logits: non-persistent buffers (rotary inv_freq,
    position_ids, token_type_ids), which no checkpoint holds, are re-created by the model's own
    initialiser instead of being left as uninitialised memory."""
    cls, config = META_ARCHS[name]()
    torch.manual_seed(0)
    original = cls(config).eval()
    tying.save(original, tmp_path / "model.safetensors")
    with torch.device("meta"):
        model = cls(config).eval()
    tying.materialize(model, "cpu")
    tying.load(model, tmp_path / "model.safetensors")
    for key, buffer in original.named_buffers():
        assert torch.equal(model.get_buffer(key), buffer), key
    seq2seq = name in ("t5", "bart", "marian")
    assert torch.equal(logits(original, "bart" if seq2seq else name), logits(model, "bart" if seq2seq else name))
    assert {g.paths[0]: g.paths for g in tying.find_ties(model)} == {g.paths[0]: g.paths for g in tying.find_ties(original)}


def test_folder_without_config_points_at_its_safetensors_files(tmp_path: Path) -> None:
    tying.save(nn.Linear(2, 2), tmp_path / "a.safetensors")
    with pytest.raises(tying.CheckpointError, match=r"has no config\.json.*it holds a\.safetensors: inspect a file itself, e\.g\. tying inspect '.*a\.safetensors'"):
        read_pretrained(tmp_path)
    result = runner.invoke(app, ["inspect", str(tmp_path)])
    assert result.exit_code != 0 and "a.safetensors" in result.output
