"""EMACallback: hand-computed average, parity with Lightning's EMAWeightAveraging,
frozen parts excluded, checkpoint round trip, swapping, export, bad input."""
from __future__ import annotations

import copy

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback, EMAWeightAveraging
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from callbacks.ema import EMACallback


class TinyModule(pl.LightningModule):
    """A trainable net plus (optionally) a frozen submodule standing in for a VAE."""

    def __init__(self, frozen: bool = True, lr: float = 0.1) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.network = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
        self.vae = None
        if frozen:
            self.vae = nn.Linear(4, 4)
            self.vae.requires_grad_(False)
        self.lr = lr
        self.val_weights: list[torch.Tensor] = []

    def trainable_parameters(self):
        return [p for p in self.network.parameters()]

    def forward(self, x):
        if self.vae is not None:
            x = self.vae(x)
        return self.network(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self(x), y)

    def validation_step(self, batch, batch_idx):
        self.val_weights.append(self.network[0].weight.detach().clone())

    def configure_optimizers(self):
        return torch.optim.SGD(self.trainable_parameters(), lr=self.lr, momentum=0.9)


def loader(n: int = 32, batch_size: int = 4) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    y = x.sum(dim=1, keepdim=True).sin()
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=False)


def trainer(tmp_path, max_steps: int, callbacks, **kw) -> pl.Trainer:
    args = dict(
        default_root_dir=tmp_path, max_steps=max_steps, accelerator="cpu", devices=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, num_sanity_val_steps=0,
    )
    args.update(kw)
    return pl.Trainer(callbacks=callbacks, **args)


class RecordWeights(Callback):
    """Records the trainable weights after each optimizer step."""

    def __init__(self) -> None:
        self.history: list[list[torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.history.append([p.detach().clone() for p in pl_module.network.parameters()])


@pytest.mark.parametrize("warmup,update_every,start_step", [(True, 1, 0), (False, 2, 1)])
def test_ema_matches_hand_computed_average(tmp_path, warmup, update_every, start_step):
    decay = 0.8
    rec = RecordWeights()
    ema = EMACallback(decay=decay, warmup=warmup, update_every=update_every, start_step=start_step)
    module = TinyModule()
    trainer(tmp_path, 7, [rec, ema]).fit(module, loader())

    expected = None
    n = 0
    for step_idx, weights in enumerate(rec.history):
        if step_idx < start_step or step_idx % update_every:
            continue
        if expected is None:
            expected = [w.clone() for w in weights]
            continue
        n += 1
        d = min(decay, (1 + n) / (10 + n)) if warmup else decay  # the n-th update after the copy
        expected = [d * e + (1 - d) * w for e, w in zip(expected, weights)]
    assert expected is not None and ema.num_updates == n + 1
    got = ema.ema_state_dict()
    for name, e in zip([f"network.{k}" for k in ("0.weight", "0.bias", "2.weight", "2.bias")], expected):
        torch.testing.assert_close(got[name], e, rtol=1e-6, atol=1e-7)
    # the raw weights are untouched by the average
    final = [p.detach() for p in module.network.parameters()]
    for f, w in zip(final, rec.history[-1]):
        torch.testing.assert_close(f, w)


def test_ema_matches_lightning_ema_weight_averaging(tmp_path):
    steps, decay = 9, 0.7
    ours = EMACallback(decay=decay, warmup=False)
    m1 = TinyModule(frozen=False)
    trainer(tmp_path / "a", steps, [ours]).fit(m1, loader())

    theirs = EMAWeightAveraging(decay=decay)
    m2 = TinyModule(frozen=False)
    trainer(tmp_path / "b", steps, [theirs]).fit(m2, loader())
    # Lightning copies the average into the module when training ends
    got = ours.ema_state_dict()
    for name, p in m2.named_parameters():
        torch.testing.assert_close(got[name], p.detach(), rtol=1e-6, atol=1e-7)


def test_frozen_parts_never_enter_ema_or_optimizer(tmp_path):
    ema = EMACallback(decay=0.9)
    module = TinyModule()
    t = trainer(tmp_path, 3, [ema])
    t.fit(module, loader())
    state = ema.state_dict()
    assert set(state["ema"]) == {n for n, _ in module.network.named_parameters(prefix="network")}
    assert not any(k.startswith("vae.") for k in state["ema"])
    opt_ids = {id(p) for g in t.optimizers[0].param_groups for p in g["params"]}
    assert not opt_ids & {id(p) for p in module.vae.parameters()}

    # a module without trainable_parameters(): requires_grad decides
    class NoContract(TinyModule):
        trainable_parameters = None

        def configure_optimizers(self):
            return torch.optim.SGD([p for p in self.parameters() if p.requires_grad], lr=0.1)

    ema2 = EMACallback(decay=0.9)
    trainer(tmp_path / "b", 2, [ema2]).fit(NoContract(), loader())
    assert not any(k.startswith("vae.") for k in ema2.state_dict()["ema"])


def test_ema_state_survives_save_and_resume(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    # 16 samples / batch 4: the checkpoint at step 4 ends an epoch, so the data order resumes exactly
    ref = EMACallback(decay=0.9)
    ckpts = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=4, save_top_k=-1)
    trainer(tmp_path / "ref", 8, [ref, ckpts], enable_checkpointing=True).fit(TinyModule(), loader(16))
    ckpt = tmp_path / "ckpt" / "epoch=0-step=4.ckpt"
    saved = torch.load(ckpt, weights_only=True)
    state = next(v for k, v in saved["callbacks"].items() if "EMACallback" in k)
    assert state["num_updates"] == 4 and not any(k.startswith("vae.") for k in state["ema"])

    resumed = EMACallback(decay=0.9)
    trainer(tmp_path / "run", 8, [resumed]).fit(TinyModule(), loader(16), ckpt_path=ckpt)
    assert resumed.num_updates == ref.num_updates == 8
    a, b = ref.ema_state_dict(), resumed.ema_state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-7)


def test_ema_swapped_for_validation_and_context_manager(tmp_path):
    ema = EMACallback(decay=0.5, warmup=False)
    module = TinyModule()
    t = trainer(tmp_path, 4, [ema], limit_val_batches=1, val_check_interval=4)
    t.fit(module, loader(), loader(8))
    avg = ema.ema_state_dict()["network.0.weight"]
    assert module.val_weights, "validation ran"
    torch.testing.assert_close(module.val_weights[-1], avg)
    raw = module.network[0].weight.detach().clone()
    assert not torch.allclose(raw, avg)
    with ema.swapped(module):
        torch.testing.assert_close(module.network[0].weight.detach(), avg)
    torch.testing.assert_close(module.network[0].weight.detach(), raw)

    # standalone validate from a checkpoint picks the average up from the checkpoint
    ckpt = tmp_path / "v.ckpt"
    t.save_checkpoint(ckpt)
    fresh = TinyModule()
    ema2 = EMACallback(decay=0.5, warmup=False)
    trainer(tmp_path, 4, [ema2], limit_val_batches=1).validate(fresh, loader(), ckpt_path=ckpt)
    torch.testing.assert_close(fresh.val_weights[-1], avg)
    torch.testing.assert_close(fresh.network[0].weight.detach(), raw)


def test_ema_export_safetensors(tmp_path):
    from safetensors.torch import load_file

    ema = EMACallback(decay=0.9, export_path=str(tmp_path / "ema.safetensors"))
    module = TinyModule()
    trainer(tmp_path, 3, [ema]).fit(module, loader())
    loaded = load_file(str(tmp_path / "ema.safetensors"))
    assert set(loaded) == {n for n, _ in module.network.named_parameters(prefix="network")}
    for k, v in ema.ema_state_dict().items():
        torch.testing.assert_close(loaded[k], v)


@pytest.mark.parametrize("decay", [0.0, 1.0, 1.5, -0.1])
def test_ema_rejects_decay_outside_unit_interval(decay):
    with pytest.raises(ValueError, match=repr(decay)):
        EMACallback(decay=decay)


def test_ema_rejects_bad_update_every():
    with pytest.raises(ValueError, match="update_every"):
        EMACallback(update_every=0)


def test_ema_checkpoint_of_wrong_module_names_keys(tmp_path):
    ema = EMACallback(decay=0.9)
    trainer(tmp_path, 2, [ema]).fit(TinyModule(), loader())
    state = copy.deepcopy(ema.state_dict())
    state["ema"]["network.9.weight"] = state["ema"].pop("network.2.weight")
    other = EMACallback(decay=0.9)
    other.load_state_dict(state)
    with pytest.raises(RuntimeError, match=r"network\.2\.weight.*network\.9\.weight"):
        other.on_fit_start(None, TinyModule())
