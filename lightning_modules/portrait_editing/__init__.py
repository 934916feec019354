"""Feature-preserving portrait editing from generated pairs (thesis 000, Ch. 5; docs/portrait_editing.md).

* :class:`PortraitPairGenerator`: the paired-data generation of §5.2.2 (``cli.py predict``).
* :class:`IdentityEncoderTraining`: the identity encoder's training on FFHQ (§5.5.1).
* :class:`MCDM`: the Multi-Conditioned Diffusion Model, its edit mask and mask-guided editing.
* :class:`TrainingFreeEditor`: the SDEdit / DiffEdit baselines of Table 5.1.
"""
from .adapter import ImageEmbedAdapter
from .baselines import TrainingFreeEditor
from .identity import IdentityEncoder, encode_with_pseudo_words, insert_tokens_before_word
from .mcdm import MCDM, MCDMNetwork
from .pair_generator import IdentityEncoderTraining, PortraitPairGenerator, composed_pair_denoiser, half_masks

__all__ = ["IdentityEncoder", "IdentityEncoderTraining", "ImageEmbedAdapter", "MCDM", "MCDMNetwork",
           "PortraitPairGenerator", "composed_pair_denoiser", "encode_with_pseudo_words", "half_masks",
           "insert_tokens_before_word", "TrainingFreeEditor"]
