"""DataModules of D2SM (thesis 001, Ch. 9): noisy Cityscapes, face-SR / dehazing pairs, embedded photos."""
from datamodules.d2sm.cityscapes import CityscapesDenoisingDataModule
from datamodules.d2sm.embedded import EmbeddedD2SMDataModule
from datamodules.d2sm.pairs import PairedRestorationDataModule

__all__ = ["CityscapesDenoisingDataModule", "EmbeddedD2SMDataModule", "PairedRestorationDataModule"]
