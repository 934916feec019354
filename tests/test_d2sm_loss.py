"""D2SM loss (thesis 001, Ch. 9): Eqs. 9.2-9.5 by their defining properties, the historic queues of
Eqs. 9.7 / 9.8, the VGG-19 Phi in torchvision's layout, and the bad-input messages."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from lightning_modules.components.d2sm_loss import D2SMLoss, cosine_kernel, neighbour_probabilities, sliding_patches
from lightning_modules.components.semantic_features import TinyRandomFeatures, build_vgg19_features, vgg19_layer_index


def _loss(**kwargs) -> D2SMLoss:
    defaults = dict(queue_size=0, window=16, stride=8)
    defaults.update(kwargs)
    return D2SMLoss(TinyRandomFeatures(4), **defaults)


def _images(n: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_sliding_window_counts_and_content() -> None:
    images = _images(2, 40)
    patches = sliding_patches(images, 16, 8)  # floor((40 - 16) / 8) + 1 = 4 positions per axis
    assert patches.shape == (2 * 16, 3, 16, 16)
    assert torch.equal(patches[1], images[0, :, 0:16, 8:24])  # row-major: second patch is one stride right
    assert torch.equal(patches[16 + 5], images[1, :, 8:24, 8:24])
    assert sliding_patches(torch.zeros(1, 3, 512, 512), 224, 56).shape[0] == 36  # §9.3.3: 36 per 512 crop


def test_conditionals_follow_eqs_9_3_to_9_5() -> None:
    f = torch.nn.functional.normalize(torch.randn(5, 7), dim=1)
    kernel = cosine_kernel(f)
    i, j = 1, 3
    literal = 0.5 * (torch.dot(f[i], f[j]) / (f[i].norm() * f[j].norm()) + 1)
    assert torch.allclose(kernel[i, j], literal, atol=1e-6)
    p = neighbour_probabilities(kernel)
    denominator = sum(kernel[i, k] for k in range(5) if k != i)
    assert torch.allclose(p[i, j], kernel[i, j] / denominator, atol=1e-6)
    assert torch.allclose(p.sum(1), torch.ones(5)) and torch.all(p.diagonal() == 0)
    with_diag = neighbour_probabilities(kernel, include_diagonal=True)
    assert torch.allclose(with_diag[i, j], kernel[i, j] / kernel[i].sum(), atol=1e-6)


@pytest.mark.parametrize("divergence", ["kl", "ikl", "jsd"])
def test_identical_sets_give_zero_and_loss_is_non_negative(divergence: str) -> None:
    loss = _loss(divergence=divergence)
    clean = _images()
    assert abs(float(loss(clean, clean))) < 1e-6
    for seed in range(4):
        restored = clean + 0.5 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(seed))
        assert float(loss(restored, clean)) >= -1e-7


def test_kl_matches_the_literal_double_sum_of_eq_9_2() -> None:
    loss = _loss(reduction="sum")
    restored, clean = _images(2, seed=1), _images(2, seed=2)
    fx, fy = loss.features(restored), loss.features(clean)
    n = fx.shape[0]
    kx, ky = cosine_kernel(fx), cosine_kernel(fy)
    total = 0.0
    for i in range(n):
        zx = sum(kx[i, k] for k in range(n) if k != i)
        zy = sum(ky[i, k] for k in range(n) if k != i)
        for j in range(n):
            if j != i:
                gx, gy = kx[i, j] / zx, ky[i, j] / zy
                total += float(gx * torch.log(gx / gy))
    assert float(loss(restored, clean)) == pytest.approx(total, rel=1e-4)
    assert float(_loss()(restored, clean)) == pytest.approx(total / (n * (n - 1)), rel=1e-4)
    # peer check: torch's kl_div (input = log of the reference distribution) on the off-diagonal entries
    off = ~torch.eye(n, dtype=torch.bool)
    px, py = neighbour_probabilities(kx)[off], neighbour_probabilities(ky)[off]
    peer = torch.nn.functional.kl_div(py.log(), px, reduction="sum")
    assert float(loss(restored, clean)) == pytest.approx(float(peer), rel=1e-4)
    assert torch.allclose(kx[0, 1], (torch.nn.functional.cosine_similarity(fx[0:1], fx[1:2]) + 1)[0] / 2, atol=1e-6)


def test_jsd_is_symmetric_and_kl_is_not() -> None:
    a, b = _images(seed=3), _images(seed=4)
    jsd, kl = _loss(divergence="jsd"), _loss(divergence="kl")
    assert float(jsd(a, b)) == pytest.approx(float(jsd(b, a)), rel=1e-5)
    assert float(kl(a, b)) != pytest.approx(float(kl(b, a)), rel=1e-3)
    assert float(_loss(divergence="ikl")(a, b)) == pytest.approx(float(kl(b, a)), rel=1e-5)


def test_gradient_reaches_the_restored_images_and_not_phi() -> None:
    loss = _loss(queue_size=54)  # 3 images x 9 patches = 27 per step
    loss.train()
    clean = _images()
    for step in range(3):  # later steps mix in detached historic entries
        restored = (clean + 0.3 * torch.randn_like(clean)).requires_grad_(True)
        value = loss(restored, clean)
        value.backward()
        assert restored.grad is not None and float(restored.grad.abs().sum()) > 0, f"step {step}"
    assert all(p.grad is None and not p.requires_grad for p in loss.phi.parameters())
    assert not loss.queue_restored.requires_grad


def test_queue_pointer_wraps_and_keeps_the_newest_entries() -> None:
    loss = _loss(queue_size=10, window=32)  # one sample per image
    loss.train()
    batches = [_images(4, seed=s) for s in range(4)]  # 16 samples into a queue of 10
    for batch in batches:
        loss(batch, batch)
    assert int(loss.queue_ptr) == 16 % 10 and int(loss.queue_filled) == 10
    newest = torch.cat([loss.features(b) for b in batches])[-10:]  # the 10 newest, oldest first
    restored, _ = loss.historic(10)  # newest first
    assert torch.allclose(restored.flip(0), newest, atol=1e-6)
    loss.eval()
    loss(batches[0], batches[0])
    assert int(loss.queue_ptr) == 6, "evaluation does not write the queue"


def test_queue_of_one_batch_equals_the_batch_only_loss() -> None:
    with_queue, batch_only = _loss(queue_size=9 * 2), _loss(queue_size=0)  # 2 images x 9 patches
    with_queue.train()
    for seed in range(3):
        restored, clean = _images(2, seed=seed), _images(2, seed=seed + 10)
        assert float(with_queue(restored, clean)) == pytest.approx(float(batch_only(restored, clean)), rel=1e-6)


def test_historic_entries_change_the_estimate() -> None:
    loss = _loss(queue_size=36)
    loss.train()
    first, second = _images(2, seed=5), _images(2, seed=6)
    loss(first, _images(2, seed=7))
    mixed = loss(second, _images(2, seed=8))
    alone = _loss()(second, _images(2, seed=8))
    assert float(mixed) != pytest.approx(float(alone), rel=1e-3)


@pytest.mark.parametrize(
    "kwargs, images, expected",
    [
        (dict(window=64), (1, 32), "window (64) is larger than the image"),
        (dict(queue_size=10), (2, 32), "queue_size (10) is smaller than the samples of one step (18"),
        (dict(divergence="tv"), None, "divergence"),
        (dict(internal=False, queue_size=4, window=16), (2, 32), "internal=False with a queue needs 16x16"),
    ],
    ids=["window-too-large", "queue-too-small", "unknown-divergence", "whole-image-size"],
)
def test_bad_input_names_the_key(kwargs: dict, images, expected: str) -> None:
    with pytest.raises(ValueError, match=None) as info:
        loss = _loss(**kwargs)
        loss.train()
        x = _images(*images)
        loss(x, x)
    assert expected in str(info.value)


def test_vgg19_phi_loads_torchvision_layout_and_taps_conv5_4_before_relu(tmp_path: Path) -> None:
    from torchvision.models import vgg19

    assert vgg19_layer_index("conv5_4") == 34 and vgg19_layer_index("relu5_4") == 35  # code: features[:35]
    with torch.device("meta"):
        reference = vgg19(weights=None)  # torchvision's architecture; random weights below (nothing downloads)
    reference.features.to_empty(device="cpu")
    for p in reference.features.parameters():
        nn.init.normal_(p, std=0.05)
    path = tmp_path / "vgg19-dcbb9e9d.pth"
    torch.save({f"features.{k}": v for k, v in reference.features.state_dict().items()}, path)  # file's key names
    phi = build_vgg19_features(str(path))
    assert len(phi.features) == 35 and isinstance(phi.features[-1], nn.Conv2d)
    assert not phi.random_weights and not any(p.requires_grad for p in phi.parameters())
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    expected = reference.features[:35]((x + 1) / 2 - torch.tensor([0.4488, 0.4371, 0.4040]).view(1, 3, 1, 1))
    assert torch.allclose(phi(x), expected, atol=1e-5)
    assert (phi(x) < 0).any(), "pre-ReLU features keep negative values"
    with pytest.raises(FileNotFoundError, match="vgg_weights"):
        build_vgg19_features(str(tmp_path / "missing.pth"))


def test_full_size_phi_feature_dim_on_the_meta_device() -> None:
    with torch.device("meta"):
        phi = build_vgg19_features(None)
        out = phi(torch.zeros(36, 3, 224, 224))
    assert tuple(out.shape) == (36, 512, 14, 14)  # D = 100,352 per 224 patch
