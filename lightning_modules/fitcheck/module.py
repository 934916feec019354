"""``FitCheckVideoModule``: Generating Fit Check Videos with a Handheld Camera (thesis 000, Ch. 4).

Seed 000 lines 670-1171 (main text and supplement); digest ``papers/000_ch2-4.md`` §3.

What this module implements (each item cites the thesis section):

* **Model** (§4.3, digest §3.2): MimicMotion [327] on SVD img2vid-xt [20]: the spatio-temporal
  UNet (conv_in widened from 8 to 16 channels for ``[noisy | front | back | background]``
  latents, new channels zero-initialised, [GAP]), MimicMotion's PoseNet added after conv_in,
  frozen CLIP image encoder with the front and back embeddings **summed** (``f_im``), frozen VAE
  (``AutoencoderKLTemporalDecoder`` or ``AutoencoderKL``).
* **Frame generation** (FG, §4.3.1): the clip is ``[I'_fr, I'_bk, V'_{1:T}]`` with poses
  ``[P'_fr, P'_bk, P'_{1:T}]``; the two reference frames are generated as frames 1 and 2 and
  dropped at inference. ``frame_generation`` selects ``front_back`` (the paper), ``front``
  (the naive baseline: only the front image as frame 1) or ``none``.
* **Multi-reference attention** (MRA, §4.3.2): parameter-free, on every spatial self-attention.
* **Loss** (§4.3.3): EDM [127] with SVD's v-parametrised preconditioning (the core's
  ``EDMPath`` + ``v_prediction``), log-normal sigma (``p_mean``/``p_std``, [GAP]: Ch. 4 gives no
  values; SVD fine-tuning's 0.7 / 1.6 are the default), EDM weight
  ``lambda(sigma) = (sigma^2+1)/sigma^2`` on the denoised-data error; an optional per-pixel
  weight map (``batch["loss_weight"]``: 2 inside shadow / reflection masks in fine-tuning,
  §4.3.4) is area-downsampled to the latent grid. Every condition (``f_v``, ``f_im``, ``f_p``) is
  dropped (zeroed) independently with probability ``cond_dropout`` = 0.1.
* **Trainable sets**: ``trainable="unet_pose"`` (main stage: UNet + PoseNet), ``"spatial"``
  (image fine-tuning: every UNet parameter outside the temporal layers; PoseNet frozen unless
  ``spatial_includes_pose_net``, [GAP]) or ``"full"`` (ablation "Ours-FT + Full FT").
* **Inference** (§4.4): EDM Euler (``EDMSampler(second_order=False)``, Karras sigmas
  0.002..700, 25 steps), classifier-free guidance 2 (the null pass zeroes ``f_v`` and ``f_im``
  and keeps the pose, as MimicMotion's pipeline does [EXT]; ``guidance_null="all"`` zeroes the
  pose too, [GAP] for the combination), progressive latent fusion
  (:class:`diffusion.video_fusion.ProgressiveLatentFusion`, overlap 4, references prefixed,
  MimicMotion's triangular weights over the whole window; ``fusion_prefix_weighting="one"``
  weights the references 1), guidance applied after fusion so a ramp spans the whole video.

``added_time_ids`` = (fps - 1, motion bucket, noise augmentation) is ``(6, 127, 0.0)`` ([GAP],
MimicMotion's inference defaults [EXT]); the conditioning images are VAE-encoded without the
scaling factor and the target frames with it (SVD's convention [EXT]).
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from diffusion.paths import EDMPath
from diffusion.predictions import to_data_and_noise
from diffusion.samplers import EDMSampler
from diffusion.time_samplers import EDMLogNormalTimeSampler
from diffusion.video_fusion import ProgressiveLatentFusion
from diffusion.weighting import EDMWeighting
from datamodules.predict_inputs import restore_from_canvas
from lightning_modules.components.predict_outputs import names_of
from lightning_modules.fitcheck.pretrained import build_part, load_state_dict_file
from lightning_modules.diffusion_module import DiffusionModule
from lightning_modules.fitcheck.network import FitCheckNetwork
from lightning_modules.fitcheck.pose_net import PoseNet
from lightning_modules.fitcheck.released import MIMICMOTION_SOURCE, load_mimicmotion  # noqa: F401 (re-export)

log = logging.getLogger(__name__)

FRAME_GENERATION = ("front_back", "front", "none")
TRAINABLE = ("unet_pose", "spatial", "full")
GUIDANCE_NULL = ("keep_pose", "all")
SVD_SOURCE = "https://huggingface.co/stabilityai/stable-video-diffusion-img2vid-xt-1-1 (gated; unet/, vae/, image_encoder/)"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

#: SVD img2vid-xt's UNet (diffusers ``unet/config.json`` [EXT]); the full-size random-init default.
SVD_UNET_CONFIG: dict[str, Any] = {
    "sample_size": 96,
    "in_channels": 8,
    "out_channels": 4,
    "down_block_types": [
        "CrossAttnDownBlockSpatioTemporal",
        "CrossAttnDownBlockSpatioTemporal",
        "CrossAttnDownBlockSpatioTemporal",
        "DownBlockSpatioTemporal",
    ],
    "up_block_types": [
        "UpBlockSpatioTemporal",
        "CrossAttnUpBlockSpatioTemporal",
        "CrossAttnUpBlockSpatioTemporal",
        "CrossAttnUpBlockSpatioTemporal",
    ],
    "block_out_channels": [320, 640, 1280, 1280],
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 768,
    "layers_per_block": 2,
    "cross_attention_dim": 1024,
    "transformer_layers_per_block": 1,
    "num_attention_heads": [5, 10, 20, 20],
    "num_frames": 25,
}


class FitCheckVideoModule(DiffusionModule):
    """Fit-check video diffusion (thesis 000, Ch. 4); see the module docstring.

    Args:
        pretrained_svd: local folder (or cached hub id) of SVD img2vid-xt in diffusers layout
            (``unet/``, ``vae/``, ``image_encoder/``); ``None`` builds from the config dicts.
        mimicmotion_checkpoint: ``MimicMotion_1.pth`` (``unet.*`` and ``pose_net.*`` tensors),
            loaded over the SVD UNet before conv_in is widened (`fitcheck/released.py`; also the
            attribute ``released_checkpoint`` that results rows record); ``None`` skips it.
        init_checkpoint: a Lightning checkpoint of this module to start from (the image
            fine-tuning stage starts from the main stage's ``last.ckpt``).
        unet_config / vae_config / image_encoder_config: random-init configs used when
            ``pretrained_svd`` is null (``image_encoder_config`` is a ``CLIPVisionConfig`` dict).
        vae_class: ``"AutoencoderKLTemporalDecoder"`` (SVD) or ``"AutoencoderKL"``.
        pose_net_config: :class:`PoseNet` keyword arguments (``out_channels`` is the UNet's first width).
        in_channels: UNet input channels after widening (4 noisy + 12 reference latents).
        frame_generation / multi_reference_attention: the paper's two additions (see docstring).
        reference_net: Table 4.1's "Naive + RefNet" ablation: a trainable UNet copy (Animate Anyone's
            ReferenceNet) feeding the front / back features into the spatial self-attention
            (:mod:`lightning_modules.fitcheck.reference_net`); needs ``multi_reference_attention: false``.
        cond_dropout: per-condition drop probability (0.1).
        p_mean / p_std / sigma_min / sigma_max: EDM noise distribution and sampling range.
        trainable: ``"unet_pose"``, ``"spatial"`` or ``"full"``.
        spatial_includes_pose_net: with ``trainable="spatial"``, also train the PoseNet.
        added_time_ids: SVD's (fps - 1, motion bucket id, noise augmentation strength).
        num_sampling_steps / guidance_scale: 25 / 2 (a ``[min, max]`` list is a per-frame ramp).
        window / overlap: frames per network call at inference (references included) and the
            overlap of progressive latent fusion (4).
        decode_chunk_size: frames per VAE call.
        fps: frame rate of written MP4s (the training videos are 30 fps subsampled by 4).
        gradient_checkpointing: recompute UNet activations in backward (memory at 1024x576, [GAP]).
        guidance_null: the CFG null pass: ``"keep_pose"`` (MimicMotion's pipeline: references
            and CLIP embedding zeroed, pose kept; the pretrained model's convention) or ``"all"``
            (the pose zeroed too, every dropped condition at once).
        fusion_prefix_weighting: ``"triangular"`` (MimicMotion: one triangle over each window,
            reference positions included) or ``"one"`` (reference frames weighted 1 per window).
        face_refinement_command: optional post-process of ``predict`` (§4.2.1: FaceFusion [50] with
            the front selfie as the reference; never used for the metrics): an argv list run once
            per video with ``{source}`` (front selfie file), ``{target}`` (the generated MP4) and
            ``{output}`` (``<name>__face_refined.mp4``) filled in, e.g. ``[python, facefusion.py,
            headless-run, --source-paths, "{source}", --target-path, "{target}", --output-path, "{output}"]``.
    """

    def __init__(
        self,
        pretrained_svd: Optional[str] = None,
        mimicmotion_checkpoint: Optional[str] = None,
        init_checkpoint: Optional[str] = None,
        unet_config: Optional[dict] = None,
        vae_config: Optional[dict] = None,
        image_encoder_config: Optional[dict] = None,
        vae_class: str = "AutoencoderKLTemporalDecoder",
        pose_net_config: Optional[dict] = None,
        in_channels: int = 16,
        frame_generation: str = "front_back",
        multi_reference_attention: bool = True,
        reference_net: bool = False,
        cond_dropout: float = 0.1,
        p_mean: float = 0.7,
        p_std: float = 1.6,
        sigma_min: float = 0.002,
        sigma_max: float = 700.0,
        trainable: str = "unet_pose",
        spatial_includes_pose_net: bool = False,
        added_time_ids: Sequence[float] = (6.0, 127.0, 0.0),
        num_sampling_steps: int = 25,
        guidance_scale: float | list[float] = 2.0,
        window: int = 8,
        overlap: int = 4,
        decode_chunk_size: int = 8,
        fps: float = 7.5,
        gradient_checkpointing: bool = False,
        guidance_null: str = "keep_pose",
        fusion_prefix_weighting: str = "triangular",
        face_refinement_command: Optional[list[str]] = None,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: Optional[LRSchedulerCallable] = None,
        val_seed: int = 1234,
        predict_seed: int = 0,
    ) -> None:
        for key, value, choices in (
            ("frame_generation", frame_generation, FRAME_GENERATION),
            ("trainable", trainable, TRAINABLE),
            ("vae_class", vae_class, ("AutoencoderKLTemporalDecoder", "AutoencoderKL")),
            ("guidance_null", guidance_null, GUIDANCE_NULL),
            ("fusion_prefix_weighting", fusion_prefix_weighting, ("triangular", "one")),
        ):
            if value not in choices:
                raise ValueError(f"model.init_args.{key}={value!r} is not one of {list(choices)}")
        if not 0.0 <= cond_dropout < 1.0:
            raise ValueError(f"cond_dropout must be in [0, 1), got {cond_dropout}")
        unet, vae, image_encoder = self._build_pretrained_parts(
            pretrained_svd, unet_config, vae_config, image_encoder_config, vae_class
        )
        pose_kwargs = dict(pose_net_config or {})
        pose_kwargs.setdefault("out_channels", unet.config.block_out_channels[0])
        pose_net = PoseNet(**pose_kwargs)
        if mimicmotion_checkpoint:
            load_mimicmotion(unet, pose_net, mimicmotion_checkpoint)
        num_references = {"front_back": 2, "front": 1, "none": 0}[frame_generation]
        references = (0, 1) if frame_generation == "front_back" else (0, 0)
        if gradient_checkpointing:
            unet.enable_gradient_checkpointing()
        network = FitCheckNetwork(unet, pose_net, in_channels, multi_reference_attention, references,
                                  reference_net=reference_net, reference_c_noise=0.25 * math.log(sigma_min))
        path = EDMPath(sigma_min=sigma_min, sigma_max=sigma_max, sigma_data=1.0)
        super().__init__(
            network=network,
            path=path,
            prediction_type="v_prediction",
            time_sampler=EDMLogNormalTimeSampler(path, p_mean, p_std),
            loss_weighting=EDMWeighting(),
            sampler="edm",
            num_sampling_steps=num_sampling_steps,
            grid="karras",
            label_dropout=0.0,
            guidance_scale=1.0,
            sample_shape=None,
            optimizer=optimizer,
            lr_scheduler=lr_scheduler,
            val_seed=val_seed,
            predict_seed=predict_seed,
        )
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        # issue 29: the released weights this module starts from; results rows record it (run_provenance)
        self.released_checkpoint = mimicmotion_checkpoint or None
        self.sampler = EDMSampler(second_order=False)  # Euler (EDM) scheduler, §4.4
        self.sampler.name = "edm_euler"
        self.register_frozen("vae", vae)
        self.register_frozen("image_encoder", image_encoder)
        self.frame_generation = frame_generation
        self.num_references = num_references
        self.cond_dropout = float(cond_dropout)
        self.trainable = trainable
        self.fitcheck_guidance = tuple(guidance_scale) if isinstance(guidance_scale, (list, tuple)) else float(guidance_scale)
        self.window, self.overlap = int(window), int(overlap)
        self.guidance_null, self.fusion_prefix_weighting = guidance_null, fusion_prefix_weighting
        self.face_refinement_command = list(face_refinement_command) if face_refinement_command else None
        self.decode_chunk_size = int(decode_chunk_size)
        self.fps = float(fps)
        self.register_buffer("added_time_ids", torch.tensor(list(added_time_ids), dtype=torch.float32), persistent=False)
        self._select_trainable(trainable, spatial_includes_pose_net)
        if init_checkpoint:
            self._load_init_checkpoint(init_checkpoint)

    # ------------------------------------------------------------------ building
    @staticmethod
    def _build_pretrained_parts(pretrained, unet_config, vae_config, image_encoder_config, vae_class):
        import diffusers
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

        key = "model.init_args.pretrained_svd"
        unet = build_part(
            diffusers.UNetSpatioTemporalConditionModel, key, pretrained, unet_config or SVD_UNET_CONFIG,
            subfolder="unet", expected=("config.json",), source=SVD_SOURCE,
        )
        vae = build_part(
            getattr(diffusers, vae_class), key, pretrained, vae_config,
            subfolder="vae", expected=("config.json",), source=SVD_SOURCE,
        )
        image_encoder = build_part(
            CLIPVisionModelWithProjection, key, pretrained, image_encoder_config,
            subfolder="image_encoder", expected=("config.json",), source=SVD_SOURCE, config_class=CLIPVisionConfig,
        )
        return unet, vae, image_encoder

    def _select_trainable(self, trainable: str, spatial_includes_pose_net: bool) -> None:
        self.network.requires_grad_(True)
        if trainable == "spatial":
            for _, parameter in self.network.temporal_parameters():
                parameter.requires_grad_(False)
            if not spatial_includes_pose_net:
                self.network.pose_net.requires_grad_(False)

    def _load_init_checkpoint(self, path: str) -> None:
        state = load_state_dict_file(
            "model.init_args.init_checkpoint", path, "a previous `cli.py fit --config fitcheck.yaml` run (last.ckpt)"
        )
        network = {k[len("network."):]: v for k, v in state.items() if k.startswith("network.")}
        if not network:
            raise ValueError(f"model.init_args.init_checkpoint={path} holds no 'network.*' weights")
        missing, unexpected = self.network.load_state_dict(network, strict=False)
        if missing or unexpected:
            raise RuntimeError(f"init_checkpoint {path} does not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")
        log.info("loaded %d network tensors from %s", len(network), path)

    # ------------------------------------------------------------------ encoders
    @property
    def latent_scale(self) -> float:
        return float(getattr(self.vae.config, "scaling_factor", 0.18215))

    @torch.no_grad()
    def vae_encode(self, images: Tensor, scale: bool = True) -> Tensor:
        """``[..., 3, H, W]`` in [-1, 1] -> latent modes ``[..., 4, h, w]`` (times the scaling factor)."""
        lead = images.shape[:-3]
        flat = images.reshape(-1, *images.shape[-3:]).to(self.vae.dtype)
        chunks = [self.vae.encode(c).latent_dist.mode() for c in flat.split(self.decode_chunk_size)]
        latents = torch.cat(chunks).float()
        if scale:
            latents = latents * self.latent_scale
        return latents.reshape(*lead, *latents.shape[1:])

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        """``[B, F, 4, h, w]`` scaled latents -> frames ``[B, F, 3, H, W]`` in [-1, 1]."""
        batch, frames = latents.shape[:2]
        flat = (latents / self.latent_scale).flatten(0, 1).to(self.vae.dtype)
        outs = []
        for chunk in flat.split(self.decode_chunk_size):
            if type(self.vae).__name__ == "AutoencoderKLTemporalDecoder":
                outs.append(self.vae.decode(chunk, num_frames=chunk.shape[0]).sample)
            else:
                outs.append(self.vae.decode(chunk).sample)
        return torch.cat(outs).float().clamp(-1, 1).reshape(batch, frames, *outs[0].shape[1:])

    @torch.no_grad()
    def clip_embed(self, images: Tensor) -> Tensor:
        """CLIP image embeddings ``[B, D]`` of images in [-1, 1] (resized to the encoder's size)."""
        size = int(self.image_encoder.config.image_size)
        x = F.interpolate(images.float(), size=(size, size), mode="bicubic", align_corners=False, antialias=True)
        x = ((x + 1) / 2).clamp(0, 1)
        mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
        x = ((x - mean) / std).to(self.image_encoder.dtype)
        return self.image_encoder(pixel_values=x).image_embeds.float()

    # ------------------------------------------------------------------ batches -> conditions
    def compose_clip(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Frames and poses of the supervised clip: ``[I'_fr, I'_bk, V'_{1:T}]`` under FG (§4.3.1)."""
        video, poses = batch["video"], batch["pose"]
        heads, pose_heads = [], []
        if self.num_references >= 1:
            heads.append(batch.get("front_target", batch["front"]))
            pose_heads.append(batch["front_pose"])
        if self.num_references == 2:
            heads.append(batch.get("back_target", batch["back"]))
            pose_heads.append(batch["back_pose"])
        if heads:
            video = torch.cat([torch.stack(heads, 1), video], dim=1)
            poses = torch.cat([torch.stack(pose_heads, 1), poses], dim=1)
        return video, poses

    def conditions(self, batch: Mapping[str, Tensor], poses: Tensor) -> dict[str, Tensor]:
        """``f_v`` (front, back, background latents), ``f_im`` (summed CLIP), pose frames, time ids."""
        refs = torch.stack([batch["front"], batch["back"], batch["background"]], dim=1)  # [B, 3, 3, H, W]
        ref_latents = self.vae_encode(refs, scale=False).flatten(1, 2)  # [B, 12, h, w]
        image_embeds = (self.clip_embed(batch["front"]) + self.clip_embed(batch["back"])).unsqueeze(1)
        batch_size = ref_latents.shape[0]
        return {
            "ref_latents": ref_latents,
            "image_embeds": image_embeds,
            "pose_images": poses.float(),
            "pose_keep": torch.ones(batch_size, device=ref_latents.device),
            "added_time_ids": self.added_time_ids.to(ref_latents.device).expand(batch_size, -1),
        }

    def drop_conditions(self, cond: dict[str, Tensor], generator: Optional[torch.Generator] = None) -> dict[str, Tensor]:
        """Zero each of ``f_v``, ``f_im``, ``f_p`` independently with probability ``cond_dropout`` (§4.3.3)."""
        if self.cond_dropout == 0.0:
            return cond
        batch = cond["ref_latents"].shape[0]
        device = cond["ref_latents"].device
        keep = (torch.rand(3, batch, generator=generator, device=device) >= self.cond_dropout).float()
        out = dict(cond)
        out["ref_latents"] = cond["ref_latents"] * keep[0].view(-1, 1, 1, 1)
        out["image_embeds"] = cond["image_embeds"] * keep[1].view(-1, 1, 1)
        out["pose_keep"] = cond["pose_keep"] * keep[2]
        return out

    def null_conditions(self, cond: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The guidance null (the dropout's null value for each dropped condition).

        ``guidance_null="keep_pose"`` (default): reference latents and CLIP embedding zeroed, the
        pose kept, as MimicMotion's pipeline (the initialisation) runs its unconditional pass;
        ``"all"``: the pose zeroed too.
        """
        null = dict(cond)
        null["ref_latents"] = torch.zeros_like(cond["ref_latents"])
        null["image_embeds"] = torch.zeros_like(cond["image_embeds"])
        if self.guidance_null == "all":
            null["pose_keep"] = torch.zeros_like(cond["pose_keep"])
        return null

    def pixel_weights(self, batch: Mapping[str, Tensor], latent_shape: torch.Size) -> Optional[Tensor]:
        """``batch["loss_weight"] [B, T, 1, H, W]`` -> latent grid, reference frames weighted 1."""
        weight = batch.get("loss_weight")
        if weight is None:
            return None
        batch_size, frames = weight.shape[:2]
        small = F.adaptive_avg_pool2d(weight.flatten(0, 1).float(), latent_shape[-2:])
        small = small.view(batch_size, frames, 1, *latent_shape[-2:])
        if self.num_references:
            ones = torch.ones(batch_size, self.num_references, *small.shape[2:], device=small.device)
            small = torch.cat([ones, small], dim=1)
        return small

    # ------------------------------------------------------------------ loss
    def fitcheck_loss(
        self,
        x_data: Tensor,
        cond: Mapping[str, Tensor],
        pixel_weight: Optional[Tensor] = None,
        generator: Optional[torch.Generator] = None,
    ) -> Tensor:
        """Per-sample ``lambda(sigma) * mean(w * (D(x_t) - x)^2)`` with ``D`` from the v-prediction."""
        batch = x_data.shape[0]
        t = self.time_sampler(batch, x_data.device, generator=generator).to(x_data.dtype)
        noise = torch.randn(x_data.shape, generator=generator, device=x_data.device, dtype=x_data.dtype)
        x_t = self.path.add_noise(x_data, noise, t)
        prediction = self.network(x_t, self.path.network_time(t), **cond)
        data_hat, _ = to_data_and_noise(prediction.float(), self.prediction_type, x_t.float(), t.float(), self.path)
        error = (data_hat - x_data.float()).pow(2)
        if pixel_weight is not None:
            error = error * pixel_weight
        return error.flatten(1).mean(dim=1) * self.loss_weighting(t, self.path).to(error.dtype)

    def _loss(self, batch: Mapping[str, Tensor], generator: Optional[torch.Generator], drop: bool) -> Tensor:
        video, poses = self.compose_clip(batch)
        x_data = self.vae_encode(video)
        cond = self.conditions(batch, poses)
        if drop:
            cond = self.drop_conditions(cond)
        return self.fitcheck_loss(x_data, cond, self.pixel_weights(batch, x_data.shape), generator).mean()

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        loss = self._loss(batch, None, drop=True)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["video"].shape[0])
        return loss

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        generator = torch.Generator(device=self.device).manual_seed(self.val_seed + batch_idx)
        loss = self._loss(batch, generator, drop=False)
        self.log("val/loss", loss, prog_bar=True, batch_size=batch["video"].shape[0], sync_dist=True)
        return loss

    def test_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        """The denoising loss on the first window of the clip (whole test videos are for the metrics:
        one network call over a whole video would not fit memory at 1024x576 and is not what training saw)."""
        generator = torch.Generator(device=self.device).manual_seed(self.val_seed + batch_idx)
        span = max(1, self.window - self.num_references)
        if batch["video"].shape[1] > span:
            batch = {**batch, "video": batch["video"][:, :span], "pose": batch["pose"][:, :span]}
            if "loss_weight" in batch:
                batch["loss_weight"] = batch["loss_weight"][:, :span]
        loss = self._loss(batch, generator, drop=False)
        self.log("test/loss", loss, batch_size=batch["video"].shape[0], sync_dist=True)
        return loss

    # ------------------------------------------------------------------ sampling
    def _net(self, x_t: Tensor, t: Tensor, cond: Mapping[str, Tensor]) -> Tensor:
        return self.network(x_t, self.path.network_time(t), **cond)

    def video_denoiser(self, cond: Mapping[str, Tensor], guidance_scale: Any = None) -> Any:
        """Progressive latent fusion of the conditional and the null pass, then CFG (§4.4).

        As MimicMotion's pipeline: each window is evaluated for both passes in one batched call,
        both are fused over windows, and the guidance ``u + w (c - u)`` is applied to the fused
        outputs, so a ``[min, max]`` ramp runs over the whole video's frames (not per window).
        With ``w == 1`` only the conditional pass runs.
        """
        scale = self.fitcheck_guidance if guidance_scale is None else guidance_scale
        scale = tuple(scale) if isinstance(scale, (list, tuple)) else float(scale)
        guided = not (isinstance(scale, float) and scale == 1.0)
        if guided:
            null = self.null_conditions(cond)
            both = {k: torch.cat([v, null[k]]) for k, v in cond.items()}
        else:
            both = dict(cond)

        def window_fn(x_window: Tensor, t: Tensor, frames: Tensor) -> Tensor:
            window_cond = dict(both)
            window_cond["pose_images"] = both["pose_images"].index_select(1, frames.to(both["pose_images"].device))
            return self._net(x_window, t, window_cond)

        prefix = tuple(range(self.num_references))
        fusion = ProgressiveLatentFusion(window_fn, self.prediction_type, self.window, self.overlap, prefix, frame_dim=1,
                                         prefix_weighting=self.fusion_prefix_weighting)

        def denoiser(x_t: Tensor, t: Tensor) -> Tensor:
            if not guided:
                return fusion(x_t, t)
            t = t.reshape(-1) if t.ndim else t.expand(x_t.shape[0])
            out = fusion(torch.cat([x_t, x_t]), torch.cat([t, t]))
            conditional, unconditional = out.chunk(2)
            frames = x_t.shape[1]
            if isinstance(scale, tuple):
                w = torch.linspace(float(scale[0]), float(scale[1]), frames, device=x_t.device, dtype=out.dtype)
                w = w.view(1, frames, *([1] * (x_t.ndim - 2)))
            else:
                w = torch.tensor(scale, device=x_t.device, dtype=out.dtype)
            return unconditional + w * (conditional - unconditional)

        denoiser.prediction_type = self.prediction_type  # type: ignore[attr-defined]
        return denoiser

    @torch.no_grad()
    def generate(
        self,
        batch: Mapping[str, Tensor],
        *,
        num_steps: Optional[int] = None,
        guidance_scale: Any = None,
        generator: Optional[torch.Generator] = None,
        noise: Optional[Tensor] = None,
        keep_references: bool = False,
        progress: bool = False,
    ) -> Tensor:
        """Generate the fit-check video of each item: ``[B, T, 3, H, W]`` in [-1, 1] (§4.4).

        ``batch`` holds ``front``, ``back``, ``background`` ``[B, 3, H, W]``, ``front_pose`` /
        ``back_pose`` ``[B, 3, H, W]`` and the target poses ``pose`` ``[B, T, 3, H, W]``. The two
        generated reference frames are dropped unless ``keep_references``.
        """
        poses = batch["pose"]
        heads = [batch["front_pose"], batch["back_pose"]][: self.num_references]
        if heads:
            poses = torch.cat([torch.stack(heads, 1), poses], dim=1)
        cond = self.conditions(batch, poses)
        batch_size, frames = poses.shape[:2]
        h, w = cond["ref_latents"].shape[-2:]
        if noise is None:
            noise = torch.randn((batch_size, frames, 4, h, w), generator=generator, device=self.device)
        grid = self.sampling_grid(num_steps or self.num_sampling_steps, noise.device)
        latents = self.sampler.sample(self.video_denoiser(cond, guidance_scale), self.path, noise, grid, progress=progress)
        video = self.decode(latents)
        return video if keep_references else video[:, self.num_references :]

    def sample_for_batch(self, batch: Mapping[str, Tensor], *, num_steps=None, sampler=None, guidance_scale=None, generator=None) -> Tensor:
        """One generated video per real clip, ``[B, T, 3, H, W]`` like ``batch["video"]``.

        The ``EvaluationCallback`` paired-metric contract; frame metrics (SSIM, PSNR, LPIPS) take
        the frames flattened (see :mod:`lightning_modules.fitcheck.evaluation`).
        """
        return self.generate(batch, num_steps=num_steps, guidance_scale=guidance_scale, generator=generator)

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> list[str]:
        """Generate each item's video: ``<predictions>/<name>.mp4`` and its first frame ``<name>.png``.

        The user's background was resized to the model's frame; the video is mapped back to the
        background's aspect ratio (long side = the model's, ``restore_from_canvas``), so a
        landscape room gives a landscape video. ``manifest.json`` lists the files and settings.
        """
        from lightning_modules.fitcheck.video_io import write_mp4

        generator = torch.Generator(device=self.device).manual_seed(self.predict_seed + batch_idx)
        video = self.generate(batch, generator=generator)
        writer = self.prediction_writer(str(getattr(self.sampler, "name", "sampler")), {
            **self.predict_settings(), "fps": self.fps, "fitcheck_guidance": _jsonable_scale(self.fitcheck_guidance),
        })
        names = names_of(batch, batch_idx, video.shape[0])
        placements = batch.get("placement")
        written = []
        for row, (name, clip) in enumerate(zip(names, video)):
            if placements is not None:
                clip = restore_from_canvas(clip.float().cpu(), placements[row], max_side=max(clip.shape[-2:]))
            mp4 = write_mp4(clip, writer.path_for(name, ext=".mp4"), fps=self.fps)
            png = writer.save_image(clip[0], name)
            source = batch["path"][row] if "path" in batch else f"predict split, batch {batch_idx} item {row}"
            details: dict[str, Any] = {}
            outputs = [mp4, png]
            if self.face_refinement_command:
                refined = self._refine_faces(mp4, writer.path_for(name, "face_refined", ".mp4"), batch, row)
                if refined is not None:
                    outputs.append(refined)
                    details["face_refinement"] = "post-process (not used for metrics)"
            if batch.get("background_ranking") is not None:  # background retrieved by ground-plane normal
                details["background_ranking"] = json.loads(batch["background_ranking"][row])
            writer.record(source, outputs, frames=int(clip.shape[0]), size=list(clip.shape[-2:]),
                          seed=self.predict_seed + batch_idx, **details)
            written.append(str(mp4))
        return written

    def _refine_faces(self, video: Path, output: Path, batch: Mapping[str, Any], row: int) -> Optional[Path]:
        """Run ``face_refinement_command`` on one generated video (FaceFusion, §4.2.1); ``None`` if no selfie file."""
        import subprocess

        if "front_path" not in batch:
            log.warning("face refinement skipped for %s: no front selfie file (predict from data.init_args.predict_front)", video)
            return None
        fields = {"source": str(batch["front_path"][row]), "target": str(video), "output": str(output)}
        argv = [part.format(**fields) for part in self.face_refinement_command or []]
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode != 0 or not output.is_file():
            raise RuntimeError(f"model.init_args.face_refinement_command failed ({result.returncode}): {' '.join(argv)}\n"
                               f"{result.stderr[-2000:]}")
        return output

    def sample(self, num_samples: int, **kwargs: Any) -> Tensor:  # noqa: D401 - contract of DiffusionModule
        raise NotImplementedError(
            "FitCheckVideoModule is conditional on selfies, background and poses: use generate(batch) "
            "or `cli.py predict` (unconditional sample() has no meaning here)"
        )

    def nfe(self, num_steps: Optional[int] = None, sampler: Any = None, guidance_scale: Any = None) -> int:
        """Network evaluations per window and step: 2 with guidance (batched), 1 without."""
        scale = self.fitcheck_guidance if guidance_scale is None else guidance_scale
        passes = 1 if (not isinstance(scale, (list, tuple)) and float(scale) == 1.0) else 2
        return (num_steps or self.num_sampling_steps) * passes


def _jsonable_scale(scale: Any) -> Any:
    return list(scale) if isinstance(scale, (list, tuple)) else float(scale)


__all__ = ["FitCheckVideoModule", "SVD_UNET_CONFIG", "FRAME_GENERATION", "TRAINABLE"]
