"""LTT-GAN (thesis 001 Ch. 6): GFPGAN-style embedding network + frozen StyleGAN2 + HPC + SPCX."""
from lightning_modules.ltt_gan.generator import LTTGANGenerator, LTTGANOutput, meta_parameter_counts
from lightning_modules.ltt_gan.module import LTTGAN
from lightning_modules.ltt_gan.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator

__all__ = ["LTTGAN", "LTTGANGenerator", "LTTGANOutput", "StyleGAN2Discriminator", "StyleGAN2Generator",
           "meta_parameter_counts"]
