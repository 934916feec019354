"""D2SM (thesis 001, Ch. 9): restorers, the evaluation segmenter and the L1 + D2SM training module."""
from lightning_modules.d2sm.module import D2SMRestorationModule
from lightning_modules.d2sm.restorers import FFDNet, PlainRestorer
from lightning_modules.d2sm.segmenter import TinyRandomSegmenter, load_segmenter

__all__ = ["D2SMRestorationModule", "FFDNet", "PlainRestorer", "TinyRandomSegmenter", "load_segmenter"]
