"""COCO-2014 captions reader: the Table 2.1 test split of the LDM scaling study (thesis 001 Ch. 2)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch


def _tiny_coco(tmp_path: Path, n: int = 5) -> tuple[Path, Path]:
    from PIL import Image

    folder = tmp_path / "val2014"
    folder.mkdir()
    images, annotations = [], []
    for i in range(n):
        name = f"COCO_val2014_{i:012d}.jpg"
        Image.fromarray((torch.rand(12, 20, 3) * 255).byte().numpy()).save(folder / name)
        images.append({"id": 100 + i, "file_name": name, "height": 12, "width": 20})
        annotations += [{"id": 10 * i + j, "image_id": 100 + i, "caption": f" image {i} caption {j} "} for j in range(5)]
    (tmp_path / "captions_val2014.json").write_text(json.dumps({"images": images, "annotations": annotations}))
    return tmp_path / "captions_val2014.json", folder


def test_coco_test_split_is_seeded_distinct_images_with_one_caption_each(tmp_path: Path) -> None:
    from datamodules.scaling_text_images import TextImageDataModule, read_coco_captions

    ann, folder = _tiny_coco(tmp_path)
    pairs = read_coco_captions(ann, folder, 3, seed=0)
    assert len({p for p, _ in pairs}) == 3 and pairs == read_coco_captions(ann, folder, 3, seed=0)
    for path, caption in pairs:  # the caption belongs to its own image, stripped
        assert caption.startswith(f"image {int(path.stem[-12:])} caption") and caption == caption.strip()
    dm = TextImageDataModule(root=None, size=8, batch_size=2, coco_captions=str(ann), coco_images=str(folder), coco_pairs=3)
    batch = next(iter(dm.test_dataloader()))
    assert batch["image"].shape == (2, 3, 8, 8) and len(batch["caption"]) == 2
    with pytest.raises(ValueError, match="coco_pairs=6"):
        read_coco_captions(ann, folder, 6)
    (tmp_path / "bad.json").write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match="bad.json"):
        read_coco_captions(tmp_path / "bad.json", folder, 1)


def test_training_compute_curves_keep_the_best_cfg_per_checkpoint(tmp_path: Path) -> None:
    """Fig. 2.3 from rows (benchmarks/scaling_training_curves.py): compute = normalised cost x step, best CFG."""
    from benchmarks.scaling_training_curves import training_curves, write_curves
    from metrics.results_rows import ResultRow

    def row(width, step, guidance, value, **extra):
        return ResultRow(paper="ldm_scaling", method=f"c={width}", dataset="d", split="test", resolution="8x8",
                         num_samples=4, nfe=50, guidance=guidance, metric="FID", value=value, evaluator="e",
                         config=None, commit="x", date="2026", weights="random", data="embedded",
                         extra={"width": width, "step": step, "sampler": "ddim", "num_steps": 50, **extra})

    rows = [row(320, 1000, 1.5, 30.0), row(320, 1000, 7.5, 25.0), row(320, 2000, 7.5, 21.0),
            row(64, 1000, 3.0, 40.0, normalised_cost=0.25), row(64, 1000, 3.0, 99.0, sampler="ddpm")]
    curves = training_curves(rows)
    assert [p["value"] for p in curves[320]] == [25.0, 21.0] and curves[320][0]["guidance"] == 7.5
    assert [p["training_compute"] for p in curves[320]] == [1000.0, 2000.0]  # c=320 is one unit per iteration
    assert curves[64] == [{"step": 1000, "training_compute": 250.0, "value": 40.0, "guidance": 3.0}]
    written = write_curves(curves, str(tmp_path), "FID")
    assert (tmp_path / "training_curves.csv").read_text().count("\n") == 4 and written[-1].endswith(".png")


def test_init_checkpoint_without_a_state_dict_is_one_clear_error(tmp_path: Path) -> None:
    from lightning_modules.ldm_scaling.module import lightning_state_dict

    plain = tmp_path / "plain.pt"
    torch.save({"conv_in.weight": torch.zeros(1)}, plain)
    with pytest.raises(ValueError, match="plain.pt is not a Lightning checkpoint"):
        lightning_state_dict(plain)
    good = tmp_path / "last.ckpt"
    torch.save({"state_dict": {"network.w": torch.ones(1)}}, good)
    assert list(lightning_state_dict(good)) == ["network.w"]
