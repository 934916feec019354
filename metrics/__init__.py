"""Evaluation metrics: torchmetrics ``Metric`` subclasses that stream, reduce across DDP ranks and
declare the protocol they follow (``metric.protocol``, a :class:`MetricProtocol`).

Imports are lazy so that ``import metrics`` stays cheap (transformers is only
loaded by the metrics that need it).
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "MetricProtocol": "metrics.protocol",
    "FrechetInceptionDistance": "metrics.fid",
    "KernelInceptionDistance": "metrics.fid",
    "ReconstructionFID": "metrics.fid",
    "FIDInceptionV3": "metrics.inception",
    "TorchvisionInceptionFeatures": "metrics.inception",
    "DINOv2Features": "metrics.feature_extractors",
    "build_feature_extractor": "metrics.feature_extractors",
    "DigitsClassifierFeatures": "metrics.digits_classifier",
    "train_digits_classifier": "metrics.digits_classifier",
    "InceptionI3D": "metrics.i3d",
    "I3DFeatures": "metrics.i3d",
    "FrechetVideoDistance": "metrics.video",
    "FrameFID": "metrics.video",
    "LPIPSNetwork": "metrics.perceptual",
    "LearnedPerceptualImagePatchSimilarity": "metrics.perceptual",
    "MaskedLPIPS": "metrics.perceptual",
    "PeakSignalNoiseRatio": "metrics.image_quality",
    "MaskedPSNR": "metrics.image_quality",
    "StructuralSimilarityIndexMeasure": "metrics.image_quality",
    "MaskedSSIM": "metrics.image_quality",
    "BinaryIoU": "metrics.segmentation",
    "MaxIoU": "metrics.segmentation",
    "MeanIoU": "metrics.segmentation",
    "DistanceCurveDifference": "metrics.painting",
    "TimeSpentDifference": "metrics.painting",
    "dtw_distance": "metrics.painting",
    "time_distance_curve": "metrics.painting",
    "LabRegionRMSE": "metrics.region_rmse",
    "RegionPSNR": "metrics.shadow_regions",
    "RegionSSIM": "metrics.shadow_regions",
    "CLIPScore": "metrics.clip_score",
    "VideoCLIPScore": "metrics.clip_score",
    "IdentitySimilarity": "metrics.identity",
    "NIQE": "metrics.niqe",
    "InceptionScore": "metrics.generation_quality",
    "PrecisionRecall": "metrics.generation_quality",
    "FIDInceptionLogits": "metrics.generation_quality",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'metrics' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
