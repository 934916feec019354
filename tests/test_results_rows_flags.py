"""The row flags every evaluator shares: embedded data, random weights, run config."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from datamodules._common import EmbeddedDataModule
from metrics.protocol import MetricProtocol
from metrics.results_rows import describe_evaluator, infer_data_flag, infer_weights_flag, run_config_path


class FolderData(EmbeddedDataModule):
    """A dataset reader that falls back to embedded data when ``root`` is None."""

    def __init__(self, root: str | None) -> None:
        super().__init__()
        self.root = root


class NoRootEmbedded(EmbeddedDataModule):
    pass


def test_root_decides_before_the_class() -> None:
    assert infer_data_flag(SimpleNamespace(datamodule=FolderData(None))) == "embedded"
    assert infer_data_flag(SimpleNamespace(datamodule=FolderData("/data/deepfashion"))) == "real"
    assert infer_data_flag(SimpleNamespace(datamodule=NoRootEmbedded())) == "embedded"
    assert infer_data_flag(SimpleNamespace(datamodule=SimpleNamespace(is_embedded=False, root=None))) == "real"
    assert infer_data_flag(SimpleNamespace(datamodule=None)) == "real"


def test_weights_flag_and_evaluator() -> None:
    random_metric = SimpleNamespace(protocol=MetricProtocol("x", random_weights=True))
    real_metric = SimpleNamespace(protocol=MetricProtocol("fid", feature_weights="w.pt"))
    assert infer_weights_flag(SimpleNamespace(), [real_metric]) == "pretrained"
    assert infer_weights_flag(SimpleNamespace(), [real_metric, random_metric]) == "random"
    assert infer_weights_flag(SimpleNamespace(uses_random_weights=True), [real_metric]) == "random"
    assert describe_evaluator(real_metric) == "fid v1.0 [w.pt]"
    assert describe_evaluator(object()) == "object"


def test_run_config_path(tmp_path: Path) -> None:
    # run_dir() never reads trainer.log_dir (a collective): a logger-less trainer's folder is default_root_dir
    trainer = SimpleNamespace(loggers=[], default_root_dir=str(tmp_path))
    assert run_config_path(trainer) is None
    (tmp_path / "config.yaml").write_text("a: 1\n")
    assert run_config_path(trainer) == str(tmp_path / "config.yaml")
