"""FSDP2 on CPU: ``ModelParallelStrategy`` + ``launch.sharding.shard_for_strategy`` in
``configure_model()`` trains two ranks for a few steps, writes a distributed checkpoint
(a folder of shards), and a second run resumes from it and reproduces the losses of the
uninterrupted run. The EMA callback follows the sharded (DTensor) parameters."""
from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from two_ranks import run_two_ranks

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    sys.path.insert(0, {repo!r})
    import torch
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.strategies import ModelParallelStrategy
    from torch import nn
    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset
    from callbacks.ema import EMACallback
    from launch.sharding import is_fsdp2, shard_for_strategy


    class Block(nn.Module):
        def __init__(self, d):
            super().__init__()
            self.lin = nn.Linear(d, d)

        def forward(self, x):
            return x + torch.tanh(self.lin(x))


    class Net(nn.Module):
        def __init__(self, d=16):
            super().__init__()
            self.inp = nn.Linear(8, d)
            self.blocks = nn.ModuleList([Block(d) for _ in range(3)])
            self.out = nn.Linear(d, 1)

        def forward(self, x):
            h = self.inp(x)
            for b in self.blocks:
                h = b(h)
            return self.out(h)


    class Sharded(pl.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.network = Net()
            self.vae = nn.Linear(8, 8).requires_grad_(False)
            self.losses = {{}}

        def configure_model(self):
            assert shard_for_strategy(self), "expected ModelParallelStrategy"

        def trainable_parameters(self):
            return list(self.network.parameters())

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = nn.functional.mse_loss(self.network(self.vae(x)), y)
            self.losses[self.global_step + 1] = self.all_gather(loss.detach()).mean().item()
            return loss

        def configure_optimizers(self):
            return torch.optim.AdamW(self.trainable_parameters(), lr=1e-2)

        def train_dataloader(self):
            g = torch.Generator().manual_seed(0)
            x = torch.randn(48, 8, generator=g)
            ds = TensorDataset(x, x[:, :2].prod(dim=1, keepdim=True))
            sampler = DistributedSampler(ds, num_replicas=self.trainer.world_size, rank=self.trainer.global_rank,
                                         shuffle=False)
            return DataLoader(ds, batch_size=4, sampler=sampler)  # 6 steps per epoch


    def main(phase, out):
        ema = EMACallback(decay=0.9)
        callbacks = [ema]
        if phase == "full":
            callbacks.append(ModelCheckpoint(dirpath=os.path.join(out, "ckpt"), every_n_train_steps=6, save_top_k=-1))
        trainer = pl.Trainer(
            accelerator="cpu", devices=2, strategy=ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1),
            max_steps=9, logger=False, enable_progress_bar=False, enable_model_summary=False,
            callbacks=callbacks, default_root_dir=out, use_distributed_sampler=False,
        )
        module = Sharded()
        ckpt = os.path.join(out, "ckpt", "epoch=0-step=6.ckpt") if phase == "resume" else None
        trainer.fit(module, ckpt_path=ckpt)
        assert is_fsdp2(module.network) and is_fsdp2(module.network.blocks[0])
        assert type(module.network.inp.weight).__name__ == "DTensor"
        assert type(module.vae.weight).__name__ != "DTensor"
        ema_full = ema.ema_state_dict()  # gathers the shards (collective)
        if trainer.is_global_zero:
            with open(os.path.join(out, phase + ".json"), "w") as f:
                json.dump({{"losses": module.losses, "ema_updates": ema.num_updates}}, f)
            torch.save(ema_full, os.path.join(out, phase + "_ema.pt"))


    if __name__ == "__main__":
        # both phases in the same two processes (started together by the test, torchrun-style env):
        # the process group stays up between the two Trainers
        main("full", sys.argv[1])
        main("resume", sys.argv[1])
        # Leave the process group cleanly: an exit with gloo threads still running can abort
        # ("terminate called without an active exception") after the work is done.
        if torch.distributed.is_initialized():
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()
    """
)


def test_fsdp2_trains_on_cpu_and_resumes_from_distributed_checkpoint(tmp_path):
    script = tmp_path / "fsdp_run.py"
    script.write_text(SCRIPT.format(repo=str(REPO)))
    run_two_ranks(script, str(tmp_path), cwd=tmp_path)
    ckpt = tmp_path / "ckpt" / "epoch=0-step=6.ckpt"
    assert ckpt.is_dir(), "a distributed checkpoint is a folder of shards"
    assert (ckpt / ".metadata").exists() and len(list(ckpt.glob("*.distcp"))) == 2

    full = json.loads((tmp_path / "full.json").read_text())
    resumed = json.loads((tmp_path / "resume.json").read_text())
    assert sorted(resumed["losses"], key=int) == ["7", "8", "9"]
    for step, loss in resumed["losses"].items():
        assert loss == pytest.approx(full["losses"][step], rel=1e-5, abs=1e-7), step
    assert full["ema_updates"] == resumed["ema_updates"] == 9
    a = torch.load(tmp_path / "full_ema.pt", weights_only=True)
    b = torch.load(tmp_path / "resume_ema.pt", weights_only=True)
    assert set(a) == {k for k in a if k.startswith("network.")} and len(a) == 10
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
