"""AtomicCheckpointIO: a SIGKILL during a save leaves the previous checkpoint loadable;
weights_only=True loading that refuses (and never runs) anything else; resume equals an uninterrupted run."""
from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from callbacks.checkpoint_io import AtomicCheckpointIO, UnsafeCheckpointError
from callbacks.ema import EMACallback

REPO = Path(__file__).resolve().parents[1]

# Two writers killed half-way through a save, in one process (one interpreter start): the atomic
# one on atomic/last.ckpt and, as a control that shows the test catches corruption, a naive
# ``open(path, "wb")`` writer on naive/last.ckpt. Each first saves a good checkpoint, then writes half
# of a big one, says HALF and waits for the SIGKILL.
KILLED_WRITERS = textwrap.dedent(
    """
    import io, sys, threading, time
    sys.path.insert(0, {repo!r})
    import torch
    from callbacks.checkpoint_io import AtomicCheckpointIO

    atomic_path, naive_path = sys.argv[1], sys.argv[2]
    ckpt_io = AtomicCheckpointIO()
    for path in (atomic_path, naive_path):
        ckpt_io.save_checkpoint({{"state_dict": {{"w": torch.ones(3)}}, "global_step": 1}}, path)

    real_save = torch.save
    lock = threading.Lock()

    def slow_save(obj, f, *args, **kwargs):
        buf = io.BytesIO()
        real_save(obj, buf, *args, **kwargs)
        data = buf.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        with lock:
            sys.stdout.write("HALF\\n")
            sys.stdout.flush()
        time.sleep(120)
        f.write(data[len(data) // 2:])

    torch.save = slow_save
    big = {{"state_dict": {{"w": torch.zeros(2_000_000)}}, "global_step": 2}}

    def naive():
        with open(naive_path, "wb") as f:
            torch.save(big, f)

    threading.Thread(target=naive, daemon=True).start()
    ckpt_io.save_checkpoint(big, atomic_path)
    """
)


def test_sigkill_mid_save_leaves_previous_checkpoint_loadable(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(KILLED_WRITERS.format(repo=str(REPO)))
    atomic, naive = tmp_path / "atomic" / "last.ckpt", tmp_path / "naive" / "last.ckpt"
    proc = subprocess.Popen([sys.executable, str(script), str(atomic), str(naive)], stdout=subprocess.PIPE, text=True)
    try:
        seen = ""
        while seen.count("HALF") < 2:  # the two writer threads may interleave their prints
            line = proc.stdout.readline()
            assert line, f"writers did not reach the middle of their saves: {seen!r}"
            seen += line
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL

    loaded = AtomicCheckpointIO().load_checkpoint(atomic)
    assert loaded["global_step"] == 1
    torch.testing.assert_close(loaded["state_dict"]["w"], torch.ones(3))
    leftovers = [p.name for p in atomic.parent.iterdir() if p.name != "last.ckpt"]
    assert leftovers and all(n.startswith(".last.ckpt.tmp-") for n in leftovers)

    # control: the naive writer's file is truncated and does not load
    with pytest.raises(Exception):
        torch.load(naive, weights_only=True)


def test_save_load_round_trip_and_no_temporaries(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "sub" / "a.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.arange(4.0)}, "epoch": 3}, path)
    io.save_checkpoint({"state_dict": {"w": torch.arange(5.0)}, "epoch": 4}, path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.ckpt"]
    loaded = io.load_checkpoint(path)
    assert loaded["epoch"] == 4 and loaded["state_dict"]["w"].shape == (5,)
    with pytest.raises(FileNotFoundError):
        io.load_checkpoint(tmp_path / "missing.ckpt")


def test_a_checkpoint_needing_more_than_weights_only_is_refused_and_runs_nothing(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "obj.ckpt"
    io.save_checkpoint({"hyper_parameters": _Settings(lr=0.1), "state_dict": {}}, path)
    with pytest.raises(UnsafeCheckpointError, match="obj.ckpt.*_Settings"):
        io.load_checkpoint(path)
    # the suite's own hparam type (the CLI stores a Namespace) is on the one allowlist and loads
    own = tmp_path / "own.ckpt"
    io.save_checkpoint({"hyper_parameters": argparse.Namespace(lr=0.1), "state_dict": {}}, own)
    assert io.load_checkpoint(own)["hyper_parameters"].lr == 0.1
    evil = tmp_path / "evil.ckpt"
    marker = tmp_path / "ran"
    torch.save({"state_dict": {}, "x": _RunsCode(str(marker))}, evil)
    with pytest.raises(UnsafeCheckpointError):
        io.load_checkpoint(evil)
    with pytest.raises(ValueError, match="weights_only=True only"):
        io.load_checkpoint(evil, weights_only=False)
    assert not marker.exists(), "unpickling must not have run the payload"


class _Settings:
    """A plain class of the test: not allowlisted, so building it needs a full unpickle."""

    def __init__(self, lr: float) -> None:
        self.lr = lr


class _RunsCode:
    """A pickle payload that creates a file when unpickled (stands in for arbitrary code)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


class Net(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.network = nn.Sequential(nn.Linear(4, 16), nn.SiLU(), nn.Linear(16, 1))
        self.vae = nn.Linear(4, 4).requires_grad_(False)

    def trainable_parameters(self):
        return list(self.network.parameters())

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.network(self.vae(x)), y)

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.trainable_parameters(), lr=1e-2)
        return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, 3, 0.5)}


class Losses(Callback):
    def __init__(self) -> None:
        self.by_step: dict[int, float] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.by_step[trainer.global_step] = outputs["loss"].item()


def _data() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 4, generator=g)
    return DataLoader(TensorDataset(x, x.prod(dim=1, keepdim=True)), batch_size=4)


def _trainer(root: Path, steps: int, callbacks) -> pl.Trainer:
    return pl.Trainer(
        default_root_dir=root, max_steps=steps, accelerator="cpu", devices=1, logger=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
    )


def test_resume_equals_uninterrupted_run(tmp_path):
    ref_losses = Losses()
    ref_ema = EMACallback(decay=0.95)
    ckpts = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=4, save_top_k=-1, save_last=True)
    ref = Net()
    _trainer(tmp_path, 12, [ref_losses, ref_ema, ckpts]).fit(ref, _data())
    assert (tmp_path / "ckpt" / "last.ckpt").exists()

    res_losses = Losses()
    res_ema = EMACallback(decay=0.95)
    resumed = Net()
    _trainer(tmp_path / "resumed", 12, [res_losses, res_ema]).fit(
        resumed, _data(), ckpt_path=tmp_path / "ckpt" / "epoch=0-step=4.ckpt"
    )
    assert sorted(res_losses.by_step) == list(range(5, 13))
    for step, loss in res_losses.by_step.items():
        assert loss == pytest.approx(ref_losses.by_step[step], rel=1e-6, abs=1e-8), step
    for (name, a), b in zip(ref.named_parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b, msg=name)
    for k, v in ref_ema.ema_state_dict().items():
        torch.testing.assert_close(v, res_ema.ema_state_dict()[k])
