"""``TotalSelfieModule``: Total Selfie, full-body selfies from four selfies (thesis 000, Ch. 3).

Seed 000 lines 357-669 (main text and supplement); digest ``papers/000_ch2-4.md`` §2.

* **Model** (§3.2.1): Paint-by-Example [298], an exemplar-conditioned latent inpainting model: the
  9-channel SD UNet (``[z_t | E(I_b * (1 - M)) | 1 - M]`` in diffusers' PbE order: noisy latent,
  masked-image latent, keep-mask at latent size; [EXT] diffusers' ``PaintByExamplePipeline``
  passes the kept region as 1), the frozen SD VAE (scale 0.18215) and the frozen CLIP ViT-L/14
  vision tower; the four-selfie embedding of Eq. 3.2 (:mod:`.selfie_encoder`); learned null
  embedding with **20 %** condition dropout ([GAP] the thesis does not state it; PbE's
  ``u_cond_percent``). Trainable (§3.2.1): UNet + mapper (with its LayerNorm) + L (+ the null
  vector, as PbE trains it); ``trainable`` narrows this.
* **Loss** (Eq. 3.1): epsilon MSE on the DDPM scaled-linear path (0.00085 -> 0.012, 1000 steps;
  ``z_t = sqrt(abar) z_0 + sqrt(1 - abar) eps``, digest pitfall 2) with uniform timesteps.
* **Modified ControlNet** (§3.2.2): a pretrained SD-1.x ``ControlNetModel`` (Canny by default)
  whose text input is replaced by the selfie embedding ``c``; it reads the 4-channel ``z_t`` and the
  hint ``I_t`` and its residuals enter the PbE UNet with ``conditioning_scale`` 1.0. Frozen, used at
  inference only (the thesis trains no ControlNet). Under CFG each pass gets its own context.
* **Sampling** (§3.5.4): DDIM, **T = 50**, guidance 5 ([GAP]: not stated; PbE's default), the
  background-preserving blend of Eq. 3.4 (``M_bar`` = fine human mask dilated 21 px, **s = 0.4**;
  :mod:`.background_ddim`).
* **Inference** (``predict`` on capture folders, §3.2.2): face undistortion
  (:mod:`.refinement`), shoe crop, automatic reference selection (:mod:`.reference_selection`,
  thresholds 21 / 5 px, mask x1.1), Canny of the reference's parsing map as ``I_t``, pose-guided
  generation, appearance refinement by SDEdit of face / shoe / hand crops.
* **Evaluation** (§3.3, Table 3.1): foreground-only LPIPS / SSIM / PSNR / FID against the real
  photo with its own Canny pose; ``evaluate_foreground_only`` composites the generated and the real
  image over the person mask ([GAP]: the thesis does not define "foreground"; here the parsing
  mask of the real photo, background set to black in both).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from diffusion.guidance import ClassifierFreeGuidance
from diffusion.paths import DiscreteDDPMPath
from diffusion.samplers import DDIMSampler
from lightning_modules.components.safe_load import safe_torch_load
from lightning_modules.diffusion_module import DiffusionModule
from lightning_modules.total_selfie.background_ddim import background_preserving_ddim, dilate_mask, latent_mask
from lightning_modules.total_selfie.parsing import HumanParser, StandInHumanParser
from lightning_modules.total_selfie.pretrained import build_controlnet, build_pbe_parts, load_released
from lightning_modules.total_selfie.reference_selection import (
    MASK_SCALE, REFERENCE_MIN_PIXELS, SELFIE_MIN_PIXELS, parsing_canny, person_box, rank_references, scaled_box_mask,
    selfie_label_sets,
)
from lightning_modules.total_selfie.refinement import AppearanceRefiner, FaceUndistorter
from lightning_modules.total_selfie.selfie_encoder import clip_normalise

log = logging.getLogger(__name__)

CONTROLS = ("canny", "openpose", "none")
TRAINABLE_PARTS = ("unet", "mapper", "projection", "null_embedding")
SELFIE_LAYOUTS = ("separate", "stacked")


class PbEInpaintNetwork(nn.Module):
    """The 9-channel PbE UNet as a denoiser network: ``[z_t | masked latent | keep mask]`` -> epsilon."""

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, x_t: Tensor, timestep: Tensor, *, masked_latent: Tensor, keep_mask: Tensor,
                encoder_hidden_states: Tensor, down_residuals: Optional[Sequence[Tensor]] = None,
                mid_residual: Optional[Tensor] = None) -> Tensor:
        x = torch.cat([x_t, masked_latent.to(x_t.dtype), keep_mask.to(x_t.dtype)], dim=1)
        return self.unet(x, timestep, encoder_hidden_states=encoder_hidden_states,
                         down_block_additional_residuals=down_residuals, mid_block_additional_residual=mid_residual,
                         return_dict=False)[0]


class TotalSelfieModule(DiffusionModule):
    """Selfie-conditioned inpainting + pose-guided generation (module docstring).

    Args:
        pretrained_pbe: the PbE folder (diffusers ``PaintByExamplePipeline`` layout) or hub id;
            ``None`` builds UNet / VAE / image encoder from the three config dicts (random weights).
        released_checkpoint: the authors' trained ``pbe_selfie2full`` folder (loaded over the parts).
        init_checkpoint: a Lightning checkpoint of this module to start from (per-capture fine-tuning
            starts from the main training's ``last.ckpt``): ``network.*`` and ``selfie_head.*``.
        unet_config / vae_config / image_encoder_config: random-init configs (``image_encoder_config``:
            a ``CLIPVisionConfig`` dict, ``proj_size`` = the UNet's cross-attention width).
        controlnet_path / controlnet_config: the pose ControlNet (path, or config with random weights;
            both ``None``: no ControlNet).
        control: ``"canny"`` (the paper's main choice), ``"openpose"`` or ``"none"`` (no pose condition).
        conditioning_scale: ControlNet residual scale (1.0).
        num_selfies / concat_axis / zero_init_projection: Eq. 3.2 (4, ``"feature"``, zero-init L).
        selfie_layout: ``"separate"`` (Total Selfie) or ``"stacked"`` (the Paint-by-Example baseline: the
            four selfies stacked vertically into one exemplar, with ``num_selfies: 1``).
        cond_dropout: probability of the learned null embedding in training (0.2).
        trainable: parts that train, subset of ``unet``, ``mapper``, ``projection``, ``null_embedding``.
        guidance_scale / num_sampling_steps / grid / grid_steps_offset: DDIM sampling (5, 50, leading, 1).
        background_preserving / preserve_fraction / mask_dilation: Eq. 3.4 (on, s = 0.4, 21 px).
        image_size / clip_size: model resolution (512) and CLIP input side (224).
        evaluate_foreground_only: ``sample_for_batch`` returns the output over the person mask only.
        human_parser / face_undistorter / refiner: inference parts (:mod:`.parsing`, :mod:`.refinement`);
            ``human_parser`` defaults to the named stand-in.
        selfie_min_pixels / reference_min_pixels / mask_scale: reference selection (21, 5, 1.1).
        undistort_face / refine_appearance: switch the two steps (ablations Ours-FU, Ours-AR).
    """

    def __init__(
        self,
        pretrained_pbe: Optional[str] = None,
        released_checkpoint: Optional[str] = None,
        init_checkpoint: Optional[str] = None,
        unet_config: Optional[dict] = None,
        vae_config: Optional[dict] = None,
        image_encoder_config: Optional[dict] = None,
        controlnet_path: Optional[str] = None,
        controlnet_config: Optional[dict] = None,
        control: str = "canny",
        conditioning_scale: float = 1.0,
        num_selfies: int = 4,
        concat_axis: str = "feature",
        zero_init_projection: bool = True,
        selfie_layout: str = "separate",
        cond_dropout: float = 0.2,
        trainable: Optional[list[str]] = None,
        guidance_scale: float = 5.0,
        num_sampling_steps: int = 50,
        grid: str = "leading",
        grid_steps_offset: int = 1,
        background_preserving: bool = True,
        preserve_fraction: float = 0.4,
        mask_dilation: int = 21,
        image_size: int = 512,
        clip_size: int = 224,
        evaluate_foreground_only: bool = True,
        human_parser: Optional[HumanParser] = None,
        face_undistorter: Optional[FaceUndistorter] = None,
        refiner: Optional[AppearanceRefiner] = None,
        selfie_min_pixels: int = SELFIE_MIN_PIXELS,
        reference_min_pixels: int = REFERENCE_MIN_PIXELS,
        mask_scale: float = MASK_SCALE,
        undistort_face: bool = True,
        refine_appearance: bool = True,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: Optional[LRSchedulerCallable] = None,
        val_seed: int = 1234,
        predict_seed: int = 0,
    ) -> None:
        for key, value, choices in (("control", control, CONTROLS), ("selfie_layout", selfie_layout, SELFIE_LAYOUTS)):
            if value not in choices:
                raise ValueError(f"model.init_args.{key}={value!r} is not one of {list(choices)}")
        trainable = list(TRAINABLE_PARTS) if trainable is None else list(trainable)
        bad = [p for p in trainable if p not in TRAINABLE_PARTS]
        if bad:
            raise ValueError(f"model.init_args.trainable has unknown parts {bad}; choose from {list(TRAINABLE_PARTS)}")
        if not 0.0 <= cond_dropout < 1.0:
            raise ValueError(f"model.init_args.cond_dropout must be in [0, 1), got {cond_dropout}")
        if selfie_layout == "stacked" and num_selfies != 1:
            raise ValueError("selfie_layout='stacked' feeds one stacked exemplar: set num_selfies: 1")
        unet, vae, clip, head = build_pbe_parts(pretrained_pbe, unet_config, vae_config, image_encoder_config,
                                                num_selfies, concat_axis, zero_init_projection)
        if released_checkpoint:
            load_released(released_checkpoint, unet, clip, head)
        controlnet = build_controlnet(controlnet_path, controlnet_config, control) if control != "none" else None
        latent = int(image_size) // (2 ** (len(vae.config.block_out_channels) - 1))
        super().__init__(
            network=PbEInpaintNetwork(unet),
            path=DiscreteDDPMPath("scaled_linear", 0.00085, 0.012, 1000),
            prediction_type="epsilon",
            sampler=DDIMSampler(eta=0.0),
            num_sampling_steps=num_sampling_steps,
            grid=grid,
            grid_steps_offset=grid_steps_offset,
            label_dropout=0.0,
            guidance_scale=guidance_scale,
            sample_shape=(4, latent, latent),
            optimizer=optimizer,
            lr_scheduler=lr_scheduler,
            val_seed=val_seed,
            predict_seed=predict_seed,
        )
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler", "human_parser", "face_undistorter", "refiner"])
        self.selfie_head = head
        self.register_frozen("vae", vae)
        self.register_frozen("clip", clip)
        if controlnet is not None:
            self.register_frozen("controlnet", controlnet)
        self.vae_scale = float(getattr(vae.config, "scaling_factor", 0.18215))
        self.released_checkpoint = released_checkpoint
        self.control, self.conditioning_scale = control, float(conditioning_scale)
        self.selfie_layout, self.cond_dropout = selfie_layout, float(cond_dropout)
        self.background_preserving, self.preserve_fraction = bool(background_preserving), float(preserve_fraction)
        self.mask_dilation, self.image_size, self.clip_size = int(mask_dilation), int(image_size), int(clip_size)
        self.evaluate_foreground_only = bool(evaluate_foreground_only)
        self.human_parser = human_parser or StandInHumanParser()
        self.face_undistorter, self.refiner = face_undistorter, refiner
        self.selfie_min_pixels, self.reference_min_pixels = int(selfie_min_pixels), int(reference_min_pixels)
        self.mask_scale = float(mask_scale)
        self.undistort_face, self.refine_appearance = bool(undistort_face), bool(refine_appearance)
        self.uses_random_weights = pretrained_pbe is None and not released_checkpoint and not init_checkpoint
        self._select_trainable(trainable)
        if init_checkpoint:
            self._load_init_checkpoint(init_checkpoint)

    # ------------------------------------------------------------------ parameters
    def _select_trainable(self, parts: Sequence[str]) -> None:
        self.network.requires_grad_("unet" in parts)
        self.selfie_head.mapper.requires_grad_("mapper" in parts)
        self.selfie_head.final_layer_norm.requires_grad_("mapper" in parts)
        self.selfie_head.projection.requires_grad_("projection" in parts)
        self.selfie_head.uncond_vector.requires_grad_("null_embedding" in parts)

    def _load_init_checkpoint(self, path: str) -> None:
        key = "model.init_args.init_checkpoint"
        file = Path(path).expanduser()
        if not file.is_file():
            raise FileNotFoundError(f"{key}: {file} does not exist (run `cli.py fit --config configs/total_selfie.yaml` first)")
        state = safe_torch_load(file, key=key).get("state_dict", {})
        wanted = {k: v for k, v in state.items() if k.startswith(("network.", "selfie_head."))}
        if not wanted:
            raise ValueError(f"{key}: {file} holds no 'network.*' / 'selfie_head.*' weights")
        own = {k for k in self.state_dict() if k.startswith(("network.", "selfie_head."))}
        missing = sorted(own - set(wanted))
        if missing:
            raise ValueError(f"{key}: {file} does not fit this configuration; missing {missing[:5]}")
        self.load_state_dict(wanted, strict=False)
        log.info("started from %s (%d tensors)", file, len(wanted))

    # ------------------------------------------------------------------ latents and conditions
    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        return (self.vae.encode(images.to(self.vae.dtype)).latent_dist.mean * self.vae_scale).float()

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        return self.vae.decode((latents / self.vae_scale).to(self.vae.dtype)).sample.float().clamp(-1, 1)

    def exemplars(self, selfies: Tensor) -> Tensor:
        """``[B, 4, 3, h, w]`` -> the CLIP inputs ``[B, N, 3, S, S]`` (stacked vertically for the PbE baseline)."""
        if self.selfie_layout == "stacked":
            selfies = torch.cat(list(selfies.unbind(1)), dim=-2).unsqueeze(1)
        return clip_normalise(selfies, self.clip_size)

    def selfie_context(self, selfies: Tensor) -> Tensor:
        """Eq. 3.2: ``c = L([F(I_f), F(I_u), F(I_l), F(I_s)])`` as ``[B, tokens, 768]``."""
        pixels = self.exemplars(selfies)
        batch, count = pixels.shape[:2]
        with torch.no_grad():
            pooled = self.clip(pixel_values=pixels.flatten(0, 1).to(self.device)).pooler_output
        return self.selfie_head(pooled.reshape(batch, count, -1).float())

    def drop_context(self, context: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        """Replace each item's context by the learned null embedding with probability ``cond_dropout``."""
        if self.cond_dropout == 0.0:
            return context
        drop = torch.rand(context.shape[0], device=context.device, generator=generator) < self.cond_dropout
        return torch.where(drop.view(-1, 1, 1), self.selfie_head.null(context.shape[0]).to(context.dtype), context)

    def inpaint_inputs(self, source: Tensor, mask: Tensor, latent_hw: Sequence[int]) -> tuple[Tensor, Tensor]:
        """``(E(source * (1 - M)), 1 - M at latent size)``: PbE's masked-image latent and keep mask."""
        mask = (mask > 0.5).float()
        if tuple(mask.shape[-2:]) != tuple(source.shape[-2:]):
            raise ValueError(f"mask size {tuple(mask.shape[-2:])} differs from the image size {tuple(source.shape[-2:])}")
        keep = 1.0 - mask
        masked_latent = self.encode(source * keep)
        keep_small = F.interpolate(keep, size=tuple(latent_hw), mode="nearest")
        return masked_latent, keep_small

    # ------------------------------------------------------------------ training
    def selfie_loss(self, batch: Mapping[str, Tensor], generator: Optional[torch.Generator] = None, drop: bool = True) -> Tensor:
        """Eq. 3.1: ``||eps_theta(z_t, I_gt * (1 - M), c, t) - eps||^2`` (mean over items)."""
        x0 = self.encode(batch["image"])
        source = batch.get("background", batch["image"])
        masked_latent, keep = self.inpaint_inputs(source, batch["mask"], x0.shape[-2:])
        context = self.selfie_context(batch["selfies"])
        if drop:
            context = self.drop_context(context, generator)
        t = self.time_sampler(x0.shape[0], x0.device, generator=generator).to(x0.dtype)
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x_t = self.path.add_noise(x0, noise, t)
        eps = self.network(x_t, self.path.network_time(t), masked_latent=masked_latent, keep_mask=keep,
                           encoder_hidden_states=context)
        error = (eps.float() - noise.float()).pow(2)
        if batch.get("loss_mask") is not None:  # fine-tuning: only the known pixels ([EXT] authors' loss_mask)
            weight = F.adaptive_avg_pool2d(batch["loss_mask"].float().to(error.device), error.shape[-2:])
            return ((error * weight).flatten(1).sum(1) / (weight.flatten(1).sum(1) * error.shape[1]).clamp_min(1e-8)).mean()
        return error.flatten(1).mean(1).mean()

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        loss = self.selfie_loss(batch, drop=True)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["image"].shape[0])
        return loss

    def _eval_loss(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        generator = torch.Generator(device=self.device).manual_seed(self.val_seed + batch_idx)
        return self.selfie_loss(batch, generator=generator, drop=False)

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        loss = self._eval_loss(batch, batch_idx)
        self.log("val/loss", loss, prog_bar=True, batch_size=batch["image"].shape[0], sync_dist=True)
        return loss

    def test_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        loss = self._eval_loss(batch, batch_idx)
        self.log("test/loss", loss, batch_size=batch["image"].shape[0], sync_dist=True)
        return loss

    # ------------------------------------------------------------------ sampling
    def _net(self, x_t: Tensor, t: Tensor, cond: Mapping[str, Any]) -> Tensor:
        timestep = self.path.network_time(t)
        down = mid = None
        if cond.get("control") is not None and hasattr(self, "controlnet") and self.conditioning_scale != 0.0:
            down, mid = self.controlnet(x_t, timestep, encoder_hidden_states=cond["context"],
                                        controlnet_cond=cond["control"].to(x_t.dtype),
                                        conditioning_scale=self.conditioning_scale, return_dict=False)
        return self.network(x_t, timestep, masked_latent=cond["masked_latent"], keep_mask=cond["keep_mask"],
                            encoder_hidden_states=cond["context"], down_residuals=down, mid_residual=mid)

    def denoiser_for(self, cond: Mapping[str, Any], guidance_scale: Optional[float] = None) -> Any:
        """The guided denoiser: CFG between the selfie context and the learned null embedding."""
        scale = self.guidance_scale if guidance_scale is None else float(guidance_scale)
        null = {"context": self.selfie_head.null(cond["context"].shape[0]).to(cond["context"].dtype)}
        if scale == 1.0:
            def plain(x_t: Tensor, t: Tensor) -> Tensor:
                return self._net(x_t, t, cond)

            plain.prediction_type = self.prediction_type  # type: ignore[attr-defined]
            return plain
        return ClassifierFreeGuidance(self._net, self.prediction_type, cond=dict(cond), null_cond=null, scale=scale)

    @torch.no_grad()
    def generate(self, batch: Mapping[str, Tensor], *, num_steps: Optional[int] = None, guidance_scale: Optional[float] = None,
                 generator: Optional[torch.Generator] = None, use_control: bool = True,
                 background_preserving: Optional[bool] = None, noise: Optional[Tensor] = None) -> Tensor:
        """Pose-guided generation (§3.2.2 / §3.5.4) for batch keys ``background``, ``mask``, ``selfies``,
        optional ``pose`` (hint in [0, 1]) and ``foreground`` (fine person mask for Eq. 3.4)."""
        background = batch.get("background", batch.get("image"))
        background = background.to(self.device)
        mask = batch["mask"].to(self.device)
        h, w = self.sample_shape[1:]
        latent_hw = (background.shape[-2] * h // self.image_size, background.shape[-1] * w // self.image_size)
        masked_latent, keep = self.inpaint_inputs(background, mask, latent_hw)
        context = self.selfie_context(batch["selfies"].to(self.device))
        control = batch.get("pose") if use_control and self.control != "none" else None
        cond = {"context": context, "masked_latent": masked_latent, "keep_mask": keep,
                "control": None if control is None else control.to(self.device)}
        if noise is None:
            noise = torch.randn((background.shape[0], 4, *masked_latent.shape[-2:]), generator=generator, device=self.device)
        grid = self.sampling_grid(num_steps or self.num_sampling_steps, noise.device)
        denoiser = self.denoiser_for(cond, guidance_scale)
        preserve = self.background_preserving if background_preserving is None else background_preserving
        if preserve and batch.get("foreground") is not None:
            fg = dilate_mask(batch["foreground"].to(self.device).float(), self.mask_dilation)
            latents = background_preserving_ddim(
                denoiser, self.path, noise, grid, self.encode(background), latent_mask(fg, noise.shape[-2:]),
                self.preserve_fraction, sampler=self.sampler, generator=generator)
        else:
            latents = self.sampler.sample(denoiser, self.path, noise, grid, generator=generator)
        return self.decode(latents)

    def sample_for_batch(self, batch: Mapping[str, Tensor], *, num_steps=None, sampler=None, guidance_scale=None,
                         generator=None) -> Tensor:
        """One output per item (Table 3.1 protocol: the real photo's own Canny pose); foreground only
        (the person mask, background black) when ``evaluate_foreground_only``."""
        out = self.generate(batch, num_steps=num_steps, guidance_scale=guidance_scale, generator=generator)
        if self.evaluate_foreground_only and "foreground" in batch:
            fg = (batch["foreground"].to(out.device) > 0.5).float()
            out = out * fg - (1.0 - fg)
        return out

    def sample(self, num_samples: int, **kwargs: Any) -> Tensor:  # noqa: D401 - contract of DiffusionModule
        raise NotImplementedError("TotalSelfieModule is conditional on selfies and a background: use generate(batch), "
                                  "sample_for_batch(batch) or `cli.py predict`")

    def nfe(self, num_steps: Optional[int] = None, sampler: Any = None, guidance_scale: Any = None) -> int:
        scale = self.guidance_scale if guidance_scale is None else float(guidance_scale)
        return (num_steps or self.num_sampling_steps) * (1 if scale == 1.0 else 2)

    # ------------------------------------------------------------------ predict (capture folders)
    def _resized(self, image: Tensor, size: int, nearest: bool = False) -> Tensor:
        mode = "nearest" if nearest else "bilinear"
        kwargs = {} if nearest else {"align_corners": False}
        return F.interpolate(image[None].float(), size=(size, size), mode=mode, **kwargs)[0]

    def prepare_capture(self, item: Mapping[str, Any]) -> dict[str, Any]:
        """§3.2.2 preprocessing of one capture: undistorted face, shoe crop, reference selection,
        mask ``M`` (box x1.1), fine mask, Canny pose of the reference's parsing map."""
        parser = self.human_parser
        groups = parser.groups()
        face = item["face"]
        if self.undistort_face and self.face_undistorter is not None:
            face = self.face_undistorter.undistort(face)
        parsed = {name: parser.parse(item[name]) for name in ("upper", "lower", "shoes")}
        shoes = _crop_to_labels(item["shoes"], parsed["shoes"], groups["shoes"])
        sets = selfie_label_sets(parsed, groups, self.selfie_min_pixels)
        if item.get("reference") is not None:
            reference, ranking = item["reference"], [{"photo": str(item.get("reference_path")), "score": None}]
        else:
            photos = item["photos"]
            maps = [parser.parse(photo) for photo in photos]
            ranked = rank_references(sets, maps, groups, self.reference_min_pixels, names=[str(p) for p in item["photo_paths"]])
            reference = photos[ranked[0].index]
            ranking = [{"photo": str(item["photo_paths"][r.index]), "score": r.score, "labels": list(r.labels)} for r in ranked]
        ref_map = parser.parse(reference)
        ref_map = F.interpolate(ref_map[None, None].float(), size=item["background"].shape[-2:], mode="nearest")[0, 0].long()
        height, width = ref_map.shape
        mask = scaled_box_mask(person_box(ref_map), height, width, self.mask_scale)
        selfies = torch.stack([self._resized(x, self.clip_size) for x in (face, item["upper"], item["lower"], shoes)])
        if item.get("pose") is not None:  # a hint the user gave (<capture>/pose.*)
            pose = item["pose"]
        elif self.control == "openpose":
            raise FileNotFoundError(f"control: openpose needs an OpenPose skeleton render of the target pose as "
                                    f"{item.get('path')}/pose.png (no keypoint detector runs inside the suite)")
        else:  # §3.2.2: Canny of the reference's parsing map
            pose = parsing_canny(ref_map)
        return {"selfies": selfies, "mask": mask, "foreground": (ref_map > 0).float()[None], "pose": pose,
                "face": face, "shoes": shoes, "reference": reference, "ranking": ranking, "label_sets":
                {k: sorted(v) for k, v in sets.items()}}

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> list[str]:
        """Full-body selfie of each capture: ``<capture>.png`` (``I_a``, at the background's frame) and the
        intermediates ``__initial`` (``I_o``), ``__pose`` (``I_t``), ``__mask`` (``M``), ``__reference``
        (``I_r``), ``__face`` (undistorted face) and ``__shoes`` (shoe crop); the ranking in the manifest."""
        from datamodules.predict_inputs import restore_from_canvas

        writer = self.prediction_writer("total_selfie", {**self.predict_settings(), "control": self.control,
                                                         "background_preserving": self.background_preserving,
                                                         "preserve_fraction": self.preserve_fraction,
                                                         "human_parser": type(self.human_parser).__name__})
        written = []
        for row, item in enumerate(batch["captures"]):
            prep = self.prepare_capture(item)
            gen = torch.Generator(device=self.device).manual_seed(self.predict_seed + batch_idx * 1000 + row)
            inputs = {"background": item["background"][None], "mask": prep["mask"][None], "selfies": prep["selfies"][None],
                      "pose": prep["pose"][None], "foreground": prep["foreground"][None]}
            initial = self.generate(inputs, generator=gen)[0].cpu()
            final, boxes = initial, {}
            if self.refine_appearance and self.refiner is not None:
                final, boxes = self.refiner.refine(initial, self.human_parser.parse(initial), self.human_parser.groups(), gen)
            name, place = item["name"], item["placement"]
            outputs = [writer.save_image(restore_from_canvas(final, place, max_side=self.image_size), name)]
            for variant, image in (("initial", restore_from_canvas(initial, place, max_side=self.image_size)),
                                   ("pose", prep["pose"] * 2 - 1), ("mask", prep["mask"].expand(3, -1, -1) * 2 - 1),
                                   ("reference", prep["reference"]), ("face", prep["face"]), ("shoes", prep["shoes"])):
                outputs.append(writer.save_image(image, name, variant))
            writer.record(str(item["path"]), outputs, ranking=prep["ranking"], label_sets=prep["label_sets"],
                          refined_parts=boxes, seed=self.predict_seed + batch_idx * 1000 + row,
                          face_undistorter=type(self.face_undistorter).__name__ if self.face_undistorter else None)
            written.append(str(outputs[0]))
        return written


def _crop_to_labels(image: Tensor, label_map: Tensor, labels: set[int], expand: float = 1.1) -> Tensor:
    """§3.2.2: crop the shoe selfie to the box of the shoe labels (square, x1.1); the whole image if none."""
    region = torch.zeros_like(label_map, dtype=torch.bool)
    for label in labels:
        region |= label_map == label
    rows, cols = torch.nonzero(region.any(1)).flatten(), torch.nonzero(region.any(0)).flatten()
    if rows.numel() == 0:
        return image
    height, width = label_map.shape
    cy, cx = (int(rows[0]) + int(rows[-1]) + 1) / 2, (int(cols[0]) + int(cols[-1]) + 1) / 2
    side = max(int(rows[-1]) + 1 - int(rows[0]), int(cols[-1]) + 1 - int(cols[0]))
    side = min(max(4, int(round(side * expand))), height, width)
    top = int(min(max(0, round(cy - side / 2)), height - side))
    left = int(min(max(0, round(cx - side / 2)), width - side))
    return image[:, top:top + side, left:left + side]


__all__ = ["CONTROLS", "PbEInpaintNetwork", "TRAINABLE_PARTS", "TotalSelfieModule"]
