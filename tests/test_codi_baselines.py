"""Table 5.1 baselines on the CoDi network: fine-tune, CM-II (teacher ODE step), GD (two teacher steps -> one)."""
from __future__ import annotations

import torch

from codi_helpers import TINY_UNET, TINY_VAE, sr_batch


def _attach_teacher(model):
    from callbacks.teacher import TeacherCallback

    teacher = TeacherCallback()
    teacher.build(model)
    model._trainer = type("T", (), {"callbacks": [teacher]})()  # a stand-in trainer holding the callback
    return teacher


def _args(**kwargs):
    args = dict(unet_config=TINY_UNET, vae_config=TINY_VAE, text_encoder="stand_in", image_size=16, task="sr")
    args.update(kwargs)
    return args


def test_conditional_finetune_loss_and_sampling() -> None:
    from lightning_modules.codi import ConditionalFinetune

    model = ConditionalFinetune(**_args(num_sampling_steps=3))
    batch = sr_batch()
    x, cond, ctx = model.encode(batch["image"]), model.condition(batch), model.context(batch, 2)
    loss = model.finetune_loss(x, cond, ctx, generator=torch.Generator().manual_seed(0))
    assert loss.shape == (2,) and torch.isfinite(loss).all()
    assert model.sample_for_batch(batch).shape == (2, 3, 16, 16)


def test_consistency_distillation_uses_the_teacher_ode_step() -> None:
    from lightning_modules.codi import ConsistencyDistillation

    model = ConsistencyDistillation(**_args())
    assert model.network.mode == "controlnet" and model.intermediate == "teacher"
    _attach_teacher(model)
    batch = sr_batch()
    x, cond, ctx = model.encode(batch["image"]), model.condition(batch), model.context(batch, 2)
    t = model.path.t_from_timestep(torch.tensor([499.0, 499.0])).float()
    s = model.path.t_from_timestep(torch.tensor([479.0, 479.0])).float()
    z_t = torch.randn(2, 4, 8, 8)
    step = model._teacher_ddim_step(z_t, t, s, cond, ctx)
    # the teacher is a copy of the student here, so its DDIM step equals the student's own
    with torch.no_grad():
        v = model.network_output(z_t, t, cond, ctx)
    x_hat, eps_hat = model.data_and_noise(v, z_t, t)
    expected = model.path.data_coef(s).view(-1, 1, 1, 1) * x_hat + model.path.noise_coef(s).view(-1, 1, 1, 1) * eps_hat
    assert torch.allclose(step, expected, atol=1e-5)
    terms = model.codi_loss(x, cond, ctx, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(terms["loss"]).all() and float(terms["x"].abs().sum()) == 0.0


def test_guided_distillation_target_reproduces_two_teacher_steps() -> None:
    from lightning_modules.codi import GuidedDistillation

    model = GuidedDistillation(**_args(student_steps=2))
    _attach_teacher(model)
    batch = sr_batch()
    x, cond, ctx = model.encode(batch["image"]), model.condition(batch), model.context(batch, 2)
    # a student that equals the teacher is not yet distilled: the loss is positive
    loss = model.distillation_loss(x, cond, ctx, generator=torch.Generator().manual_seed(0))
    assert loss.shape == (2,) and float(loss.min()) > 0
    # the DDIM target algebra: one student step from z_t with x~ lands exactly on the teacher's z_end
    t, t_end = model.step_time(torch.tensor([0.0])).float(), model.step_time(torch.tensor([1.0])).float()
    z_t, z_end = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    a_t, s_t = model.path.data_coef(t), model.path.noise_coef(t)
    a_e, s_e = model.path.data_coef(t_end), model.path.noise_coef(t_end)
    x_t = (z_end - s_e / s_t * z_t) / (a_e - s_e / s_t * a_t)
    eps_t = (z_t - a_t * x_t) / s_t
    assert torch.allclose(a_e * x_t + s_e * eps_t, z_end, atol=1e-4)
    grid = model.sampling_grid(2, torch.device("cpu"))
    assert len(grid) == 3 and float(grid[-1]) == 1.0
    assert model.sample_for_batch(batch).shape == (2, 3, 16, 16)
