"""CFLD: Coarse-to-Fine Latent Diffusion for pose-guided person image synthesis (seed 003, Lu et al. CVPR 2024).

Implements seed 003 Sec. 3 (Fig. 2) on top of :class:`DiffusionModule` (digest 002-003 Part A):

* **Latent diffusion** (Sec. 3.1, Eqs. 1-3): SD-1.5's VAE (frozen, scaling 0.18215) and UNet on
  the scaled-linear DDPM path (0.00085 -> 0.012, T = 1000), epsilon prediction.
* **Conditions** (Sec. 3.2-3.3): :class:`~lightning_modules.cfld.network.CFLDNetwork` (Swin-B
  source encoder, perception-refined decoder prompt, hybrid-granularity query biases, pose
  adapter on the 21-channel pose map of :mod:`lightning_modules.cfld.pose`).
* **Loss** (Eqs. 3, 5, 6): ``L_overall = L_mse + L_rec``, the noise-prediction MSE of
  source -> target plus the source -> source reconstruction (``loss_reduction="sum"``, default);
  the authors' code takes one mean over the 2B UNet samples, i.e. half of it
  (``"mean"``, ``configs/cfld_official_code.yaml``); cubic timesteps ``k = floor((1 - u^3) T)``
  (Sec. 3.3, :class:`diffusion.CubicTimeSampler`).
* **Condition dropout** (Sec. 3.3, eta = 20%): "drop both x_s and x_p": the prompt becomes the
  learnable null prompt and the pose features and HGA biases are zeroed, independently per UNet
  sample (``drop_pose`` / ``drop_hga`` true, default). The authors' code drops only the prompt
  (digest A11-2; the official-code preset).
* **Optimisation** (Sec. 4.1): Adam, lr "5e-7 scaled by the total batch size"
  (``lr_per_sample: 5e-7`` x per-device batch x devices x accumulation; 1.12e-4 at 224), linear
  warm-up over 1000 steps from 0.1 lr (the start factor is the authors'), x0.1 at epoch 50,
  100 epochs. The authors' code uses a fixed 1e-4 (``lr_per_sample: null``, the optimizer's lr).
* **Released weights** (:mod:`lightning_modules.cfld.released`): ``released_checkpoint`` loads
  the authors' DeepFashion checkpoint folder into the network exactly (key map, strict check).
* **Sampling** (Sec. 3.3, Eq. 7): DDPM, 50 steps ("leading" spacing, ``steps_offset=1`` as
  SD's scheduler config), cumulative guidance
  ``e(0,0) + w_pose [e(0,p) - e(0,0)] + w_app [e(s,p) - e(0,p)]`` with both weights 2.0
  through the core's ``ClassifierFreeGuidance`` (``mode='nested'``, order pose then
  appearance): 3 network evaluations per step in one batched UNet call. The null branch has
  the null prompt, zero pose features and zero HGA biases; the pose branch adds the pose
  features ([R] ``uc_down_full``).
* **Appearance editing** (Sec. 4.6, Fig. 6), training-free, through ``predict``:
  style interpolation (prompts and HGA biases of two sources mixed with one alpha) and
  mask-based style transfer. For the latter the paper writes ``e' = m e + (1 - m) z_ref,t``
  (digest A10-A11: dimensionally ambiguous). Interpretation implemented here: outside the mask
  the denoiser's clean-latent estimate is replaced by the reference latent (noise re-derived
  from ``x_t``), so each DDPM step draws that region from ``q(z_s | z_t, z_ref)``; it ends exactly
  on the reference latent.
* **Evaluation** (Sec. 4.1, digest A8): generation at the training resolution, bicubic
  (antialiased) resize to the evaluation size (256x176 or 512x352), uint8 quantisation, then
  FID (torchvision Inception-v3 against *training-split* statistics: the CFLD/PIDM/NTED
  protocol; the input step is the authors' ``models/metrics.py``: ``[0, 1]`` images,
  ``x * (std / 0.5) + (mean - 0.5) / 0.5``, not ImageNet normalisation as digest A8 says), LPIPS
  (alex), SSIM (the skimage-51-window variant and the Gaussian variant with the authors'
  ``data_range = pred.max - pred.min``, both logged, digest A11-7) and PSNR, written as results rows
  by ``callbacks.evaluation.EvaluationCallback`` (``per_batch_generation`` through
  :meth:`CFLD.sample_for_batch`; the training-split statistics as its ``reference_statistics``;
  the real images are the test targets at the evaluation size, ``target_image_eval``, as the
  authors' ``transform_test``). ``evaluate`` scores Table 2's reference rows instead.

Choices where the paper is silent are listed in ``docs/cfld.md``.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, UNet2DConditionModel
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from diffusion.guidance import ClassifierFreeGuidance
from diffusion.grids import discrete_grid
from diffusion.paths import DiscreteDDPMPath
from diffusion.predictions import from_data_and_noise, to_data_and_noise
from diffusion.samplers import build_sampler
from diffusion.time_samplers import CubicTimeSampler
from lightning_modules.cfld.clip_prompt import build_clip_vision
from lightning_modules.cfld.network import CFLDNetwork
from lightning_modules.cfld.pose import encode_pose
from lightning_modules.cfld.pose_detector import PoseDetector
from lightning_modules.components.predict_outputs import variant_tag
from lightning_modules.components.pretrained_paths import build_diffusers_model
from lightning_modules.diffusion_module import DiffusionModule

log = logging.getLogger(__name__)

SD_SOURCE = (
    "Stable Diffusion v1.5 in diffusers format (hub id stable-diffusion-v1-5/stable-diffusion-v1-5; "
    "folders unet/ and vae/ with config.json and diffusion_pytorch_model.safetensors)"
)


def resize(images: Tensor, size: Sequence[int] | int) -> Tensor:
    """Bicubic antialiased resize (the authors' ``transforms.Resize``); no-op when already that size."""
    hw = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
    if tuple(images.shape[-2:]) == hw:
        return images
    return F.interpolate(images.float(), size=hw, mode="bicubic", antialias=True, align_corners=False).to(images.dtype)


#: ``evaluate`` -> the method name of the results rows (benchmarks/paper_numbers.yaml, Table 2).
EVALUATE_MODES = {"model": "CFLD", "vae_reconstruction": "VAE Reconstructed", "ground_truth": "Ground Truth"}

#: ``paper_numbers.yaml`` tables of CFLD's rows and the evaluation size ``(H, W)`` each is scored at
#: (seed 003 Table 2 upper/lower block; Table 3's size is not printed, its "Ours" row equals Table 2 at 256x176).
RESULTS_TABLES = {"Table 2 (256x176)": (256, 176), "Table 2 (512x352)": (512, 352), "Table 3": (256, 176)}

#: Table 3 rows (seed 003 lines 217-223): row name -> (prompt, hga, trainable up-block projections).
ABLATIONS = {
    "B1": ("multiscale", False, ("to_k", "to_v")),
    "B2": ("clip", False, ("to_k", "to_v")),
    "B3": ("prd", False, ("to_k", "to_v")),
    "B4": ("prd", False, ("to_q", "to_k", "to_v")),
    "B5": ("swin_linear", True, ("to_k", "to_v")),
    "Ours": ("prd", True, ("to_k", "to_v")),
}


def check_results_placement(ablation: Optional[str], results_table: str, evaluate: str, prompt: str, hga: bool,
                            unet_trainable: Sequence[str], eval_size: Optional[Sequence[int]]) -> None:
    """Fail early, naming the key, when the rows' table/name would not be the settings' row of the paper."""
    if results_table not in RESULTS_TABLES:
        raise ValueError(f"model.init_args.results_table={results_table!r} is not one of {list(RESULTS_TABLES)}")
    paper_sizes = set(RESULTS_TABLES.values())  # other sizes are CPU stand-ins (tests), not checked
    if eval_size is not None and tuple(eval_size) in paper_sizes and tuple(eval_size) != RESULTS_TABLES[results_table]:
        raise ValueError(f"model.init_args.results_table={results_table!r} is scored at {RESULTS_TABLES[results_table]}, "
                         f"but model.init_args.eval_size is {tuple(eval_size)}")
    if ablation is None:
        if results_table == "Table 3":
            raise ValueError("model.init_args.results_table='Table 3' needs model.init_args.ablation (a Table 3 row: "
                             f"{list(ABLATIONS)})")
        return
    if ablation not in ABLATIONS:
        raise ValueError(f"model.init_args.ablation={ablation!r} is not a Table 3 row ({list(ABLATIONS)})")
    if results_table != "Table 3":
        raise ValueError(f"model.init_args.ablation={ablation!r} writes Table 3 rows: set model.init_args.results_table: "
                         f"'Table 3' (found {results_table!r})")
    if evaluate != "model":
        raise ValueError(f"model.init_args.ablation={ablation!r} scores the model; evaluate={evaluate!r} rows belong to Table 2")
    want_prompt, want_hga, want_trainable = ABLATIONS[ablation]
    found = (prompt, bool(hga), tuple(sorted(unet_trainable)))
    if found != (want_prompt, want_hga, tuple(sorted(want_trainable))):
        raise ValueError(
            f"model.init_args.ablation={ablation!r} is Table 3's prompt={want_prompt!r}, hga={want_hga}, "
            f"unet_trainable={list(want_trainable)}; the config has prompt={prompt!r}, hga={bool(hga)}, "
            f"unet_trainable={list(unet_trainable)}"
        )


def quantise(images: Tensor) -> Tensor:
    """[-1, 1] -> uint8 levels -> [-1, 1] (the evaluation's PNG round trip, digest A7)."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1


class _ConditionalDenoiser:
    """The fully conditional network as a denoiser (guidance weights 1: one pass)."""

    def __init__(self, net: Any, cond: dict, prediction_type: str) -> None:
        self.net, self.cond, self.prediction_type = net, cond, prediction_type

    def __call__(self, x_t: Tensor, t: Tensor) -> Tensor:
        return self.net(x_t, t.expand(x_t.shape[0]) if t.ndim == 0 else t, self.cond)


class MaskedReferenceDenoiser:
    """Mask-based style transfer (Sec. 4.6): outside ``mask`` the clean estimate is the reference latent.

    ``mask`` is 1 where the generated appearance is kept, 0 where the reference stays.
    """

    def __init__(self, denoiser: Any, path: DiscreteDDPMPath, reference: Tensor, mask: Tensor) -> None:
        self.denoiser, self.path, self.reference, self.mask = denoiser, path, reference, mask
        self.prediction_type = denoiser.prediction_type

    def __call__(self, x_t: Tensor, t: Tensor) -> Tensor:
        out = self.denoiser(x_t, t)
        data, _ = to_data_and_noise(out, self.prediction_type, x_t, t, self.path)
        data = self.mask * data + (1 - self.mask) * self.reference
        t_ = t.to(x_t.dtype).reshape(-1, *([1] * (x_t.ndim - 1)))
        noise = (x_t - self.path.data_coef(t_) * data) / self.path.noise_coef(t_)
        return from_data_and_noise(data, noise, x_t, t, self.path, self.prediction_type)


class CFLD(DiffusionModule):
    """CFLD LightningModule (see the module docstring for equations and sources).

    Args:
        sd_path: local folder of Stable Diffusion 1.5 (diffusers layout, ``unet/`` and ``vae/``);
            ``null`` builds UNet and VAE from ``unet_config`` / ``vae_config`` with random weights.
        unet_config, vae_config: diffusers config dicts used when ``sd_path`` is null.
        swin: :class:`SwinEncoder` hyper-parameters (Swin-B: embed 128, depths 2-2-18-2, window 16).
        swin_checkpoint: Microsoft Swin-B checkpoint file or hub id (null: random init).
        released_checkpoint: the authors' released checkpoint folder (``pytorch_model.bin`` +
            ``pytorch_model_1.bin``; :mod:`lightning_modules.cfld.released`): replaces every network
            weight (Swin, PRD, HGA, adapter, null prompt, UNet); the VAE still comes from ``sd_path``.
        prompt: ``"prd"``, ``"multiscale"`` (ablation B1), ``"clip"`` (B2) or ``"swin_linear"`` (B5).
        prd: PRD hyper-parameters (``num_queries`` 16, ``depth`` 8, ``num_heads`` 24).
        hga, hga_layers, hga_head_dim: hybrid-granularity attention (off: ablations B3/B4).
        unet_trainable: up-block cross-attention projections that train (B4 adds ``to_q``).
        clip_path, clip_config: CLIP ViT-L/14 vision tower of ablation B2 (local folder, or a config dict).
        image_size: side of the square training/generation image (512 [R]).
        source_size: side of the square Swin input (256).
        pose_size, pose_sigma, pose_limb_width, pose_joint_radius: the 21-channel pose map.
        keypoint_frame: ``(H, W)`` frame of the keypoints when the batch has no ``keypoint_frame``
            (DeepFashion annotations: 256x176); ``null`` uses the image size.
        eval_size: ``(H, W)`` the generated image is resized to for metrics (256x176 / 512x352).
        condition_dropout: eta (0.2).
        drop_pose, drop_hga: also drop pose features / HGA biases with the prompt (paper: true;
            the authors' code: false).
        reconstruction_loss: add the source -> source term (Eq. 5).
        loss_reduction: ``"sum"`` (Eq. 6, ``L_mse + L_rec``) or ``"mean"`` (the authors' mean over 2B).
        lr_per_sample: learning rate per sample of the total batch (Sec. 4.1: 5e-7); ``null`` keeps
            the optimizer's lr (the authors' fixed 1e-4).
        source_flip: probability of a horizontal flip of the Swin input during training [R].
        pose_guidance, appearance_guidance: w_pose, w_app of Eq. 7 (2.0, 2.0).
        steps_offset: DDPM grid offset (SD's scheduler: 1).
        warmup_steps, warmup_start_factor, decay_epochs, decay_rate: the learning-rate schedule.
        gradient_checkpointing: UNet activation checkpointing (on in the authors' runs).
        pose_detector: detector for a target pose given as an image in ``predict``.
        evaluate: what :meth:`sample_for_batch` scores: ``"model"`` (pose transfer), or Table 2's reference
            rows ``"vae_reconstruction"`` (the ground truth through the SD VAE) and ``"ground_truth"`` (the
            target itself), against the same statistics; rows are named by :attr:`results_method`.
        results_table: the ``benchmarks/paper_numbers.yaml`` table of the rows ("Table 2 (256x176)",
            "Table 2 (512x352)" or "Table 3"), read by the EvaluationCallback when its ``table`` is unset;
            checked against ``eval_size``.
        ablation: a Table 3 row ("B1"-"B5", "Ours"; seed 003 lines 217-223): names the rows and requires
            ``results_table: Table 3`` and that row's ``prompt`` / ``hga`` / ``unet_trainable`` (checked).
    """

    def __init__(
        self,
        sd_path: Optional[str] = None,
        unet_config: Optional[dict[str, Any]] = None,
        vae_config: Optional[dict[str, Any]] = None,
        swin: Optional[dict[str, Any]] = None,
        swin_checkpoint: Optional[str] = None,
        released_checkpoint: Optional[str] = None,
        prompt: str = "prd",
        prd: Optional[dict[str, Any]] = None,
        hga: bool = True,
        hga_layers: int = 4,
        hga_head_dim: int = 32,
        unet_trainable: Sequence[str] = ("to_k", "to_v"),
        clip_path: Optional[str] = None,
        clip_config: Optional[dict[str, Any]] = None,
        image_size: int = 512,
        source_size: int = 256,
        pose_size: int = 256,
        pose_sigma: float = 6.0,
        pose_limb_width: float = 2.0,
        pose_joint_radius: float = 3.0,
        keypoint_frame: Optional[Sequence[int]] = (256, 176),
        eval_size: Optional[Sequence[int]] = (256, 176),
        condition_dropout: float = 0.2,
        drop_pose: bool = True,
        drop_hga: bool = True,
        reconstruction_loss: bool = True,
        loss_reduction: str = "sum",
        lr_per_sample: Optional[float] = 5e-7,
        source_flip: float = 0.5,
        pose_guidance: float = 2.0,
        appearance_guidance: float = 2.0,
        num_sampling_steps: int = 50,
        steps_offset: int = 1,
        num_train_timesteps: int = 1000,
        warmup_steps: int = 1000,
        warmup_start_factor: float = 0.1,
        decay_epochs: Sequence[int] = (50,),
        decay_rate: float = 0.1,
        gradient_checkpointing: bool = False,
        pose_detector: Optional[PoseDetector] = None,
        evaluate: str = "model",
        results_table: str = "Table 2 (256x176)",
        ablation: Optional[str] = None,
        optimizer: OptimizerCallable = torch.optim.Adam,
        val_seed: int = 1234,
        predict_seed: int = 0,
    ) -> None:
        if not 0.0 <= condition_dropout < 1.0:
            raise ValueError(f"condition_dropout must be in [0, 1), got {condition_dropout}")
        if loss_reduction not in ("sum", "mean"):
            raise ValueError(f"model.init_args.loss_reduction={loss_reduction!r} is not 'sum' (Eq. 6) or 'mean' (authors' code)")
        check_results_placement(ablation, results_table, evaluate, prompt, hga, unet_trainable, eval_size)
        unet = build_diffusers_model(
            UNet2DConditionModel, key="model.init_args.sd_path", path=sd_path, subfolder="unet", config=unet_config, source=SD_SOURCE
        )
        vae = build_diffusers_model(
            AutoencoderKL, key="model.init_args.sd_path", path=sd_path, subfolder="vae", config=vae_config, source=SD_SOURCE
        )
        factor = 2 ** (len(vae.config.block_out_channels) - 1)
        if image_size % factor:
            raise ValueError(f"image_size {image_size} is not a multiple of the VAE factor {factor}")
        latent_size = image_size // factor
        if pose_size != source_size:
            raise ValueError(f"pose_size ({pose_size}) must equal source_size ({source_size}) (both 4 x latent side)")
        network = CFLDNetwork(
            unet,
            latent_size=latent_size,
            source_size=source_size,
            swin=swin,
            swin_checkpoint=swin_checkpoint,
            prompt=prompt,
            prd=prd,
            hga=hga,
            hga_layers=hga_layers,
            hga_head_dim=hga_head_dim,
            unet_trainable=unet_trainable,
            clip=build_clip_vision(clip_path, clip_config) if prompt == "clip" else None,
        )
        if released_checkpoint is not None:
            from lightning_modules.cfld.released import KEY, import_authors_checkpoint
            from lightning_modules.components.released_weights import ReleasedWeightsError

            if network.swin is not None and network.swin.input_normalization != "none":
                raise ReleasedWeightsError(
                    f"{KEY}: the authors trained Swin on inputs in [-1, 1]; set model.init_args.swin.input_normalization: none"
                )
            import_authors_checkpoint(network, released_checkpoint)
            log.info("CFLD: authors' released weights loaded from %s", released_checkpoint)
        if gradient_checkpointing:
            unet.enable_gradient_checkpointing()
        path = DiscreteDDPMPath("scaled_linear", 0.00085, 0.012, num_train_timesteps)
        super().__init__(
            network=network,
            path=path,
            prediction_type="epsilon",
            time_sampler=CubicTimeSampler(path),
            sampler="ddpm",
            num_sampling_steps=num_sampling_steps,
            grid="leading",
            guidance_scale=appearance_guidance,
            sample_shape=(int(unet.config.in_channels), latent_size, latent_size),
            optimizer=optimizer,
            lr_scheduler=None,
            lr_scheduler_interval="step",
            val_seed=val_seed,
            predict_seed=predict_seed,
        )
        self.register_frozen("vae", vae)
        self.latent_scale = float(getattr(vae.config, "scaling_factor", 0.18215))
        self.image_size, self.source_size, self.latent_size = image_size, source_size, latent_size
        self.pose_size, self.pose_sigma = pose_size, pose_sigma
        self.pose_limb_width, self.pose_joint_radius = pose_limb_width, pose_joint_radius
        self.keypoint_frame = tuple(keypoint_frame) if keypoint_frame is not None else None
        self.eval_size = tuple(eval_size) if eval_size is not None else None
        self.condition_dropout, self.drop_pose, self.drop_hga = condition_dropout, drop_pose, drop_hga
        self.reconstruction_loss, self.source_flip = reconstruction_loss, source_flip
        self.loss_reduction, self.lr_per_sample = loss_reduction, lr_per_sample
        self.released_checkpoint = released_checkpoint
        self.pose_guidance, self.appearance_guidance = pose_guidance, appearance_guidance
        self.steps_offset = steps_offset
        self.warmup_steps, self.warmup_start_factor = warmup_steps, warmup_start_factor
        self.decay_epochs, self.decay_rate = tuple(decay_epochs), decay_rate
        self.pose_detector = pose_detector
        if evaluate not in EVALUATE_MODES:
            raise ValueError(f"model.init_args.evaluate={evaluate!r} is not one of {list(EVALUATE_MODES)}")
        self.results_table, self.ablation = results_table, ablation
        self.evaluate = evaluate
        # test/predict need no Lightning checkpoint when the weights are the authors' release, or for the
        # reference rows (the VAE comes from sd_path; the ground truth needs no network)
        self.loads_own_weights = released_checkpoint is not None or evaluate != "model"
        self.uses_random_weights = sd_path is None or released_checkpoint is None and (
            swin_checkpoint is None if prompt != "clip" else clip_path is None)
        # frozen parts inside the network (SD UNet except K/V; CLIP tower of B2) stay out of checkpoints
        self._frozen_unet_keys = {f"network.{n}" for n, p in network.named_parameters() if not p.requires_grad}
        for part, count in network.parameter_groups().items():
            log.info("CFLD trainable %-20s %8.2fM", part, count / 1e6)

    # ------------------------------------------------------------------ checkpoint: trainable state only
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        state = checkpoint["state_dict"]
        for key in [k for k in state if k in self._frozen_unet_keys or k.startswith("metrics.")]:
            del state[key]

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        result = nn.Module.load_state_dict(self, state_dict, strict=False, assign=assign)
        prefixes = tuple(f"{name}." for name in self._frozen) + ("metrics.",)
        missing = [k for k in result.missing_keys if not k.startswith(prefixes) and k not in self._frozen_unet_keys]
        if strict and (missing or result.unexpected_keys):
            raise RuntimeError(f"CFLD: checkpoint does not fit; missing {missing[:10]}, unexpected {result.unexpected_keys[:10]}")
        return result

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.trainable_parameters())
        if self.lr_per_sample is not None:  # Sec. 4.1: base lr scaled by the total batch size
            lr = float(self.lr_per_sample) * self.total_batch_size()
            for group in optimizer.param_groups:
                group["lr"] = lr
            log.info("CFLD: lr = %.3g x total batch %d = %.4g", self.lr_per_sample, self.total_batch_size(), lr)
        warmup, start = max(int(self.warmup_steps), 0), float(self.warmup_start_factor)
        milestones, rate = self.decay_epochs, float(self.decay_rate)

        def factor(step: int) -> float:
            warm = 1.0 if warmup == 0 or step >= warmup else start + (1.0 - start) * step / warmup
            decays = sum(1 for m in milestones if self.current_epoch >= m)
            return warm * rate**decays

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def total_batch_size(self) -> int:
        """Per-device batch x devices x gradient accumulation (the paper's "total batch size")."""
        trainer = self._trainer
        datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
        batch = getattr(datamodule, "batch_size", None)
        if batch is None:
            raise ValueError("lr_per_sample needs the datamodule's batch_size; set model.init_args.lr_per_sample: null "
                             "to use the optimizer's lr")
        world = trainer.world_size if trainer is not None else 1
        accumulate = getattr(trainer, "accumulate_grad_batches", 1) if trainer is not None else 1
        return int(batch) * int(world) * int(accumulate)

    # ------------------------------------------------------------------ data
    def encode(self, images: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        """Images in [-1, 1] -> scaled SD latents (a sample of the posterior, as the authors' code)."""
        with torch.no_grad():
            dist = self.vae.encode(images.to(self.vae.dtype)).latent_dist
            noise = torch.randn(dist.mean.shape, generator=generator, device=dist.mean.device, dtype=dist.mean.dtype)
            return ((dist.mean + dist.std * noise) * self.latent_scale).float()

    def decode(self, latents: Tensor) -> Tensor:
        return self.vae.decode((latents / self.latent_scale).to(self.vae.dtype)).sample.float()

    def pose_map(self, keypoints: Tensor, frame: Optional[Tensor | Sequence[float]]) -> Tensor:
        return encode_pose(keypoints, frame, self.pose_size, self.pose_sigma, self.pose_limb_width, self.pose_joint_radius)

    def _frame(self, batch: Mapping[str, Any], image: Tensor) -> Tensor | Sequence[float]:
        if "keypoint_frame" in batch:
            return batch["keypoint_frame"]
        if self.keypoint_frame is not None:
            return self.keypoint_frame
        return tuple(image.shape[-2:])

    # ------------------------------------------------------------------ training
    def pair_loss(self, batch: Mapping[str, Tensor], generator: Optional[torch.Generator] = None, train: bool = True) -> Tensor:
        """Eq. 3 (+ Eq. 5): epsilon MSE of source -> target (and source -> source) per UNet sample."""
        source, target = batch["source_image"], batch["target_image"]
        device = source.device
        frame_s, frame_t = self._frame(batch, source), self._frame(batch, target)
        pose_t = self.pose_map(batch["target_keypoints"], frame_t)
        swin_in = resize(source, self.source_size)
        if train and self.source_flip > 0:
            flip = torch.rand(source.shape[0], generator=generator, device=device) < self.source_flip
            swin_in = torch.where(flip[:, None, None, None], swin_in.flip(-1), swin_in)
        images, poses = [resize(target, self.image_size)], [pose_t]
        if self.reconstruction_loss:
            images.insert(0, resize(source, self.image_size))
            poses.insert(0, self.pose_map(batch["source_keypoints"], frame_s))
        latents = self.encode(torch.cat(images), generator=generator)
        repeat = len(images)
        prompt, biases = self.network.appearance(swin_in)
        pose_features = self.network.pose_features(torch.cat(poses))
        prompt, biases = prompt.repeat(repeat, 1, 1), [b.repeat(repeat, 1, 1) for b in biases]
        n = latents.shape[0]
        if train and self.condition_dropout > 0:
            drop = torch.rand(n, generator=generator, device=device) < self.condition_dropout
            prompt = torch.where(drop[:, None, None], self.network.null_prompt.expand_as(prompt), prompt)
            keep = (~drop).float()
            if self.drop_hga:
                biases = [b * keep[:, None, None] for b in biases]
            if self.drop_pose:
                pose_features = [f * keep[:, None, None, None] for f in pose_features]
        t = self.time_sampler(n, device, generator=generator).float()
        noise = torch.randn(latents.shape, generator=generator, device=device)
        x_t = self.path.add_noise(latents, noise, t)
        prediction = self.network(x_t, self.path.network_time(t), prompt, pose_features, biases)
        return (prediction.float() - noise).pow(2).flatten(1).mean(1)

    def reduce_loss(self, per_sample: Tensor) -> Tensor:
        """Eq. 6 ``L_mse + L_rec`` (``"sum"``: mean x number of terms) or the authors' mean over 2B."""
        terms = 2 if self.reconstruction_loss and self.loss_reduction == "sum" else 1
        return per_sample.mean() * terms

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        loss = self.reduce_loss(self.pair_loss(batch))
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["source_image"].shape[0])
        return loss

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        generator = torch.Generator(device=self.device).manual_seed(self.val_seed + batch_idx)
        loss = self.reduce_loss(self.pair_loss(batch, generator=generator, train=False))
        self.log("val/loss", loss, prog_bar=True, batch_size=batch["source_image"].shape[0], sync_dist=True)
        return loss

    # ------------------------------------------------------------------ sampling
    def sampling_grid(self, num_steps: int, device: torch.device) -> Tensor:
        return discrete_grid(self.path, num_steps, spacing="leading", steps_offset=self.steps_offset).to(device)

    def nfe(self, num_steps: Optional[int] = None, sampler: Any = None, guidance_scale: Optional[float] = None) -> int:
        """Network evaluations per generated image: 3 per step with guidance (Eq. 7), else 1 (0 for reference rows)."""
        if self.evaluate != "model":
            return 0
        steps = num_steps or self.num_sampling_steps
        guided = not (self.pose_guidance == 1.0 and self.appearance_guidance == 1.0)
        return steps * (3 if guided else 1)

    def guided_denoiser(
        self,
        prompt: Tensor,
        biases: Sequence[Tensor],
        pose_features: Sequence[Tensor],
        pose_guidance: Optional[float] = None,
        appearance_guidance: Optional[float] = None,
        batched: bool = True,
    ) -> Any:
        """Eq. 7 through ``ClassifierFreeGuidance`` ('nested': null -> +pose -> +appearance)."""
        B = prompt.shape[0]
        null_prompt = self.network.null_prompt

        def net(x_t: Tensor, t: Tensor, cond: Mapping[str, Tensor]) -> Tensor:
            rep = x_t.shape[0] // B
            a = cond["appearance"].to(x_t.dtype)
            p = cond["pose"].to(x_t.dtype)
            prompts = prompt.repeat(rep, 1, 1)
            prompts = torch.where(a[:, None, None] > 0.5, prompts, null_prompt.expand_as(prompts).to(prompts.dtype))
            pose = [f.repeat(rep, 1, 1, 1) * p[:, None, None, None] for f in pose_features]
            bias = [b.repeat(rep, 1, 1) * a[:, None, None] for b in biases]
            return self.network(x_t, self.path.network_time(t), prompts, pose, bias)

        wp = self.pose_guidance if pose_guidance is None else pose_guidance
        wa = self.appearance_guidance if appearance_guidance is None else appearance_guidance
        ones = torch.ones(B, device=prompt.device)
        cond = {"pose": ones, "appearance": ones}
        if wp == 1.0 and wa == 1.0:
            return _ConditionalDenoiser(net, cond, self.prediction_type)
        zero = torch.zeros(1, device=prompt.device)
        return ClassifierFreeGuidance(
            net,
            self.prediction_type,
            cond=cond,
            null_cond={"pose": zero, "appearance": zero},
            scale={"pose": wp, "appearance": wa},
            mode="nested",
            order=["pose", "appearance"],
            batched=batched,
        )

    @torch.no_grad()
    def transfer(
        self,
        source: Tensor,
        target_pose: Tensor,
        *,
        num_steps: Optional[int] = None,
        sampler: Any = None,
        generator: Optional[torch.Generator] = None,
        noise: Optional[Tensor] = None,
        pose_guidance: Optional[float] = None,
        appearance_guidance: Optional[float] = None,
        appearance: Optional[tuple[Tensor, Sequence[Tensor]]] = None,
        reference: Optional[Tensor] = None,
        mask: Optional[Tensor] = None,
        batched: bool = True,
    ) -> Tensor:
        """Pose transfer: ``source`` [-1, 1] + 21-channel ``target_pose`` -> image ``[B, 3, S, S]`` in [-1, 1].

        ``appearance`` overrides ``(prompt, biases)`` (style interpolation); ``reference`` + ``mask``
        (1 = take the generated appearance) run the mask-based style transfer.
        """
        if appearance is None:
            appearance = self.network.appearance(resize(source, self.source_size))
        prompt, biases = appearance
        pose_features = self.network.pose_features(resize(target_pose, self.pose_size))
        denoiser = self.guided_denoiser(prompt, biases, pose_features, pose_guidance, appearance_guidance, batched)
        if reference is not None:
            if mask is None:
                raise ValueError("mask-based style transfer needs a mask with the reference image")
            ref_latent = self.encode(resize(reference, self.image_size), generator=generator)
            m = resize(mask.float(), self.latent_size).clamp(0, 1)
            denoiser = MaskedReferenceDenoiser(denoiser, self.path, ref_latent, m)
        if noise is None:
            noise = torch.randn((prompt.shape[0], *self.sample_shape), generator=generator, device=prompt.device)
        sampler = build_sampler(sampler) if isinstance(sampler, str) else (sampler or self.sampler)
        grid = self.sampling_grid(num_steps or self.num_sampling_steps, noise.device)
        latents = sampler.sample(denoiser, self.path, noise, grid, generator=generator)
        return self.decode(latents).clamp(-1, 1)

    def target_pose_map(self, batch: Mapping[str, Any]) -> Tensor:
        """The batch's target pose as a 21-channel map: keypoints, or an image through the pose detector."""
        if "target_keypoints" in batch:
            reference = batch.get("target_image", batch["source_image"])
            return self.pose_map(batch["target_keypoints"], self._frame(batch, reference))
        if "target_pose_image" in batch:
            if self.pose_detector is None:
                raise ValueError("the batch gives the target pose as an image but model.init_args.pose_detector is null")
            image = batch["target_pose_image"]
            keypoints = self.pose_detector(image)
            return self.pose_map(keypoints, tuple(image.shape[-2:]))
        raise KeyError(f"batch has no target pose ('target_keypoints' or 'target_pose_image'); keys {sorted(batch)}")

    @property
    def results_method(self) -> str:
        """Row name of what is scored: "CFLD", a Table 2 reference row (``evaluate``), or the Table 3 row (``ablation``).

        The EvaluationCallback uses it (and :attr:`results_table`) unless its own ``method`` (``table``) is set.
        """
        if self.ablation is not None:
            return self.ablation
        return EVALUATE_MODES[self.evaluate]

    def sample_for_batch(self, batch: Mapping[str, Any], *, num_steps=None, sampler=None, guidance_scale=None, generator=None) -> Tensor:
        """One output per pair at the evaluation size, uint8-quantised (the EvaluationCallback's hook).

        ``evaluate="model"``: pose transfer; ``"vae_reconstruction"``: the target through the VAE at the
        generation size; ``"ground_truth"``: the target. All resized the same way (bicubic, antialiased).
        """
        if self.evaluate == "model":
            out = self.transfer(
                batch["source_image"], self.target_pose_map(batch), num_steps=num_steps, sampler=sampler, generator=generator,
                appearance_guidance=guidance_scale,
            )
        elif self.evaluate == "vae_reconstruction":
            with torch.no_grad():
                out = self.decode(self.encode(resize(batch["target_image"], self.image_size), generator=generator)).clamp(-1, 1)
        else:
            out = batch["target_image"]
        reference = batch.get("target_image_eval", batch.get("target_image", out))
        size = self.eval_size or tuple(reference.shape[-2:])
        if "target_image_eval" in batch and tuple(size) != tuple(reference.shape[-2:]):
            raise ValueError(
                f"model.init_args.eval_size {tuple(size)} differs from the test targets' size {tuple(reference.shape[-2:])} "
                "(data.init_args.target_eval_size): set both to the Table 2 size (256x176 or 512x352, cfld_512.yaml)"
            )
        return quantise(resize(out, size))

    def sample(self, num_samples: int, **kwargs: Any) -> Tensor:  # type: ignore[override]
        raise NotImplementedError(
            "CFLD is conditional on a source image and a target pose: use transfer() / sample_for_batch() / predict"
        )

    # ------------------------------------------------------------------ predict
    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        """Write one PNG per request: pose transfer, with style interpolation / mask transfer when the batch asks.

        User requests (``PoseTransferRequests``) carry the source's ``placement``: the output is
        mapped back to the source's size (its aspect ratio kept); a style-interpolation sweep
        writes one file per alpha (``<source>__<target>__alpha0.50.png``); ``manifest.json``
        lists each request's source, alpha and seed.
        """
        generator = torch.Generator(device=self.device).manual_seed(self.predict_seed + batch_idx)
        pose = self.target_pose_map(batch)
        appearance = None
        if "interpolation_source" in batch:
            alpha = batch["interpolation_alpha"].float()
            p1, b1 = self.network.appearance(resize(batch["source_image"], self.source_size))
            p2, b2 = self.network.appearance(resize(batch["interpolation_source"], self.source_size))
            mix = lambda x, y: (1 - alpha.view(-1, *([1] * (x.ndim - 1)))) * x + alpha.view(-1, *([1] * (x.ndim - 1))) * y  # noqa: E731
            appearance = (mix(p1, p2), [mix(u, v) for u, v in zip(b1, b2)])
        images = self.transfer(
            batch["source_image"], pose, generator=generator, appearance=appearance,
            reference=batch.get("reference_image"), mask=batch.get("mask"),
        )
        placements = batch.get("placement")
        if self.eval_size is not None and placements is None:
            images = resize(images, self.eval_size)
        sampler_name = getattr(self.sampler, "name", type(self.sampler).__name__)
        writer = self.prediction_writer(str(sampler_name), self.predict_settings())
        alphas = batch.get("interpolation_alpha")
        alpha_values = [None] * images.shape[0] if alphas is None else [float(a) for a in alphas]
        self.write_batch_images(writer, images, batch, batch_idx, variants=[variant_tag(alpha=a) for a in alpha_values],
                                alpha=alpha_values, seed=self.predict_seed + batch_idx)

    # ------------------------------------------------------------------ test
    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        """The pair loss on the test split; the Table 2 metrics are the EvaluationCallback's (configs/cfld.yaml)."""
        generator = torch.Generator(device=self.device).manual_seed(self.val_seed + batch_idx)
        loss = self.reduce_loss(self.pair_loss(batch, generator=generator, train=False))
        self.log("test/loss", loss, batch_size=batch["source_image"].shape[0], sync_dist=True)
        return loss
