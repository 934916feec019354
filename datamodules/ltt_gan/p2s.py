"""TurbulenceSim_P2S (Mao, Chimitt & Chan, ICCV 2021): the simulator that builds LTT-GAN's CelebAHQ100
test set (thesis 001 Ch. 6 §6.5, "we set D, r_theta and corr as {5, 1.25, -0.01}").

Optional: it runs only when the authors' asset files are given (``assets``), none ships with the
suite. A :class:`TurbulenceSimulator` maps clean faces ``[B, 3, N, N]`` in [-1, 1] to turbulence-degraded
ones; :class:`P2SSimulator` is the P2S one, reading the released folder layout:

* ``P2S_model.pt``: the state dict of the phase-to-space MLP (:class:`P2SMapping`: ``fc1`` 36 -> 100,
  ``fc2`` 100 -> 100, ``fc3`` 100 -> 100, ``out`` 100 -> 100). The released forward applies ``fc2``
  twice and never ``fc3`` (its weights exist but are unused); the weights were trained with that
  forward, so this port keeps it (``P2SMapping.forward``);
* ``dictionary.npy``: ``{"mu": 33x33 mean PSF, "dictionary": [>=100, 33*33] PSF basis}`` (a pickled
  dict, read with ``components.safe_load.safe_numpy_load``: numpy types only, no code);
* ``R-corr_<corr>.npy``: the ``[g*g*36, g*g*36]`` factor that correlates the 36 Zernike coefficients
  over a ``g x g`` grid (``g`` = 16 in the released files, read from the shape);
* ``S_half-size_<N>-D_r0_<Dr0:.4f>.npy``: ``{"s_half": [2, N, N] tilt spectrum, "const": scale}``.

Per image (the released forward, rewritten for torch's complex FFT): reflect-pad 16, convolve with
the mean PSF and the 100 basis PSFs; draw Zernike coefficients ``R z * sqrt(Dr0^(5/3))`` on the grid,
upsample bilinearly to ``N x N`` and multiply by ``scale``; the MLP turns each pixel's coefficients
into the 100 basis weights; the blurred image is ``mean + sum_k w_k (I * psf_k)``; then a tilt field
``Re(IFFT2((s_half_re + i s_half_im) n)) * const`` (``n`` white noise, one per axis) warps it
(``grid_sample``, border padding). All channels share one draw. One departure: the release normalises
the flow with ``N - 1`` but samples with ``align_corners=False``, a zoom by ``N / (N - 1)`` (0.2% at
512); this port samples with ``align_corners=True``, so a zero tilt leaves the image in place. The thesis's ``r_theta = 1.25`` is
read as ``scale`` (the digest's reading: the thesis does not define it).

``python -m datamodules.ltt_gan.p2s --assets DIR --input celeba_hq/ --output celebahq100/`` writes the
first ``--count`` (100) images and their simulations in the ``paired_root`` layout (``target/``, ``input/``).
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Optional, Protocol, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.components.safe_load import safe_numpy_load, safe_torch_load

PSF_SIZE, NUM_ZERNIKE, NUM_BASIS = 33, 36, 100


class TurbulenceSimulator(Protocol):
    """Clean images ``[B, 3, N, N]`` in [-1, 1] -> degraded images of the same shape."""

    def __call__(self, images: Tensor, generator: Optional[torch.Generator] = None) -> Tensor: ...


class P2SMapping(nn.Module):
    """The phase-to-space MLP in the released key layout (module docstring)."""

    def __init__(self, input_dim: int = NUM_ZERNIKE, output_dim: int = NUM_BASIS, width: int = 100) -> None:
        super().__init__()
        self.fc1 = nn.Linear(input_dim, width)
        self.fc2 = nn.Linear(width, width)
        self.fc3 = nn.Linear(width, width)  # present in the released weights, unused by its forward
        self.out = nn.Linear(width, output_dim)

    def forward(self, zernike: Tensor) -> Tensor:
        hidden = F.relu(self.fc2(F.relu(self.fc2(F.relu(self.fc1(zernike))))))  # fc2 twice: the released forward
        return self.out(hidden)


def _require(folder: Path, name: str) -> Path:
    path = folder / name
    if not path.is_file():
        raise FileNotFoundError(f"P2S assets: {path} is missing (the TurbulenceSim_P2S release: P2S_model.pt, "
                                f"dictionary.npy, R-corr_<corr>.npy, S_half-size_<N>-D_r0_<Dr0>.npy)")
    return path


class P2SSimulator(nn.Module):
    """TurbulenceSim_P2S from its released assets (module docstring).

    Args:
        assets: folder of the released files.
        img_size: ``N`` (square images; the S_half file is per size).
        dr0: ``D / r0``, the turbulence strength (5 for CelebAHQ100).
        corr: PSF correlation naming the ``R-corr`` file (-0.01 for CelebAHQ100).
        scale: multiplier of the Zernike coefficients (1.25: the thesis's ``r_theta``, our reading).
    """

    def __init__(self, assets: Union[str, Path], img_size: int = 512, dr0: float = 5.0, corr: float = -0.01,
                 scale: float = 1.25) -> None:
        super().__init__()
        folder = Path(assets).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"P2S assets folder {folder} does not exist")
        self.img_size, self.dr0, self.scale = int(img_size), float(dr0), float(scale)
        self.mapping = P2SMapping()
        state = safe_torch_load(_require(folder, "P2S_model.pt"), key="P2S_model.pt")
        try:
            self.mapping.load_state_dict(state)
        except RuntimeError as err:
            raise ValueError(f"{folder / 'P2S_model.pt'} is not the P2S MLP state dict: {str(err).splitlines()[0]}") from None
        self.mapping.requires_grad_(False)
        psf = safe_numpy_load(_require(folder, "dictionary.npy"), key="dictionary.npy")
        if not isinstance(psf, dict) or not {"mu", "dictionary"} <= set(psf):
            raise ValueError(f"{folder / 'dictionary.npy'} must hold a dict with 'mu' and 'dictionary'")
        self.register_buffer("mu", torch.as_tensor(psf["mu"], dtype=torch.float32).reshape(1, 1, PSF_SIZE, PSF_SIZE))
        basis = torch.as_tensor(psf["dictionary"], dtype=torch.float32)[:NUM_BASIS]
        self.register_buffer("basis", basis.reshape(NUM_BASIS, 1, PSF_SIZE, PSF_SIZE))
        corr_file = _require(folder, f"R-corr_{corr}.npy")
        correlation = torch.as_tensor(safe_numpy_load(corr_file, key=corr_file.name), dtype=torch.float32)
        grid = math.isqrt(correlation.shape[0] // NUM_ZERNIKE)
        if correlation.shape != (grid * grid * NUM_ZERNIKE,) * 2:
            raise ValueError(f"{corr_file} must be a square [g*g*36, g*g*36] matrix, got {tuple(correlation.shape)}")
        self.grid = grid
        self.register_buffer("correlation", correlation)
        tilt_file = _require(folder, f"S_half-size_{self.img_size}-D_r0_{self.dr0:.4f}.npy")
        tilt = safe_numpy_load(tilt_file, key=tilt_file.name)
        if not isinstance(tilt, dict) or not {"s_half", "const"} <= set(tilt):
            raise ValueError(f"{tilt_file} must hold a dict with 's_half' and 'const'")
        s_half = torch.as_tensor(tilt["s_half"], dtype=torch.float32)
        if tuple(s_half.shape) != (2, self.img_size, self.img_size):
            raise ValueError(f"{tilt_file}: s_half is {tuple(s_half.shape)}, expected (2, {self.img_size}, {self.img_size})")
        self.register_buffer("s_half", s_half)
        self.tilt_const = float(tilt["const"])

    @torch.no_grad()
    def forward(self, images: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        b, c, h, w = images.shape
        n = self.img_size
        if (h, w) != (n, n):
            raise ValueError(f"P2SSimulator was built for {n}x{n} images (its S_half file), got {h}x{w}")
        device = images.device
        unit = (images.float() + 1) * 0.5  # the simulator works on [0, 1]
        padded = F.pad(unit.reshape(b * c, 1, n, n), (PSF_SIZE // 2,) * 4, mode="reflect")
        mean = F.conv2d(padded, self.mu)                       # [B*C, 1, N, N]
        blurred_basis = F.conv2d(padded, self.basis)           # [B*C, 100, N, N]
        out = []
        for i in range(b):
            z = torch.randn(self.grid * self.grid * NUM_ZERNIKE, 1, generator=generator, device=device)
            zernike = (self.correlation @ (math.sqrt(self.dr0 ** (5.0 / 3.0)) * z)).view(self.grid, self.grid, NUM_ZERNIKE)
            zernike = F.interpolate(zernike.permute(2, 0, 1)[None], size=(n, n), mode="bilinear", align_corners=False)
            weights = self.mapping(zernike[0].permute(1, 2, 0).reshape(n * n, NUM_ZERNIKE) * self.scale)
            weights = weights.view(n, n, NUM_BASIS).permute(2, 0, 1)  # [100, N, N]
            rows = slice(i * c, (i + 1) * c)
            blur = (weights[None] * blurred_basis[rows]).sum(1, keepdim=True) + mean[rows]  # [C, 1, N, N]
            shifts = []
            for _ in range(2):  # x then y
                noise = torch.randn(n, n, generator=generator, device=device)
                spectrum = torch.complex(self.s_half[0] * noise, self.s_half[1] * noise)
                shifts.append(torch.fft.ifft2(spectrum).real)
            pixel = torch.stack(torch.meshgrid(torch.arange(n, device=device), torch.arange(n, device=device),
                                               indexing="xy"), -1).float()
            flow = 2.0 * (pixel + torch.stack(shifts, -1) * self.tilt_const) / (n - 1) - 1.0
            warped = F.grid_sample(blur.reshape(1, c, n, n), flow[None], mode="bilinear", padding_mode="border",
                                   align_corners=True)  # matches the (N - 1) normalisation (module docstring)
            out.append(warped[0])
        return torch.stack(out).clamp(0, 1) * 2 - 1


def build_celebahq100(simulator: TurbulenceSimulator, inputs: Path, output: Path, count: int = 100, seed: int = 0,
                      size: Optional[int] = None) -> list[Path]:
    """The first ``count`` images of ``inputs`` (sorted) and their simulations in the ``paired_root`` layout
    (``output/target/<stem>.png``, ``output/input/<stem>.png``); returns the degraded files."""
    from datamodules.predict_inputs import expand_inputs, load_image_tensor
    from lightning_modules.components.predict_outputs import PredictionWriter

    files = expand_inputs(inputs, key="--input")[: int(count)]
    generator = torch.Generator().manual_seed(int(seed))
    clean_writer, degraded_writer = PredictionWriter(output / "target"), PredictionWriter(output / "input")
    written = []
    for path in files:
        image = load_image_tensor(path)
        if size is not None and tuple(image.shape[-2:]) != (size, size):
            image = F.interpolate(image[None], size=(size, size), mode="bicubic", align_corners=False, antialias=True)[0].clamp(-1, 1)
        degraded = simulator(image[None], generator=generator)[0]
        clean_writer.record(str(path), [clean_writer.save_image(image, path.stem)])
        written.append(degraded_writer.save_image(degraded, path.stem))
        degraded_writer.record(str(path), [written[-1]], seed=int(seed))
    return written


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assets", required=True, help="folder of the TurbulenceSim_P2S release files")
    parser.add_argument("--input", required=True, help="CelebA-HQ images (folder, files or a manifest)")
    parser.add_argument("--output", required=True, help="output folder (paired_root layout)")
    parser.add_argument("--count", type=int, default=100, help="first N images (CelebAHQ100: 100)")
    parser.add_argument("--size", type=int, default=512, help="image size N (the S_half file is per size)")
    parser.add_argument("--dr0", type=float, default=5.0, help="D / r0 (CelebAHQ100: 5)")
    parser.add_argument("--corr", type=float, default=-0.01, help="PSF correlation (CelebAHQ100: -0.01)")
    parser.add_argument("--scale", type=float, default=1.25, help="Zernike scale (the thesis's r_theta = 1.25)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    simulator = P2SSimulator(args.assets, args.size, args.dr0, args.corr, args.scale)
    files = build_celebahq100(simulator, Path(args.input), Path(args.output), args.count, args.seed, args.size)
    print(f"wrote {len(files)} simulated faces to {Path(args.output) / 'input'}")


if __name__ == "__main__":
    main()


__all__ = ["P2SMapping", "P2SSimulator", "TurbulenceSimulator", "build_celebahq100", "main"]
