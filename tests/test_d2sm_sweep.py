"""The D2SM queue-size sweep (thesis 001, Fig. 9.8) writes valid rows; q = N equals the batch-only run."""
from __future__ import annotations

from pathlib import Path

from benchmarks.d2sm_queue_sweep import main
from metrics.results_rows import read_rows


def test_queue_sweep_writes_rows_and_q_equal_to_batch_matches_q_zero(tmp_path: Path) -> None:
    out = tmp_path / "sweep.jsonl"
    main(["--queues", "0", "36", "72", "--steps", "4", "--log_every", "2", "--out", str(out)])
    rows = read_rows([str(out)])
    by_queue: dict[int, dict[str, float]] = {}
    for row in rows:
        if row.metric != "train_loss":
            by_queue.setdefault(row.extra["queue_size"], {})[row.metric] = row.value
    assert set(by_queue) == {0, 36, 72} and all({"PSNR-s50", "SSIM-s50", "MIoU-s50"} <= set(v) for v in by_queue.values())
    assert by_queue[36] == by_queue[0], "q = N (4 images x 9 patches) has no historic entries"
    assert by_queue[72] != by_queue[0], "a longer queue changes training"
    assert all(r.weights == "random" and r.data == "embedded" for r in rows)
