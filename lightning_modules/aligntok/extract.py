"""Latent extraction for the DiT (thesis 000, Ch. 7 §7.4): ``python cli.py predict --config aligntok_extract.yaml``.

A predict-only module: the frozen tokenizer (EMA weights of the stage-3 checkpoint) encodes
every batch of the datamodule's predict split (ImageNet train or val, centre crop) and
:class:`datamodules.aligntok_latents.LatentShardWriter` writes the shards; at the end rank 0
merges every rank's per-channel sums into ``stats.json``.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import torch
from lightning.pytorch import LightningModule
from torch import Tensor

from datamodules.aligntok_latents import LatentShardWriter, finalize_stats
from lightning_modules.aligntok.checkpoints import load_into, load_stage_state, sub_state
from lightning_modules.aligntok.tokenizer import AlignTokenizer


class AlignTokLatentExtractor(LightningModule):
    """Encode the predict split into latent shards under ``output_dir``.

    Args:
        tokenizer: the tokenizer architecture.
        tokenizer_checkpoint: the stage-3 checkpoint (``None``: configured weights, tests only).
        output_dir: shard folder (e.g. ``latents/imagenet256/train``).
        shard_size: items per shard.
    """

    def __init__(self, tokenizer: AlignTokenizer, output_dir: str, tokenizer_checkpoint: Optional[str] = None,
                 shard_size: int = 10000) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["tokenizer"])
        if tokenizer_checkpoint is not None:
            state = load_stage_state(tokenizer_checkpoint, "model.init_args.tokenizer_checkpoint",
                                     source="the AlignTok stage-3 run (configs/aligntok_stage3.yaml)")
            load_into(tokenizer, sub_state(state, "tokenizer"), "the tokenizer", tokenizer_checkpoint)
        self.tokenizer = tokenizer.requires_grad_(False).eval()
        self.writer: Optional[LatentShardWriter] = None

    def on_predict_start(self) -> None:
        self.writer = LatentShardWriter(self.hparams.output_dir, self.hparams.shard_size, rank=self.global_rank)

    @torch.no_grad()
    def predict_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        latents = self.tokenizer.encode(batch["image"])
        self.writer.add(latents, batch.get("label"))

    def on_predict_end(self) -> None:
        self.writer.close()
        self.trainer.strategy.barrier()
        if self.global_rank == 0:
            finalize_stats(self.hparams.output_dir)
        self.predictions_dir = self.hparams.output_dir

    def configure_optimizers(self) -> Any:  # pragma: no cover - predict only
        raise RuntimeError("AlignTokLatentExtractor is predict-only: run `cli.py predict`")
