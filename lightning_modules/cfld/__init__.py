"""CFLD (seed 003): coarse-to-fine latent diffusion for pose-guided person image synthesis. See ``module.py``."""
from lightning_modules.cfld.module import CFLD, MaskedReferenceDenoiser
from lightning_modules.cfld.network import SD15_UNET_CONFIG, CFLDNetwork
from lightning_modules.cfld.pose import PoseAdapter, encode_pose
from lightning_modules.cfld.pose_detector import OpenPoseBodyDetector, PoseDetector, TemplatePoseStandIn

__all__ = [
    "CFLD",
    "CFLDNetwork",
    "MaskedReferenceDenoiser",
    "OpenPoseBodyDetector",
    "PoseAdapter",
    "PoseDetector",
    "SD15_UNET_CONFIG",
    "TemplatePoseStandIn",
    "encode_pose",
]
