"""VIDM: video implicit diffusion models (thesis 001 Ch. 3): content and motion generators."""
from lightning_modules.vidm.module import VIDMContent, VIDMMotion
from lightning_modules.vidm.networks import ContentNetwork, MotionNetwork
from lightning_modules.vidm.spynet import SpyNet

__all__ = ["ContentNetwork", "MotionNetwork", "SpyNet", "VIDMContent", "VIDMMotion"]
