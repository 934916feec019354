"""Paired-data generation of thesis 000, Ch. 5 (§5.2.2, §5.5.1): composable single-canvas pairs.

One module, two jobs:

* ``fit`` trains the **identity encoder** (the only learned part of the pipeline; own config
  ``configs/portrait_identity.yaml``, FFHQ): CLIP image tower (frozen) -> one transformer decoder
  layer with ``K = 2`` learned queries -> MLP -> ``2 x 768`` pseudo-words
  (:mod:`.identity`). [choice] Objective (the thesis defers to ELITE [279] and its supplement): SD's
  epsilon MSE on the FFHQ image with the frozen UNet / text encoder conditioned on
  ``"a photo of a person"`` with the pseudo-words inserted before ``person`` (FFHQ has no gender
  labels; pair generation uses the detected man / woman). Only the encoder trains.
* ``predict`` writes **pairs** (``configs/portrait_pairs.yaml``): for each identity image and edit
  direction, one 512 x 1024 canvas ``[x_A, x_B]`` is denoised in one run with the composed noise
  prediction of Eq. 5.2::

      eps_bar = s'_d eps~(z_t, {c_p, c_id}) + s'_a M'_a * eps~(z_t, {c_pa, c_id}) + s'_b M'_b * eps~(z_t, {c_pb, c_id})

  ``M'_a`` / ``M'_b`` the left / right half masks of the ``h x 2w`` latent, ``s'_d = 0.1``,
  ``s'_a = s'_b = 0.9``, each ``eps~`` an ordinary CFG prediction at 7.5 against the empty prompt
  (:func:`composed_pair_denoiser`, ``diffusion.guidance.MaskedComposition``). Prompts: §5.5.1
  (``datamodules.portrait_pairs.pair_prompts``), identity tokens before the gender word in all
  three. Pose: an OpenPose ControlNet whose conditioning image holds the same pose twice side by
  side (a pose drawn at random from the pool for each pair); the ControlNet acts in every pass.
  Sampler: Stochastic Karras VE, 20 steps (``diffusion.samplers.KarrasVESampler`` on
  ``geometric_grid``; [?] the thesis gives no sigma range: SD's table ends 0.029 -> 14.6, churn at
  the top clamped to the table). The canvas is decoded and split into ``x_A`` (left) and ``x_B``.

Outputs (``<run>/predictions/pairs/``): ``<identity>__<direction>_A.png``, ``..._B.png``, the
suite's ``manifest.json`` and ``pairs.json`` in the layout ``datamodules.portrait_pairs`` reads
(under several ranks, ranks > 0 write ``pairs.rank<r>.json``; the reader joins them).
Ablation switches (Fig. 5.3): ``use_identity`` (c), ``use_pose`` (b).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from datamodules.portrait_pairs import check_task, pair_prompts, resolve_direction
from diffusion.denoisers import unwrap_output
from diffusion.grids import geometric_grid
from diffusion.guidance import ClassifierFreeGuidance, MaskedComposition
from diffusion.paths import DiscreteDDPMPath
from diffusion.samplers import KarrasVESampler
from diffusion.time_samplers import DiscreteTimeSampler
from lightning_modules.components.safe_load import safe_torch_load
from lightning_modules.components.sd_parts import ClipImageEncoder, TextEncoder, build_unet, build_vae, vae_factor
from lightning_modules.diffusion_module import DiffusionModule

from .identity import IdentityEncoder, encode_with_pseudo_words, gender_token_ids

log = logging.getLogger(__name__)

SD_SOURCE = ("the base SD model of the task (thesis §5.5.1: Realistic Vision v4.0 for costume, e.g. "
             "huggingface.co/SG161222/Realistic_Vision_V4.0_noVAE; a Realistic Vision v1.3 fine-tuned on 400 'Samaritan "
             "3D Cartoon' images for expressions) in diffusers layout")
CONTROLNET_SOURCE = "an SD-1.5 OpenPose ControlNet in diffusers layout, e.g. huggingface.co/lllyasviel/sd-controlnet-openpose"
CLIP_SOURCE = "the identity encoder's CLIP image tower, e.g. huggingface.co/openai/clip-vit-large-patch14 (ELITE's)"
IDENTITY_PROMPT = "a photo of a person"


def half_masks(height: int, width: int, device: Any = None) -> tuple[Tensor, Tensor]:
    """``(M'_a, M'_b)`` ``[1, 1, h, 2w]``: ones on the left / right half of an ``h x width`` latent canvas."""
    if width % 2:
        raise ValueError(f"the pair canvas needs an even latent width, got {width}")
    left = torch.zeros(1, 1, height, width, device=device)
    left[..., : width // 2] = 1.0
    return left, 1.0 - left


def composed_pair_denoiser(net: Any, cond_p: Mapping[str, Tensor], cond_a: Mapping[str, Tensor],
                           cond_b: Mapping[str, Tensor], null: Mapping[str, Tensor], latent_hw: tuple[int, int],
                           weights: Sequence[float] = (0.1, 0.9, 0.9), guidance_scale: float = 7.5) -> MaskedComposition:
    """Eq. 5.2 over ``net(x_t, t, cond)``: three CFG predictions (text vs ``null``), weighted and half-masked."""
    m_a, m_b = half_masks(*latent_hw, device=cond_p["text"].device)

    def cfg(cond: Mapping[str, Tensor]) -> ClassifierFreeGuidance:
        return ClassifierFreeGuidance(net, "epsilon", cond=dict(cond), null_cond={"text": null["text"]}, scale=guidance_scale)

    s_d, s_a, s_b = (float(w) for w in weights)
    return MaskedComposition([(s_d, None, cfg(cond_p)), (s_a, m_a, cfg(cond_a)), (s_b, m_b, cfg(cond_b))])


class PortraitPairGenerator(DiffusionModule):
    """Identity-encoder training (``fit``) and Eq. 5.2 pair generation (``predict``); module docstring.

    Args:
        sd_path: the base SD model (diffusers folder or hub id); ``null``: random parts from ``*_config``.
        controlnet_path: OpenPose ControlNet folder; ``null``: a random ControlNet built from the UNet
            (``controlnet_conditioning_channels`` sets its pose-embedding widths; its downsampling must
            equal the VAE factor).
        clip_path / clip_config: the identity encoder's CLIP image tower.
        identity_checkpoint: a ``last.ckpt`` of ``portrait_identity`` (its ``identity_encoder.*`` weights
            are loaded; ``null``: the encoder as initialised / trained in this run).
        num_identity_words: ``K`` (2); ``identity_heads`` / ``identity_hidden``: decoder heads and MLP width.
        use_identity, use_pose: Fig. 5.3's switches.
        task: ``costume`` / ``expression`` (prompt templates and directions).
        weights: ``(s'_d, s'_a, s'_b)`` = (0.1, 0.9, 0.9); ``guidance_scale``: 7.5.
        num_sampling_steps: Karras VE steps (20); ``sigma_min`` / ``sigma_max``: its range (``null``: the table's).
        churn, s_tmin, s_tmax, s_noise: the Karras VE churn settings (diffusers' defaults 80 / 0.05 / 50 / 1.007).
        image_size: ``H = W`` of each half (512).
    """

    def __init__(
        self,
        sd_path: Optional[str] = None,
        unet_config: Optional[dict] = None,
        vae_config: Optional[dict] = None,
        text_encoder_config: Optional[dict] = None,
        controlnet_path: Optional[str] = None,
        controlnet_conditioning_channels: Sequence[int] = (16, 32, 96, 256),
        clip_path: Optional[str] = None,
        clip_config: Optional[dict] = None,
        identity_checkpoint: Optional[str] = None,
        num_identity_words: int = 2,
        identity_heads: int = 8,
        identity_hidden: int = 1024,
        use_identity: bool = True,
        use_pose: bool = True,
        task: str = "costume",
        weights: Sequence[float] = (0.1, 0.9, 0.9),
        guidance_scale: float = 7.5,
        num_sampling_steps: int = 20,
        sigma_min: Optional[float] = None,
        sigma_max: Optional[float] = None,
        churn: float = 80.0,
        s_tmin: float = 0.05,
        s_tmax: float = 50.0,
        s_noise: float = 1.007,
        image_size: int = 512,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        val_seed: int = 1234,
        predict_seed: int = 0,
    ) -> None:
        check_task(task)
        if len(weights) != 3:
            raise ValueError(f"weights are (s'_d, s'_a, s'_b), got {list(weights)}")
        key = "model.init_args.sd_path"
        unet = build_unet(sd_path, unet_config, key, source=SD_SOURCE)
        vae = build_vae(sd_path, vae_config, key, source=SD_SOURCE)
        text_encoder = TextEncoder(sd_path, text_encoder_config, key, source=SD_SOURCE)
        factor = vae_factor(vae)
        multiple = factor * 2 ** (len(unet.config.block_out_channels) - 1)
        if image_size % multiple:
            raise ValueError(f"image_size {image_size} must be a multiple of {multiple}")
        controlnet = self._build_controlnet(controlnet_path, unet, controlnet_conditioning_channels, factor) if use_pose else None
        clip = ClipImageEncoder(clip_path, clip_config, "model.init_args.clip_path", feature="tokens", source=CLIP_SOURCE)
        encoder = IdentityEncoder(clip.dim, text_encoder.model.get_input_embeddings().embedding_dim, num_identity_words,
                                  identity_heads, identity_hidden)
        path = DiscreteDDPMPath("scaled_linear", 0.00085, 0.012, 1000)
        latent = image_size // factor
        super().__init__(
            network=encoder, path=path, prediction_type="epsilon", time_sampler=DiscreteTimeSampler(path),
            sampler="ddim", num_sampling_steps=num_sampling_steps,
            sample_shape=(int(vae.config.latent_channels), latent, 2 * latent), optimizer=optimizer,
            val_seed=val_seed, predict_seed=predict_seed,
        )
        self.sampler = KarrasVESampler(churn=churn, s_tmin=s_tmin, s_tmax=s_tmax, s_noise=s_noise)
        self.register_frozen("unet", unet)
        self.register_frozen("vae", vae)
        self.register_frozen("text_encoder", text_encoder)
        self.register_frozen("clip_encoder", clip)
        if controlnet is not None:
            self.register_frozen("controlnet", controlnet)
        else:
            self.controlnet = None
        if identity_checkpoint is not None:
            self._load_identity(identity_checkpoint)
        self.latent_scale = float(getattr(vae.config, "scaling_factor", 0.18215))
        self.task, self.image_size, self.latent_size = task, int(image_size), latent
        self.use_identity, self.use_pose = bool(use_identity), bool(use_pose)
        self.weights = tuple(float(w) for w in weights)
        self.pair_guidance = float(guidance_scale)
        self.sigma_range = (sigma_min, sigma_max)
        self.gender_ids = gender_token_ids(text_encoder)
        # predict needs no --ckpt_path when every part comes from pretrained files (cli.py's random-weights check)
        self.loads_own_weights = sd_path is not None and (identity_checkpoint is not None or not use_identity)
        self._pairs: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ construction helpers
    @staticmethod
    def _build_controlnet(path: Optional[str], unet: nn.Module, channels: Sequence[int], factor: int) -> nn.Module:
        from diffusers import ControlNetModel

        from lightning_modules.components.pretrained_paths import build_diffusers_model

        if path is not None:
            return build_diffusers_model(ControlNetModel, key="model.init_args.controlnet_path", path=path,
                                         source=CONTROLNET_SOURCE)
        if 2 ** (len(channels) - 1) != factor:
            raise ValueError(f"controlnet_conditioning_channels {list(channels)} downsample by {2 ** (len(channels) - 1)}, "
                             f"the VAE by {factor}: give {len(bin(factor)) - 2} widths")
        return ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=tuple(int(c) for c in channels))

    def _load_identity(self, checkpoint: str) -> None:
        ckpt = Path(checkpoint).expanduser()
        if not ckpt.is_file():
            raise FileNotFoundError(f"model.init_args.identity_checkpoint: {ckpt} not found (a last.ckpt of "
                                    "`cli.py fit -c configs/portrait_identity.yaml`)")
        state = safe_torch_load(ckpt, key="model.init_args.identity_checkpoint")
        state = state.get("state_dict", state)
        own = {k[len("network."):]: v for k, v in state.items() if k.startswith("network.")}
        if not own:
            raise ValueError(f"model.init_args.identity_checkpoint: {ckpt} holds no 'network.*' (identity encoder) weights")
        self.network.load_state_dict(own)

    # ------------------------------------------------------------------ parts
    @torch.no_grad()
    def encode(self, images: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        dist = self.vae.encode(images.to(self.vae.dtype)).latent_dist
        noise = torch.randn(dist.mean.shape, generator=generator, device=dist.mean.device, dtype=dist.mean.dtype)
        return ((dist.mean + dist.std * noise) * self.latent_scale).float()

    def decode(self, latents: Tensor) -> Tensor:
        return self.vae.decode((latents / self.latent_scale).to(self.vae.dtype)).sample.float()

    def identity_tokens(self, images: Tensor) -> Tensor:
        """``c_id`` ``[B, K, D]`` from identity images in ``[-1, 1]``."""
        return self.network(self.clip_encoder(images))

    def text(self, prompts: Sequence[str], id_tokens: Optional[Tensor]) -> Tensor:
        return encode_with_pseudo_words(self.text_encoder, prompts, id_tokens, self.gender_ids)

    def _net(self, x_t: Tensor, t: Tensor, cond: Mapping[str, Tensor]) -> Tensor:
        k = self.path.network_time(t)
        extra: dict[str, Any] = {}
        if self.controlnet is not None and "pose" in cond:
            down, mid = self.controlnet(x_t, k, encoder_hidden_states=cond["text"], controlnet_cond=cond["pose"],
                                        return_dict=False)
            extra = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
        return unwrap_output(self.unet(x_t, k, encoder_hidden_states=cond["text"], **extra))

    # ------------------------------------------------------------------ identity-encoder training
    def identity_loss(self, images: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        z0 = self.encode(images, generator)
        b = z0.shape[0]
        context = self.text([IDENTITY_PROMPT] * b, self.identity_tokens(images))
        t = self.time_sampler(b, z0.device, generator=generator).to(z0.dtype)
        noise = torch.randn(z0.shape, generator=generator, device=z0.device, dtype=z0.dtype)
        pred = unwrap_output(self.unet(self.path.add_noise(z0, noise, t), self.path.network_time(t), encoder_hidden_states=context))
        return (pred.float() - noise.float()).pow(2).flatten(1).mean(1)

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        loss = self.identity_loss(batch["image"]).mean()
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["image"].shape[0])
        return loss

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        g = torch.Generator(device=self.device).manual_seed(self.val_seed + batch_idx)
        loss = self.identity_loss(batch["image"], g).mean()
        self.log("val/loss", loss, prog_bar=True, batch_size=batch["image"].shape[0], sync_dist=True)
        return loss

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        g = torch.Generator(device=self.device).manual_seed(self.val_seed + batch_idx)
        loss = self.identity_loss(batch["image"], g).mean()
        self.log("test/loss", loss, batch_size=batch["image"].shape[0], sync_dist=True)
        return loss

    # ------------------------------------------------------------------ pair generation
    @torch.no_grad()
    def generate(self, identity: Tensor, pose: Optional[Tensor], directions: Sequence[str], genders: Sequence[str],
                 *, num_steps: Optional[int] = None, generator: Optional[torch.Generator] = None
                 ) -> tuple[Tensor, Tensor, list[tuple[str, str, str]]]:
        """``(x_A, x_B, [(p, p_a, p_b)])`` for one pair per identity image (Eq. 5.2, one canvas each)."""
        b = identity.shape[0]
        prompts = [pair_prompts(self.task, d, g) for d, g in zip(directions, genders)]
        tokens = self.identity_tokens(identity) if self.use_identity else None
        cond_p = {"text": self.text([p[0] for p in prompts], tokens)}
        cond_a = {"text": self.text([p[1] for p in prompts], tokens)}
        cond_b = {"text": self.text([p[2] for p in prompts], tokens)}
        null = {"text": self.text([""], None)}
        if self.controlnet is not None:
            if pose is None:
                raise ValueError("use_pose is true but the batch has no 'pose' image")
            canvas_pose = ((torch.cat([pose, pose], dim=-1) + 1) / 2).clamp(0, 1).to(identity.device)  # [0, 1] for ControlNet
            for c in (cond_p, cond_a, cond_b):
                c["pose"] = canvas_pose
        den = composed_pair_denoiser(self._net, cond_p, cond_a, cond_b, null, self.sample_shape[1:], self.weights,
                                     self.pair_guidance)
        grid = geometric_grid(self.path, int(num_steps or self.num_sampling_steps), *self.sigma_range).to(identity.device)
        noise = torch.randn((b, *self.sample_shape), generator=generator, device=identity.device)
        latents = self.sampler.sample(den, self.path, noise, grid, generator=generator)
        canvas = self.decode(latents).clamp(-1, 1)
        half = canvas.shape[-1] // 2
        return canvas[..., :half], canvas[..., half:], prompts

    def sample(self, num_samples: int, **kwargs: Any) -> Tensor:  # type: ignore[override]
        raise NotImplementedError("the pair generator needs identity images and poses: use generate() or cli.py predict")

    def on_predict_start(self) -> None:
        self._pairs = []

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        """One pair per request (identity image x direction); writes the pair images and ``pairs.json``."""
        generator = torch.Generator(device=self.device).manual_seed(self.predict_seed + batch_idx)
        directions = [resolve_direction(self.task, d) for d in batch["direction"]]
        x_a, x_b, prompts = self.generate(batch["identity"].to(self.device), batch.get("pose"), directions,
                                          list(batch["gender"]), generator=generator)
        writer = self.prediction_writer("pairs", self.predict_settings())
        for row, name in enumerate(batch["name"]):
            path_a = writer.save_image(x_a[row], str(name), f"{directions[row]}_A")
            path_b = writer.save_image(x_b[row], str(name), f"{directions[row]}_B")
            p, p_a, p_b = prompts[row]
            writer.record(batch["path"][row] if "path" in batch else str(name), [path_a, path_b], direction=directions[row],
                          p=p, p_a=p_a, p_b=p_b, pose=batch["pose_path"][row] if "pose_path" in batch else None)
            self._pairs.append({"x_A": path_a.name, "x_B": path_b.name, "direction": directions[row], "p": p,
                                "p_a": p_a, "p_b": p_b, "identity": str(batch["path"][row]) if "path" in batch else str(name),
                                "subset": "ffhq_identity" if self.use_identity else "described"})
        rank = int(getattr(getattr(self, "_trainer", None), "global_rank", 0) or 0)  # under several ranks each writes its share (as manifest.json)
        name = "pairs.json" if rank == 0 else f"pairs.rank{rank}.json"
        (writer.folder / name).write_text(json.dumps({"task": self.task, "pairs": self._pairs}, indent=1))

    def predict_settings(self) -> dict[str, Any]:
        return {"module": type(self).__name__, "sampler": "karras_ve", "num_sampling_steps": self.num_sampling_steps,
                "weights": list(self.weights), "guidance_scale": self.pair_guidance, "use_identity": self.use_identity,
                "use_pose": self.use_pose, "task": self.task, "predict_seed": self.predict_seed}


#: fit-time name of the same module (``configs/portrait_identity.yaml``): the identity encoder's training.
IdentityEncoderTraining = PortraitPairGenerator

__all__ = ["IDENTITY_PROMPT", "IdentityEncoderTraining", "PortraitPairGenerator", "composed_pair_denoiser", "half_masks"]
