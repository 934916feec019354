"""Every config resolves, every config + tiny overlay fits, runs resume, bad input fails clearly."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from cli_runner import CONFIGS, all_configs, paper_configs, run_cli
from results_placement import check_media_written, check_test_rows_land_in_table


@pytest.mark.parametrize("config", all_configs(), ids=lambda p: p.stem)
def test_print_config_resolves(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        run_cli(["fit", "--config", str(config), "--print_config"], tmp_path)
    assert info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"]
    assert printed["data"]["class_path"]


@pytest.mark.parametrize("name", paper_configs())
def test_config_with_tiny_overlay_fits_two_steps(name: str, tmp_path: Path) -> None:
    cli = run_cli(
        ["fit", "--config", f"{name}.yaml", "--config", f"tiny/{name}.yaml", "--trainer.max_steps", "2"],
        tmp_path,
    )
    assert cli.trainer.global_step == 2
    run = tmp_path / f"{name}+tiny" / "version_0"  # overlays are part of the run name
    assert (run / "config.yaml").is_file()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert list(run.glob("events.out.tfevents.*")), "TensorBoard logs are written into the run folder"
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss"])
    check_media_written(cli)  # fixed-noise / fixed-input grids in the run folder
    check_test_rows_land_in_table(cli, name, tmp_path)  # `test` on last.ckpt: rows in the paper's table


def test_resume_continues_at_the_saved_step(tmp_path: Path) -> None:
    base = ["fit", "--config", "flow_matching_digits.yaml", "--config", "tiny/flow_matching_digits.yaml"]
    first = run_cli([*base, "--trainer.max_steps", "3"], tmp_path)
    assert first.trainer.global_step == 3
    ckpt = tmp_path / "flow_matching_digits+tiny" / "version_0" / "checkpoints" / "last.ckpt"
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert saved["global_step"] == 3

    resumed = run_cli([*base, "--trainer.max_steps", "5", "--ckpt_path", "last"], tmp_path)
    assert resumed.trainer.global_step == 5
    assert resumed.trainer.log_dir == str(tmp_path / "flow_matching_digits+tiny" / "version_0"), "same run folder"
    assert not (tmp_path / "flow_matching_digits+tiny" / "version_1").exists()
    assert torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"] == 5


def test_resume_without_checkpoint_starts_from_scratch(tmp_path: Path) -> None:
    cli = run_cli(
        ["fit", "--config", "flow_matching_digits", "--config", "tiny/flow_matching_digits", "--ckpt_path", "last"],
        tmp_path,
    )
    assert cli.trainer.global_step == 2


def test_predict_writes_images_with_two_samplers(tmp_path: Path) -> None:
    base = ["--config", "flow_matching_digits_cfg", "--config", "tiny/flow_matching_digits_cfg"]
    run_cli(["fit", *base], tmp_path)
    for sampler in ("euler", "heun"):
        cli = run_cli(["predict", *base, "--ckpt_path", "last", "--model.sampler", sampler], tmp_path)
        folder = Path(cli.model.predictions_dir)
        assert folder.name == sampler
        pngs = sorted(folder.glob("sample*.png"))
        assert len(pngs) == 8, "one PNG per item of the predict batch"
        assert (folder / "grid_0000.png").is_file()


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--model.class_path", "lightning_modules.NoSuchModule"], "NoSuchModule"),
        (["--trainer.max_steps", "many"], "max_steps"),
        (["--model.init_args.sampler", "rk99"], "rk99"),
        (["--model.init_args.prediction_type", "noise"], "noise"),
    ],
    ids=["unknown-class-path", "wrong-type", "unknown-sampler", "unknown-prediction-type"],
)
def test_bad_input_fails_with_a_message_naming_it(
    args: list[str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["fit", "--config", "flow_matching_digits", "--config", "tiny/flow_matching_digits"]
    with pytest.raises((SystemExit, ValueError)) as info:
        run_cli([*base, *args], tmp_path)
    message = str(info.value) + capsys.readouterr().err
    assert expected in message


def test_missing_config_file_fails_naming_it(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        run_cli(["fit", "--config", "no_such_paper.yaml"], tmp_path)
    assert "no_such_paper.yaml" in str(info.value)
    assert str(CONFIGS) in str(info.value)
