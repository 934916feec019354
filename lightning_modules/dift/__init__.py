"""DiFT, the diffusion field transformer (thesis 001 Ch. 4); see docs/dift.md."""
from lightning_modules.dift.module import DiFT
from lightning_modules.dift.tokenizer import FieldTokenizer, IdentityAutoencoder, LDMAutoencoder
from lightning_modules.dift.transformer import DiFTTransformer, TextConditioner
from lightning_modules.dift.view_embedding import CLIPViewEmbedder, StandInViewEmbedder
from lightning_modules.dift.view_sampler import ViewSampler

__all__ = ["CLIPViewEmbedder", "DiFT", "DiFTTransformer", "FieldTokenizer", "IdentityAutoencoder", "LDMAutoencoder",
           "StandInViewEmbedder", "TextConditioner", "ViewSampler"]
