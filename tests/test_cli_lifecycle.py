"""Run lifecycle through cli.py (issue 12): the config decides over a checkpoint, run identity,
random-weights opt-in, NaN, signals, checkpoint debris and short config errors.

One tiny two-step fit is shared by the read-only tests (module fixture); tests that write copy it.
"""
from __future__ import annotations

import os
import shutil
import signal
import warnings
from pathlib import Path

import pytest
import torch
import yaml

from cli_runner import run_cli

TINY = ["--config", "flow_matching_digits", "--config", "tiny/flow_matching_digits",
        "--trainer.enable_progress_bar", "false"]
RUN = "flow_matching_digits+tiny"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    run_cli(["fit", *TINY], runs)
    return runs


def _copy(trained: Path, tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    shutil.copytree(trained, runs)
    return runs


def _ckpt(runs: Path) -> Path:
    return runs / RUN / "version_0" / "checkpoints" / "last.ckpt"


# ----------------------------------------------------------------- point 1: config decides
@pytest.mark.parametrize("which", ["file", "last"])
def test_predict_obeys_the_command_line_with_file_or_last(which: str, trained: Path, tmp_path: Path) -> None:
    runs = _copy(trained, tmp_path)
    ckpt = "last" if which == "last" else str(_ckpt(runs))
    cli = run_cli(["predict", *TINY, "--ckpt_path", ckpt, "--model.sampler", "heun",
                   "--model.num_sampling_steps", "3"], runs)
    assert cli.model.sampler.name == "heun" and cli.model.num_sampling_steps == 3
    assert Path(cli.model.predictions_dir) == runs / RUN / "version_0" / "predictions" / "heun"
    assert sorted(p.name for p in (runs / RUN).iterdir()) == ["version_0"], "no new version folder"
    assert (runs / RUN / "version_0" / "predict_config.yaml").is_file()


def test_test_with_a_file_writes_under_the_run_and_keeps_the_overrides(trained: Path, tmp_path: Path) -> None:
    runs = _copy(trained, tmp_path)
    cli = run_cli(["test", *TINY, "--ckpt_path", str(_ckpt(runs)), "--model.num_sampling_steps", "5"], runs)
    assert cli.model.num_sampling_steps == 5
    assert (runs / RUN / "version_0" / "test" / "config.yaml").is_file()
    assert sorted(p.name for p in (runs / RUN).iterdir()) == ["version_0"]


def test_test_with_last_has_no_dirpath_changed_warning(trained: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:  # in place: the checkpoint's own folder
        warnings.simplefilter("always")
        run_cli(["test", *TINY, "--ckpt_path", "last"], trained)
    assert not [w for w in caught if "dirpath has changed" in str(w.message)]
    assert (trained / RUN / "version_0" / "test" / "config.yaml").is_file()


def test_wrong_model_checkpoint_fails_with_one_short_message(trained: Path, tmp_path: Path) -> None:
    runs = _copy(trained, tmp_path)
    with pytest.raises(SystemExit) as info:
        run_cli(["fit", "--config", "ddpm_digits", "--config", "tiny/ddpm_digits", "--ckpt_path", str(_ckpt(runs))], runs)
    message = str(info.value)
    assert "FlowMatching" in message and "DDPM" in message and len(message.splitlines()) == 1
    assert not (runs / "ddpm_digits+tiny").exists() or not list((runs / "ddpm_digits+tiny").iterdir()), \
        "a failed launch leaves no version folder"
    with pytest.raises(SystemExit) as info:  # the full-size config with the tiny checkpoint
        run_cli(["predict", "--config", "flow_matching_digits", "--ckpt_path", str(_ckpt(runs))], runs)
    message = str(info.value)
    assert "differ in shape" in message and "network.conv_in.weight" in message and "[8, 1, 3, 3]" in message
    assert len(message) < 700


def test_invalid_override_is_not_discarded_with_a_checkpoint_file(trained: Path, tmp_path: Path) -> None:
    runs = _copy(trained, tmp_path)
    with pytest.raises(SystemExit) as info:
        run_cli(["predict", *TINY, "--ckpt_path", str(_ckpt(runs)), "--model.sampler", "nosuch"], runs)
    assert "nosuch" in str(info.value) and "Traceback" not in str(info.value)


# ----------------------------------------------------------------- point 2: run identity
def test_last_only_picks_the_run_of_the_same_configs(trained: Path, tmp_path: Path) -> None:
    assert _ckpt(trained).is_file(), "the overlay is part of the run name"
    with pytest.raises(SystemExit) as info:
        run_cli(["predict", "--config", "flow_matching_digits", "--ckpt_path", "last"], _copy(trained, tmp_path))
    assert "no checkpoint of run 'flow_matching_digits'" in str(info.value)


def test_saved_config_relaunches_a_fresh_run(trained: Path, tmp_path: Path) -> None:
    runs = _copy(trained, tmp_path)
    saved = runs / RUN / "version_0" / "config.yaml"
    config = yaml.safe_load(saved.read_text())
    assert config["ckpt_path"] is None and config["trainer"]["logger"] is None
    cli = run_cli(["fit", "--config", str(saved), "--trainer.max_steps", "1"], runs)
    assert cli.trainer.global_step == 1, "not resumed from version_0 (step 2)"
    assert (runs / RUN / "version_1" / "checkpoints" / "last.ckpt").is_file()


# ----------------------------------------------------------------- point 3: random weights
def test_predict_without_checkpoint_needs_the_random_weights_flag(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        run_cli(["predict", *TINY], tmp_path)
    assert "--allow_random_weights true" in str(info.value)
    assert not (tmp_path / RUN).exists() or not list((tmp_path / RUN).iterdir())
    cli = run_cli(["predict", *TINY, "--allow_random_weights", "true"], tmp_path)
    assert cli.model.uses_random_weights is True
    assert (Path(cli.model.predictions_dir) / "RANDOM_WEIGHTS.txt").is_file()


# ----------------------------------------------------------------- point 6: signals
def test_sigterm_saves_a_checkpoint_and_exits_non_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    callback = ["--trainer.callbacks+=lifecycle_helpers.SendSignalAt", "--trainer.callbacks.step=1",
                "--trainer.callbacks.signum=SIGUSR1",  # first a "checkpoint now": training goes on
                "--trainer.callbacks+=lifecycle_helpers.SendSignalAt", "--trainer.callbacks.step=2"]
    with pytest.raises(SystemExit) as info:
        run_cli(["fit", *TINY, "--trainer.max_steps", "40", "--trainer.val_check_interval", "40", *callback], tmp_path)
    assert info.value.code == 128 + signal.SIGTERM
    ckpt = tmp_path / RUN / "version_0" / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"] == 2
    out = capsys.readouterr().out
    assert f"SIGUSR1 at step 1: saved {ckpt}; training continues." in out
    assert f"Interrupted by SIGTERM at step 2: saved checkpoint {ckpt}" in out
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL or callable(signal.getsignal(signal.SIGUSR1))


# ----------------------------------------------------------------- point 7: NaN
def test_nan_run_exits_non_zero_and_keeps_finite_checkpoints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        run_cli(["fit", *TINY, "--model.init_args.optimizer.init_args.lr", "1e12", "--trainer.max_steps", "6",
                 "--trainer.val_check_interval", "6"], tmp_path)
    assert info.value.code == 1
    out = capsys.readouterr().out
    assert "NaNGuard: non-finite" in out and "at optimizer step 1" in out and "first non-finite tensor:" in out
    for ckpt in (tmp_path / RUN / "version_0" / "checkpoints").glob("*.ckpt"):
        state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()), ckpt


def test_a_finite_checkpoint_is_never_overwritten_by_a_non_finite_one(tmp_path: Path) -> None:
    run_cli(["fit", *TINY, "--nan_guard", "false", "--trainer.max_steps", "5", "--trainer.val_check_interval", "5",
             "--checkpoint.every_n_train_steps", "1", "--trainer.callbacks+=lifecycle_helpers.PoisonWeightsAt",
             "--trainer.callbacks.step=3"], tmp_path)
    saved = torch.load(tmp_path / RUN / "version_0" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["global_step"] == 2, "steps 3-5 had a NaN weight and were not written"
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values() if v.is_floating_point())


# ----------------------------------------------------------------- point 8: debris
def test_resume_cleans_temporaries_and_orphans_and_uses_the_newest(trained: Path, tmp_path: Path) -> None:
    runs = _copy(trained, tmp_path)
    folder = runs / RUN / "version_0" / "checkpoints"
    stale = folder / ".last.ckpt.tmp-999999999-abcd0123"
    stale.write_bytes(b"partial")
    orphan = folder / "epoch=0-step=1.ckpt"
    shutil.copy(folder / "last.ckpt", orphan)
    old = (folder / "last.ckpt").stat().st_mtime - 100
    os.utime(orphan, (old, old))
    (folder / "epoch=0-step=9.ckpt").write_bytes(b"PK\x03\x04 truncated")  # newest, but incomplete
    cli = run_cli(["fit", *TINY, "--ckpt_path", "last", "--trainer.max_steps", "3"], runs)
    assert cli.trainer.global_step == 3
    assert not stale.exists() and not orphan.exists()
    assert sorted(p.name for p in (runs / RUN).iterdir()) == ["version_0"]


# ----------------------------------------------------------------- point 11: config errors
@pytest.mark.parametrize(
    "args, expected",
    [
        (["--model.init_args.num_sampling_steps", "abc"], ["num_sampling_steps", "'abc'", "int"]),
        (["--model.init_args.num_sampling_step", "3"], ["num_sampling_step", "did you mean num_sampling_steps"]),
        (["--model.init_args.network.class_path", "diffusers.UNet2DModl"], ["UNet2DModl", "did you mean UNet2DModel"]),
    ],
    ids=["bad-value", "misspelled-key", "misspelled-class"],
)
def test_config_errors_are_one_short_message(args: list[str], expected: list[str], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        run_cli(["fit", *TINY, *args], tmp_path)
    assert info.value.code == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) <= 3, err
    for text in expected:
        assert text in err, err


def test_yaml_syntax_error_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  init_args:\n    sampler: [euler\n")
    with pytest.raises(SystemExit):
        run_cli(["fit", *TINY, "--config", str(bad)], tmp_path)
    err = capsys.readouterr().err
    assert str(bad) in err and "line" in err and len(err.splitlines()) <= 3, err
