"""After a tiny ``fit``: run ``test`` on its ``last.ckpt`` and check the rows land in the paper's table.

Used by ``tests/test_cli_configs.py::test_config_with_tiny_overlay_fits_two_steps`` so every
paper config's tiny run is reused (no second fit): the trainer, model and datamodule that
``cli.py`` built run ``trainer.test(ckpt_path=last.ckpt)``, then the rows' provenance is checked
(the checkpoint's real step, the config files, the commit) and
``benchmarks.leaderboard.render_leaderboard`` must put them in the table named here, flagged.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Optional

from benchmarks.leaderboard import load_paper_numbers, render_leaderboard
from metrics.results_rows import find_results, read_rows

REPO = Path(__file__).resolve().parents[1]

#: config -> (paper id of the rows, paper_numbers.yaml table; None: no table, "Other results").
EXPECTED: dict[str, tuple[str, Optional[str]]] = {
    "aligntok_dit": ("aligntok", "Table 7.1"),
    "aligntok_stage1": ("aligntok", "Table 7.1"),
    "aligntok_stage2": ("aligntok", "Table 7.1"),
    "aligntok_stage3": ("aligntok", "Table 7.1"),
    "bi_noising_colorization": ("renoising", "Table 8.1"),
    "bi_noising_derain": ("renoising", "Table 8.3"),
    "bi_noising_sr": ("renoising", "Table 8.2"),
    "cfld": ("cfld", "Table 2 (256x176)"),
    "cfld_512": ("cfld", "Table 2 (512x352)"),
    "codi_inpaint": ("codi", "Table 5.2 (inpainting)"),
    "codi_sr": ("codi", "Table 5.2 (super-resolution)"),
    "d2sm_dehaze": ("semantic_stats", "Table 9.3"),
    "d2sm_denoise": ("semantic_stats", "Table 9.1"),
    "d2sm_face_sr": ("semantic_stats", "Table 9.2"),
    "ddpm_digits": ("lecture", None),
    "ddpm_digits_cfg": ("lecture", None),
    "flow_matching_digits": ("lecture", None),
    "flow_matching_digits_cfg": ("lecture", None),
    "dift_game": ("dift", "Table 4.2"),
    "dift_image": ("dift", "Table 4.1 (CIFAR10)"),
    "dift_video": ("dift", "Table 4.1 (CelebV-Text)"),
    "dift_views": ("dift", "Table 4.1 (ShapeNet-Cars)"),
    "fitcheck": ("fitcheck", "Table 4.1"),
    "inverse_painting": ("inverse_painting", "Table 6.1"),
    "inverse_painting_mask": ("inverse_painting", "Sec. 6.3 text: instruction generators"),
    "inverse_painting_text": ("inverse_painting", "Sec. 6.3 text: instruction generators"),
    "lecture_cgan": ("lecture", None),
    "lecture_cyclegan": ("lecture", None),
    "lecture_dcgan": ("lecture", None),
    "lecture_pix2pix": ("lecture", None),
    "ldm_scaling": ("ldm_scaling", "Table 2.1"),
    "lfg_shadow": ("shadow_removal", "Table 7.1"),
    "portrait_mcdm": ("portrait_editing", "Table 5.1 (costume editing)"),
    "ltt_gan": ("ltt_gan", "Table 6.1"),
    "total_selfie": ("totalselfie", "Table 3.1"),
    "total_selfie_finetune": ("totalselfie", "Table 3.1"),
    "vidm_content": ("vidm", "Table 3.2 (content generator)"),
    "vidm_motion": ("vidm", "Table 3.1 (256-UCF101)"),
}

#: config -> metrics its ``test`` rows must include (beyond "some row"), e.g. the CLIP column next to FID.
EXPECTED_METRICS: dict[str, set[str]] = {
    "ldm_scaling": {"FID", "CLIP"},  # Table 2.1: FID and the (conditioned) CLIP score of the COCO-30k protocol
}

#: configs whose ``test`` writes no results rows yet, and why (kept explicit so a new config is noticed).
NO_ROWS: dict[str, str] = {
    "aligntok_probe": "linear probe accuracy is logged, not written as a row",
    "bi_noising_prior": "unconditional DDPM prior (a stage); the restoration configs (bi_noising_*) write Tables 8.1-8.3",
    "fitcheck_finetune": "image fine-tuning stage; Table 4.1 scores the video model (fitcheck)",
    "inverse_painting_renderer": "component training stage; the full pipeline (inverse_painting) writes Table 6.1",
    "lecture_gan_toy": "2-D toy GAN: test logs the mode coverage of the ring, no image metric rows (lecture)",
    "lecture_pixelcnn": "likelihood model: test logs the negative log-likelihood (bits/dim), written as no row (lecture)",
    "lecture_vae": "likelihood model: test logs the ELBO / importance-sampled NLL, written as no row (lecture)",
    "lfg_shadow_pretrain": "pretraining stage; the fine-tuned model (lfg_shadow) writes Table 7.1",
    "portrait_identity": "identity-encoder training stage (no table); the MCDM (portrait_mcdm) writes Table 5.1",
    "portrait_pairs": "pair generation (predict writes the training pairs); the MCDM (portrait_mcdm) writes Table 5.1",
}


def _table_block(text: str, paper: str, table: Optional[str]) -> str:
    """The markdown between the table's heading and the next heading."""
    if table is None:
        start = text.index("## Other results")
        heading = re.search(rf"^### {re.escape(paper)}: .*$", text[start:], re.M)
    else:
        start = text.index(f"## {paper}:")
        heading = re.search(rf"^### {re.escape(table)}: .*$", text[start:], re.M)
    assert heading is not None, f"no table {table!r} for {paper!r} in the leaderboard"
    begin = start + heading.end()
    following = re.search(r"^##", text[begin:], re.M)
    return text[begin: begin + following.start()] if following else text[begin:]


def check_test_rows_land_in_table(cli: Any, name: str, tmp_path: Path) -> None:
    """``test`` the fitted tiny run from its last checkpoint; assert provenance and leaderboard placement."""
    assert name in EXPECTED or name in NO_ROWS, f"{name}: add it to EXPECTED (paper, table) or NO_ROWS (why)"
    if name in NO_ROWS:
        return
    paper, table = EXPECTED[name]
    ckpt = cli.trainer.checkpoint_callback.last_model_path
    saved_step = cli.trainer.global_step
    out = tmp_path / "rows"
    if isinstance(getattr(cli.model, "results_file", None), str):  # modules that write their own rows
        cli.model.results_file = str(out / f"{paper}_module.jsonl")
    for callback in cli.trainer.callbacks:
        if hasattr(callback, "results_dir"):
            callback.results_dir = str(out)
    cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt)
    rows = [r for r in read_rows(find_results(str(out))) if r.extra.get("stage", "test") == "test"]
    assert rows, f"{name}: `test` wrote no results rows"
    missing = EXPECTED_METRICS.get(name, set()) - {r.metric for r in rows}
    assert not missing, f"{name}: `test` wrote no {sorted(missing)} rows (got {sorted({r.metric for r in rows})})"
    for row in rows:
        assert row.paper == paper
        assert row.extra["checkpoint"] == ckpt and row.extra["step"] == saved_step, (row.extra, saved_step)
        files = [os.path.relpath(f, REPO / "configs") for f in row.extra["config_files"]]
        assert files == [f"{name}.yaml", f"tiny/{name}.yaml"], files
        assert row.commit != "unknown"
        assert row.data == "embedded" and "stand-in" in row.dataset, row.dataset  # never the paper's dataset
        if table is not None:
            assert row.extra["table"] == table
            assert row.resolution and re.fullmatch(r"\d+x\d+", row.resolution), row.resolution
    text = render_leaderboard(rows, load_paper_numbers(str(REPO / "benchmarks" / "paper_numbers.yaml")), None)
    block = _table_block(text, paper, table)
    ours = [line for line in block.splitlines() if "| ours |" in line]
    assert ours, f"{name}: no row of ours in {paper} / {table}:\n{block}"
    assert all("embedded data" in line for line in ours), ours
    if table is not None:
        header = next(line for line in block.splitlines() if line.startswith("| Method"))
        for metric in {r.metric for r in rows} & {"FID", "LPIPS", "SSIM", "PSNR", "rFID", "gFID", "IS"}:
            assert f"| {metric} " in header, f"{metric} is not one of the paper's columns: {header}"


def check_media_written(cli: Any) -> None:
    """A configured ``MediaLogger`` wrote its validation grid into the run folder (any logger)."""
    from callbacks.media import MediaLogger

    loggers = [cb for cb in cli.trainer.callbacks if isinstance(cb, MediaLogger)]
    for media in loggers:
        assert not media._failed, "MediaLogger could not sample this module (see the warning)"
        assert any(p.name.startswith("val_step") and p.suffix == ".png" for p in media.written), media.written
        assert all(p.is_file() and str(p).startswith(cli.trainer.log_dir) for p in media.written)
