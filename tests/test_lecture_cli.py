"""The lecture's models through cli.py: predict writes files named after the inputs with a manifest
(any input size), samples/figures for the generators, test writes results rows and metrics."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import pytest
from PIL import Image

from cli_runner import run_cli


def _fit(name: str, runs: Path) -> list[str]:
    base = ["--config", f"{name}.yaml", "--config", f"tiny/{name}.yaml"]
    run_cli(["fit", *base], runs)
    return base


def _latest_manifest(folder: Path) -> dict:
    """The manifest of the last predict into ``folder`` (an earlier run's ``manifest.json`` is kept)."""
    return json.loads(max(folder.glob("manifest*.json"), key=lambda p: p.stat().st_mtime_ns).read_text())


def _user_images(folder: Path) -> dict[str, tuple[int, int]]:
    folder.mkdir(parents=True)
    sizes = {"tall_photo": (37, 13), "wide": (18, 51), "square": (16, 16)}  # (H, W), not multiples of 16
    rng = np.random.default_rng(0)
    for name, (h, w) in sizes.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / f"{name}.png")
    return sizes


@pytest.mark.parametrize("name, extra", [("lecture_pix2pix", []), ("lecture_cyclegan", ["--model.predict_direction", "BtoA"])])
def test_translation_predict_writes_every_user_image_at_its_size(name: str, extra: list[str], tmp_path: Path) -> None:
    base = _fit(name, tmp_path)
    sizes = _user_images(tmp_path / "inputs")
    cli = run_cli(["predict", *base, "--ckpt_path", "last", "--data.predict_root", str(tmp_path / "inputs"), *extra], tmp_path)
    folder = Path(cli.model.predictions_dir)
    for stem, (h, w) in sizes.items():
        with Image.open(folder / f"{stem}.png") as out:
            assert out.size == (w, h)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert sorted(out for item in manifest["items"] for out in item["outputs"]) == sorted(f"{s}.png" for s in sizes)
    assert all(Path(item["input"]).stem == Path(item["outputs"][0]).stem for item in manifest["items"])


def test_generators_predict_samples_and_figures(tmp_path: Path) -> None:
    for name, figures in (("lecture_cgan", {"interpolation.png", "class_grid.png", "vector_arithmetic.png"}),
                          ("lecture_vae", {"latent_manifold.png", "reconstructions.png", "interpolation.png"}),
                          ("lecture_gan_toy", {"scatter_0000.png", "samples_0000.csv"})):
        base = _fit(name, tmp_path)
        cli = run_cli(["predict", *base, "--ckpt_path", "last"], tmp_path)
        folder = Path(cli.model.predictions_dir)
        files = {p.name for p in folder.iterdir()}
        assert figures <= files, (name, files)
        manifest = json.loads((folder / "manifest.json").read_text())
        assert {out for item in manifest["items"] for out in item["outputs"]} == files - {"manifest.json"}
        if name == "lecture_cgan":
            labels = [e["label"] for e in manifest["items"] if e["outputs"][0].startswith("sample_")]
            assert len(labels) == 8 and all(0 <= lab < 10 for lab in labels)
            cli = run_cli(["predict", *base, "--ckpt_path", "last", "--model.num_predict_samples", "13"], tmp_path)
            manifest = _latest_manifest(Path(cli.model.predictions_dir))  # the same run folder: manifest_1.json
            labels = [e["label"] for e in manifest["items"] if e["outputs"][0].startswith("sample_")]
            assert labels == [i % 10 for i in range(13)]
            # the contract's sampling requests: every one written (no batch limit), one seed each
            cli = run_cli(["predict", *base, "--ckpt_path", "last", "--data.num_samples", "11", "--data.labels", "[3, 7]"],
                          tmp_path)
            items = [e for e in _latest_manifest(Path(cli.model.predictions_dir))["items"] if e["outputs"][0].startswith("sample0")]
            assert [e["label"] for e in items] == [3, 7] * 5 + [3] and len({e["seed"] for e in items}) == 11
            assert items[0]["outputs"] == ["sample00000__seed0_label3.png"]


def test_dcgan_test_writes_fid_rows_and_vae_reports_importance_weighted_nll(tmp_path: Path) -> None:
    overlay = tmp_path / "eval.yaml"
    overlay.write_text(f"""
trainer:
  callbacks:
    - class_path: callbacks.evaluation.EvaluationCallback
      init_args:
        metrics:
          fid:
            class_path: metrics.fid.FrechetInceptionDistance
            init_args:
              feature_extractor:
                class_path: metrics.digits_classifier.DigitsClassifierFeatures
                init_args: {{random_weights: true}}
          kid:
            class_path: metrics.fid.KernelInceptionDistance
            init_args:
              feature_extractor:
                class_path: metrics.digits_classifier.DigitsClassifierFeatures
                init_args: {{random_weights: true}}
              subset_size: 4
              subsets: 5
          inception_score:
            class_path: metrics.generation_quality.InceptionScore
            init_args:
              splits: 2
              classifier:
                class_path: metrics.digits_classifier.DigitsClassifierLogits
                init_args: {{random_weights: true}}
          precision_recall:
            class_path: metrics.generation_quality.PrecisionRecall
            init_args:
              feature_extractor:
                class_path: metrics.digits_classifier.DigitsClassifierFeatures
                init_args: {{random_weights: true}}
        num_samples: 8
        batch_size: 8
        stages: [test]
        paper: lecture
        results_dir: {tmp_path / 'results'}
""")
    base = ["--config", "lecture_dcgan.yaml", "--config", "tiny/lecture_dcgan.yaml"]
    fitted = run_cli(["fit", *base], tmp_path)
    # the eval overlay makes the run name lecture_dcgan+tiny+eval: pass the fitted checkpoint itself
    checkpoint = fitted.trainer.checkpoint_callback.last_model_path
    run_cli(["test", *base, "--config", str(overlay), "--ckpt_path", checkpoint], tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "results" / "lecture.jsonl").read_text().splitlines()]
    names = {r["metric"] for r in rows}
    assert names == {"fid", "kid", "kid_std", "inception_score", "inception_score_std", "precision_recall_precision",
                     "precision_recall_recall"}
    assert all(r["method"] == "DCGAN" for r in rows)
    assert rows[0]["weights"] == "random" and rows[0]["data"] == "embedded"

    base = _fit("lecture_vae", tmp_path)
    cli = run_cli(["test", *base, "--ckpt_path", "last"], tmp_path)
    metrics = cli.trainer.callback_metrics
    assert float(metrics["test/nll"]) > 0 and float(metrics["test/bits_per_dim"]) > 0
    assert float(metrics["test/nll"]) <= -float(metrics["test/elbo"]) + 5.0  # the IW bound is (nearly) tighter


@pytest.mark.parametrize("args, expected", [
    (["--model.init_args.discriminator.init_args.receptive_field", "70"], "receptive_field=70 is larger"),
    (["--model.init_args.loss", "wasserstein"], "wasserstein"),
    (["--model.init_args.d_steps_per_g_step", "0"], "d_steps_per_g_step"),
    (["--data.init_args.task", "denoise"], "denoise"),
], ids=["receptive-field-too-large", "unknown-loss", "zero-d-steps", "unknown-task"])
def test_bad_pix2pix_settings_fail_naming_the_key(args, expected, tmp_path: Path, capsys) -> None:
    base = ["fit", "--config", "lecture_pix2pix", "--config", "tiny/lecture_pix2pix"]
    with pytest.raises((SystemExit, ValueError)) as info:
        run_cli([*base, *args], tmp_path)
    assert expected in str(info.value) + capsys.readouterr().err


ABLATIONS = sorted(p.relative_to(p.parents[1]).with_suffix("").as_posix()
                   for folder in ("lecture_pix2pix", "lecture_dcgan")
                   for p in (Path(__file__).resolve().parents[1] / "configs" / folder).glob("*.yaml"))


@pytest.mark.parametrize("ablation", ABLATIONS)
def test_every_lecture_ablation_overlay_fits_two_steps(ablation: str, tmp_path: Path) -> None:
    name = ablation.split("/")[0]
    extra = []
    if ablation.endswith("rf70"):  # a 70x70 field needs images of at least 70 px (the tiny overlay has 16)
        extra = ["--data.init_args.size", "80", "--model.init_args.discriminator.init_args.image_size", "80"]
    cli = run_cli(["fit", "--config", name, "--config", f"tiny/{name}", "--config", ablation, *extra], tmp_path)
    assert cli.trainer.global_step == 2
    model = cli.model
    if "rf" in ablation:
        field = ablation.rsplit("rf", 1)[1].strip("_")
        assert model.discriminator.receptive_field == (16 if field == "full" else int(field))  # full: covers 16 px
    if ablation.endswith("l1_only"):
        assert model.gan_weight == 0 and "train/g_adv" not in cli.trainer.callback_metrics
    if ablation.endswith("cgan_only"):
        assert model.l1_weight == 0
    if ablation.endswith("no_batchnorm"):
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_gan_resume_restores_both_optimisers_and_the_d_step_count(tmp_path: Path) -> None:
    base = ["--config", "lecture_dcgan", "--config", "tiny/lecture_dcgan"]
    first = run_cli(["fit", *base], tmp_path)
    resumed = run_cli(["fit", *base, "--trainer.max_steps", "6", "--ckpt_path", "last"], tmp_path)
    assert resumed.run_dir == first.run_dir, "a resume continues in the run folder of its checkpoint"
    assert resumed.trainer.global_step == 6
    assert resumed.model.d_step_count == 3  # 1 batch before the resume + 2 after
    ckpt = torch.load(resumed.run_dir / "checkpoints" / "last.ckpt", map_location="cpu",
                      weights_only=True)
    assert len(ckpt["optimizer_states"]) == 2 and ckpt["adversarial_d_step_count"] == 3
    assert any(k.startswith("generator.") for k in ckpt["callbacks"][next(k for k in ckpt["callbacks"] if "EMA" in k)]["ema"])


def test_conditional_gan_test_reports_classifier_accuracy_and_per_class_fid(tmp_path: Path) -> None:
    base = _fit("lecture_cgan", tmp_path)
    cli = run_cli(["test", *base, "--ckpt_path", "last", "--trainer.limit_test_batches", "4"], tmp_path)
    metrics = cli.trainer.callback_metrics
    assert 0.0 <= float(metrics["test/class_accuracy"]) <= 1.0
    assert all(f"test/class_accuracy_{c}" in metrics for c in range(10))
    fids = [float(v) for k, v in metrics.items() if k.startswith("test/fid_class_")]
    assert fids and all(f >= 0 for f in fids)
