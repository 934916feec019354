"""Portrait editing through ``cli.py``: pair generation writes the layout the MCDM reads; predict writes edit + mask.

Tiny random networks (code checks, not the paper's numbers).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from cli_runner import run_cli
from datamodules.portrait_pairs import PairGenerationDataModule, PortraitPairsDataModule, read_pair_manifest, resolve_direction


def _write_png(path: Path, height: int, width: int, seed: int) -> Path:
    g = torch.Generator().manual_seed(seed)
    array = (torch.rand(height, width, 3, generator=g) * 255).to(torch.uint8).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def test_pair_generation_predict_writes_a_layout_the_mcdm_data_reads(tmp_path):
    cli = run_cli(["predict", "--config", "portrait_pairs.yaml", "--config", "tiny/portrait_pairs.yaml",
                   "--allow_random_weights", "true"], tmp_path)
    folder = Path(cli.model.predictions_dir)
    pairs = json.loads((folder / "pairs.json").read_text())
    assert pairs["task"] == "costume" and len(pairs["pairs"]) == 1
    entry = pairs["pairs"][0]
    assert entry["direction"] == "santa" and entry["p_b"].endswith("Santa Claus costume")
    assert Image.open(folder / entry["x_A"]).size == (16, 16) and Image.open(folder / entry["x_B"]).size == (16, 16)
    dm = PortraitPairsDataModule(root=str(folder), size=16, batch_size=1)
    dm.setup("fit")
    item = dm.train_dataset[0]
    assert item["x_A"].shape == (3, 16, 16) and item["p_a"] == entry["p_a"]


def test_mcdm_predict_writes_edit_and_mask_named_after_inputs(tmp_path):
    a = _write_png(tmp_path / "in" / "alice.png", 20, 36, 0)
    b = _write_png(tmp_path / "in" / "bob.jpg", 40, 24, 1)
    cli = run_cli(["predict", "--config", "portrait_mcdm.yaml", "--config", "tiny/portrait_mcdm.yaml",
                   "--data.predict_inputs", str(tmp_path / "in"), "--data.direction", "santa",
                   "--allow_random_weights", "true"], tmp_path / "runs")
    folder = Path(cli.model.predictions_dir)
    for src, (w, h) in ((a, (36, 20)), (b, (24, 40))):
        edit, mask = folder / f"{src.stem}__santa.png", folder / f"{src.stem}__santa_mask.png"
        assert edit.is_file() and mask.is_file(), sorted(p.name for p in folder.iterdir())
        assert Image.open(edit).size == (w, h) and Image.open(mask).size == (w, h)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["settings"]["sampler"] == "unipc"


def test_bad_inputs_fail_with_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown edit direction 'pirate'.*santa"):
        resolve_direction("costume", "pirate")
    with pytest.raises(ValueError, match="unknown edit direction"):
        PortraitPairsDataModule(direction="pirate")
    root = tmp_path / "pairs"
    _write_png(root / "a.png", 8, 8, 0)
    (root / "pairs.json").write_text(json.dumps({"task": "costume", "pairs": [
        {"x_A": "a.png", "x_B": "missing_b.png", "direction": "santa", "p_a": "a woman, normal costume",
         "p_b": "a woman, Santa Claus costume"}]}))
    with pytest.raises(FileNotFoundError, match="missing_b.png"):
        read_pair_manifest(root)
    (tmp_path / "poses").mkdir()
    dm = PairGenerationDataModule(pose_pool=str(tmp_path / "poses"), size=16, num_identities=1)
    with pytest.raises(ValueError, match="holds no pose images"):
        dm.predict_dataloader()


@pytest.fixture(scope="module")
def table_5_1():
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    numbers = yaml.load((Path(__file__).resolve().parents[1] / "benchmarks" / "paper_numbers.yaml").read_text(), Loader=loader)
    return {t["table"]: t for t in next(p for p in numbers["papers"] if p["paper"] == "portrait_editing")["tables"]}


@pytest.mark.parametrize("overlay, switch", [("wo_prt", ("pretrained", False)), ("wo_spt", ("use_spatial", False)),
                                             ("wo_iemb", ("use_image_embedding", False)), ("wo_mask", ("use_mask", False))])
def test_ablation_overlays_switch_one_part_and_name_a_table_row(overlay, switch, table_5_1):
    import yaml

    configs = Path(__file__).resolve().parents[1] / "configs"
    cfg = yaml.safe_load((configs / "portrait_mcdm_ablations" / f"{overlay}.yaml").read_text())
    assert cfg["model"]["init_args"] == {switch[0]: switch[1]}
    evaluation = cfg["trainer"]["callbacks"][0]["init_args"]
    table = table_5_1[evaluation["table"]]
    assert evaluation["method"] in {row["method"] for row in table["rows"]}
    assert evaluation["dataset"] == table["dataset"] and evaluation["split"] == table["split"]
