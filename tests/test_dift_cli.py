"""DiFT through cli.py for each modality: a tiny fit lowers the loss, test writes rows, predict writes files."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from callbacks.evaluation import EvaluationCallback
from cli_runner import CONFIGS, run_cli
from lightning_modules.dift import DiFTTransformer

MODALITIES = ("image", "video", "views", "game")


def _tiny(modality: str) -> list[str]:
    return ["--config", f"dift_{modality}.yaml", "--config", f"tiny/dift_{modality}.yaml"]


def _fixed_loss(module, batches: list[dict]) -> float:
    module.eval()
    with torch.no_grad():
        values = [module.field_loss(b, generator=torch.Generator().manual_seed(10 * i + s), train=False)
                  for i, b in enumerate(batches) for s in range(6)]
    return float(torch.stack(values).mean())


def _write_inputs(modality: str, folder: Path) -> list[str]:
    folder.mkdir()
    rng = np.random.default_rng(0)
    if modality == "image":
        return ["--data.init_args.num_samples", "3"]
    if modality == "video":
        torch.save(torch.randn(5, 16), folder / "a_red_disc.pt")
        np.save(folder / "long_prompt.npy", rng.standard_normal((12, 16)).astype(np.float32))
        return ["--data.init_args.predict_text", str(folder)]
    for name, (h, w) in {"wide": (9, 20), "tall": (31, 12)}.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / f"{name}.png")
    args = ["--data.init_args.predict_inputs", str(folder)]
    if modality == "game":
        (folder.parent / "moves.txt").write_text("0\n1\n3\n2\n")
        args += ["--data.init_args.predict_actions", str(folder.parent / "moves.txt")]
    return args


EXPECTED = {
    "image": ({"FID"}, ["sample00000__seed0.png", "sample00001__seed1.png", "sample00002__seed2.png"]),
    "video": ({"FVD", "FID", "CLIPSIM"}, ["a_red_disc.gif", "long_prompt.gif"]),
    "views": ({"FID", "PSNR", "SSIM"}, [f"{n}__view{k:02d}.png" for n in ("tall", "wide") for k in range(8)]),
    "game": ({f"PSNR@{p}%" for p in range(10, 101, 10)}, ["tall.gif", "wide.gif"]),  # Table 4.2's columns
}


@pytest.mark.parametrize("modality", MODALITIES)
def test_tiny_fit_lowers_the_loss_test_writes_rows_predict_writes_files(
        modality: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # results/ rows land here
    fit = run_cli(["fit", *_tiny(modality), "--trainer.max_steps", "30", "--trainer.val_check_interval", "30"], tmp_path)
    fresh = copy.deepcopy(fit.model)
    args = yaml.safe_load((CONFIGS / "tiny" / f"dift_{modality}.yaml").read_text())["model"]["init_args"]["network"]["init_args"]
    torch.manual_seed(1)
    fresh.network = DiFTTransformer(**args)
    batches = [next(iter(fit.datamodule.train_dataloader()))]
    trained, untrained = _fixed_loss(fit.model, batches), _fixed_loss(fresh, batches)
    assert trained < 0.9 * untrained, f"{modality}: fit lowers the epsilon loss ({untrained:.3f} -> {trained:.3f})"

    tested = run_cli(["test", *_tiny(modality), "--ckpt_path", "last"], tmp_path)
    evaluation = next(c for c in tested.trainer.callbacks if isinstance(c, EvaluationCallback))
    metrics, outputs = EXPECTED[modality]
    assert {row.metric for row in evaluation.last_rows} == metrics
    written = [json.loads(line) for line in (tmp_path / "results" / "dift.jsonl").read_text().splitlines()]
    assert all(row["paper"] == "dift" for row in written) and {row["metric"] for row in written} >= metrics

    predict_args = _write_inputs(modality, tmp_path / "inputs")
    predicted = run_cli(["predict", *_tiny(modality), "--ckpt_path", "last", *predict_args], tmp_path)
    folder = Path(predicted.model.predictions_dir)
    manifest = json.loads((folder / "manifest.json").read_text())
    listed = sorted(o for item in manifest["items"] for o in item["outputs"])
    for name in outputs:
        assert name in listed and (folder / name).is_file(), f"{modality}: {name} written and in the manifest"
    if modality in ("views", "game"):
        with Image.open(folder / f"wide__{'view00' if modality == 'views' else 'frame000'}.png") as image:
            assert image.size == (20, 9), "views / frames keep the input image's size"
    if modality in ("video", "game"):
        with Image.open(folder / outputs[0]) as gif:
            assert gif.n_frames == (4 if modality == "video" else 3)


def test_game_predict_rejects_an_action_file_shorter_than_the_rollout(tmp_path: Path) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(inputs / "start.png")
    (tmp_path / "short.txt").write_text("0\n1\n")
    with pytest.raises(ValueError, match=r"short.txt has 2 actions; the rollout needs 4"):
        run_cli(["predict", *_tiny("game"), "--allow_random_weights", "true", "--data.init_args.predict_inputs", str(inputs),
                 "--data.init_args.predict_actions", str(tmp_path / "short.txt")], tmp_path)


def test_view_count_above_the_available_views_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="num_views=3 is more than the 2 views"):
        run_cli(["fit", *_tiny("views"), "--model.init_args.view_sampler.init_args.num_views", "3"], tmp_path)


ABLATIONS = sorted(p.name for p in (CONFIGS / "dift_ablations").glob("*.yaml"))


@pytest.mark.parametrize("overlay", ABLATIONS)
def test_ablation_overlays_resolve_on_the_full_config_and_change_their_setting(
        overlay: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run_cli(["fit", "--config", "dift_video.yaml", "--config", f"dift_ablations/{overlay}", "--print_config"], tmp_path)
    init = yaml.safe_load(capsys.readouterr().out)["model"]["init_args"]
    sampler, net = init["view_sampler"]["init_args"], init["network"]["init_args"]
    check = {
        "no_text.yaml": not init["use_text"],
        "no_consistent_noise.yaml": not sampler["consistent_noise"] and sampler["num_views"] == 8,
        "pixel.yaml": init["autoencoder"] is None and net["in_channels"] == 3 and net["latent_size"] == 256,
        "views_1.yaml": sampler["num_views"] == 1,
        "views_4.yaml": sampler["num_views"] == 4,
        "uniform_pairs.yaml": sampler["mode"] == "uniform_pairs",
        "per_view_attention.yaml": net["attention"] == "per_view" and net["depth"] == 28,
    }[overlay]
    assert check, f"{overlay} changes its setting on top of dift_video.yaml"


def test_an_ablation_switch_fits_on_the_tiny_model(tmp_path: Path) -> None:
    cli = run_cli(["fit", *_tiny("video"), "--config", "dift_ablations/uniform_pairs.yaml", "--trainer.max_steps", "2"], tmp_path)
    assert cli.model.view_sampler.mode == "uniform_pairs" and cli.trainer.global_step == 2
