"""Generating Fit Check Videos with a Handheld Camera (thesis 000, Ch. 4); see ``docs/fitcheck.md``."""
from lightning_modules.fitcheck.module import FitCheckVideoModule
from lightning_modules.fitcheck.network import FitCheckNetwork, widen_conv_in
from lightning_modules.fitcheck.pose_net import PoseNet

__all__ = ["FitCheckVideoModule", "FitCheckNetwork", "PoseNet", "widen_conv_in"]
