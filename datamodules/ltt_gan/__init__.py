"""Data of LTT-GAN (thesis 001 Ch. 6): FFHQ + ElasticAug on the fly, paired test folders, identity sets."""
from datamodules.ltt_gan.elastic_aug import ElasticAug, ElasticAugConfig, elastic_deform
from datamodules.ltt_gan.faces import TurbulenceFaceDataModule
from datamodules.ltt_gan.identity import identity_of, identity_pairs, paired_folder

__all__ = ["ElasticAug", "ElasticAugConfig", "TurbulenceFaceDataModule", "elastic_deform", "identity_of",
           "identity_pairs", "paired_folder"]
