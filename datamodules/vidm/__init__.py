"""VIDM's video data (thesis 001 Ch. 3): UCF-101, Tai-Chi-HD, SkyTimelapse, CLEVRER and the embedded default."""
from datamodules.vidm.datamodule import VIDMDataModule

__all__ = ["VIDMDataModule"]
