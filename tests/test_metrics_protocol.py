"""Every metric declares its protocol, and the protocol serialises into a results row."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from metrics.protocol import MetricProtocol


class _Flat(nn.Module):
    num_features = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.adaptive_avg_pool2d(x[:, :1].float(), 2).flatten(1)


class _VideoFlat(nn.Module):
    num_features = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.adaptive_avg_pool2d(x[:, :, 0].float(), 2).flatten(1)


def _metrics() -> dict[str, object]:
    from metrics import (BinaryIoU, DistanceCurveDifference, FrameFID, FrechetInceptionDistance, FrechetVideoDistance,
                         IdentitySimilarity, KernelInceptionDistance, LabRegionRMSE, LearnedPerceptualImagePatchSimilarity,
                         MaskedLPIPS, MaskedPSNR, MaskedSSIM, MaxIoU, MeanIoU, PeakSignalNoiseRatio, ReconstructionFID,
                         StructuralSimilarityIndexMeasure, TimeSpentDifference)
    from metrics.perceptual import LPIPSNetwork

    lpips_net = LPIPSNetwork("squeeze")
    return {
        "fid": FrechetInceptionDistance(_Flat()), "kid": KernelInceptionDistance(_Flat()), "rfid": ReconstructionFID(_Flat()),
        "frame_fid": FrameFID(_Flat()), "fvd": FrechetVideoDistance(_VideoFlat(), num_frames=2),
        "lpips": LearnedPerceptualImagePatchSimilarity(network=lpips_net), "masked_lpips": MaskedLPIPS(network=lpips_net),
        "psnr": PeakSignalNoiseRatio(), "masked_psnr": MaskedPSNR(), "ssim": StructuralSimilarityIndexMeasure(),
        "masked_ssim": MaskedSSIM(), "iou": BinaryIoU(), "max_iou": MaxIoU(), "miou": MeanIoU(3),
        "ddc": DistanceCurveDifference(lpips_network=lpips_net), "dts": TimeSpentDifference(),
        "rmse_lab": LabRegionRMSE(), "identity": IdentitySimilarity(nn.Flatten()),
    }


def test_every_metric_declares_a_serialisable_protocol() -> None:
    for name, metric in _metrics().items():
        protocol = getattr(metric, "protocol", None)
        assert isinstance(protocol, MetricProtocol), name
        assert protocol.describe().startswith(protocol.evaluator), name
        json.dumps(protocol.to_dict())


def test_build_feature_extractor_names() -> None:
    from metrics.feature_extractors import build_feature_extractor

    assert build_feature_extractor("digits", random_weights=True).protocol.random_weights
    with pytest.raises(ValueError, match="unknown feature extractor 'clip'"):
        build_feature_extractor("clip")
