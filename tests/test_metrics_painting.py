"""DDC / DTS (Inverse Painting), IoU / max-IoU / mIoU, LAB region error, CLIP score, identity similarity."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from metrics.painting import DistanceCurveDifference, TimeSpentDifference, dtw_distance
from metrics.region_rmse import LabRegionRMSE, rgb_to_lab
from metrics.segmentation import BinaryIoU, MaxIoU, MeanIoU


def _brute_force_dtw(a: list[float], b: list[float]) -> float:
    @functools.lru_cache(maxsize=None)
    def d(i: int, j: int) -> float:
        cost = abs(a[i] - b[j])
        if i == 0 and j == 0:
            return cost
        options = []
        if i > 0:
            options.append(d(i - 1, j))
        if j > 0:
            options.append(d(i, j - 1))
        if i > 0 and j > 0:
            options.append(d(i - 1, j - 1))
        return cost + min(options)

    return d(len(a) - 1, len(b) - 1)


def test_dtw_equals_brute_force_dp_on_random_curves() -> None:
    rng = np.random.default_rng(0)
    for n, m in [(1, 1), (1, 5), (7, 3), (12, 12), (20, 9)]:
        a, b = rng.random(n).tolist(), rng.random(m).tolist()
        assert dtw_distance(a, b) == pytest.approx(_brute_force_dtw(a, b), abs=1e-12)


def test_ddc_identical_zero_and_time_shift_beats_a_different_curve() -> None:
    t = np.linspace(0, 1, 30)
    real = np.exp(-4 * t)
    shifted = np.exp(-4 * np.clip(t - 0.15, 0, None))  # the same process, started later
    different = 1 - t  # a linear, not an exponential, convergence
    metric = DistanceCurveDifference(lpips_network=None)
    seconds = t * 600
    metric.update_curves(real, real, seconds, seconds)
    assert float(metric.compute()) == 0.0
    assert dtw_distance(shifted, real) < dtw_distance(different, real)


def test_ddc_charges_a_process_twice_as_slow_with_the_same_values() -> None:
    """Hand-computed DTW in the (minutes, LPIPS) plane (§6.3.4).

    Real: (0, .6), (1, .3), (2, 0); generated: the same values at 0, 2, 4 min. Point costs
    (Euclidean): d(p0,q0) = 0, d(p1,q1) = 1, d(p2,q2) = 2, d(p1,q0) = sqrt(1.09),
    d(p2,q1) = 0.3, ...; the cumulative table gives D[2,2] = 2 + D[1,1] = 2 + 1 + 0 = 3.
    The 1-D index-based DTW scored this pair 0.
    """
    values = [0.6, 0.3, 0.0]
    metric = DistanceCurveDifference(lpips_network=None)
    metric.update_curves(values, values, [0.0, 120.0, 240.0], [0.0, 60.0, 120.0])
    assert float(metric.compute()) == pytest.approx(3.0, abs=1e-12)
    assert dtw_distance(values, values) == 0.0  # what the old definition saw


def test_ddc_hand_computed_on_curves_of_different_length() -> None:
    """Real (0, .5), (1, 0); generated (0, .5), (1, .2), (2, 0) (minutes, LPIPS).

    Costs: d00 = 0, d11 = .2, d12 = 1, d01 = sqrt(1.09), d02 = sqrt(4.25), d10 = sqrt(1.25).
    D11 = .2 + D00 = .2; D12 = 1 + min(D02, D11, D01) = 1.2; the optimal path is
    (0,0) -> (1,1) -> (1,2).
    """
    metric = DistanceCurveDifference(lpips_network=None)
    metric.update_curves([0.5, 0.2, 0.0], [0.5, 0.0], [0.0, 60.0, 120.0], [0.0, 60.0])
    metric.update_curves([0.6, 0.3, 0.0], [0.6, 0.3, 0.0], [0.0, 120.0, 240.0], [0.0, 60.0, 120.0])
    assert float(metric.compute()) == pytest.approx((1.2 + 3.0) / 2, abs=1e-12)
    with pytest.raises(ValueError, match="one time per frame"):
        metric.update_curves([0.5, 0.0], [0.5, 0.0], [0.0], [0.0, 60.0])


def test_ddc_from_frames_uses_lpips_to_the_last_real_frame() -> None:
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(4, 3, 32, 32, generator=g) * 2 - 1
    times = torch.tensor([0.0, 20.0, 40.0, 60.0])
    metric = DistanceCurveDifference()
    metric.update(frames, frames, generated_times=times, real_times=times)
    assert float(metric.compute()) == pytest.approx(0.0, abs=1e-7)
    slow = DistanceCurveDifference(lpips_network=metric.lpips_network)
    slow.update(frames, frames, generated_times=2 * times, real_times=times)
    assert float(slow.compute()) > 0.5  # 0 + 1/3 + 2/3 + 1 minute along the diagonal, at most
    assert metric.protocol.random_weights


def test_dts_in_minutes() -> None:
    metric = TimeSpentDifference()
    metric.update(torch.tensor([0.0, 20.0, 40.0, 600.0]), torch.tensor([0.0, 300.0, 900.0]))  # 10 min vs 15 min
    metric.update([[0, 120]], [[0, 60]])  # 2 min vs 1 min
    assert float(metric.compute()) == pytest.approx((5.0 + 1.0) / 2)


def test_iou_hand_computed() -> None:
    pred = torch.zeros(2, 4, 4, dtype=torch.bool)
    target = torch.zeros(2, 4, 4, dtype=torch.bool)
    pred[0, :2, :] = True  # 8 pixels
    target[0, :, :2] = True  # 8 pixels, overlap 4, union 12
    # second pair: both empty -> IoU 1 by convention
    per_image = BinaryIoU()
    per_image.update(pred, target)
    assert float(per_image.compute()) == pytest.approx((4 / 12 + 1.0) / 2)
    pooled = BinaryIoU(reduction="global")
    pooled.update(pred, target)
    assert float(pooled.compute()) == pytest.approx(4 / 12)


def test_max_iou_hand_computed() -> None:
    generated = torch.zeros(2, 4, 4)
    generated[0, 0, :] = 1  # row 0
    generated[1, :, 0] = 1  # column 0
    real = torch.zeros(2, 4, 4)
    real[0, 0, :2] = 1  # half of row 0: IoU with g0 = 2/4
    real[1, :, :2] = 1  # columns 0-1: IoU with g1 = 4/8, with g0 = 2/10
    metric = MaxIoU()
    metric.update(generated, real)
    assert float(metric.compute()) == pytest.approx((0.5 + 0.5) / 2)
    metric.update([generated[:1]], [generated[:1]])
    assert float(metric.compute()) == pytest.approx((0.5 + 1.0) / 2)


def test_mean_iou_hand_computed() -> None:
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 255]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 0]])
    metric = MeanIoU(num_classes=3)
    metric.update(pred, target)
    # class 0: inter 1, union 3; class 1: inter 2, union 3; class 2: inter 1, union 2 (ignored pixels dropped)
    assert float(metric.compute()) == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)


def test_lab_conversion_matches_skimage_and_region_error_hand_case() -> None:
    from skimage.color import rgb2lab

    rgb = torch.rand(2, 3, 5, 5, dtype=torch.float64)
    expected = np.stack([rgb2lab(x.permute(1, 2, 0).numpy()).transpose(2, 0, 1) for x in rgb])
    np.testing.assert_allclose(rgb_to_lab(rgb).numpy(), expected, atol=1e-8)

    target = torch.full((1, 3, 4, 4), 1.0)  # white
    pred = target.clone()
    pred[..., :2, :] = -1.0  # top half black: |dL| = 100, a = b = 0 in both
    mask = torch.zeros(1, 4, 4)
    mask[:, :2, :] = 1  # the shadow region is exactly the black half
    metric = LabRegionRMSE(resize=None)
    metric.update(pred, target, mask)
    values = metric.compute()
    white = np.abs(rgb2lab(np.ones((1, 1, 3)))).sum()  # L = 100 plus |a| + |b| of D65 white (about 0.007)
    assert float(values["shadow"]) == pytest.approx(white, rel=1e-9)
    assert float(values["non_shadow"]) == pytest.approx(0.0, abs=1e-9)
    assert float(values["all"]) == pytest.approx(white / 2, rel=1e-9)
    rmse = LabRegionRMSE(resize=None, error="squared", channel_reduction="mean")
    rmse.update(pred, target, mask)
    squares = (rgb2lab(np.ones((1, 1, 3))) ** 2).sum()
    assert float(rmse.compute()["all"]) == pytest.approx(np.sqrt(squares / 3 / 2), rel=1e-9)


def test_clip_score_random_weights() -> None:
    from metrics.clip_score import CLIPScore

    config = dict(
        text_config=dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=1,
                         vocab_size=99, max_position_embeddings=20, bos_token_id=0, eos_token_id=1, pad_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=1,
                           image_size=32, patch_size=8),
        projection_dim=16,
    )
    metric = CLIPScore(config=config, scale=100.0, clamp_negative=True)
    images = torch.rand(3, 3, 40, 40) * 2 - 1
    metric.update(images, input_ids=torch.randint(2, 99, (3, 7)))
    value = float(metric.compute())
    assert 0.0 <= value <= 100.0 and metric.protocol.random_weights
    with pytest.raises(ValueError, match="needs `text`"):
        metric.update(images)


def test_identity_similarity_is_one_for_identical_faces() -> None:
    from metrics.identity import IdentitySimilarity

    embedder = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, stride=4), torch.nn.Flatten())
    metric = IdentitySimilarity(embedder, size=32)
    faces = torch.rand(2, 3, 48, 48) * 2 - 1
    metric.update(faces, faces)
    assert float(metric.compute()) == pytest.approx(100.0)
