"""DiFT's field tokenizer: views -> latent patch tokens with per-token coordinates (thesis 001 Ch. 4 §4.3.1).

A field ``f: M -> Y`` is observed as *views* (a video frame, a rendered camera view, the image
itself; §4.3.1 "View-wise Sampling"). Every view goes through a pluggable autoencoder
(:class:`LDMAutoencoder`, the LDM VAE of Rombach et al. from a local path or hub id; or
:class:`IdentityAutoencoder`, pixel space, Table 4.3's "resolution 1"), is cut into
``patch x patch`` latent patches (a token), and every token gets the coordinates of the metric
space of its modality (§4.4: R^2 image, R^3 video, R^6 camera, R^4 game):

* ``hw``: the patch centre in ``[-1, 1]^2``;
* ``frame``: the frame index of the view (video, game);
* ``camera``: the R^6 camera coordinate; **our choice** (the thesis names pose + intrinsics but
  no parametrisation, digest §3.8): the token's *camera ray* ``(o, d)`` with ``o`` the camera
  centre and ``d`` the unit world direction through the patch centre, computed from the
  camera-to-world pose and the intrinsics. Six numbers per token that fold both pose and
  intrinsics, invariant to how the pose matrix is written;
* ``action``: the one-hot action of the view (game), shared by its tokens;
* the view's diffusion timestep (Fig. 4.2d): enters through adaLN, see
  :mod:`lightning_modules.dift.transformer`.

**Our choice** for how coordinates are embedded (digest §3.8): NeRF-style Fourier features
``[x, sin(2^k pi x), cos(2^k pi x)]_{k < bands}`` of each continuous coordinate, one linear
layer per coordinate kind, *added* to the patch embedding (as DiT adds its position table).
Actions go through one linear layer on the one-hot vector. Tokens are ordered view-major
(``token = view * N + row * gw + col``), so the tokens of view ``v`` are ``[v N, (v+1) N)``.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Optional, Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "COORDINATE_KINDS", "IdentityAutoencoder", "LDMAutoencoder", "FieldTokenizer", "camera_rays",
    "fourier_features", "patch_centres",
]

#: Coordinate kinds a tokenizer can use and the batch keys each needs.
COORDINATE_KINDS: dict[str, tuple[str, ...]] = {
    "hw": (),
    "frame": ("frame_index",),
    "camera": ("camera", "intrinsics"),
    "action": ("actions",),
}
_RAW_SIZE = {"hw": 2, "frame": 1, "camera": 6}


class IdentityAutoencoder(nn.Module):
    """Pixel space ("resolution 1" of Table 4.3): encode and decode are the identity."""

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.latent_channels, self.downsample_factor = int(channels), 1

    def encode(self, images: Tensor) -> Tensor:
        return images

    def decode(self, latents: Tensor) -> Tensor:
        return latents


class LDMAutoencoder(nn.Module):
    """The LDM/SD KL-f8 VAE (diffusers ``AutoencoderKL``) from a local folder or hub id, frozen.

    ``encode`` returns the posterior mean times ``scaling_factor`` (the config's, 0.18215 for
    SD's VAE), ``decode`` undoes it; images in ``[-1, 1]``.
    """

    def __init__(self, path: str, subfolder: Optional[str] = None) -> None:
        super().__init__()
        from diffusers import AutoencoderKL

        local = Path(str(path)).expanduser()
        source = str(local) if local.exists() else str(path)
        try:
            self.vae = AutoencoderKL.from_pretrained(source, subfolder=subfolder)
        except (OSError, ValueError) as error:
            raise FileNotFoundError(f"model.autoencoder path {path!r}: cannot load an AutoencoderKL ({error})") from error
        self.vae.requires_grad_(False).eval()
        self.scaling = float(getattr(self.vae.config, "scaling_factor", 0.18215))
        self.latent_channels = int(self.vae.config.latent_channels)
        self.downsample_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)

    def train(self, mode: bool = True) -> "LDMAutoencoder":
        super().train(mode)
        self.vae.eval()  # always frozen
        return self

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        return self.vae.encode(images).latent_dist.mean * self.scaling

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        return self.vae.decode(latents / self.scaling).sample


def fourier_features(x: Tensor, bands: int) -> Tensor:
    """``[..., k] -> [..., k (1 + 2 bands)]``: ``x`` and ``sin/cos(2^j pi x)`` for ``j < bands``."""
    freqs = (2.0 ** torch.arange(bands, device=x.device, dtype=x.dtype)) * math.pi
    angles = x.unsqueeze(-1) * freqs
    return torch.cat([x, angles.sin().flatten(-2), angles.cos().flatten(-2)], dim=-1)


def patch_centres(gh: int, gw: int, device=None) -> Tensor:
    """``[gh * gw, 2]`` patch centres (row, col) in ``[-1, 1]`` (row-major)."""
    rows = (torch.arange(gh, device=device, dtype=torch.float32) + 0.5) / gh * 2 - 1
    cols = (torch.arange(gw, device=device, dtype=torch.float32) + 0.5) / gw * 2 - 1
    r, c = torch.meshgrid(rows, cols, indexing="ij")
    return torch.stack([r.reshape(-1), c.reshape(-1)], dim=-1)


def camera_rays(camera: Tensor, intrinsics: Tensor, gh: int, gw: int) -> Tensor:
    """The R^6 coordinate: per-patch ray ``(origin, unit direction)`` ``[..., gh * gw, 6]``.

    ``camera [..., 4, 4]`` camera-to-world (OpenCV axes: x right, y down, z forward, as the
    SRN/PixelNeRF ``pose/*.txt`` files); ``intrinsics [..., 3, 3]`` in *normalised* image units
    (``fx / W``, ``cx / W``, ``fy / H``, ``cy / H``) so they do not depend on the resolution.
    """
    if camera.shape[-2:] != (4, 4) or intrinsics.shape[-2:] != (3, 3):
        raise ValueError(f"camera must be [..., 4, 4] and intrinsics [..., 3, 3], got {tuple(camera.shape)} and {tuple(intrinsics.shape)}")
    v = (torch.arange(gh, device=camera.device, dtype=camera.dtype) + 0.5) / gh
    u = (torch.arange(gw, device=camera.device, dtype=camera.dtype) + 0.5) / gw
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    pix = torch.stack([uu.reshape(-1), vv.reshape(-1), torch.ones_like(uu).reshape(-1)], dim=-1)  # [N, 3]
    k_inv = torch.linalg.inv(intrinsics.float()).to(camera.dtype)
    dirs_cam = torch.einsum("...ij,nj->...ni", k_inv, pix)
    dirs = torch.einsum("...ij,...nj->...ni", camera[..., :3, :3], dirs_cam)
    dirs = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    origin = camera[..., :3, 3].unsqueeze(-2).expand_as(dirs)
    return torch.cat([origin, dirs], dim=-1)


class FieldTokenizer(nn.Module):
    """Latent views ``[B, V, C, h, w]`` <-> tokens ``[B, V * N, C p^2]`` and coordinate embeddings.

    Args:
        in_channels: latent channels of the autoencoder (4 for the LDM VAE, 3 in pixel space).
        patch_size: latent patch side (2: an f=8 VAE then gives the "resolution 16" of Table 4.3).
        hidden: transformer width the embeddings map to.
        coordinates: which coordinate kinds the modality has (:data:`COORDINATE_KINDS`).
        num_actions: size of the one-hot action vector (``action`` only).
        fourier_bands: Fourier frequencies per continuous coordinate.
        frame_scale: frame indices are divided by this before the Fourier features (the
            sliding window length, so a window spans about one unit).
    """

    def __init__(
        self,
        in_channels: int,
        patch_size: int,
        hidden: int,
        coordinates: Sequence[str] = ("hw",),
        num_actions: int = 0,
        fourier_bands: int = 8,
        frame_scale: float = 16.0,
    ) -> None:
        super().__init__()
        unknown = [c for c in coordinates if c not in COORDINATE_KINDS]
        if unknown:
            raise ValueError(f"unknown coordinate kind(s) {unknown}; valid: {list(COORDINATE_KINDS)}")
        if "action" in coordinates and num_actions < 1:
            raise ValueError("coordinates include 'action' but num_actions < 1")
        self.in_channels, self.patch_size, self.hidden = int(in_channels), int(patch_size), int(hidden)
        self.coordinates = tuple(coordinates)
        self.fourier_bands, self.frame_scale, self.num_actions = int(fourier_bands), float(frame_scale), int(num_actions)
        self.patch_embed = nn.Linear(self.token_features, hidden)
        self.coord_embed = nn.ModuleDict()
        for kind in self.coordinates:
            size = num_actions if kind == "action" else _RAW_SIZE[kind] * (1 + 2 * self.fourier_bands)
            self.coord_embed[kind] = nn.Linear(size, hidden)

    @property
    def token_features(self) -> int:
        return self.in_channels * self.patch_size**2

    # ------------------------------------------------------------------ patches
    def patchify(self, latents: Tensor) -> Tensor:
        """``[B, V, C, h, w] -> [B, V * N, C p^2]`` (view-major, then row-major patches)."""
        b, v, c, h, w = latents.shape
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f"latent views {h}x{w} are not divisible by patch_size {p}")
        x = latents.reshape(b, v, c, h // p, p, w // p, p).permute(0, 1, 3, 5, 2, 4, 6)
        return x.reshape(b, v * (h // p) * (w // p), c * p * p)

    def unpatchify(self, tokens: Tensor, views: int, h: int, w: int) -> Tensor:
        """Inverse of :meth:`patchify` for latent views of ``h x w``."""
        b = tokens.shape[0]
        p, c = self.patch_size, self.in_channels
        x = tokens.reshape(b, views, h // p, w // p, c, p, p).permute(0, 1, 4, 2, 5, 3, 6)
        return x.reshape(b, views, c, h, w)

    # ------------------------------------------------------------------ coordinates
    def check_coordinates(self, coords: Mapping[str, Tensor]) -> None:
        """One clear error when a coordinate the modality needs is missing from the batch."""
        for kind in self.coordinates:
            for key in COORDINATE_KINDS[kind]:
                if coords.get(key) is None:
                    raise KeyError(
                        f"DiFT tokenizer uses coordinate {kind!r} but the batch has no {key!r} "
                        f"(keys: {sorted(k for k, v in coords.items() if v is not None)})")

    def raw_coordinates(self, coords: Mapping[str, Tensor], b: int, v: int, gh: int, gw: int, device) -> dict[str, Tensor]:
        """The un-embedded per-token coordinates ``{kind: [B, V * N, k]}``."""
        self.check_coordinates(coords)
        n = gh * gw
        out: dict[str, Tensor] = {}
        for kind in self.coordinates:
            if kind == "hw":
                out[kind] = patch_centres(gh, gw, device).repeat(v, 1).unsqueeze(0).expand(b, -1, -1)
            elif kind == "frame":
                frames = coords["frame_index"].to(device).float().reshape(b, v, 1, 1)
                out[kind] = frames.expand(b, v, n, 1).reshape(b, v * n, 1)
            elif kind == "camera":
                rays = camera_rays(coords["camera"].to(device).float(), coords["intrinsics"].to(device).float(), gh, gw)
                out[kind] = rays.reshape(b, v * n, 6)
            else:
                actions = coords["actions"].to(device).float()
                if actions.shape[-1] != self.num_actions:
                    raise ValueError(f"actions have {actions.shape[-1]} classes, the tokenizer expects {self.num_actions}")
                out[kind] = actions.reshape(b, v, 1, -1).expand(b, v, n, -1).reshape(b, v * n, -1)
        return out

    def embed_coordinates(self, raw: Mapping[str, Tensor]) -> Tensor:
        total: Optional[Tensor] = None
        for kind in self.coordinates:
            value = raw[kind]
            if kind == "frame":
                value = value / self.frame_scale
            features = value if kind == "action" else fourier_features(value, self.fourier_bands)
            emb = self.coord_embed[kind](features.to(self.patch_embed.weight.dtype))
            total = emb if total is None else total + emb
        assert total is not None
        return total

    def forward(self, latents: Tensor, coords: Mapping[str, Tensor]) -> Tensor:
        """Embedded tokens ``[B, V * N, hidden]`` = patch embedding + coordinate embeddings."""
        b, v, _, h, w = latents.shape
        p = self.patch_size
        tokens = self.patch_embed(self.patchify(latents))
        raw = self.raw_coordinates(coords, b, v, h // p, w // p, latents.device)
        return tokens + self.embed_coordinates(raw) if raw else tokens
