"""I3D with random weights, FVD of a set against itself, frame FID."""
from __future__ import annotations

import warnings

import pytest
import torch

from metrics.i3d import I3DFeatures, InceptionI3D
from metrics.video import FrameFID, FrechetVideoDistance


def test_i3d_forward_random_weights_and_state_dict_names() -> None:
    net = InceptionI3D()
    names = set(net.state_dict())
    for key in ("Conv3d_1a_7x7.conv3d.weight", "Conv3d_1a_7x7.bn.running_var", "Mixed_4f.b1b.conv3d.weight",
                "Mixed_5c.b3b.bn.bias", "logits.conv3d.bias"):
        assert key in names  # the layout of the common PyTorch I3D port, so its state dicts load as-is
    features = I3DFeatures(None, num_frames=8, resolution=None)
    features.net = net
    out = features(torch.rand(2, 8, 3, 16, 16) * 2 - 1)
    assert out.shape == (2, 400) and torch.isfinite(out).all()
    assert features.protocol.random_weights


def test_fvd_of_a_set_against_itself_is_zero_and_differs_otherwise() -> None:
    extractor = I3DFeatures(None, num_frames=8, resolution=None)
    g = torch.Generator().manual_seed(0)
    videos = torch.rand(4, 8, 3, 16, 16, generator=g) * 2 - 1
    other = (torch.rand(4, 8, 3, 16, 16, generator=g) * 0.5).clamp(-1, 1)
    fvd = FrechetVideoDistance(feature_extractor=extractor, num_frames=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 4 clips for 400-d features: the rank warning is expected here
        fvd.update(videos, real=True)
        fvd.update(videos, real=False)
        assert abs(float(fvd.compute())) < 1e-6
        fvd.update(other, real=False)
        assert float(fvd.compute()) > 0
    assert fvd.protocol.extra["clip_frames"] == 8


def test_video_inputs_are_checked() -> None:
    extractor = I3DFeatures(None, num_frames=8, resolution=None)
    with pytest.raises(ValueError, match=r"expected at least 8 frames, received 4"):
        extractor(torch.zeros(1, 4, 3, 32, 32))
    with pytest.raises(ValueError, match=r"expected shape \[B, T, C, H, W\]"):
        extractor(torch.zeros(1, 3, 32, 32))
    with pytest.raises(FileNotFoundError, match=r"weights_path.*i3d_torchscript.pt"):
        I3DFeatures("/nonexistent/i3d.pt")


def test_frame_fid_pools_frames() -> None:
    extractor = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten())  # 12-d features

    g = torch.Generator().manual_seed(1)
    videos = torch.rand(5, 6, 3, 16, 16, generator=g) * 2 - 1
    metric = FrameFID(extractor, frames_per_video=4)
    metric.update(videos, real=True)
    metric.update(videos, real=False)
    assert int(metric.real_count) == 20
    assert abs(float(metric.compute())) < 1e-6
