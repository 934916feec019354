"""Fit-Check inference parts (thesis 000, Ch. 4, §4.4): latent fusion, IMU motion retrieval, grounding, data policy."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from datamodules.fitcheck_motion import (
    BackgroundRetriever,
    MotionClip,
    MotionRetriever,
    depth_to_points,
    dtw,
    ground_feet,
    ground_plane_normal,
    imu_to_trajectory,
)
from datamodules.fitcheck_videos import is_back, is_front, pick_references, sample_window
from diffusion.paths import EDMPath
from diffusion.grids import karras_grid
from diffusion.samplers import EDMSampler
from diffusion.video_fusion import ProgressiveLatentFusion, fusion_windows, triangular_weights


class _FrameLocal:
    """A denoiser whose output for a frame depends only on that frame (and t): fusion must not change it."""

    prediction_type = "v_prediction"

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.w = torch.randn(4, 4) * 0.3

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bfchw,cd->bfdhw", x, self.w) * (1 + t.view(-1, 1, 1, 1, 1))


class _Mixing(_FrameLocal):
    """Output depends on the mean over the frames it sees (a crude temporal layer)."""

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return super().__call__(x, t) + x.mean(dim=1, keepdim=True)


def _sample(denoiser, frames: int) -> torch.Tensor:
    path = EDMPath()
    noise = torch.randn(1, frames, 4, 3, 2, generator=torch.Generator().manual_seed(0))
    return EDMSampler(second_order=False).sample(denoiser, path, noise, karras_grid(path, 5))


def test_one_fusion_window_reproduces_plain_sampling() -> None:
    inner = _Mixing()
    fused = ProgressiveLatentFusion(lambda x, t, frames: inner(x, t), "v_prediction", window=10, overlap=4, prefix=(0, 1))
    torch.testing.assert_close(_sample(fused, 10), _sample(inner, 10), rtol=0, atol=0)


def test_overlapping_windows_are_normalised_and_cover_every_frame() -> None:
    windows = fusion_windows(22, window=8, overlap=4, prefix=(0, 1))
    assert all(w[:2] == [0, 1] and len(w) == 8 for w in windows)
    assert sorted({f for w in windows for f in w}) == list(range(22))
    assert all(len(set(a[2:]) & set(b[2:])) >= 4 for a, b in zip(windows, windows[1:]))
    w = triangular_weights(6)
    assert torch.all(w > 0) and torch.allclose(w, w.flip(0))
    inner = _FrameLocal()  # identical per-frame outputs in every window: weighted average = the output
    fused = ProgressiveLatentFusion(lambda x, t, frames: inner(x, t), "v_prediction", window=8, overlap=4, prefix=(0, 1))
    torch.testing.assert_close(_sample(fused, 22), _sample(inner, 22), rtol=1e-5, atol=1e-5)
    mixing = _Mixing()
    fused_mixing = ProgressiveLatentFusion(lambda x, t, frames: mixing(x, t), "v_prediction", 8, 4, (0, 1))
    assert not torch.allclose(_sample(fused_mixing, 22), _sample(mixing, 22)), "windows really are separate calls"


def test_module_generate_with_one_window_equals_plain_guided_sampling() -> None:
    from diffusion.guidance import ClassifierFreeGuidance
    from fitcheck_tiny import random_batch, tiny_module

    module = tiny_module(window=6)
    batch = random_batch(frames=4)
    noise = torch.randn(1, 6, 4, 16, 12, generator=torch.Generator().manual_seed(0))
    fused = module.generate(batch, noise=noise, keep_references=True)
    poses = torch.cat([torch.stack([batch["front_pose"], batch["back_pose"]], 1), batch["pose"]], 1)
    cond = module.conditions(batch, poses)
    plain = ClassifierFreeGuidance(module._net, "v_prediction", cond, module.null_conditions(cond), scale=2.0)
    grid = module.sampling_grid(module.num_sampling_steps, noise.device)
    expected = module.decode(module.sampler.sample(plain, module.path, noise, grid))
    torch.testing.assert_close(fused, expected, rtol=1e-5, atol=1e-5)
    assert module.generate(batch, noise=noise).shape[1] == 4, "the two reference frames are dropped"


def _library(rng: np.random.Generator, count: int = 12) -> list[MotionClip]:
    clips = []
    for i in range(count):
        n = int(rng.integers(40, 70))
        s = np.linspace(0, 1, n)
        spin = rng.uniform(-2, 2) * 2 * math.pi
        yaw = (rng.uniform(0, 2 * math.pi) + spin * s**rng.uniform(0.5, 2)) % (2 * math.pi)
        heading = rng.uniform(0, 2 * math.pi)
        walk = rng.uniform(0, 3) * s[:, None] * np.array([math.cos(heading), 0, math.sin(heading)])
        clips.append(MotionClip(f"m{i}", yaw, walk + 0.05 * np.sin(7 * s)[:, None]))
    return clips


def test_dtw_motion_retrieval_finds_a_planted_trajectory() -> None:
    rng = np.random.default_rng(0)
    library = _library(rng)
    retriever = MotionRetriever(library, alpha=0.1)
    for planted in (3, 7):
        clip = library[planted]
        n = len(clip.yaw)
        warp = np.clip(np.linspace(0, 1, int(n * 1.3)) ** 1.2 * (n - 1), 0, n - 1)  # slower, non-uniform replay
        yaw = np.interp(warp, np.arange(n), np.unwrap(clip.yaw)) + rng.normal(0, 0.05, len(warp))
        trans = np.stack([np.interp(warp, np.arange(n), clip.translation[:, d]) for d in range(3)], 1)
        ranked = retriever.retrieve(yaw, trans + rng.normal(0, 0.02, trans.shape), k=5)
        assert ranked[0][0] == planted and len(ranked) == 5
        assert ranked[0][1] < ranked[1][1]
    assert dtw(np.array([0.0, 1, 2]), np.array([0.0, 0, 1, 1, 2])) == 0.0


def test_imu_double_integration_recovers_a_trajectory() -> None:
    dt = 1 / 100
    t = np.arange(0, 4, dt)
    position = np.stack([0.5 * (1 - np.cos(math.pi * t / 4)), 0.2 * np.sin(math.pi * t / 4) ** 2, np.zeros_like(t)], 1)
    acceleration = np.gradient(np.gradient(position, dt, axis=0), dt, axis=0)
    recovered = imu_to_trajectory(acceleration, dt, smooth=1)
    assert np.abs(recovered - position).max() < 0.05


def test_ground_plane_normal_background_retrieval_and_foot_grounding() -> None:
    h, w, f = 60, 80, 70.0
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    tilt = math.radians(20)
    # floor y = 1.5 m below the camera, seen by a camera pitched down by `tilt`
    ray_y = (v - h / 2) / f * math.cos(tilt) + math.sin(tilt)
    ray_z = math.cos(tilt) - (v - h / 2) / f * math.sin(tilt)
    depth = np.where(ray_y > 0.05, 1.5 / np.maximum(ray_y, 1e-6) * ray_z / np.maximum(ray_z, 1e-6), 0)
    normal = ground_plane_normal(depth_to_points(depth, f, f, w / 2, h / 2, mask=ray_y > 0.05))
    expected = np.array([0.0, -math.cos(tilt), -math.sin(tilt)])  # world up in camera coordinates
    assert np.degrees(np.arccos(abs(normal @ expected))) < 3.0
    candidates = np.array([[0, -1, 0], expected + [0.3, 0, 0], expected, [0, -0.5, 0.9]], dtype=np.float64)
    assert BackgroundRetriever(candidates).retrieve(normal, k=2)[0][0] == 2
    poses = np.full((5, 18, 2), 10.0)
    poses[:, 10] = [[8.0, 40 + i] for i in range(5)]
    poses[:, 13] = [[12.0, 41 + i] for i in range(5)]
    poses[:, 14] = -1
    grounded = ground_feet(poses, ground_y=50.0, scale=1.0)
    assert abs(np.median(grounded[:, [10, 13], 1].max(1)) - 50.0) < 1e-9
    assert (grounded[:, 14] == -1).all()


def test_orientation_classes_window_policy_and_reference_choice() -> None:
    assert is_front(np.array([0, 29, 331, 359])).all() and not is_front(np.array([31, 180, 329])).any()
    assert is_back(np.array([150, 180, 210])).all() and not is_back(np.array([149, 211, 0])).any()
    yaw = np.array([0.0] * 2 + [90.0] * 20 + [180.0] * 2 + [270.0] * 20)
    front, back = is_front(yaw), is_back(yaw)
    rng = np.random.default_rng(0)
    starts = np.array([sample_window(len(yaw), 6, front, back, rng) for _ in range(3000)])
    has_front = np.array([front[s : s + 6].any() for s in starts])
    has_back = np.array([back[s : s + 6].any() for s in starts])
    # 40% forced front + 40% forced back + the random 20% that happen to contain them
    random_front = np.mean([front[s : s + 6].any() for s in range(len(yaw) - 5)])
    assert abs(has_front.mean() - (0.4 + 0.2 * random_front)) < 0.04
    assert abs(has_back.mean() - (0.4 + 0.2 * np.mean([back[s : s + 6].any() for s in range(len(yaw) - 5)]))) < 0.04
    for _ in range(20):
        f, b = pick_references(yaw, rng)
        assert front[f] and back[b]


def _mimicmotion_reference_step(module, x, t, cond, null, scale, tile, overlap):
    """MimicMotion's pipeline loop, written out: tiles prefixed by the references, one triangle over
    each whole tile, conditional and null passes fused separately, then a per-frame CFG ramp."""
    frames = x.shape[1]
    body = list(range(2, frames))
    span = tile - 2
    starts = list(range(0, len(body) - span + 1, span - overlap))
    if starts[-1] + span < len(body):
        starts.append(len(body) - span)
    k = torch.arange(tile, dtype=torch.float64) + 0.5
    weight = torch.minimum(k * 2 / tile, 2 - k * 2 / tile).float()
    fused = {}
    for name, c in (("cond", cond), ("null", null)):
        total, count = torch.zeros_like(x), torch.zeros(frames)
        for s in starts:
            idx = torch.tensor([0, 1, *body[s : s + span]])
            window = dict(c, pose_images=c["pose_images"][:, idx])
            total[:, idx] += module._net(x[:, idx], t, window) * weight.view(1, -1, 1, 1, 1)
            count[idx] += weight
        fused[name] = total / count.view(1, -1, 1, 1, 1)
    w = torch.linspace(scale[0], scale[1], frames).view(1, -1, 1, 1, 1)
    return fused["null"] + w * (fused["cond"] - fused["null"])


def test_guidance_and_fusion_defaults_follow_the_mimicmotion_pipeline() -> None:
    from fitcheck_tiny import random_batch, tiny_module

    module = tiny_module(window=6, overlap=2)
    assert module.guidance_null == "keep_pose" and module.fusion_prefix_weighting == "triangular"
    batch = random_batch(frames=8)
    poses = torch.cat([torch.stack([batch["front_pose"], batch["back_pose"]], 1), batch["pose"]], 1)
    cond = module.conditions(batch, poses)
    null = module.null_conditions(cond)
    assert torch.equal(null["pose_keep"], cond["pose_keep"]) and not null["ref_latents"].any()
    x = torch.randn(1, 10, 4, 16, 12, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0.7])
    expected = _mimicmotion_reference_step(module, x, t, cond, null, (1.0, 3.0), tile=6, overlap=2)
    torch.testing.assert_close(module.video_denoiser(cond, [1.0, 3.0])(x, t), expected, rtol=1e-4, atol=1e-5)
    other = tiny_module(window=6, overlap=2, guidance_null="all", fusion_prefix_weighting="one")
    other.load_state_dict(module.state_dict())
    assert not other.null_conditions(cond)["pose_keep"].any()
    assert not torch.allclose(other.video_denoiser(cond, [1.0, 3.0])(x, t), expected, atol=1e-4)
    with pytest.raises(ValueError, match="guidance_null"):
        tiny_module(guidance_null="pose")
