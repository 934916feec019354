"""Bi-Noising restoration data (thesis 001 Ch. 8)."""
from datamodules.bi_noising.datamodule import BiNoisingDataModule

__all__ = ["BiNoisingDataModule"]
