"""Inverse Painting (thesis 000, Ch. 6): reconstructing the painting process from a finished painting.

* :class:`InversePaintingRenderer`: the (one- or two-stage) diffusion renderer (§6.2, §6.5).
* :class:`MaskInstructionGenerator`: ``g_mask``, the UNet regressor of the next region (§6.4).
* :class:`TextInstructionGenerator`: ``g_text`` behind an interface with two backends (§6.3):
  :class:`LlavaInstructionBackend` (the paper's LLaVA-1.5 + LoRA) and
  :class:`ClosedVocabularyInstructionClassifier` (a stand-in, not the paper's method).
* :class:`InversePainting`: the chain (text -> mask -> render) with the §6.6 rollout, ``predict``
  and the §6.8 evaluation.

docs/inverse_painting.md lists what is implemented, the documented choices and the weights.
"""
from .difference_mask import DifferenceMask
from .encoders import CanvasFeatureEncoder, NeRFPositionalEncoding, NextClipGenerator, TimeEncoder
from .evaluation import InstructionAccuracy, InstructionSequenceAgreement, PaintingProcessMetrics, StepMaskIoU
from .mask_generator import MaskInstructionGenerator
from .module import InversePainting
from .renderer import InversePaintingRenderer, RendererNetwork
from .rollout import Rollout, StopCriterion, rollout, write_rollout
from .text_generator import (
    ClosedVocabularyInstructionClassifier,
    InstructionBackend,
    LlavaInstructionBackend,
    TextInstructionGenerator,
)

__all__ = [
    "CanvasFeatureEncoder",
    "ClosedVocabularyInstructionClassifier",
    "DifferenceMask",
    "InstructionAccuracy",
    "InstructionBackend",
    "InstructionSequenceAgreement",
    "InversePainting",
    "InversePaintingRenderer",
    "LlavaInstructionBackend",
    "MaskInstructionGenerator",
    "NeRFPositionalEncoding",
    "NextClipGenerator",
    "PaintingProcessMetrics",
    "RendererNetwork",
    "Rollout",
    "StepMaskIoU",
    "StopCriterion",
    "TextInstructionGenerator",
    "TimeEncoder",
    "rollout",
    "write_rollout",
]
