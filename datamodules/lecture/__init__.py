"""Data of the lecture's classic models (seed 002): toy distributions, paired and unpaired translation.

* :mod:`toy`: 1-D bimodal and 2-D 8-Gaussians ring samples (``ToyDataModule``).
* :mod:`paired`: pix2pix's side-by-side A|B folders and the embedded paired tasks
  (edges -> image, grey -> colour, 2x super-resolution, centre-mask inpainting).
* :mod:`unpaired`: CycleGAN's trainA/trainB/testA/testB folders and an embedded pair of domains.
* :mod:`predict_inputs`: the user's own image files for ``predict`` (any size, names kept).
"""
from datamodules.lecture.paired import PAIRED_TASKS, PairedDataModule, make_paired_source, split_side_by_side
from datamodules.lecture.predict_inputs import PredictImageFiles
from datamodules.lecture.toy import TOY_KINDS, ToyDataModule, toy_modes
from datamodules.lecture.unpaired import UnpairedDataModule

__all__ = [
    "PAIRED_TASKS",
    "PairedDataModule",
    "PredictImageFiles",
    "TOY_KINDS",
    "ToyDataModule",
    "UnpairedDataModule",
    "make_paired_source",
    "split_side_by_side",
    "toy_modes",
]
