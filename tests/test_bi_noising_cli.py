"""Bi-Noising through cli.py (thesis 001 Ch. 8): tiny fit lowers the loss, test rows, predict files, prior chain, data."""
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
from cli_runner import CONFIGS, REPO, run_cli
from datamodules.bi_noising import BiNoisingDataModule
from lightning_modules.bi_noising import BiNoisingEvaluationCallback, ConditionalADMUNet

TINY = {task: ["--config", f"bi_noising_{task}.yaml", "--config", f"tiny/bi_noising_{task}.yaml"]
        for task in ("colorization", "sr", "derain", "prior")}


def _fixed_loss(module, batches: list[dict]) -> float:
    module.eval()
    with torch.no_grad():
        return float(torch.stack([module.losses(b, torch.Generator().manual_seed(10 * i + s))["total"].mean()
                                  for i, b in enumerate(batches) for s in range(4)]).mean())


def _table(name: str) -> dict:
    return next(t for p in load_paper_numbers(str(REPO / "benchmarks" / "paper_numbers.yaml"))
                if p["paper"] == "renoising" for t in p["tables"] if t["table"] == name)


@pytest.mark.slow
def test_tiny_fit_lowers_the_loss_then_test_rows_and_predict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # results/ rows land here
    fit = run_cli(["fit", *TINY["colorization"], "--trainer.max_steps", "30", "--trainer.val_check_interval", "30"], tmp_path)
    fresh = copy.deepcopy(fit.model)
    args = yaml.safe_load((CONFIGS / "tiny" / "bi_noising_colorization.yaml").read_text())["model"]["init_args"]["network"]
    fresh.network = ConditionalADMUNet(**args["init_args"])
    batches = list(fit.datamodule.train_dataloader())
    trained, untrained = _fixed_loss(fit.model, batches), _fixed_loss(fresh, batches)
    print(f"L_simple on fixed noise: untrained {untrained:.4f} -> trained {trained:.4f} after 30 steps")
    assert trained < 0.9 * untrained

    labels = {}
    for sampler in ("bi_noising", "sr3"):
        tested = run_cli(["test", *TINY["colorization"], "--ckpt_path", "last", "--model.init_args.sampler", sampler], tmp_path)
        evaluation = next(c for c in tested.trainer.callbacks if isinstance(c, BiNoisingEvaluationCallback))
        rows = {r.metric: r for r in evaluation.last_rows}
        labels[sampler] = {r.method for r in evaluation.last_rows}
        assert set(rows) == {"PSNR", "SSIM", "Time_s", "Params_M"}
        assert rows["PSNR"].nfe == (8 if sampler == "bi_noising" else 4) and rows["Time_s"].value > 0
        assert {r.weights for r in evaluation.last_rows} == {"random"}, "the stand-in prior flags the rows"
    assert labels == {"bi_noising": {"Bi-Noising (Ours)"}, "sr3": {"SR3 Diffusion"}}
    assert {metric_key(m) for m in ("PSNR", "SSIM")} <= {metric_key(m) for m in _table("Table 8.1")["metric_directions"]}
    assert {"Bi-Noising (Ours)", "SR3 Diffusion"} <= {r["method"] for r in _table("Table 8.1")["rows"]}
    assert {metric_key(m) for m in ("Time_s", "Params_M")} <= {metric_key(m) for m in _table("Table 8.4")["metric_directions"]}
    written = [json.loads(line) for line in (tmp_path / "results" / "renoising.jsonl").read_text().splitlines()]
    assert len(written) == 8 and {row["paper"] for row in written} == {"renoising"}

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    sizes = {"street": (37, 53), "portrait": (64, 30)}
    for name, (h, w) in sizes.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(inputs / f"{name}.jpg")
    for sampler in ("sr3", "ilvr"):
        predicted = run_cli(["predict", *TINY["colorization"], "--ckpt_path", "last", "--model.init_args.sampler", sampler,
                             "--data.init_args.predict_root", str(inputs)], tmp_path)
        folder = Path(predicted.model.predictions_dir)
        assert folder.name == f"{sampler}_4steps"
        for name, (h, w) in sizes.items():
            with Image.open(folder / f"{name}.png") as image:
                assert image.size == (w, h), "colourisation output has the input's size"
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["settings"]["sampler"] == sampler
        assert sorted(out for i in manifest["items"] for out in i["outputs"]) == ["portrait.png", "street.png"]


def test_sr_predict_outputs_four_times_the_input_and_the_prior_chain(tmp_path: Path) -> None:
    run_cli(["fit", *TINY["prior"]], tmp_path)
    export = tmp_path / "bi_noising_prior+tiny" / "version_0" / "bi_noising_prior_ema.safetensors"  # run name: config stems joined by +
    assert export.is_file(), "the in-suite prior exports its EMA weights"
    fit = run_cli(["fit", *TINY["sr"], "--model.init_args.prior_checkpoint", str(export)], tmp_path)
    assert not fit.model.uses_random_weights
    inputs = tmp_path / "lr"
    inputs.mkdir()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (5, 7, 3), dtype=np.uint8)).save(inputs / "face.png")
    predicted = run_cli(["predict", *TINY["sr"], "--ckpt_path", "last", "--model.init_args.prior_checkpoint", str(export),
                         "--data.init_args.predict_root", str(inputs)], tmp_path)
    with Image.open(Path(predicted.model.predictions_dir) / "face.png") as image:
        assert image.size == (28, 20), "4x SR of a 7x5 input"
    with pytest.raises(SystemExit, match="prior_checkpoint='.*nope.pt' does not exist"):  # cli.py: one-line error
        run_cli(["fit", *TINY["sr"], "--model.init_args.prior_checkpoint", str(tmp_path / "nope.pt")], tmp_path)


def _save(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_published_layouts_and_bad_pairs(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    img = lambda h=20, w=24: rng.integers(0, 255, (h, w, 3), dtype=np.uint8)  # noqa: E731
    for split in ("train", "test"):
        for n in (1, 2):
            _save(img(), tmp_path / "rain200l" / f"rain_data_{split}_Light" / "norain" / f"norain-{n}.png")
            _save(img(), tmp_path / "rain200l" / f"rain_data_{split}_Light" / "rain" / "X2" / f"norain-{n}x2.png")
        _save(img(20, 48), tmp_path / "rain800" / ("training" if split == "train" else "test_syn") / "1.jpg")
    dm = BiNoisingDataModule(task="derain", source="rain200l", root=str(tmp_path / "rain200l"), size=16, batch_size=2)
    dm.setup()
    batch = next(iter(dm.val_dataloader()))
    assert batch["image"].shape == batch["condition"].shape == (2, 3, 16, 16) and batch["name"] == ["norain-1", "norain-2"]
    dm = BiNoisingDataModule(task="derain", source="rain800", root=str(tmp_path / "rain800"), size=16, batch_size=1)
    dm.setup()
    assert next(iter(dm.train_dataloader()))["condition"].shape == (1, 3, 16, 16)
    (tmp_path / "rain200l" / "rain_data_test_Light" / "norain" / "norain-2.png").unlink()
    dm = BiNoisingDataModule(task="derain", source="rain200l", root=str(tmp_path / "rain200l"), size=16)
    with pytest.raises(FileNotFoundError, match="norain-2x2.png has no clean image"):
        dm.setup()
    sr = BiNoisingDataModule(task="sr", size=16, photos=["astronaut"], crops_per_image=2, val_crops_per_image=1, batch_size=2)
    sr.setup()
    item = sr.train_dataset[0]
    assert item["degraded"].shape == (3, 4, 4) and item["condition"].shape == (3, 16, 16)
    gray = BiNoisingDataModule(task="colorization", size=16, photos=["astronaut"], crops_per_image=1, val_crops_per_image=1)
    gray.setup()
    cond = gray.train_dataset[0]["condition"]
    assert torch.allclose(cond[0], cond[1]) and torch.allclose(cond[0], gray.train_dataset[0]["image"].mean(0), atol=1e-5)
    for split in ("train", "test"):  # pre-simulated turbulence pairs
        frame = img()
        _save(frame, tmp_path / "turb" / split / "input" / "f1.png")
        _save(frame, tmp_path / "turb" / split / "target" / "f1.png")
    turb = BiNoisingDataModule(task="turbulence", source="pairs", root=str(tmp_path / "turb"), size=16, batch_size=1)
    turb.setup()
    assert torch.allclose(turb.val_dataset[0]["condition"], turb.val_dataset[0]["image"])
    embedded = BiNoisingDataModule(task="turbulence", size=16, photos=["astronaut"], crops_per_image=1, val_crops_per_image=1)
    embedded.setup()
    sample = embedded.train_dataset[0]
    assert sample["degraded"].shape == (3, 16, 16) and not torch.allclose(sample["degraded"], sample["image"], atol=1e-2)
    with pytest.raises(ValueError, match="task='inpaint'"):
        BiNoisingDataModule(task="inpaint")
    with pytest.raises(ValueError, match="test_root"):
        BiNoisingDataModule(source="faces", root=str(tmp_path))
