"""Latent extraction for the DiT (thesis 000, Ch. 7 §7.4): ``python cli.py predict --config aligntok_extract.yaml``.

A predict-only module: the frozen tokenizer (EMA weights of the stage-3 checkpoint) encodes
every item of the split named by ``split`` (``train`` by default: the DiT of §7.4 trains on
ImageNet train latents; ``val`` for a held-out set), in a fixed order with the datamodule's
crop (centre in ``aligntok_extract.yaml``), and
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
        split: the datamodule split to encode, ``"train"`` (default) or ``"val"``; set on the
            datamodule's ``predict_split`` when predict starts, so its ``predict_dataloader``
            serves that split instead of its validation default.
    """

    def __init__(self, tokenizer: AlignTokenizer, output_dir: str, tokenizer_checkpoint: Optional[str] = None,
                 shard_size: int = 10000, split: str = "train") -> None:
        super().__init__()
        if split not in ("train", "val"):
            raise ValueError(f"model.init_args.split must be 'train' or 'val', got {split!r}")
        self.save_hyperparameters(ignore=["tokenizer"])
        if tokenizer_checkpoint is not None:
            state = load_stage_state(tokenizer_checkpoint, "model.init_args.tokenizer_checkpoint",
                                     source="the AlignTok stage-3 run (configs/aligntok_stage3.yaml)")
            load_into(tokenizer, sub_state(state, "tokenizer"), "the tokenizer", tokenizer_checkpoint)
        self.tokenizer = tokenizer.requires_grad_(False).eval()
        self.writer: Optional[LatentShardWriter] = None

    def setup(self, stage: str) -> None:
        """Point the datamodule's predict loader at ``split`` (runs after the datamodule's setup,
        before the predict loader is requested)."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if stage != "predict" or datamodule is None:
            return
        if not hasattr(datamodule, "predict_split"):
            raise TypeError(f"{type(datamodule).__name__} has no predict_split: latent extraction needs a datamodule "
                            f"whose predict_dataloader can serve the {self.hparams.split!r} split")
        if getattr(datamodule, "predict_inputs", None) or getattr(datamodule, "predict_num_samples", None) is not None:
            raise ValueError("latent extraction encodes a dataset split: leave data.init_args.predict_inputs and "
                             "data.init_args.num_samples unset")
        datamodule.predict_split = self.hparams.split

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
