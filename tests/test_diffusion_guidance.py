"""Classifier-free guidance special cases (Ho & Salimans; digest §1.7 [EXT], thesis Ch. 3-4 usage)."""
from __future__ import annotations

import pytest
import torch

from diffusion.guidance import ClassifierFreeGuidance

B, C, H, W = 4, 4, 3, 3


class CondNet:
    """A per-sample nonlinear conditional network; counts its calls and batch sizes."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: dict) -> torch.Tensor:
        self.batches.append(x.shape[0])
        shape = (-1,) + (1,) * (x.ndim - 1)
        img = cond["image"]
        txt = cond["text"].reshape(shape)
        extra = cond.get("pose")
        out = torch.tanh(x + img) * (1 + t.reshape(shape)) + txt * x**2
        if extra is not None:
            out = out + extra.reshape(shape) * 0.1
        return out


def _inputs(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, C, H, W, generator=gen)
    t = torch.rand(B, generator=gen)
    cond = {"image": torch.randn(B, C, H, W, generator=gen), "text": torch.randn(B, generator=gen),
            "pose": torch.randn(B, generator=gen)}
    null = {"image": torch.zeros(1, C, H, W), "text": torch.zeros(1)}
    return x, t, cond, null


def _call(net, x, t, d):
    full = {k: (v.expand(x.shape[0], *v.shape[1:]) if v.shape[0] == 1 else v) for k, v in d.items()}
    return net(x, t, full)


def test_scale_one_is_conditional_and_zero_is_unconditional() -> None:
    x, t, cond, null = _inputs()
    net = CondNet()
    c = _call(net, x, t, cond)
    u = _call(net, x, t, {**cond, **null})
    assert torch.allclose(ClassifierFreeGuidance(net, "epsilon", cond, null, 1.0)(x, t), c, atol=1e-6)
    assert torch.allclose(ClassifierFreeGuidance(net, "epsilon", cond, null, 0.0)(x, t), u, atol=1e-6)
    # the same limits through the general (two-pass) code path, and through the multi-condition path
    for kwargs in ({"scale": 1.0 + 0.0, "interval": (0.0, 1.0)}, {"scale": {"image": 1.0, "text": 1.0}, "mode": "nested"}):
        assert torch.allclose(ClassifierFreeGuidance(net, "epsilon", cond, null, **kwargs)(x, t), c, atol=1e-6)
    zero = ClassifierFreeGuidance(net, "epsilon", cond, null, {"image": 0.0, "text": 0.0})
    assert torch.allclose(zero(x, t), u, atol=1e-6)


def test_single_scale_formula_and_one_batched_call() -> None:
    x, t, cond, null = _inputs(1)
    net = CondNet()
    c, u = _call(net, x, t, cond), _call(net, x, t, {**cond, **null})
    net.batches.clear()
    guided = ClassifierFreeGuidance(net, "v_prediction", cond, null, 3.5)
    assert guided.prediction_type == "v_prediction"
    out = guided(x, t)
    assert net.batches == [2 * B]
    assert torch.allclose(out, u + 3.5 * (c - u), atol=1e-5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"scale": 2.0},
        {"scale": {"image": 1.5, "text": 4.0}, "mode": "independent"},
        {"scale": {"image": 1.5, "text": 4.0}, "mode": "nested"},
        {"scale": 2.0, "interval": (0.3, 0.7), "channels": [0, 2]},
    ],
)
def test_batched_equals_unbatched(kwargs) -> None:
    x, t, cond, null = _inputs(2)
    a = ClassifierFreeGuidance(CondNet(), "epsilon", cond, null, batched=True, **kwargs)(x, t)
    net = CondNet()
    b = ClassifierFreeGuidance(net, "epsilon", cond, null, batched=False, **kwargs)(x, t)
    assert all(n == B for n in net.batches)
    assert torch.allclose(a, b, atol=1e-6)


def test_independent_and_nested_compositions() -> None:
    x, t, cond, null = _inputs(3)
    net = CondNet()
    e = lambda d: _call(net, x, t, d)  # noqa: E731
    u = e({**cond, **null})
    c_img = e({**cond, "text": null["text"]})
    c_txt = e({**cond, "image": null["image"]})
    c_all = e(cond)
    w_i, w_t = 1.5, 7.5
    indep = ClassifierFreeGuidance(net, "epsilon", cond, null, {"image": w_i, "text": w_t})(x, t)
    assert torch.allclose(indep, u + w_i * (c_img - u) + w_t * (c_txt - u), atol=1e-5)
    # InstructPix2Pix: e(0,0) + s_I (e(I,0) - e(0,0)) + s_T (e(I,T) - e(I,0))
    nested = ClassifierFreeGuidance(
        net, "epsilon", cond, null, {"text": w_t, "image": w_i}, mode="nested", order=["image", "text"]
    )(x, t)
    assert torch.allclose(nested, u + w_i * (c_img - u) + w_t * (c_all - c_img), atol=1e-5)


def test_interval_outside_gives_conditional_and_inside_guided() -> None:
    x, t, cond, null = _inputs(4)
    t = torch.tensor([0.1, 0.4, 0.6, 0.95])
    net = CondNet()
    c, u = _call(net, x, t, cond), _call(net, x, t, {**cond, **null})
    out = ClassifierFreeGuidance(net, "epsilon", cond, null, 3.0, interval=(0.3, 0.7))(x, t)
    inside = torch.tensor([False, True, True, False])
    assert torch.equal(out[~inside], c[~inside])
    assert torch.allclose(out[inside], (u + 3.0 * (c - u))[inside], atol=1e-5)


def test_channel_restriction_leaves_other_channels_conditional() -> None:
    x, t, cond, null = _inputs(5)
    net = CondNet()
    c, u = _call(net, x, t, cond), _call(net, x, t, {**cond, **null})
    out = ClassifierFreeGuidance(net, "epsilon", cond, null, 5.0, channels=slice(0, 3))(x, t)
    assert torch.equal(out[:, 3:], c[:, 3:])
    assert torch.allclose(out[:, :3], (u + 5.0 * (c - u))[:, :3], atol=1e-5)


def test_per_frame_ramp_for_video() -> None:
    gen = torch.Generator().manual_seed(6)
    F = 5
    x = torch.randn(2, F, 3, 2, 2, generator=gen)
    t = torch.rand(2, generator=gen)
    cond = {"image": torch.randn(2, F, 3, 2, 2, generator=gen), "text": torch.randn(2, generator=gen)}
    null = {"image": torch.zeros(1, F, 3, 2, 2), "text": torch.zeros(1)}
    net = CondNet()
    c, u = _call(net, x, t, cond), _call(net, x, t, {**cond, **null})
    out = ClassifierFreeGuidance(net, "epsilon", cond, null, (1.0, 3.0), frame_dim=1, channel_dim=2)(x, t)
    ramp = torch.linspace(1.0, 3.0, F).reshape(1, F, 1, 1, 1)
    assert torch.allclose(out, u + ramp * (c - u), atol=1e-5)
    assert torch.allclose(out[:, 0], c[:, 0], atol=1e-5)  # first frame at scale 1


def test_bad_configuration_raises() -> None:
    x, t, cond, null = _inputs()
    with pytest.raises(ValueError, match="'sequential'"):
        ClassifierFreeGuidance(CondNet(), "epsilon", cond, null, {"image": 2.0}, mode="sequential")
    with pytest.raises(ValueError, match="pose"):
        ClassifierFreeGuidance(CondNet(), "epsilon", cond, null, {"pose": 2.0})
    with pytest.raises(ValueError, match="'eps'"):
        ClassifierFreeGuidance(CondNet(), "eps", cond, null, 2.0)
    with pytest.raises(ValueError, match="frame_dim"):
        ClassifierFreeGuidance(CondNet(), "epsilon", cond, null, (1.0, 2.0))
