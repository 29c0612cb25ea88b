"""TranslationTransformer: the tie groups of each mode, parameter counts, the loss against the
naive computation, masks, gradients, meta-device materialisation, checkpoints and compile."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import tying
from tying.models import TranslationConfig, TranslationTransformer

SMALL = TranslationConfig(
    src_vocab_size=40, tgt_vocab_size=40, embedding_size=16, num_heads=4, encoder_layers=2, decoder_layers=1,
    ffn_size=24, dropout=0.0, max_positions=20, joint_size=12,
)  # fmt: skip
MODES = ["none", "decoder", "three_way", "joint"]

EXPECTED_GROUPS = {
    "none": [],
    "decoder": [["tgt_embed.weight", "output.weight"]],
    "three_way": [["src_embed.weight", "tgt_embed.weight", "output.weight"]],
    "joint": [["src_embed.weight", "tgt_embed.weight", "output.weight"]],
}
EXPECTED_SPEC = {
    "none": [],
    "decoder": [("tgt_embed.weight", "output.weight")],
    "three_way": [("tgt_embed.weight", "src_embed.weight"), ("tgt_embed.weight", "output.weight")],
    "joint": [("tgt_embed.weight", "src_embed.weight"), ("tgt_embed.weight", "output.weight")],
}


def _model(**changes) -> TranslationTransformer:
    return TranslationTransformer(replace(SMALL, **changes))


def _batch(seed: int = 0, vocab: int = 40) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, vocab, (3, 7), generator=g)
    src[0, 5:] = SMALL.pad_id  # right padding
    src[:, -1] = torch.where(src[:, -1] == SMALL.pad_id, SMALL.pad_id, SMALL.eos_id)
    tgt = torch.randint(4, vocab, (3, 6), generator=g)
    tgt_in = torch.cat([torch.full((3, 1), SMALL.bos_id), tgt[:, :-1]], dim=1)
    tgt_out = tgt.clone()
    tgt_out[1, 4:] = SMALL.pad_id
    return src, tgt_in, tgt_out


@pytest.mark.parametrize("mode", MODES)
def test_each_mode_builds_exactly_its_tie_groups(mode: str) -> None:
    model = _model(tie=mode)
    assert [g.paths for g in tying.find_ties(model)] == EXPECTED_GROUPS[mode]
    assert [(t.source, t.target) for t in tying.get_spec(model).ties] == EXPECTED_SPEC[mode]
    tying.verify(model)


@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
@pytest.mark.parametrize("mode", MODES)
def test_parameter_counts_match_closed_form(mode: str, positions: str) -> None:
    V, d, f, j, P = 40, 16, 24, 12, 20
    attn = 3 * d * d + 3 * d + d * d + d
    ffn = d * f + f + f * d + d
    encoder = 2 * (2 * 2 * d + attn + ffn)  # 2 layers: 2 LNs, self-attention, FFN
    decoder = 1 * (3 * 2 * d + 2 * attn + ffn)  # 1 layer: 3 LNs, self- and cross-attention, FFN
    body = encoder + decoder + 2 * 2 * d + (2 * P * d if positions == "learned" else 0)  # final LNs, position tables
    embeddings = {"none": 3 * V * d, "decoder": 2 * V * d, "three_way": V * d, "joint": V * d}[mode]
    output_extra = V + ((d * j + j) * 2 if mode == "joint" else 0)  # vocabulary bias b (+ U, b_u, V, b_v)
    model = _model(tie=mode, positions=positions)
    s = tying.summary(model)
    assert s.unique_parameters == body + embeddings + output_extra == sum(p.numel() for p in model.parameters())
    shared = {"none": 0, "decoder": V * d, "three_way": 2 * V * d, "joint": 2 * V * d}[mode]
    assert s.total_parameters == s.unique_parameters + shared


@pytest.mark.parametrize("mode", MODES)
def test_loss_is_label_smoothed_cross_entropy_of_the_logits(mode: str) -> None:
    torch.manual_seed(0)
    model = _model(tie=mode, label_smoothing=0.1).eval()
    src, tgt_in, tgt_out = _batch()
    logits = model(src, tgt_in)
    for eps in (0.1, 0.0):
        naive = F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=SMALL.pad_id, label_smoothing=eps)
        torch.testing.assert_close(model.loss(src, tgt_in, tgt_out, label_smoothing=eps), naive, rtol=1e-5, atol=1e-6)
    naive_sum = F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=SMALL.pad_id, label_smoothing=0.1, reduction="sum")
    torch.testing.assert_close(model.loss(src, tgt_in, tgt_out, reduction="sum"), naive_sum, rtol=1e-5, atol=1e-5)


def test_joint_output_scores_the_joint_space_of_the_tied_embedding() -> None:
    torch.manual_seed(0)
    model = _model(tie="joint", joint_activation="tanh").eval()
    src, tgt_in, _ = _batch()
    h = model.decode(tgt_in, *model.encode(src))
    E, out = model.tgt_embed.weight, model.output
    direct = torch.tanh(E @ out.word.weight.T + out.word.bias) @ torch.tanh(h @ out.state.weight.T + out.state.bias).transpose(1, 2)
    torch.testing.assert_close(model(src, tgt_in), direct.transpose(1, 2) + out.bias, rtol=1e-5, atol=1e-6)


def test_decoder_position_t_reads_only_targets_up_to_t() -> None:
    torch.manual_seed(0)
    model = _model(tie="three_way").eval()
    src, tgt_in, _ = _batch()
    changed = tgt_in.clone()
    changed[:, 4:] = (changed[:, 4:] + 1 - 4) % 36 + 4  # change the future after position 3
    a, b = model(src, tgt_in), model(src, changed)
    assert torch.equal(a[:, :4], b[:, :4]) and not torch.allclose(a[:, 4:], b[:, 4:])


def test_source_padding_changes_nothing() -> None:
    torch.manual_seed(0)
    model = _model(tie="none").eval()
    src, tgt_in, _ = _batch()
    padded = torch.cat([src, torch.full((3, 5), SMALL.pad_id)], dim=1)
    torch.testing.assert_close(model(padded, tgt_in), model(src, tgt_in), rtol=1e-5, atol=1e-6)


def test_three_way_gradient_is_the_sum_of_the_three_uses() -> None:
    torch.manual_seed(0)
    tied, untied = _model(tie="three_way"), _model(tie="none")
    state = tied.state_dict()
    untied.load_state_dict({**state, "src_embed.weight": state["tgt_embed.weight"], "output.weight": state["tgt_embed.weight"]})
    src, tgt_in, tgt_out = _batch()
    for m in (tied, untied):
        m.loss(src, tgt_in, tgt_out).backward()
    expected = untied.src_embed.weight.grad + untied.tgt_embed.weight.grad + untied.output.weight.grad
    torch.testing.assert_close(tied.tgt_embed.weight.grad, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("mode", MODES)
def test_meta_build_materialize_and_checkpoint_keep_the_ties(mode: str, tmp_path: Path) -> None:
    with torch.device("meta"):
        model = _model(tie=mode, positions="learned")
    tying.materialize(model, "cpu")
    assert [g.paths for g in tying.find_ties(model)] == EXPECTED_GROUPS[mode]
    assert all(p.device.type == "cpu" for p in model.parameters())
    model.reset_parameters()
    path = tying.save(model, tmp_path / "mt.safetensors")
    # An untied model takes the ties from the file (a joint model needs the joint output layer).
    fresh = _model(tie="joint" if mode == "joint" else "none", positions="learned")
    tying.load(fresh, path)
    assert [g.paths for g in tying.find_ties(fresh)] == EXPECTED_GROUPS[mode]
    src, tgt_in, _ = _batch()
    assert torch.equal(fresh.eval()(src, tgt_in), model.eval()(src, tgt_in))


def test_ties_survive_compile() -> None:
    torch.manual_seed(0)
    model = _model(tie="three_way")
    compiled = torch.compile(model, backend="aot_eager")
    src, tgt_in, tgt_out = _batch()
    loss = compiled.loss(src, tgt_in, tgt_out)
    loss.backward()
    torch.testing.assert_close(loss, model.loss(src, tgt_in, tgt_out), rtol=1e-5, atol=1e-6)
    assert model.src_embed.weight is model.tgt_embed.weight is model.output.weight and model.output.weight.grad is not None
    tying.verify(compiled)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tie": "all"}, r"tie must be one of \['none', 'decoder', 'three_way', 'joint'\], got 'all'"),
        ({"tie": "three_way", "src_vocab_size": 30}, r"tie='three_way' .* one joint vocabulary, but src_vocab_size=30 != tgt_vocab_size=40"),
        ({"num_heads": 3}, r"num_heads=3 does not divide embedding_size=16"),
        ({"positions": "rotary"}, r"positions must be 'sinusoidal' or 'learned', got 'rotary'"),
        ({"eos_id": 40}, r"eos_id=40 is not a token id"),
        ({"bos_id": 0}, r"pad_id, bos_id and eos_id must differ"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\), got 1.0"),
        ({"attention_dropout": -0.1}, r"attention_dropout must be in \[0, 1\), got -0.1"),
        ({"tie": "joint", "joint_activation": "gelu"}, r"JointOutput activation must be one of"),
    ],
)
def test_bad_configs_say_what_is_wrong(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _model(**changes)


def test_too_long_sequence_is_named() -> None:
    with pytest.raises(ValueError, match=r"sequence of 21 tokens is longer than max_positions=20"):
        _model()(torch.full((1, 21), 5), torch.full((1, 3), 5))


@pytest.mark.parametrize("mode", MODES)
def test_fsdp2_plan_puts_each_tie_group_in_one_unit(mode: str) -> None:
    from tying.distributed import shard_groups

    plan = shard_groups(_model(tie=mode))
    tied_units = [u for u in plan.units if u.ties]
    expected = {"none": [], "decoder": [("output", "tgt_embed")], "three_way": [("output", "src_embed", "tgt_embed")]}
    expected["joint"] = expected["three_way"]
    assert [tuple(sorted(u.modules)) for u in tied_units] == expected[mode]


@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
def test_incremental_decoding_with_a_cache_equals_reading_the_whole_prefix(positions: str) -> None:
    torch.manual_seed(0)
    model = _model(tie="joint", positions=positions).eval()
    src, tgt_in, _ = _batch()
    memory, mask = model.encode(src)
    full = model.decode(tgt_in, memory, mask)
    cache = model.new_cache()
    steps = [model.decode(tgt_in[:, :2], memory, mask, cache)]  # a first call may read several positions
    steps += [model.decode(tgt_in[:, t : t + 1], memory, mask, cache) for t in range(2, tgt_in.shape[1])]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-5, atol=1e-5)
    assert cache[0]["self"]["k"].shape[2] == tgt_in.shape[1] and cache[0]["cross"]["k"].shape[2] == src.shape[1]
    with pytest.raises(ValueError, match="incremental decoding takes one position at a time after the first call, got 2"):
        model.decode(tgt_in[:, :2], memory, mask, cache)
