"""Logs a researcher can read: any logger gets the run folder, LR curve, media, HParams; quiet known warnings."""
from __future__ import annotations

import csv
import logging
import warnings
from pathlib import Path

import pytest
import torch

from cli_runner import run_cli
from launch.run_logging import CKPT_PATH_HELP, default_logger_save_dir, filter_known_warnings
from metrics.results_rows import checkpoint_progress, run_provenance

BASE = ["--config", "flow_matching_digits", "--config", "tiny/flow_matching_digits", "--trainer.enable_progress_bar", "false"]


def test_csv_logger_run_folder_lr_curve_in_training_fid_and_media(tmp_path: Path) -> None:
    cli = run_cli(["fit", *BASE, "--trainer.logger", "CSVLogger", "--run_name", "my_csv_run"], tmp_path)
    run = tmp_path / "my_csv_run" / "version_0"
    assert cli.trainer.log_dir == str(run), "--run_name names the CSVLogger's folder too"
    assert (run / "config.yaml").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    with open(run / "metrics.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    lrs = [float(r["lr-AdamW"]) for r in table if r.get("lr-AdamW")]
    configured = cli.config["fit"]["model"]["init_args"]["optimizer"]["init_args"]["lr"]
    assert lrs and lrs[0] == pytest.approx(configured), "LearningRateMonitor logs the optimizer's learning rate"
    fid = [float(r["val_fid/FID"]) for r in table if r.get("val_fid/FID")]
    assert fid and all(v == v and v >= 0 for v in fid), "in-training FID is logged as a curve"
    grids = sorted((run / "media").glob("val_step*.png"))
    assert grids, "MediaLogger writes fixed-noise grids with a CSVLogger"
    from PIL import Image

    assert Image.open(grids[0]).size[0] > 16, "a grid of several samples, not one image"


def test_tensorboard_hparams_tab_gets_the_evaluation_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    cli = run_cli(["fit", *BASE], tmp_path)
    run = Path(cli.trainer.log_dir)
    tags: set[str] = set()
    hparam_metrics: set[str] = set()
    for events in run.glob("events.out.tfevents.*"):
        for event in EventFileLoader(str(events)).Load():
            for value in event.summary.value:
                tags.add(value.tag)
                if value.tag == "_hparams_/experiment":
                    from tensorboard.plugins.hparams import plugin_data_pb2

                    data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
                    hparam_metrics |= {m.name.tag for m in data.experiment.metric_infos}
    assert "val_fid/FID" in hparam_metrics, "the HParams tab lists the evaluation metric next to the hyper-parameters"
    assert "val_fid/FID" in tags
    assert any(t.startswith("lr-") for t in tags), "LearningRateMonitor is on by default"
    # The checkpoint's stored step is what rows of a later `test` report (trainer.global_step is 0 there).
    ckpt = run / "checkpoints" / "last.ckpt"
    assert checkpoint_progress(str(ckpt))[0] == torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"]

    class _Trainer:
        ckpt_path = str(ckpt)
        global_step, current_epoch = 0, 0
        suite_config_files = ["a.yaml"]
        log_dir = None

        class state:  # noqa: N801 - mimics trainer.state.fn.value
            class fn:  # noqa: N801
                value = "test"

    provenance = run_provenance(_Trainer())
    assert provenance["step"] == 2 and provenance["checkpoint"] == str(ckpt) and provenance["config_files"] == ["a.yaml"]


def test_known_harmless_messages_are_filtered(caplog: pytest.LogCaptureFixture) -> None:
    filter_known_warnings()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        filter_known_warnings()  # re-applied after simplefilter, as the CLI does at start
        warnings.warn("The dirpath has changed from 'a' to 'b', therefore ...")
        warnings.warn("The `srun` command is available on your system but is not used. HINT: ...")
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning)
        warnings.warn("a warning that matters")
    assert [str(w.message) for w in caught] == ["a warning that matters"]
    with caplog.at_level(logging.INFO, logger="lightning.pytorch.utilities.rank_zero"):
        logging.getLogger("lightning.pytorch.utilities.rank_zero").info("💡 Tip: For seamless cloud logging ...")
        logging.getLogger("lightning.pytorch.utilities.rank_zero").info("GPU available: False")
    assert [r.getMessage() for r in caplog.records] == ["GPU available: False"]


def test_csv_logger_gets_a_save_dir_and_help_documents_last(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["fit", "--trainer.logger", "CSVLogger", "--runs_dir", "out"]
    assert default_logger_save_dir(argv)[-2:] == ["--trainer.logger.save_dir", "out"]
    kept = ["fit", "--trainer.logger", "CSVLogger", "--trainer.logger.save_dir", "mine"]
    assert default_logger_save_dir(kept) == kept
    import cli

    with pytest.raises(SystemExit):
        cli.main(["test", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert " ".join(CKPT_PATH_HELP.split()[:12]) in text
