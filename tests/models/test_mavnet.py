"""MAVNet-style micro-net and its U-Net peer: parameter counts by formula, the context blocks'
sharing exactly as declared (paths, norms per rate, running statistics never shared), one
gradient collected from every rate, and ties kept through save / load / materialize."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tying
from tying.models import MAVNet, MAVNetConfig, UNet, UNetConfig
from tying.models import mavnet, unet

CONV = ["body.0.0.weight", "body.1.0.weight", "body.2.0.weight", "body.3.0.weight"]
NORM = [f"body.{i}.1.{p}" for i in range(4) for p in ("weight", "bias")]


@settings(max_examples=25, deadline=None)
@given(
    widths=st.tuples(st.integers(1, 6), st.integers(1, 6)),
    context=st.integers(1, 10),
    rates=st.integers(1, 4),
    classes=st.integers(2, 5),
    share=st.sampled_from(["none", "conv", "all"]),
)
def test_parameter_counts_follow_the_formula(widths: tuple[int, int], context: int, rates: int, classes: int, share: str) -> None:
    config = MAVNetConfig(classes=classes, widths=widths, context=context, dilations=tuple(2**k for k in range(1, rates + 1)), share=share)  # type: ignore[arg-type]
    model = MAVNet(config)
    assert tying.summary(model).unique_parameters == mavnet.parameter_count(config)
    assert tying.summary(model).total_parameters == mavnet.parameter_count(MAVNetConfig(classes=classes, widths=widths, context=context, dilations=config.dilations))


def test_default_sizes() -> None:
    assert [mavnet.parameter_count(MAVNetConfig(share=s)) for s in ("none", "conv", "all")] == [4315, 2803, 2515]
    assert mavnet.parameter_count(MAVNetConfig(share="conv", context=19)) == 4357  # the wide shared net, about the unshared count
    c = 12  # by hand: three blocks' convolutions, 2 (9C + C^2), are what "conv" removes; their norms, 3 * 4 * 2C, what "all" adds
    assert 4315 - 2803 == 3 * 2 * (9 * c + c * c) and 2803 - 2515 == 3 * 4 * 2 * c


def test_sharing_ties_the_context_convolutions_to_block_0_and_keeps_norms_per_rate() -> None:
    conv = MAVNet(MAVNetConfig(share="conv"))
    assert sorted(t.describe() for t in tying.get_spec(conv).ties) == sorted(
        f"context.0.{name} -> context.{k}.{name}" for name in CONV for k in (1, 2, 3)
    )
    for k in (1, 2, 3):
        assert all(conv.get_parameter(f"context.{k}.{n}") is conv.get_parameter(f"context.0.{n}") for n in CONV)
        assert all(conv.get_parameter(f"context.{k}.{n}") is not conv.get_parameter(f"context.0.{n}") for n in NORM)
    assert [b.body[0][0].dilation for b in conv.context] == [(2, 2), (4, 4), (8, 8), (16, 16)]  # one weight, four rates
    everything = MAVNet(MAVNetConfig(share="all"))
    assert len(tying.get_spec(everything).ties) == 3 * (len(CONV) + len(NORM))
    stats = [b.body[0][1].running_mean for b in everything.context]
    assert len({s.data_ptr() for s in stats}) == 4  # running statistics are buffers: per rate in every variant
    assert tying.verify(conv).ok and tying.verify(everything).ok
    assert not tying.get_spec(MAVNet(MAVNetConfig())).ties


def test_the_shared_weight_collects_the_gradient_of_every_rate() -> None:
    torch.manual_seed(0)
    shared = MAVNet(MAVNetConfig(share="conv"))
    unshared = MAVNet(MAVNetConfig())
    unshared.load_state_dict(shared.state_dict(), strict=False)
    for k in (1, 2, 3):
        for name in CONV:
            unshared.get_parameter(f"context.{k}.{name}").data.copy_(shared.get_parameter(f"context.0.{name}"))
    x = torch.randn(2, 3, 32, 32)
    for model in (shared, unshared):
        model.train()
        model(x).square().mean().backward()
    for name in CONV:
        per_rate = sum(unshared.get_parameter(f"context.{k}.{name}").grad for k in range(4))
        torch.testing.assert_close(shared.get_parameter(f"context.0.{name}").grad, per_rate, rtol=1e-5, atol=1e-7)


def test_save_load_and_materialize_keep_the_sharing_and_the_outputs(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = MAVNet(MAVNetConfig(share="conv")).eval()
    model(torch.randn(4, 3, 32, 32))  # eval: running statistics untouched; the outputs below depend on them
    x = torch.randn(2, 3, 32, 32)
    tying.save(model, tmp_path / "m.safetensors")
    fresh = MAVNet(MAVNetConfig(share="conv")).eval()
    tying.load(fresh, tmp_path / "m.safetensors")
    assert torch.equal(fresh(x), model(x)) and tying.verify(fresh).ok
    with torch.device("meta"):
        meta = MAVNet(MAVNetConfig(share="conv"))
    real = tying.materialize(meta, "cpu")
    assert tying.summary(real).unique_parameters == 2803 and tying.verify(real).ok


def test_bad_sizes_are_one_line_errors() -> None:
    with pytest.raises(ValueError, match=r"^MAVNet needs image height and width divisible by 4 \(two 2x2 poolings\), got \(30, 32\)$"):
        MAVNet(MAVNetConfig())(torch.randn(1, 3, 30, 32))
    with pytest.raises(ValueError, match=r"MAVNetConfig.classes must be >= 2"):
        MAVNetConfig(classes=1)
    with pytest.raises(ValueError, match=r"MAVNetConfig.share must be 'none', 'conv' or 'all', got 'some'"):
        MAVNetConfig(share="some")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^UNet of depth 3 needs image height and width divisible by 8, got \(36, 36\)$"):
        UNet(UNetConfig())(torch.randn(1, 3, 36, 36))


@pytest.mark.parametrize("base,depth", [(16, 3), (8, 2), (4, 4)])
def test_unet_counts_and_shapes(base: int, depth: int) -> None:
    config = UNetConfig(classes=4, base=base, depth=depth)
    model = UNet(config)
    assert tying.summary(model).unique_parameters == unet.parameter_count(config)
    assert model(torch.randn(2, 3, 32, 48)).shape == (2, 4, 32, 48)
    assert unet.parameter_count(UNetConfig()) == 482_771
