"""Two gloo ranks on the CPU through ``cli.py fit`` itself (not a bare ``Trainer``).

Each run must exit 0 on both ranks and leave one run folder and one set of results rows:
a baseline with EMA export, ``MediaLogger`` and ``EvaluationCallback`` (each of which used to
read ``trainer.log_dir``, a collective, on rank 0 only), AlignTok stage 1 (a GAN-style module
whose generator and discriminator steps each use only part of the parameters), and FSDP2
through ``ModelParallelStrategy``.
"""
from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from two_ranks import run_two_ranks

REPO = Path(__file__).resolve().parents[1]

WORKER = textwrap.dedent(
    """
    import hashlib, os, sys
    sys.path.insert(0, {repo!r})
    import cli
    run = cli.main(sys.argv[1:])
    digest = hashlib.sha256()
    for name, tensor in sorted(run.model.state_dict().items()):
        if hasattr(tensor, "full_tensor"):
            tensor = tensor.full_tensor()  # FSDP2 shard -> the whole parameter (a collective, every rank)
        digest.update(name.encode()); digest.update(tensor.detach().float().contiguous().numpy().tobytes())
    print("WEIGHTS", os.environ["RANK"], digest.hexdigest(), flush=True)
    if os.environ.get("DUMP_WEIGHTS"):
        import torch
        torch.save({{k: (v.full_tensor() if hasattr(v, "full_tensor") else v) for k, v in run.model.state_dict().items()}},
                   f"weights_rank{{os.environ['RANK']}}.pt")
    """
)

BASELINE_OVERLAY = textwrap.dedent(
    """
    trainer:
      accelerator: cpu
      devices: 2
      strategy: ddp
      num_sanity_val_steps: 0
      callbacks:
        - class_path: callbacks.ema.EMACallback
          init_args: {{decay: 0.9, export_path: ema.safetensors}}
        - class_path: callbacks.media.MediaLogger
          init_args: {{every_n_steps: 1, num_samples: 2, num_steps: 2, on_validation: false}}
        - class_path: callbacks.evaluation.EvaluationCallback
          init_args:
            stages: [validation]
            num_samples: 4
            batch_size: 2
            num_steps: 2
            save_samples: png
            progress_bar: false
            paper: lecture
            method: ddp_smoke
            dataset: sklearn-digits-16px
            results_dir: {results}
            results_file: rows.jsonl
            metrics:
              fid:
                class_path: metrics.fid.FrechetInceptionDistance
                init_args: {{feature_extractor: inception-random}}
    """
)


def _run(tmp_path: Path, *args: str) -> list[str]:
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(repo=str(REPO)))
    return run_two_ranks(script, "fit", *args, "--runs_dir", str(tmp_path / "runs"), cwd=tmp_path, timeout=300)  # generous: 2 shared cores


def _weights_digests(outs: list[str]) -> set[str]:
    return {line.split()[2] for out in outs for line in out.splitlines() if line.startswith("WEIGHTS ")}


def _one_version(tmp_path: Path, name: str) -> Path:
    versions = sorted((tmp_path / "runs" / name).glob("version_*"))
    assert len(versions) == 1, f"expected one run folder, found {versions}"
    return versions[0]


@pytest.mark.slow
def test_ddp_baseline_with_ema_media_and_evaluation(tmp_path: Path) -> None:
    overlay = tmp_path / "ddp.yaml"
    overlay.write_text(BASELINE_OVERLAY.format(results=str(tmp_path / "results")))
    outs = _run(tmp_path, "--config", "flow_matching_digits.yaml", "--config", "tiny/flow_matching_digits.yaml",
                "--config", str(overlay), "--run_name", "ddp_baseline")
    run = _one_version(tmp_path, "ddp_baseline")
    assert "Run folder:" in outs[0] and "Run folder:" not in outs[1]  # only rank 0 reports
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "ema.safetensors").is_file()
    assert sorted(p.name for p in (run / "media").glob("*.png")), "MediaLogger wrote no grid"
    samples = list((run / "samples").rglob("*.png"))
    assert {p.name.split("_")[1] for p in samples} == {"rank0", "rank1"}  # every rank saved its share
    rows = [json.loads(line) for line in (tmp_path / "results" / "rows.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["metric"] == "fid" and rows[0]["num_samples"] == 4


@pytest.mark.slow
def test_ddp_aligntok_stage1_gan(tmp_path: Path) -> None:
    """Step 0 has no GAN term (discriminator unused), step 1 has two backward passes: both ranks
    end with the same generator *and* discriminator weights (gradients were averaged)."""
    outs = _run(tmp_path, "--config", "aligntok_stage1.yaml", "--config", "tiny/aligntok_stage1.yaml",
                "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
                "--trainer.num_sanity_val_steps", "0", "--run_name", "ddp_aligntok")
    run = _one_version(tmp_path, "ddp_aligntok")
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert len(_weights_digests(outs)) == 1, "the ranks' weights differ: gradients were not synchronised"


FSDP_OVERLAY = textwrap.dedent(
    """
    trainer:
      accelerator: cpu
      devices: 2
      num_sanity_val_steps: 0
      strategy:
        class_path: lightning.pytorch.strategies.ModelParallelStrategy
        init_args: {data_parallel_size: 2, tensor_parallel_size: 1}
    """
)


@pytest.mark.slow
def test_fsdp2_model_parallel_strategy(tmp_path: Path) -> None:
    overlay = tmp_path / "fsdp.yaml"
    overlay.write_text(FSDP_OVERLAY)
    outs = _run(tmp_path, "--config", "flow_matching_digits.yaml", "--config", "tiny/flow_matching_digits.yaml",
                "--config", str(overlay), "--run_name", "fsdp2")
    run = _one_version(tmp_path, "fsdp2")
    assert list((run / "checkpoints").iterdir()), "no checkpoint written"
    assert len(_weights_digests(outs)) == 1


ALIGNTOK_FSDP_OVERLAY = FSDP_OVERLAY.replace(
    "{data_parallel_size: 2, tensor_parallel_size: 1}",
    "{data_parallel_size: 2, tensor_parallel_size: 1, save_distributed_checkpoint: false}")


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("SUITE_EXTRA_MULTIRANK"),
                    reason="~35 s on 2 cores, over the suite's budget: run with SUITE_EXTRA_MULTIRANK=1 (docs/aligntok.md)")
def test_fsdp2_aligntok_stage2_shards_vit_blocks(tmp_path: Path) -> None:
    """Stage 2 (encoder trains, L_sp adaptive weight at the last block, GAN on) under FSDP2 on 2 ranks:
    both ranks end with the same full weights and the consolidated last.ckpt holds whole tensors."""
    overlay = tmp_path / "fsdp.yaml"
    overlay.write_text(ALIGNTOK_FSDP_OVERLAY)
    outs = _run(tmp_path, "--config", "aligntok_stage2.yaml", "--config", "tiny/aligntok_stage2.yaml",
                "--config", str(overlay), "--trainer.max_steps", "2", "--run_name", "fsdp2_aligntok")
    assert any("FSDP2 over" in out for out in outs)
    assert len(_weights_digests(outs)) == 1, "the ranks' weights differ under FSDP2"
    ckpt = _one_version(tmp_path, "fsdp2_aligntok") / "checkpoints" / "last.ckpt"
    assert ckpt.is_file(), "save_distributed_checkpoint: false writes one file the next stage can read"
    from lightning_modules.components.safe_load import safe_torch_load

    state = safe_torch_load(ckpt, map_location="cpu", key="last.ckpt")["state_dict"]
    fc2 = state["tokenizer.encoder.model.blocks.0.mlp.fc2.weight"]  # a sharded unit, saved whole
    assert fc2.shape == state["tokenizer.encoder.model.blocks.1.mlp.fc2.weight"].shape and fc2.shape[1] > fc2.shape[0]
