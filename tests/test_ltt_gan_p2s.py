"""TurbulenceSim_P2S port (datamodules/ltt_gan/p2s.py) on tiny assets written in the released layout
(P2S_model.pt state dict, pickled dictionary.npy / S_half dicts, R-corr matrix on a 2x2 grid instead of
16x16). Random or hand-set assets: these test the loading and the simulator's plumbing, not turbulence statistics."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.ltt_gan.identity import paired_folder
from datamodules.ltt_gan.p2s import P2SMapping, P2SSimulator, build_celebahq100
from lightning_modules.components.safe_load import UnsafeCheckpointError

N = 24  # reflect padding of 16 needs more than 16 pixels


def _assets(folder: Path, tilt: float = 0.0, mlp_zero: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    mapping = P2SMapping()
    if mlp_zero:
        torch.nn.init.zeros_(mapping.out.weight), torch.nn.init.zeros_(mapping.out.bias)
    torch.save(mapping.state_dict(), folder / "P2S_model.pt")
    mu = np.zeros((33, 33), dtype=np.float32)
    mu[16, 16] = 1.0  # a delta: the blur of the mean PSF is the image itself
    basis = np.random.default_rng(0).normal(size=(120, 33 * 33)).astype(np.float32) * 1e-3
    np.save(folder / "dictionary.npy", {"mu": mu.reshape(-1), "dictionary": basis}, allow_pickle=True)
    np.save(folder / "R-corr_-0.01.npy", np.eye(2 * 2 * 36, dtype=np.float32))
    s_half = np.full((2, N, N), tilt, dtype=np.float32)
    np.save(folder / f"S_half-size_{N}-D_r0_5.0000.npy", {"s_half": s_half, "const": np.float64(1.0)}, allow_pickle=True)
    return folder


def test_p2s_loads_the_released_layout_and_zero_turbulence_is_the_identity(tmp_path: Path) -> None:
    image = torch.rand(2, 3, N, N, generator=torch.Generator().manual_seed(0)) * 2 - 1
    calm = P2SSimulator(_assets(tmp_path / "calm"), img_size=N)
    assert calm.grid == 2 and calm.basis.shape == (100, 1, 33, 33), "the first 100 basis PSFs"
    assert torch.allclose(calm(image), image, atol=1e-5), "delta mean PSF, zero weights, no tilt: unchanged"
    rough = P2SSimulator(_assets(tmp_path / "rough", tilt=3.0, mlp_zero=False), img_size=N)
    first = rough(image, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(first, image, atol=1e-2), "tilt and blur change the image"
    assert torch.equal(first, rough(image, generator=torch.Generator().manual_seed(1))), "deterministic under a seed"
    with pytest.raises(ValueError, match="built for 24x24"):
        rough(torch.zeros(1, 3, 32, 32))


def test_p2s_bad_assets_fail_clearly_and_celebahq100_pairs_are_readable(tmp_path: Path) -> None:
    folder = _assets(tmp_path / "assets")
    with pytest.raises(FileNotFoundError, match="R-corr_-0.5.npy is missing"):
        P2SSimulator(folder, img_size=N, corr=-0.5)
    (folder / "evil").mkdir()
    np.save(folder / "evil" / "dictionary.npy", np.array({"x": Path("p")}, dtype=object), allow_pickle=True)
    for name in ("P2S_model.pt", "R-corr_-0.01.npy", f"S_half-size_{N}-D_r0_5.0000.npy"):
        (folder / "evil" / name).write_bytes((folder / name).read_bytes())
    with pytest.raises(UnsafeCheckpointError, match="not a numpy array"):
        P2SSimulator(folder / "evil", img_size=N)
    faces = tmp_path / "celeba_hq"
    faces.mkdir()
    from PIL import Image

    for i in range(3):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (30, 30, 3), dtype=np.uint8)).save(faces / f"{i:05d}.png")
    build_celebahq100(P2SSimulator(folder, img_size=N), faces, tmp_path / "out", count=2, size=N)
    pairs = paired_folder(tmp_path / "out")
    assert [p[0].stem for p in pairs] == ["00000", "00001"], "the first `count` images, degraded and clean"
