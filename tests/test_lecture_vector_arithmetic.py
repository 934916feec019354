"""DCGAN's latent vector arithmetic (Radford et al. 2016 Sec. 6.3, Fig. 7): the helper's exact
``mean(z_a) - mean(z_b) + mean(z_c)``, the exemplar choice, the figure's wiring, and predict through cli.py."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cli_runner import run_cli
from lightning_modules.baselines import DCGAN
from lightning_modules.baselines.gan_networks import DCGANDiscriminator, DCGANGenerator
from lightning_modules.baselines.latent_arithmetic import (arithmetic_vector, load_exemplar_file, neighbours,
                                                           select_exemplars)
from lightning_modules.baselines.lecture_predict import PredictionWriter


def test_arithmetic_vector_is_the_difference_of_exemplar_means_exactly() -> None:
    # small integers and means of 3 / 2 / 4 rows that are exact in float32
    z_a = torch.tensor([[3.0, 0.0, 6.0], [0.0, 3.0, 0.0], [6.0, 0.0, 3.0]])
    z_b = torch.tensor([[1.0, 1.0, 1.0], [3.0, -1.0, 5.0]])
    z_c = torch.tensor([[0.0, 4.0, 0.0], [4.0, 0.0, 0.0], [0.0, 0.0, 4.0], [0.0, 0.0, 0.0]])
    expected = torch.tensor([3.0 - 2.0 + 1.0, 1.0 - 0.0 + 1.0, 3.0 - 3.0 + 1.0])
    assert torch.equal(arithmetic_vector(z_a, z_b, z_c), expected)
    with pytest.raises(ValueError, match="latent sizes differ"):
        arithmetic_vector(z_a, z_b[:, :2], z_c)


def test_exemplars_are_the_most_confident_candidates_and_neighbours_stay_within_the_noise() -> None:
    z = torch.arange(12.0).reshape(6, 2)
    probabilities = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.1, 0.9], [0.7, 0.3], [0.5, 0.5]])
    chosen, scores = select_exemplars(z, probabilities, concept=1, count=3)
    assert torch.equal(chosen, z[[3, 1, 5]]) and torch.allclose(scores, torch.tensor([0.9, 0.8, 0.5]))
    with pytest.raises(ValueError, match="concept 2"):
        select_exemplars(z, probabilities, concept=2, count=3)
    y = torch.zeros(5)
    out = neighbours(y, 8, 0.25, torch.Generator().manual_seed(0))
    assert out.shape == (9, 5) and torch.equal(out[0], y)
    assert out[1:].abs().max() <= 0.25 and out[1:].abs().max() > 0 and len(torch.unique(out[1:, 0])) == 8


def test_the_figure_decodes_the_arithmetic_of_user_exemplars(tmp_path: Path) -> None:
    torch.manual_seed(0)
    z = torch.randn(9, 8)
    labels = np.array([7, 1, 4, 7, 1, 4, 7, 1, 4])
    np.savez(tmp_path / "exemplars.npz", z=z.numpy(), label=labels)
    groups = load_exemplar_file(tmp_path / "exemplars.npz", [7, 1, 4], 3, latent_dim=8)
    assert [torch.equal(g, z[torch.as_tensor(labels) == c]) for g, c in zip(groups, [7, 1, 4])] == [True] * 3
    model = DCGAN(DCGANGenerator(latent_dim=8, image_size=16, channels=1, base_channels=4),
                  DCGANDiscriminator(image_size=16, channels=1, base_channels=4),
                  arithmetic=[7, 1, 4], arithmetic_neighbours=2,
                  arithmetic_exemplars_file=str(tmp_path / "exemplars.npz")).eval()
    seen = []
    original = model.sample
    model.sample = lambda n, **kw: seen.append(kw["noise"].clone()) or original(n, **kw)  # type: ignore[method-assign]
    writer = PredictionWriter(tmp_path / "out")
    model.write_vector_arithmetic(writer, torch.Generator().manual_seed(0))
    assert torch.allclose(seen[-1][0], groups[0].mean(0) - groups[1].mean(0) + groups[2].mean(0))
    assert torch.equal(seen[0][-1], groups[0].mean(0))  # each concept row ends with its decoded mean
    entry = writer.items[-1]
    assert entry["outputs"] == ["vector_arithmetic.png"] and entry["exemplar_source"] == "file"
    assert entry["count"] == 4 * 4  # 3 rows of (3 exemplars + mean), 1 row of Y + 2 neighbours, padded to 4
    with pytest.raises(KeyError, match="label"):
        np.savez(tmp_path / "bad.npz", z=z.numpy())
        load_exemplar_file(tmp_path / "bad.npz", [7, 1, 4], 3, latent_dim=8)


def test_dcgan_predict_writes_the_vector_arithmetic_figure_in_the_manifest(tmp_path: Path) -> None:
    base = ["--config", "lecture_dcgan.yaml", "--config", "tiny/lecture_dcgan.yaml"]
    run_cli(["fit", *base], tmp_path)
    cli = run_cli(["predict", *base, "--ckpt_path", "last"], tmp_path)
    folder = Path(cli.model.predictions_dir)
    manifest = json.loads((folder / "manifest.json").read_text())
    entry = next(e for e in manifest["items"] if e["outputs"] == ["vector_arithmetic.png"])
    assert entry["concepts"] == [7, 1, 4] and entry["exemplar_source"] == "classifier"
    assert entry["classifier_weights"] == "random"  # the tiny overlay's named stand-in
    assert [len(p) for p in entry["exemplar_probabilities"]] == [3, 3, 3]
    with Image.open(folder / "vector_arithmetic.png") as image:
        assert image.size == (9 * 18 + 2, 4 * 18 + 2)  # 9 columns (Y + 8 neighbours), 4 rows of 16 px + padding
    cli = run_cli(["predict", *base, "--ckpt_path", "last", "--model.init_args.arithmetic", "null"], tmp_path)
    # A second predict into the same folder keeps the first manifest and writes manifest_1.json.
    second = Path(cli.model.predictions_dir) / "manifest_1.json"
    files = {out for e in json.loads(second.read_text())["items"] for out in e["outputs"]}
    # Outputs are never overwritten either: the second run's figures carry the suffix _1.
    assert "interpolation_1.png" in files and not any(f.startswith("vector_arithmetic") for f in files)
