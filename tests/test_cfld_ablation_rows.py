"""CFLD rows land in the paper's tables: each Table 3 ablation overlay (configs/cfld_ablations/) resolves,
on top of cfld.yaml (+ the tiny overlay), to a (table, method) row of benchmarks/paper_numbers.yaml, and
mismatched settings fail naming the key. No training: the composed config and the row fields are read.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from benchmarks.leaderboard import load_paper_numbers
from cli_runner import CONFIGS, run_cli
from lightning_modules.cfld.module import ABLATIONS, check_results_placement

OVERLAYS = {"b1_multiscale_prompt": "B1", "b2_clip_prompt": "B2", "b3_prd_only": "B3", "b4_train_queries": "B4",
            "b5_swin_prompt": "B5"}


def _paper_rows() -> dict[str, set[str]]:
    papers = load_paper_numbers(str(CONFIGS.parent / "benchmarks" / "paper_numbers.yaml"))
    cfld = next(p for p in papers if p["paper"] == "cfld")
    return {t["table"]: {r["method"] for r in t["rows"]} for t in cfld["tables"]}


def _resolved(configs: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    """(table, method) the rows of ``cli.py test`` would carry, read from the composed config."""
    args = ["fit"] + [a for c in configs for a in ("--config", c)] + ["--print_config"]
    with pytest.raises(SystemExit):
        run_cli(args, tmp_path)
    printed = yaml.safe_load(capsys.readouterr().out)
    model = printed["model"]["init_args"]
    [evaluation] = [c["init_args"] for c in printed["trainer"]["callbacks"] if c["class_path"].endswith("EvaluationCallback")]
    assert evaluation.get("method") is None  # the module names the rows (CFLD.results_method)
    table = evaluation.get("table") or model["results_table"]
    method = model["ablation"] or "CFLD"
    return table, method


def test_every_ablation_overlay_is_a_table3_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert {p.stem for p in (CONFIGS / "cfld_ablations").glob("*.yaml")} == set(OVERLAYS), "a new overlay: add its row"
    rows = _paper_rows()
    for overlay, row in OVERLAYS.items():  # each overlay names its row; the composed configs take it (below)
        args = yaml.safe_load((CONFIGS / "cfld_ablations" / f"{overlay}.yaml").read_text())["model"]["init_args"]
        assert (args["results_table"], args["ablation"]) == ("Table 3", row) and row in rows["Table 3"], overlay
    for base in ("cfld", "tiny/cfld", "cfld_512", "tiny/cfld_512"):  # no callback table that would win over the module
        callbacks = yaml.safe_load((CONFIGS / f"{base}.yaml").read_text())["trainer"]["callbacks"]
        assert all("table" not in c.get("init_args", {}) for c in callbacks), base
    # one composed stack through the CLI parser (callback lists merge by position): B5 on cfld.yaml + tiny
    stack = ["cfld.yaml", "cfld_ablations/b5_swin_prompt.yaml", "tiny/cfld.yaml"]
    assert _resolved(stack, tmp_path, capsys) == ("Table 3", "B5")
    assert set(ABLATIONS) <= rows["Table 3"]


def test_ablation_settings_are_checked_naming_the_key() -> None:
    kv = ("to_k", "to_v")
    check_results_placement("B3", "Table 3", "model", "prd", False, kv, (256, 176))  # B3 as printed
    check_results_placement(None, "Table 2 (512x352)", "model", "prd", True, kv, (512, 352))
    check_results_placement(None, "Table 2 (512x352)", "model", "prd", True, kv, (48, 32))  # a CPU stand-in size
    cases = [
        (("B3", "Table 3", "model", "prd", True, kv, None), "ablation='B3' is Table 3's prompt='prd', hga=False"),
        (("B4", "Table 3", "model", "prd", False, kv, None), "unet_trainable=\\['to_q', 'to_k', 'to_v'\\]"),
        (("B1", "Table 2 (256x176)", "model", "multiscale", False, kv, None), "results_table: 'Table 3'"),
        ((None, "Table 3", "model", "prd", True, kv, None), "needs model.init_args.ablation"),
        (("B7", "Table 3", "model", "prd", True, kv, None), "ablation='B7' is not a Table 3 row"),
        (("B3", "Table 3", "ground_truth", "prd", False, kv, None), "rows belong to Table 2"),
        (("B3", "Table 3", "model", "prd", False, kv, (512, 352)), "eval_size is \\(512, 352\\)"),
        ((None, "Table 2 (256x176)", "model", "prd", True, kv, (512, 352)), "is scored at \\(256, 176\\)"),
        ((None, "Table 9", "model", "prd", True, kv, None), "results_table='Table 9' is not one of"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError, match=message):
            check_results_placement(*args)


def test_the_module_checks_before_building_and_names_its_rows() -> None:
    from cfld_helpers import tiny_cfld

    with pytest.raises(ValueError, match="model.init_args.ablation='B5'"):
        tiny_cfld(ablation="B5", results_table="Table 3")  # B5 is prompt swin_linear; the base config is prd


def test_a_b3_row_renders_in_table3_next_to_the_papers_b3() -> None:
    from benchmarks.leaderboard import render_leaderboard
    from metrics.results_rows import ResultRow
    from results_placement import _table_block

    rows = [ResultRow(paper="cfld", method="B3", dataset="DeepFashion In-Shop Clothes Retrieval (PATN split: 101,966 train / "
                      "8,570 test pairs)", split="test", resolution="256x176", num_samples=8570, nfe=150, guidance=2.0,
                      metric=metric, value=value, evaluator="test", config=None, commit="abc", date="2026-12-02",
                      weights="pretrained", data="real", extra={"table": "Table 3"})
            for metric, value in (("LPIPS", 0.16), ("SSIM", 0.73))]
    text = render_leaderboard(rows, load_paper_numbers(str(CONFIGS.parent / "benchmarks" / "paper_numbers.yaml")), None)
    block = _table_block(text, "cfld", "Table 3")
    assert any(line.startswith("| B3 | paper") for line in block.splitlines())
    assert any(line.startswith("| B3 (") and "| ours |" in line for line in block.splitlines()), block
