"""Pose detectors for ``predict`` when the target pose is given as an image (seed 003 uses OpenPose-18).

The interface: ``detector(images [B, 3, H, W] in [-1, 1]) -> keypoints [B, 18, 2]`` as ``(x, y)``
pixels of the input image in OpenPose-18 order, ``-1`` for a missing joint.

* :class:`OpenPoseBodyDetector`: the real detector the DeepFashion annotations come from
  (OpenPose body-18), through ``controlnet_aux``'s ``OpenposeDetector`` loaded from a local folder
  holding ``body_pose_model.pth`` (lllyasviel/Annotators on the Hugging Face hub; a hub id works).
  Package and weights are loaded at the first call; a missing package or folder fails then with a
  message saying what to install/download. ``controlnet_aux`` is the optional extra ``pose``.
* :class:`TemplatePoseStandIn`: **a stand-in, not a detector**: it ignores the image content and
  returns a fixed upright standing pose scaled to the image. It exists so that the
  image-as-target-pose path of ``predict`` runs in tests and tiny configs.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from lightning_modules.components.pretrained_paths import require_files

# A standing person, OpenPose-18 order, as fractions (x of width, y of height).
_TEMPLATE = (
    (0.50, 0.12), (0.50, 0.22), (0.38, 0.23), (0.34, 0.38), (0.33, 0.52), (0.62, 0.23), (0.66, 0.38),
    (0.67, 0.52), (0.43, 0.52), (0.43, 0.70), (0.43, 0.88), (0.57, 0.52), (0.57, 0.70), (0.57, 0.88),
    (0.47, 0.10), (0.53, 0.10), (0.44, 0.11), (0.56, 0.11),
)  # fmt: skip


class PoseDetector(ABC):
    """``images [B, 3, H, W] in [-1, 1] -> keypoints [B, 18, 2] (x, y) pixels, -1 missing``."""

    is_stand_in: bool = False

    @abstractmethod
    def __call__(self, images: Tensor) -> Tensor:
        """Detect OpenPose-18 keypoints."""


class TemplatePoseStandIn(PoseDetector):
    """STAND-IN (not a detector): a fixed standing pose scaled to each image; the content is ignored."""

    is_stand_in = True

    def __call__(self, images: Tensor) -> Tensor:
        B, _, H, W = images.shape
        frac = torch.tensor(_TEMPLATE, dtype=torch.float32, device=images.device)
        xy = frac * torch.tensor([W - 1, H - 1], dtype=torch.float32, device=images.device)
        return xy.expand(B, -1, -1).clone()


class OpenPoseBodyDetector(PoseDetector):
    """OpenPose body-18 keypoints via ``controlnet_aux`` (optional extra ``pip install .[pose]``).

    Nothing is read when the detector is built (so ``fit`` / ``test`` never need it): the folder (a
    local path or a hub id resolved through the Hugging Face cache) and the package are loaded at
    the first call, which only ``predict`` with a target pose given as an image makes.

    Args:
        model_dir: folder with ``body_pose_model.pth`` (hub repo ``lllyasviel/Annotators``), or that hub id.
        key: config key named in errors.
    """

    is_stand_in = False
    SOURCE = "the Hugging Face hub repo lllyasviel/Annotators (file body_pose_model.pth)"

    def __init__(self, model_dir: Optional[str] = None, key: str = "model.init_args.pose_detector.init_args.model_dir") -> None:
        if model_dir is None:
            raise ValueError(f"{key} is null; OpenPoseBodyDetector needs the folder of {self.SOURCE} "
                             "(or set model.init_args.pose_detector: null and give target keypoints)")
        self.model_dir, self.key = model_dir, key
        self.body = None

    def load(self):
        """The controlnet_aux ``Body`` network from the resolved folder (once)."""
        if self.body is None:
            root = require_files(self.model_dir, self.key, ["body_pose_model.pth"], self.SOURCE)
            try:
                from controlnet_aux.open_pose.body import Body  # type: ignore[import-not-found]
            except ImportError as error:
                raise ImportError("OpenPoseBodyDetector needs the optional `controlnet_aux` package "
                                  "(pip install '.[pose]' or pip install controlnet_aux)") from error
            self.body = Body(str(root / "body_pose_model.pth"))
        return self.body

    def __call__(self, images: Tensor) -> Tensor:
        body = self.load()
        out = torch.full((images.shape[0], 18, 2), -1.0)
        arrays = ((images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        for b, image in enumerate(arrays):
            candidate, subset = body(np.ascontiguousarray(image[..., ::-1]))  # the model expects BGR
            if len(subset) == 0:
                continue
            best = subset[int(np.argmax(subset[:, -2]))]  # the person with the highest score
            for j in range(18):
                index = int(best[j])
                if index >= 0:
                    out[b, j] = torch.tensor(candidate[index][:2], dtype=torch.float32)
        return out.to(images.device)
