"""LightningDataModules: real dataset layouts and the embedded (no-download) defaults.

Re-exports the embedded sources (:mod:`datamodules.embedded`) and the generic
image folder (:mod:`datamodules.image_folder`).
"""
from datamodules.embedded import (
    DigitsDataModule,
    MovingDigitsDataModule,
    PhotoCropsDataModule,
    ProceduralPaintingsDataModule,
    StickFiguresDataModule,
    StickFigureVideosDataModule,
    VideoClipsDataModule,
    load_digits_images,
)
from datamodules.image_folder import ImageFolderDataModule, ImageReadError

__all__ = [
    "DigitsDataModule",
    "ImageFolderDataModule",
    "ImageReadError",
    "MovingDigitsDataModule",
    "PhotoCropsDataModule",
    "ProceduralPaintingsDataModule",
    "StickFigureVideosDataModule",
    "StickFiguresDataModule",
    "VideoClipsDataModule",
    "load_digits_images",
]
