"""The lecture's classic baselines (seed 002), built on the suite's shared parts."""
from lightning_modules.baselines.cyclegan import CycleGAN
from lightning_modules.baselines.dcgan import DCGAN, ConditionalGAN
from lightning_modules.baselines.ddpm import DDPM
from lightning_modules.baselines.density import GaussianMLE, GMMDensity
from lightning_modules.baselines.flow_matching import FlowMatching
from lightning_modules.baselines.pix2pix import Pix2Pix
from lightning_modules.baselines.pixelcnn import PixelCNN
from lightning_modules.baselines.toy_gan import ToyGAN
from lightning_modules.baselines.vae import VAE

__all__ = ["DDPM", "VAE", "ConditionalGAN", "CycleGAN", "DCGAN", "FlowMatching", "GMMDensity", "GaussianMLE",
           "PixelCNN", "Pix2Pix", "ToyGAN"]
