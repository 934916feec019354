"""Table 4.1 ablation overlays (thesis 000 Ch. 4 §4.5): each composes with its stage and steps once."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cli_runner import CONFIGS, run_cli

#: overlay -> the stage config(s) it is meant for (stage 2 = the image fine-tuning stage, §4.3.4)
ABLATIONS = {
    "ours_fg_mra_ft": "fitcheck",
    "ours_mra_ft": "fitcheck",
    "ours_ft": "fitcheck",
    "ours_fg": "fitcheck_finetune",
    "ours_mra": "fitcheck_finetune",
    "ours_ft_full_ft": "fitcheck_finetune",
    "ours_ria": "fitcheck",
    "ours_ft_joint_training": "fitcheck_finetune",
    "naive_refnet": "fitcheck",
}


def trainable_ids(module) -> set[int]:
    return {id(p) for p in module.trainable_parameters()}


def test_every_ablation_overlay_is_listed() -> None:
    assert {p.stem for p in (CONFIGS / "fitcheck_ablations").glob("*.yaml")} == set(ABLATIONS)


@pytest.mark.parametrize("name", sorted(ABLATIONS))
def test_ablation_overlay_builds_and_steps_once(name: str, tmp_path: Path) -> None:
    base = ABLATIONS[name]
    cli = run_cli(["fit", "--config", f"{base}.yaml", "--config", f"tiny/{base}.yaml",
                   "--config", f"fitcheck_ablations/{name}.yaml", "--trainer.max_steps", "1",
                   "--trainer.limit_val_batches", "0"], tmp_path)
    assert cli.trainer.global_step == 1
    overlay = yaml.safe_load((CONFIGS / "fitcheck_ablations" / f"{name}.yaml").read_text())
    module = cli.model
    for key, value in overlay.get("model", {}).get("init_args", {}).items():
        assert module.hparams[key] == value, key
    for key, value in overlay.get("data", {}).get("init_args", {}).items():
        assert cli.datamodule.hparams[key] == value, key
    if name == "ours_ft_joint_training":
        mixed = cli.datamodule.train_dataset
        image, video = mixed[0], mixed[len(mixed) - 1]  # ConcatDataset: the image items first, then the videos
        assert float(image["loss_weight"].max()) == cli.datamodule.shadow_weight, "beta inside the image's shadow"
        assert bool((video["loss_weight"] == 1).all()) and "ria" not in video, "videos: weight 1, no RIA"
    if name == "ours_ria":
        assert "ria" not in cli.datamodule.train_dataset[0], "no reference augmentation in Ours-RIA"
    assert module.num_references == (2 if module.hparams["frame_generation"] == "front_back" else 1)
    if name == "naive_refnet":
        refnet = module.network.reference_net
        assert refnet is not None and all(p.requires_grad for p in refnet.parameters())
        assert {id(p) for p in refnet.parameters()} <= trainable_ids(module), "the ReferenceNet trains"
    uses_mra = any("MultiReference" in type(p).__name__ for p in module.network.unet.attn_processors.values())
    assert uses_mra == module.hparams["multi_reference_attention"]
    trainable = {id(p) for p in module.trainable_parameters()}
    temporal = [p for _, p in module.network.temporal_parameters()]
    assert all((id(p) in trainable) == (module.hparams["trainable"] != "spatial") for p in temporal)
