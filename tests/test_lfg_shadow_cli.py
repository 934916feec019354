"""LFG-Diffusion through cli.py: tiny pretraining then fine-tuning (the chain), test rows, predict on user files."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from benchmarks.leaderboard import load_paper_numbers, metric_key
from callbacks.evaluation import EvaluationCallback
from cli_runner import CONFIGS, REPO, run_cli
from lightning_modules.lfg_shadow import LFGNetwork, LFGShadowRemoval

TINY = {"pretrain": ["--config", "lfg_shadow_pretrain.yaml", "--config", "tiny/lfg_shadow_pretrain.yaml"],
        "finetune": ["--config", "lfg_shadow.yaml", "--config", "tiny/lfg_shadow.yaml"]}


def _fixed_loss(module: LFGShadowRemoval, batches: list[dict]) -> float:
    """The stage's objective on fixed data, noise and steps (8 draws per batch)."""
    module.eval()
    values = []
    with torch.no_grad():
        for i, batch in enumerate(batches):
            for seed in range(8):
                values.append(module.losses(batch, torch.Generator().manual_seed(100 * i + seed))["total"].mean())
    return float(torch.stack(values).mean())


def _tiny_network_args(name: str) -> dict:
    return yaml.safe_load((CONFIGS / "tiny" / name).read_text())["model"]["init_args"]["network"]["init_args"]


def _train_batches(cli) -> list[dict]:
    return list(cli.datamodule.train_dataloader())


@pytest.mark.slow
def test_tiny_pretraining_then_finetuning_lowers_the_loss_and_predict_writes_input_sizes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # results/ rows land here
    steps = ["--trainer.max_steps", "40", "--trainer.val_check_interval", "40"]
    pre = run_cli(["fit", *TINY["pretrain"], *steps], tmp_path)
    export = tmp_path / "lfg_shadow_pretrain+tiny" / "version_0" / "lfg_pretrain_ema.safetensors"  # run name: stems joined by +
    assert export.is_file(), "stage 1 exports its EMA weights for stage 2"
    fresh = copy.deepcopy(pre.model)
    fresh.network = LFGNetwork(**_tiny_network_args("lfg_shadow_pretrain.yaml"))  # an untrained network, same config
    batches = _train_batches(pre)
    trained_pre = _fixed_loss(pre.model, batches)
    assert trained_pre < 0.9 * _fixed_loss(fresh, batches), "pretraining (Eq. 7.12) lowers its loss"

    fine = run_cli(["fit", *TINY["finetune"], *steps, "--model.init_args.init_weights", str(export)], tmp_path)
    start = copy.deepcopy(fine.model)
    start.load_weights(str(export))
    batches = _train_batches(fine)
    assert _fixed_loss(fine.model, batches) < 0.9 * _fixed_loss(start, batches), "fine-tuning (Eq. 7.11) lowers its loss"
    assert "val/invariant" in fine.trainer.callback_metrics

    tested = run_cli(["test", *TINY["finetune"], "--ckpt_path", "last"], tmp_path)
    evaluation = next(c for c in tested.trainer.callbacks if isinstance(c, EvaluationCallback))
    names = {row.metric for row in evaluation.last_rows}
    assert names == {f"{m}-{r}" for m in ("RMSE", "PSNR", "SSIM") for r in ("shadow", "nonshadow", "all")}, \
        "metric_names gives the rows Table 7.1's column names"
    table = next(t for p in load_paper_numbers(str(REPO / "benchmarks" / "paper_numbers.yaml"))
                 if p["paper"] == "shadow_removal" for t in p["tables"] if t["table"] == "Table 7.1")
    assert {metric_key(n) for n in names} == {metric_key(n) for n in table["metric_directions"]}, \
        "our rows land in the columns of Table 7.1"
    assert all(r.resolution == "16x16" and r.nfe == 2 for r in evaluation.last_rows)
    written = [json.loads(line) for line in (tmp_path / "results" / "shadow_removal.jsonl").read_text().splitlines()]
    assert {row["metric"] for row in written} == names and all(row["paper"] == "shadow_removal" for row in written)

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    sizes = {"street": (37, 53), "portrait": (64, 30)}
    for name, (h, w) in sizes.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(inputs / f"{name}.jpg")
        mask = np.zeros((h, w), dtype=np.uint8)
        mask[h // 4: h // 2, w // 3: w // 2] = 255
        Image.fromarray(mask).save(inputs / f"{name}_mask.png")
    predicted = run_cli(["predict", *TINY["finetune"], "--ckpt_path", "last", "--data.init_args.predict_root", str(inputs)],
                        tmp_path)
    folder = Path(predicted.model.predictions_dir)
    for name, (h, w) in sizes.items():
        with Image.open(folder / f"{name}.png") as image:
            assert image.size == (w, h), "the output has the input's own size"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert sorted(out for item in manifest["items"] for out in item["outputs"]) == ["portrait.png", "street.png"]
    assert manifest["settings"]["mask_dilation"] == 3 and manifest["settings"]["sampler"] == "ddim"
    assert all(Path(item["mask"]).stem == Path(item["input"]).stem + "_mask" for item in manifest["items"])


@pytest.mark.parametrize("overlay", sorted(p.name for p in (CONFIGS / "lfg_shadow_ablations").glob("*.yaml")))
def test_ablation_overlays_build_their_network(overlay: str) -> None:
    init = yaml.safe_load((CONFIGS / "lfg_shadow_ablations" / overlay).read_text())["model"]["init_args"]
    net_args = {**_tiny_network_args("lfg_shadow.yaml"), **init.get("network", {}).get("init_args", {})}
    module = LFGShadowRemoval(LFGNetwork(**net_args), image_size=16,
                              lagged_encoder_steps=init.get("lagged_encoder_steps", 0))
    y0 = torch.rand(2, 3, 16, 16) * 2 - 1
    terms = module.losses({"image": y0, "shadow": y0 * 0.5, "mask": torch.ones(2, 1, 16, 16)})
    assert torch.isfinite(terms["total"]).all()
    expected = {"no_fusion.yaml": ("dlvf", None), "lagged_posterior.yaml": ("dlvf", None),
                "latent_no_invariant.yaml": ("guidance", "latent_no_inv"), "no_guidance.yaml": ("encoder", None)}[overlay]
    assert getattr(module.network, expected[0]) == expected[1] if expected[1] else getattr(module.network, expected[0]) is None
