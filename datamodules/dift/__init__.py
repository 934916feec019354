"""DiFT data (thesis 001 Ch. 4): published-layout readers and embedded fields for four modalities."""
from datamodules.dift.datamodule import SOURCES, DiFTDataModule

__all__ = ["DiFTDataModule", "SOURCES"]
