"""Fixtures shared across the test tree: a tiny synthetic corpus, the real benchmark data, small
models for the core API tests, and the hypothesis profiles."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hypothesis import HealthCheck, settings
from torch import nn

# The CI clone has ../shared beside the repository; tests needing it skip elsewhere.
SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def write_tiny_corpus(folder: Path, seed: int = 0, lines: tuple[int, int, int] = (600, 80, 80)) -> Path:
    """A corpus folder of short sentences from a small grammar (26 word types), learnable in seconds."""
    rng = random.Random(seed)
    subjects = ["the cat", "a dog", "the bird", "my friend", "the model"]
    verbs = ["sees", "likes", "eats", "trains", "finds"]
    objects = ["the fish", "a ball", "the data", "some bread", "the tree"]
    endings = ["today", "again", "quickly", "at home", ""]
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in zip(("train", "valid", "test"), lines, strict=True):
        text = "".join(
            " ".join(filter(None, (rng.choice(subjects), rng.choice(verbs), rng.choice(objects), rng.choice(endings)))) + "\n"
            for _ in range(n)
        )
        (folder / f"{split}.txt").write_text(text, encoding="utf-8")
    return folder


def _checkout_files(root: Path) -> set[str]:
    skip = {".git", ".venv", "__pycache__", ".hypothesis", ".pytest_cache"}
    found = set()
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in skip and not d.endswith(".egg-info")]
        found.update(os.path.relpath(os.path.join(folder, f), root) for f in files)
    return found


@pytest.fixture(scope="session", autouse=True)
def _checkout_stays_clean() -> Iterator[None]:
    """Tests write under their tmp_path only: a file appearing in the checkout (as runs/lm/... once
    did, from a failed `tying lm train`) fails the session."""
    root = Path(__file__).resolve().parents[1]
    before = _checkout_files(root)
    yield
    left = sorted(_checkout_files(root) - before)
    assert not left, f"the tests left files in the checkout: {left[:10]}"


@pytest.fixture
def tiny_corpus_dir(tmp_path: Path) -> Path:
    return write_tiny_corpus(tmp_path / "tiny")


@pytest.fixture
def shared_data() -> Path:
    """The benchmark data folder (PTB, WikiText-2); skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"benchmark data not found at {SHARED_DATA}")
    return SHARED_DATA.resolve()


@pytest.fixture(scope="session")
def translation_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder of the ``builtin-translation`` recipe, trained once per session (about 10 s)."""
    from tying.recipes import load_recipe, train_recipe

    folder = tmp_path_factory.mktemp("translation") / "run"
    train_recipe(load_recipe("builtin-translation"), folder, command="tying train builtin-translation")
    return folder


# --------------------------------------------------------------------------- core API fixtures

# ``HYPOTHESIS_PROFILE=long pytest`` runs many more examples; "ci" (default) keeps the suite fast.
# Property tests scale their example counts from the loaded profile's ``max_examples``.
settings.register_profile("ci", max_examples=100, deadline=None, print_blob=True)
settings.register_profile(
    "long", max_examples=2000, deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


class TinyLM(nn.Module):
    """Embedding -> Linear -> tanh -> output Linear; the classic input/output tie candidate."""

    def __init__(self, vocab: int = 11, dim: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.proj = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, vocab, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.proj(self.embed(idx))))


class HeadFirstLM(nn.Module):
    """Like :class:`TinyLM` but the output layer is registered (and initialised) first."""

    def __init__(self, vocab: int = 11, dim: int = 4) -> None:
        super().__init__()
        self.head = nn.Linear(dim, vocab, bias=False)
        self.embed = nn.Embedding(vocab, dim)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(idx))


class _Side(nn.Module):
    def __init__(self, vocab: int, dim: int, out: bool) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        if out:
            self.out = nn.Linear(dim, vocab, bias=False)


class Seq2Seq(nn.Module):
    """Encoder/decoder embeddings plus decoder output layer: the three-way tie."""

    def __init__(self, vocab: int = 9, dim: int = 4) -> None:
        super().__init__()
        self.encoder = _Side(vocab, dim, out=False)
        self.decoder = _Side(vocab, dim, out=True)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """Decoder logits ``(B, T, vocab)`` for ``tgt`` given the mean source embedding."""
        context = self.encoder.embed(src).mean(1, keepdim=True)
        return self.decoder.out(torch.tanh(self.decoder.embed(tgt) + context))


class AutoEncoder(nn.Module):
    """``Linear(d, h)`` encoder, ``Linear(h, d)`` decoder: the transposed tie."""

    def __init__(self, d: int = 6, h: int = 3) -> None:
        super().__init__()
        self.enc = nn.Linear(d, h)
        self.dec = nn.Linear(h, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dec(torch.tanh(self.enc(x)))


class Stack(nn.Module):
    """``layers.<i>`` ModuleList of square Linears (cross-layer sharing, ALBERT-style) + a norm."""

    def __init__(self, n: int = 3, dim: int = 4) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(dim, dim) for _ in range(n))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.tanh(layer(x))
        return self.norm(x)


def tied_lm(**kw) -> TinyLM:
    """A :class:`TinyLM` with ``head.weight`` tied to ``embed.weight``."""
    import tying

    m = TinyLM(**kw)
    tying.tie(m, "embed.weight", "head.weight")
    return m


def tied_ae(**kw) -> AutoEncoder:
    """An :class:`AutoEncoder` whose decoder weight reads as the encoder weight transposed."""
    import tying

    m = AutoEncoder(**kw)
    tying.tie_transposed(m, "enc.weight", "dec.weight")
    return m


@pytest.fixture
def models() -> SimpleNamespace:
    """Small model classes for core API tests (``models.TinyLM()``, ``models.tied_lm()``, ...)."""
    return SimpleNamespace(
        TinyLM=TinyLM,
        HeadFirstLM=HeadFirstLM,
        Seq2Seq=Seq2Seq,
        AutoEncoder=AutoEncoder,
        Stack=Stack,
        tied_lm=tied_lm,
        tied_ae=tied_ae,
    )


def tensors_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of every parameter (per path, duplicates included) and buffer of ``model``."""
    out = {f"param:{k}": p.detach().clone() for k, p in model.named_parameters(remove_duplicate=False)}
    out.update({f"buffer:{k}": b.detach().clone() for k, b in model.named_buffers(remove_duplicate=False)})
    return out


class Snapshot:
    """Everything observable about a model's tensors: values and dtypes per path, which paths hold
    the same Parameter object, and the declared tie spec."""

    def __init__(self, model: nn.Module) -> None:
        import tying

        self.values = tensors_of(model)
        objects = [p for _, p in model.named_parameters(remove_duplicate=False)]
        self.identity = [[i for i, q in enumerate(objects) if q is p] for p in objects]
        self.objects = objects
        self.ties = list(tying.get_spec(model).ties)

    def assert_unchanged(self, model: nn.Module) -> None:
        after = Snapshot(model)
        assert after.values.keys() == self.values.keys()
        for k, before in self.values.items():
            assert before.dtype == after.values[k].dtype, k
            assert torch.equal(before, after.values[k]), f"{k} changed"
        assert after.identity == self.identity, "parameter sharing changed"
        assert all(a is b for a, b in zip(after.objects, self.objects, strict=True)), "parameter objects replaced"
        assert after.ties == self.ties, "tie spec changed"


@pytest.fixture
def snapshot():
    """``snap = snapshot(model)``; later ``snap.assert_unchanged(model)``."""
    return Snapshot
