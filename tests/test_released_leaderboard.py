"""Rows computed with the authors' released weights are labelled so in LEADERBOARD.md, beside the paper's number."""
from __future__ import annotations

from benchmarks.leaderboard import render_leaderboard
from benchmarks.results_rows import ResultRow

PAPERS = [{"paper": "vidm", "title": "VIDM", "seed": "001", "tables": [
    {"table": "Table 3.1 (256-CLEVRER)", "caption": "FVD", "dataset": "CLEVRER", "split": "not stated",
     "resolution": "256x256", "metric_directions": {"FVD-16": "lower"},
     "rows": [{"method": "VIDM (ours)", "metrics": {"FVD-16": 87.4}}]}]}]


def _row(value: float, **extra) -> ResultRow:
    return ResultRow(paper="vidm", method="VIDM", dataset="CLEVRER", split="test", resolution="128x128", num_samples=2048,
                     nfe=100, guidance=None, metric="FVD-16", value=value, evaluator="i3d", config="configs/vidm_motion.yaml",
                     commit="abc", date="2026-12-02T17:00:00+00:00", weights="pretrained", data="real",
                     extra={"table": "Table 3.1 (256-CLEVRER)", **extra})


def test_released_rows_get_their_own_labelled_line_beside_the_paper() -> None:
    rows = [_row(90.0, released_checkpoint="/data/w/checkpoint_accum_clevrer_robust_400000.pth.tar"), _row(120.0)]
    text = render_leaderboard(rows, PAPERS)
    lines = [line for line in text.splitlines() if line.startswith("| VIDM")]
    assert lines[0].startswith("| VIDM (ours) | paper")
    released = [line for line in lines if "authors' released weights checkpoint_accum_clevrer_robust_400000.pth.tar" in line]
    assert len(released) == 1 and "| 90 |" in released[0] and "/data/w" not in released[0]
    assert any("| 120 |" in line and "released" not in line for line in lines), "our own training stays a separate row"
