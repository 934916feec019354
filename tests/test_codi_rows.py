"""Every Table 5.2 / 5.3 row is a config whose results rows carry the table's method label (thesis 001 Ch. 5).

Tiny random-weight modules built from the configs' ``model`` sections (base config + overlays merged the
way the CLI merges them); they test labels, tables and plumbing, not the thesis's numbers.
"""
from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch
import yaml

from codi_helpers import TINY_UNET, TINY_VAE, sr_batch

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"

#: (base config, overlays, extra init_args) -> (table, method) of paper_numbers.yaml; every overlay at least once
#: (rows that only repeat an overlay on another base are left out to keep the suite short)
ROWS = [
    ("codi_sr", [], {}, "Table 5.2 (super-resolution)", "CoDi (Ours)"),
    ("codi_sr", ["pe_codi"], {}, "Table 5.2 (super-resolution)", "PE-CoDi (Ours), 4 steps"),
    ("codi_sr", ["ldm"], {}, "Table 5.2 (super-resolution)", "LDMs, 50 steps"),  # other steps: below
    ("codi_sr", ["ldm", "dpm_solver"], {}, "Table 5.2 (super-resolution)", "LDMs + DPM Solver, 4 steps"),
    ("codi_sr", ["ldm", "dpm_solver_pp"], {}, "Table 5.2 (super-resolution)", "LDMs + DPM Solver++, 4 steps"),
    ("codi_sr", ["gd1_finetune"], {}, "Table 5.2 (super-resolution)", "GD-I"),
    ("codi_sr", ["gd"], {}, "Table 5.2 (super-resolution)", "GD-II"),
    ("codi_sr", ["cm2"], {"train_backbone": False}, "Table 5.2 (super-resolution)", "CM-II (frozen)"),
    ("codi_sr", ["cm2"], {}, "Table 5.2 (super-resolution)", "CM-II"),
    ("codi_inpaint", [], {}, "Table 5.2 (inpainting)", "PE-CoDi (Ours), 4 steps"),
    ("codi_inpaint", ["controlnet"], {"num_sampling_steps": 50}, "Table 5.2 (inpainting)", "ControlNet, 50 steps"),
    ("codi_inpaint", ["controlnet", "dpm_solver_pp"], {}, "Table 5.2 (inpainting)", "ControlNet + DPM Solver++, 4 steps"),
    ("codi_sr", ["depth"], {}, "Table 5.2 (third block, task header lost)", "PE-CoDi (Ours), 4 steps"),
    ("codi_sr", ["ldm", "table5_3"], {}, "Table 5.3", "LDMs"),
    ("codi_sr", ["ldm_controlnet"], {}, "Table 5.3", "LDMs + ControlNet"),
    ("codi_sr", ["table5_3"], {}, "Table 5.3", "CoDi (Ours)"),
    ("codi_sr", ["ablation_teacher_ode"], {}, "Table 5.3", "CoDi (Ours) - distilling PF-ODE"),
    ("codi_sr", ["ablation_no_noise_consistency"], {}, "Table 5.3", "CoDi (Ours) - noise-consistency"),
]


def _paper_rows() -> dict[str, set[str]]:
    data = yaml.safe_load((REPO / "benchmarks" / "paper_numbers.yaml").read_text())
    paper = next(p for p in data["papers"] if p["paper"] == "codi")
    return {t["table"]: {r["method"] for r in t["rows"]} for t in paper["tables"]}


def _accepted(cls) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            names |= {n for n, p in inspect.signature(klass.__init__).parameters.items()
                      if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if klass.__name__ == "CoDiBase":
            break
    return names - {"self"}


def build_from_configs(base: str, overlays: list[str], extra: dict, device: str = "cpu"):
    """The tiny module of ``base`` + ``overlays`` (class_path and init_args merged in order, as the CLI does)."""
    import importlib

    model: dict = {}
    for path in [CONFIGS / f"{base}.yaml", *[CONFIGS / "codi" / f"{o}.yaml" for o in overlays]]:
        section = (yaml.safe_load(path.read_text()) or {}).get("model", {})
        model["class_path"] = section.get("class_path", model.get("class_path"))
        model.setdefault("init_args", {}).update(section.get("init_args", {}))
    module_name, cls_name = model["class_path"].rsplit(".", 1)
    cls = getattr(importlib.import_module(module_name), cls_name)
    args = {k: v for k, v in {**model["init_args"], **extra}.items() if k in _accepted(cls)}
    args.update(sd_path=None, unet_config=TINY_UNET, vae_config=TINY_VAE, text_encoder="stand_in", image_size=16,
                gradient_checkpointing=False, optimizer=torch.optim.AdamW)
    with torch.device(device):
        return cls(**args)


@pytest.mark.parametrize("base, overlays, extra, table, method", ROWS,
                         ids=[f"{r[0]}+{'+'.join(r[1]) or 'base'}-{r[4]}" for r in ROWS])
def test_each_table_row_is_a_config_with_the_paper_label(base, overlays, extra, table, method) -> None:
    model = build_from_configs(base, overlays, extra)
    assert model.results_table == table
    assert model.method_label() == method
    assert method in _paper_rows()[table], f"{method!r} is not a row of {table}"
    if overlays == ["ldm"]:  # one trained LDM, tested at each step count of Table 5.2 (--model.init_args.num_sampling_steps)
        for n in (250, 20, 8, 6, 4):
            model.num_sampling_steps = n
            assert model.method_label() == f"LDMs, {n} steps" and model.method_label() in _paper_rows()[table]


def test_distilling_stages_bring_their_teacher_as_a_named_argument(tmp_path: Path) -> None:
    from callbacks.teacher import TeacherCallback

    stage1 = build_from_configs("codi_sr", ["finetune"], {})
    ckpt = tmp_path / "stage1.ckpt"
    torch.save({"state_dict": {f"network.{k}": v for k, v in stage1.network.state_dict().items()}}, ckpt)
    cm2 = build_from_configs("codi_sr", ["cm2"], {"teacher_checkpoint": str(ckpt), "init_checkpoint": str(ckpt)})
    (teacher,) = cm2.configure_callbacks()
    assert isinstance(teacher, TeacherCallback) and teacher.checkpoint_path == str(ckpt)
    teacher.build(cm2)  # the stage-1 weights fit the student's architecture
    assert build_from_configs("codi_sr", [], {}).configure_callbacks() == []  # CoDi's own PF-ODE: no teacher
    with pytest.raises(FileNotFoundError, match="teacher_checkpoint"):
        build_from_configs("codi_sr", ["cm2"], {"teacher_checkpoint": str(tmp_path / "missing.ckpt")})
    with pytest.raises(ValueError, match="uses no teacher"):
        build_from_configs("codi_sr", [], {"teacher_checkpoint": str(ckpt)})


def test_concat_adapter_starts_as_the_backbone_and_has_no_extra_branch() -> None:
    model = build_from_configs("codi_sr", ["ldm"], {})
    net = model.network
    assert not hasattr(net, "encoder") and net.backbone.conv_in.in_channels == 8
    g = torch.Generator().manual_seed(0)
    z, ctx, cond = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 8, 32, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    k = torch.tensor([700.0, 100.0])
    with torch.no_grad():
        plain = net(z, k, encoder_hidden_states=ctx)
        assert torch.allclose(net(z, k, encoder_hidden_states=ctx, condition=cond), plain, atol=1e-6)
        net.backbone.conv_in.weight[:, 4:].normal_()
        assert not torch.allclose(net(z, k, encoder_hidden_states=ctx, condition=cond), plain, atol=1e-4)


def test_w_conditioned_guided_distillation_stage() -> None:
    from test_codi_baselines import _attach_teacher

    model = build_from_configs("codi_sr", ["gd_guidance"], {})
    net = model.network
    assert net.guidance_embedding is not None and torch.count_nonzero(net.guidance_embedding.weight) == 0
    g = torch.Generator().manual_seed(0)
    z, ctx, cond = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 8, 32, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    k = torch.tensor([500.0, 500.0])
    with torch.no_grad():  # the zero w embedding: the network starts as the one it was initialised from
        base = net(z, k, encoder_hidden_states=ctx, condition=cond)
        assert torch.allclose(net(z, k, encoder_hidden_states=ctx, condition=cond, guidance=torch.tensor([3.0, 9.0])), base)
        net.guidance_embedding.weight.normal_()
        a = net(z, k, encoder_hidden_states=ctx, condition=cond, guidance=torch.tensor([3.0, 3.0]))
        b = net(z, k, encoder_hidden_states=ctx, condition=cond, guidance=torch.tensor([9.0, 9.0]))
        assert not torch.allclose(a, b, atol=1e-4)
        net.guidance_embedding.weight.zero_()
    teacher = _attach_teacher(model)
    with torch.no_grad():  # a trained branch: the conditional teacher differs from its null (plain backbone) output
        teacher.module.zero_convs[-1].weight.normal_(0, 0.3)
        model.network.load_state_dict(teacher.module.state_dict())
    batch = sr_batch()
    x, c, ctx = model.encode(batch["image"]), model.condition(batch), model.context(batch, 2)
    # student == teacher and w = 1 would give zero loss; w ~ U[0, 14] guides the teacher away from the student
    loss = model.guidance_loss(x, c, ctx, generator=torch.Generator().manual_seed(0))
    assert loss.shape == (2,) and float(loss.detach().min()) > 0
    model.guidance_range = (1.0, 1.0)
    assert float(model.guidance_loss(x, c, ctx, generator=torch.Generator().manual_seed(0)).detach().max()) < 1e-8
    assert model.sample_for_batch(batch, num_steps=2).shape == (2, 3, 16, 16)


def test_encoder_copy_is_gradient_checkpointed_with_the_backbone() -> None:
    model = build_from_configs("codi_sr", [], {"gradient_checkpointing": True})
    model.network.enable_gradient_checkpointing()
    flags = [m.gradient_checkpointing for m in model.network.encoder.modules() if hasattr(m, "gradient_checkpointing")]
    assert flags and all(flags)
    batch = sr_batch()
    x, c, ctx = model.encode(batch["image"]), model.condition(batch), model.context(batch, 2)
    model.network.mu.data.fill_(0.5)
    terms = model.codi_loss(x, c, ctx, generator=torch.Generator().manual_seed(0))
    terms["loss"].mean().backward()
    assert model.network.encoder.down_blocks[0].resnets[0].conv1.weight.grad is not None


def test_sr_test_set_is_a_fixed_number_of_seeded_pairs(tmp_path: Path) -> None:
    from PIL import Image

    from datamodules.codi_tasks import CoDiTaskDataModule

    for i in range(3):
        Image.fromarray((torch.rand(24, 24, 3) * 255).byte().numpy()).save(tmp_path / f"im{i}.png")
    dm = CoDiTaskDataModule(task="sr", root=str(tmp_path), size=16, scale=4, test_pairs=7, val_fraction=0.5)
    first, again = dm.test_dataset(), CoDiTaskDataModule(task="sr", root=str(tmp_path), size=16, scale=4, test_pairs=7,
                                                         val_fraction=0.5).test_dataset()
    assert len(first) == 7
    assert torch.equal(first[3]["lr"], again[3]["lr"]) and first[3]["lr"].shape == (3, 4, 4)
    assert not torch.equal(first[0]["lr"], first[1]["lr"])
    with pytest.raises(ValueError, match="test_pairs"):
        CoDiTaskDataModule(task="sr", root=None, test_pairs=3000)


def test_text_guidance_at_sampling_combines_text_and_empty_prompt_outputs() -> None:
    model = build_from_configs("codi_sr", [], {})
    batch = {**sr_batch(), "caption": ["a red car", "a dog"]}
    cond, ctx = model.condition(batch), model.context(batch, 2)
    null = model.context({"caption": ["", ""]}, 2)
    z, t = torch.randn(2, 4, 8, 8), model.path.t_from_timestep(torch.tensor([500.0, 500.0])).float()
    with torch.no_grad():
        model.network.mu.fill_(0.3)
        v, v_null = model.network_output(z, t, cond, ctx), model.network_output(z, t, cond, null)
        assert torch.allclose(model.guided_output(z, t, cond, ctx, null, 1.0), v)
        assert torch.allclose(model.guided_output(z, t, cond, ctx, null, 8.5), v_null + 8.5 * (v - v_null), atol=1e-5)
    assert model.nfe(4) == 4 and model.nfe(4, None, 8.5) == 8  # a guided step is two evaluations
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    plain = model.sample_for_batch(batch, generator=g())
    assert torch.equal(model.sample_for_batch(batch, generator=g(), guidance_scale=1.0), plain)
    assert not torch.allclose(model.sample_for_batch(batch, generator=g(), guidance_scale=8.5), plain, atol=1e-4)
