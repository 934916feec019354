"""Two-rank DDP (gloo, CPU) of the adversarial base through cli.py: both players' gradients are
averaged across ranks, so with different real data per rank the weights stay identical."""
from __future__ import annotations

import textwrap
from pathlib import Path

import torch

import pytest

from two_ranks import run_two_ranks

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {repo!r})
    import torch
    import cli

    out = sys.argv[1]
    app = cli.main(["fit", "--config", "lecture_gan_toy", "--config", "tiny/lecture_gan_toy",
                    "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
                    "--trainer.max_steps", "6", "--trainer.val_check_interval", "6",
                    "--runs_dir", os.path.join(out, "runs")])
    rank = app.trainer.global_rank
    model = app.model
    torch.save({{"generator": model.generator.state_dict(), "discriminator": model.discriminator.state_dict(),
                "find_unused": bool(app.trainer.strategy._ddp_kwargs.get("find_unused_parameters")),
                "step": app.trainer.global_step}},
               os.path.join(out, f"rank{{rank}}.pt"))
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    """
)


@pytest.mark.slow  # ~6 s idle, over 20 s on a loaded 2-core machine (two processes start torch)
def test_two_rank_ddp_gan_keeps_both_players_identical_across_ranks(tmp_path: Path) -> None:
    script = tmp_path / "ddp_gan.py"
    script.write_text(SCRIPT.format(repo=str(REPO)))
    run_two_ranks(script, str(tmp_path), cwd=tmp_path, timeout=150)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert ranks[0]["step"] == ranks[1]["step"] == 6  # 3 D + 3 G optimizer steps
    assert ranks[0]["find_unused"] and ranks[1]["find_unused"]
    for player in ("generator", "discriminator"):
        for key, value in ranks[0][player].items():
            assert torch.equal(value, ranks[1][player][key]), f"{player}.{key} differs across ranks"
    # the ranks saw different data (Lightning's DistributedSampler), so equality needs the all-reduce
    assert any((v != 0).any() for v in ranks[0]["discriminator"].values())
