"""Total Selfie data (thesis 000, Ch. 3): synthetic pairs, captures, selfie simulation, paste augmentation."""
from datamodules.total_selfie.datamodule import TotalSelfieDataModule

__all__ = ["TotalSelfieDataModule"]
