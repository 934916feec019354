"""All training-at-scale callbacks together on the real ``DiffusionModule`` (FlowMatching, a tiny
UNet, embedded digits): EMA of the trainable set only, a frozen teacher, media files, NaN guard
and atomic checkpoints in one short fit."""
from __future__ import annotations

import torch
from diffusers import UNet2DModel
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn

from callbacks.checkpoint_io import AtomicCheckpointIO
from callbacks.ema import EMACallback
from callbacks.media import MediaLogger
from callbacks.nan_guard import NaNGuard
from callbacks.teacher import TeacherCallback
from datamodules.digits import DigitsDataModule
from lightning_modules.baselines import FlowMatching


def tiny_unet() -> UNet2DModel:
    return UNet2DModel(
        sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    )


def test_callbacks_on_diffusion_module(tmp_path):
    torch.manual_seed(0)
    module = FlowMatching(tiny_unet(), num_sampling_steps=2)
    module.register_frozen("vae", nn.Conv2d(1, 1, 1))  # stands in for a frozen VAE
    teacher_start = {k: v.clone() for k, v in module.network.state_dict().items()}
    ema, teacher = EMACallback(decay=0.9), TeacherCallback()
    media, guard = MediaLogger(every_n_steps=2, num_samples=4, on_validation=False), NaNGuard(action="stop")
    trainer = Trainer(
        default_root_dir=tmp_path, accelerator="cpu", devices=1, max_steps=4, limit_val_batches=0,
        logger=TensorBoardLogger(tmp_path, name="tb"), enable_progress_bar=False, enable_model_summary=False,
        callbacks=[ema, teacher, media, guard, ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)],
        plugins=[AtomicCheckpointIO()],
    )
    trainer.fit(module, datamodule=DigitsDataModule(size=8, batch_size=8))

    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    assert set(ema.state_dict()["ema"]) == trainable and trainable
    assert not any(k.startswith("vae.") for k in ema.state_dict()["ema"])
    for k, v in teacher.module.state_dict().items():
        torch.testing.assert_close(v, teacher_start[k], rtol=0, atol=0)
    assert guard.stopped_at_step is None
    media_dir = tmp_path / "tb" / "version_0" / "media"
    assert sorted(p.name for p in media_dir.iterdir()) == ["train_step00000002.png", "train_step00000004.png"]

    ckpt = AtomicCheckpointIO().load_checkpoint(tmp_path / "ckpt" / "last.ckpt")
    assert ckpt["global_step"] == 4
    assert not any("teacher" in k for k in ckpt["state_dict"])
    ema_state = next(v for k, v in ckpt["callbacks"].items() if k.startswith("EMACallback"))
    assert set(ema_state["ema"]) == trainable
