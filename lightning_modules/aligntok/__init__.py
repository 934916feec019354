"""AlignTok (thesis 000, Ch. 7): foundation encoders aligned into diffusion tokenizers, and LightningDiT on them."""
from lightning_modules.aligntok.dit_module import AlignTokDiT
from lightning_modules.aligntok.encoder import FoundationEncoder
from lightning_modules.aligntok.extract import AlignTokLatentExtractor
from lightning_modules.aligntok.lightning_dit import LightningDiT
from lightning_modules.aligntok.losses import PatchDiscriminator, adaptive_weight
from lightning_modules.aligntok.module import AlignTokModule, LinearProbeModule
from lightning_modules.aligntok.tokenizer import AlignTokenizer, TokenAdapter

__all__ = [
    "AlignTokDiT", "AlignTokLatentExtractor", "AlignTokModule", "AlignTokenizer", "FoundationEncoder",
    "LightningDiT", "LinearProbeModule", "PatchDiscriminator", "TokenAdapter", "adaptive_weight",
]
