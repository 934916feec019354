"""TeacherCallback: frozen while the student trains, outside optimizer / EMA / checkpoint,
loads Lightning and safetensors checkpoints, names the keys of one that does not fit."""
from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from callbacks.ema import EMACallback
from callbacks.teacher import TeacherCallback


class Denoiser(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(4, 16)
        self.out = nn.Linear(16, 4)

    def forward(self, x, t, scale: float = 1.0):
        return self.out(torch.tanh(self.inp(x) + t[:, None])) * scale


class Distill(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.network = Denoiser()
        self.vae = nn.Linear(4, 4).requires_grad_(False)
        self.probe = (torch.randn(6, 4), torch.rand(6))
        self.teacher_probe: list[torch.Tensor] = []

    def trainable_parameters(self):
        return list(self.network.parameters())

    def training_step(self, batch, batch_idx):
        (x,) = batch
        t = torch.rand(x.shape[0])
        teacher = TeacherCallback.find(self.trainer)
        target = teacher(x, t, scale=2.0)  # a target the student cannot match exactly -> it keeps moving
        self.teacher_probe.append(teacher(*self.probe))
        return nn.functional.mse_loss(self.network(x, t), target + 0.5)

    def configure_optimizers(self):
        return torch.optim.Adam(self.trainable_parameters(), lr=1e-2)


def _fit(tmp_path, module, callbacks, steps=6):
    x = torch.randn(24, 4, generator=torch.Generator().manual_seed(0))
    trainer = pl.Trainer(
        default_root_dir=tmp_path, max_steps=steps, accelerator="cpu", devices=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks,
    )
    trainer.fit(module, DataLoader(TensorDataset(x), batch_size=4))
    return trainer


def test_teacher_frozen_while_student_trains_and_outside_training_state(tmp_path):
    module = Distill()
    start = {k: v.clone() for k, v in module.network.state_dict().items()}
    teacher, ema = TeacherCallback(), EMACallback(decay=0.9)
    trainer = _fit(tmp_path, module, [teacher, ema])

    first, last = module.teacher_probe[0], module.teacher_probe[-1]
    torch.testing.assert_close(first, last, rtol=0, atol=0)
    assert not torch.allclose(module.network.inp.weight, start["inp.weight"]), "student trained"
    for k, v in teacher.module.state_dict().items():
        torch.testing.assert_close(v, start[k], rtol=0, atol=0)
    assert not first.is_inference(), "outputs are ordinary tensors, usable in a loss"

    teacher_ids = {id(p) for p in teacher.module.parameters()}
    assert not teacher_ids & {id(p) for p in module.parameters()}
    opt_ids = {id(p) for g in trainer.optimizers[0].param_groups for p in g["params"]}
    assert not teacher_ids & opt_ids
    assert all(not p.requires_grad for p in teacher.module.parameters()) and not teacher.module.training
    assert set(ema.state_dict()["ema"]) == {f"network.{k}" for k, _ in module.network.named_parameters()}

    ckpt = tmp_path / "s.ckpt"
    trainer.save_checkpoint(ckpt)
    saved = torch.load(ckpt, weights_only=True)
    assert not any("teacher" in k.lower() for k in saved["state_dict"])
    assert all(not v for k, v in saved["callbacks"].items() if "TeacherCallback" in k)


def test_teacher_from_lightning_and_safetensors_checkpoints(tmp_path):
    donor = Distill()
    with torch.no_grad():
        for p in donor.network.parameters():
            p.add_(1.0)
    trainer = _fit(tmp_path / "donor", donor, [TeacherCallback()], steps=1)
    ckpt = tmp_path / "donor.ckpt"
    trainer.save_checkpoint(ckpt)
    expected = {k: v.clone() for k, v in donor.network.state_dict().items()}

    for path in (ckpt, tmp_path / "plain.safetensors", tmp_path / "prefixed.safetensors"):
        if path.name == "plain.safetensors":
            save_file({k: v.contiguous() for k, v in expected.items()}, str(path))
        elif path.name == "prefixed.safetensors":
            save_file({f"network.{k}": v.contiguous() for k, v in expected.items()}, str(path))
        student = Distill()
        teacher = TeacherCallback(checkpoint_path=str(path))
        teacher.build(student)
        for k, v in teacher.module.state_dict().items():
            torch.testing.assert_close(v, expected[k], msg=f"{path.name}: {k}")


def test_teacher_checkpoint_mismatch_names_keys(tmp_path):
    sd = {k: v.clone() for k, v in Denoiser().state_dict().items()}
    sd.pop("out.bias")
    sd["extra.weight"] = torch.zeros(2)
    sd["inp.weight"] = torch.zeros(3, 4)
    path = tmp_path / "bad.safetensors"
    save_file(sd, str(path))
    with pytest.raises(ValueError) as err:
        TeacherCallback(checkpoint_path=str(path)).build(Distill())
    msg = str(err.value)
    assert "missing keys: ['out.bias']" in msg
    assert "unexpected keys: ['extra.weight']" in msg
    assert "inp.weight (checkpoint (3, 4) vs model (16, 4))" in msg
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        TeacherCallback(checkpoint_path=str(tmp_path / "nope.ckpt")).build(Distill())


def test_teacher_dtype_and_find(tmp_path):
    teacher = TeacherCallback(dtype="bfloat16")
    module = Distill()
    teacher.build(module)
    assert all(p.dtype == torch.bfloat16 for p in teacher.module.parameters())
    out = teacher(*module.probe)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, module.network(*module.probe), rtol=5e-2, atol=5e-2)

    class NoTeacher:
        callbacks: list = []

    with pytest.raises(LookupError, match="TeacherCallback"):
        TeacherCallback.find(NoTeacher())
