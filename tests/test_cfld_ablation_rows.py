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
    stacks = [(["cfld.yaml", f"cfld_ablations/{overlay}.yaml"], row) for overlay, row in OVERLAYS.items()]
    stacks.append((["cfld.yaml", "cfld_ablations/b5_swin_prompt.yaml", "tiny/cfld.yaml"], "B5"))  # tiny callback list
    for stack, row in stacks:
        table, method = _resolved(stack, tmp_path, capsys)
        assert (table, method) == ("Table 3", row), stack
        assert method in rows[table], (table, sorted(rows[table]))
    # the 512 config stays in its Table 2 block (cfld.yaml's placement is checked by test_cli_configs)
    assert _resolved(["cfld_512.yaml", "tiny/cfld_512.yaml"], tmp_path, capsys) == ("Table 2 (512x352)", "CFLD")
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
