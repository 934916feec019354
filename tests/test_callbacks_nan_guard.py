"""NaNGuard: 'skip' leaves weights and optimizer state untouched, 'stop' saves the last good
state and names the step. (The DDP agreement case is in tests/test_distributed_ddp.py.)"""
from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from callbacks.nan_guard import NaNGuard


class Poisoned(pl.LightningModule):
    """Makes the loss (or only one gradient) non-finite at chosen optimizer steps."""

    def __init__(self, bad_loss_steps=(), bad_grad_steps=()) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.network = nn.Linear(4, 1)
        self.bad_loss_steps, self.bad_grad_steps = set(bad_loss_steps), set(bad_grad_steps)

    def training_step(self, batch, batch_idx):
        (x,) = batch
        loss = self.network(x).pow(2).mean()
        if self.global_step in self.bad_loss_steps:
            loss = loss * float("nan")
        return loss

    def on_after_backward(self):
        if self.global_step in self.bad_grad_steps:
            self.network.bias.grad.fill_(float("inf"))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.1)


class Snapshots(Callback):
    """Weights and Adam step counts before every optimizer step (in on_train_batch_start)."""

    def __init__(self) -> None:
        self.weights: dict[int, torch.Tensor] = {}
        self.after: dict[int, torch.Tensor] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.weights[trainer.global_step] = pl_module.network.weight.detach().clone()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.after[trainer.global_step - 1] = pl_module.network.weight.detach().clone()


def _fit(tmp_path, module, guard, steps=6):
    snaps = Snapshots()
    x = torch.randn(32, 4, generator=torch.Generator().manual_seed(0))
    trainer = pl.Trainer(
        default_root_dir=tmp_path, max_steps=steps, accelerator="cpu", devices=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[snaps, guard],
    )
    trainer.fit(module, DataLoader(TensorDataset(x), batch_size=4))
    return trainer, snaps


@pytest.mark.parametrize("kind", ["loss", "grad"])
def test_skip_drops_the_step_and_keeps_training(tmp_path, kind):
    module = Poisoned(**{f"bad_{kind}_steps": {2, 4}})
    guard = NaNGuard(action="skip")
    trainer, snaps = _fit(tmp_path, module, guard)
    assert guard.skipped_steps == [2, 4]
    assert trainer.global_step == 6
    for s in (2, 4):
        torch.testing.assert_close(snaps.after[s], snaps.weights[s], rtol=0, atol=0)
    assert not torch.equal(snaps.after[3], snaps.weights[3])
    assert all(torch.isfinite(p).all() for p in module.parameters())
    # Adam took 4 real steps: its step counter did not advance on the skipped ones
    state = trainer.optimizers[0].state[module.network.weight]
    assert int(state["step"]) == 4


def test_stop_saves_last_good_state_and_names_the_step(tmp_path, capsys):
    module = Poisoned(bad_grad_steps={3})
    guard = NaNGuard(action="stop")
    trainer, snaps = _fit(tmp_path, module, guard, steps=10)
    assert guard.stopped_at_step == 3 and trainer.global_step == 4  # the skipped step still counts
    assert "step 3" in guard.message and "gradient" in guard.message
    assert "NaNGuard" in capsys.readouterr().out
    ckpt = torch.load(guard.saved_checkpoint, weights_only=True)
    assert ckpt["global_step"] == 3
    torch.testing.assert_close(ckpt["state_dict"]["network.weight"], snaps.weights[3], rtol=0, atol=0)
    assert int(ckpt["optimizer_states"][0]["state"][0]["step"]) == 3
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())


def test_stop_can_raise(tmp_path):
    guard = NaNGuard(action="stop", raise_error=True, checkpoint_path=str(tmp_path / "good.ckpt"))
    with pytest.raises(FloatingPointError, match="step 1"):
        _fit(tmp_path, Poisoned(bad_loss_steps={1}), guard)
    assert (tmp_path / "good.ckpt").exists()


def test_check_every_skips_checks(tmp_path):
    guard = NaNGuard(action="skip", check_every=2)
    _fit(tmp_path, Poisoned(bad_grad_steps={2, 3}), guard)
    # step 3 was not checked: its inf gradient went into Adam and the next checked step (4) is bad too
    assert guard.skipped_steps[:2] == [2, 4] and 3 not in guard.skipped_steps


def test_bad_arguments():
    with pytest.raises(ValueError, match="'explode'"):
        NaNGuard(action="explode")
    with pytest.raises(ValueError, match="check_every"):
        NaNGuard(check_every=0)
