"""Mask instruction generator ``g_mask`` (thesis 000, Ch. 6, §6.4).

A UNet regressor with the SD UNet design and **no noise input** (timestep fixed at 0):

    M̂_t = g_mask([E(I_T), E(I_{t-1}), M_d↓8], [g_p(p_t), g_t(Δt)])

* spatial input: 9 channels = target latent (4) + canvas latent (4) + the unfinished-region mask
  ``M_d = D(I_T, I_{t-1}, 0.2)`` at latent resolution (1);
* cross-attention context: the 77 text tokens of the frozen SD text encoder ``g_p`` + one time
  token of its own time encoder ``g_t`` (same architecture as the renderer's, separate weights):
  78 tokens;
* output: one logit channel at latent resolution; loss: binary cross-entropy against the GT step
  mask ``M_t = D(I_t, I_{t-1}, 0.2)`` downsampled to the latent grid.
  [choice] The downsampling is not given; a latent cell is positive when any of its pixels is
  (max pooling), so small strokes are not lost.
* training uses GT text; trainable ``g_mask`` and ``g_t``; frozen ``g_p`` and ``E``; 80k steps,
  lr 1e-5, batch 1. [code] Initialised from the RV5.1 UNet (``conv_in`` / ``conv_out`` resized explicitly: components.unet_inputs),
  the predicted probability is thresholded at 0.2 (``mask_threshold``); the binary mask is
  upsampled (nearest) to the image.
* ``use_time: false`` is Table 6.1's Ours-TE in this network (§6.9: "omitting the time interval in the
  pipeline"): no ``g_t`` and no time token (77 text tokens; a single zero token when text is off too).
* ``released_checkpoint``: the authors' released mask generator (``checkpoints/RP/checkpoint-global_step-80000.ckpt``
  of ArmastusChen/inverse_painting), imported by :mod:`.released`; it needs the official-code settings
  ``time_encoding: official`` and ``unet_time_input: false`` (``configs/inverse_painting_released/mask.yaml``).
* ``predict`` writes one mask per user painting (``<name>.png``, white = paint here), cropped back to the
  painting's aspect ratio.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor

from lightning_modules.components.frozen_parts import FrozenPartsModule
from lightning_modules.components.predict_outputs import PredictOutputsMixin, names_of

from .common import downsample_mask, upsample_mask
from .difference_mask import DifferenceMask
from .encoders import TimeEncoder
from .pretrained import TextEncoder, build_unet, build_vae, vae_factor


class MaskInstructionGenerator(PredictOutputsMixin, FrozenPartsModule):
    """``g_mask`` as a LightningModule (``configs/inverse_painting_mask.yaml``).

    Args:
        sd_path: SD-1.5-family diffusers folder (UNet init, VAE, text encoder); ``null`` = random
            parts from the config dicts.
        use_text: condition on the instruction text (``false``: the "no text" analysis, §6.9).
        use_time: condition on ``Δt`` through ``g_t`` (``false``: Ours-TE).
        time_encoding: ``"scaled"`` (Δt / 100, default) or ``"official"`` (the code's map, see
            ``encoders.TimeEncoder``).
        unet_time_input: ``false`` runs the UNet without a timestep embedding, as the official mask
            UNet does (its forward passes no ``temb``): every resnet's ``time_emb_proj`` is zeroed and
            frozen, which adds exactly nothing. ``true`` (default) feeds timestep 0 ("no noise input").
        released_checkpoint: the authors' released mask generator file (see :mod:`.released`).
        time_hidden: hidden sizes of ``g_t``.
        mask_threshold: probability threshold of the predicted mask.
        difference_mask: ``D`` for batches without ``unfinished`` / ``mask`` (real data) and for the
            rollout; ``null`` builds the LPIPS one with random backbone weights (tests).
    """

    def __init__(
        self,
        sd_path: Optional[str] = None,
        unet_config: Optional[dict] = None,
        vae_config: Optional[dict] = None,
        text_encoder_config: Optional[dict] = None,
        use_text: bool = True,
        use_time: bool = True,
        time_encoding: str = "scaled",
        unet_time_input: bool = True,
        released_checkpoint: Optional[str] = None,
        time_hidden: Sequence[int] = (256, 512),
        mask_threshold: float = 0.2,
        difference_mask: Optional[DifferenceMask] = None,
        gradient_checkpointing: bool = False,
        optimizer: OptimizerCallable = torch.optim.AdamW,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["difference_mask"])
        vae = build_vae(sd_path, vae_config, "model.init_args.sd_path")
        latent = int(vae.config.latent_channels)
        self.unet = build_unet(sd_path, unet_config, "model.init_args.sd_path", in_channels=2 * latent + 1, out_channels=1)
        if gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
        context_dim = int(self.unet.config.cross_attention_dim)
        self.time_encoder = TimeEncoder(context_dim, time_hidden, mode=time_encoding) if use_time else None
        self.register_frozen("vae", vae)
        if use_text:
            text_encoder = TextEncoder(sd_path, text_encoder_config, "model.init_args.sd_path")
            if text_encoder.dim != context_dim:
                raise ValueError(f"text encoder width {text_encoder.dim} != UNet cross_attention_dim {context_dim}")
            self.register_frozen("text_encoder", text_encoder)
        else:
            self.text_encoder = None
        self.register_frozen("difference_mask", difference_mask if difference_mask is not None else DifferenceMask())
        self.latent_scale = float(getattr(vae.config, "scaling_factor", 0.18215))
        self.vae_factor = vae_factor(vae)
        self.use_text, self.use_time = use_text, use_time
        self.unet_time_input = bool(unet_time_input)
        self.released_checkpoint = released_checkpoint
        if released_checkpoint is not None:
            from .released import import_released_mask_generator

            import_released_mask_generator(self, released_checkpoint)
        if not self.unet_time_input:
            self._drop_unet_time_input()
        self.uses_random_weights = sd_path is None and released_checkpoint is None  # rows say weights: random
        self.loads_own_weights = released_checkpoint is not None  # cli.py: test / predict need no --ckpt_path
        self.mask_threshold = float(mask_threshold)
        self.optimizer_factory = optimizer

    def _drop_unet_time_input(self) -> None:
        """Zero and freeze every ``time_emb_proj``: the resnets then add nothing from the timestep."""
        for module in self.unet.modules():
            projection = getattr(module, "time_emb_proj", None)
            if isinstance(projection, torch.nn.Linear):
                with torch.no_grad():
                    projection.weight.zero_()
                    if projection.bias is not None:
                        projection.bias.zero_()
                projection.requires_grad_(False)

    def configure_optimizers(self) -> Any:
        return self.optimizer_factory(self.trainable_parameters())

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        return (self.vae.encode(images.to(self.vae.dtype)).latent_dist.mean * self.latent_scale).float()

    def logits(self, target: Tensor, canvas: Tensor, unfinished: Tensor, delta: Tensor, text: Optional[Sequence[str]]) -> Tensor:
        """``[B, 1, h, w]`` logits of the next region at latent resolution."""
        zt, zc = self.encode(target), self.encode(canvas)
        x = torch.cat([zt, zc, downsample_mask(unfinished, zt.shape[-2:]).to(zt.dtype)], dim=1)
        tokens = [self.time_encoder(delta.to(x.device).float())] if self.time_encoder is not None else []
        if self.use_text:
            if text is None:
                raise ValueError("the mask generator uses text (use_text=true) but none was given")
            tokens.insert(0, self.text_encoder(list(text)).to(x.device))
        if not tokens:  # neither text nor time: one zero token keeps cross-attention defined
            tokens = [torch.zeros(x.shape[0], 1, int(self.unet.config.cross_attention_dim), device=x.device, dtype=x.dtype)]
        timestep = torch.zeros(x.shape[0], device=x.device)
        return self.unet(x, timestep, encoder_hidden_states=torch.cat(tokens, dim=1)).sample

    def _masks(self, batch: Mapping[str, Any]) -> tuple[Tensor, Tensor]:
        unfinished = batch.get("unfinished")
        if unfinished is None:
            unfinished = self.difference_mask(batch["target"], batch["canvas"])
        mask = batch.get("mask")
        if mask is None:
            mask = self.difference_mask(batch["next"], batch["canvas"])
        return unfinished, mask

    def loss(self, batch: Mapping[str, Any]) -> Tensor:
        unfinished, mask = self._masks(batch)
        logits = self.logits(batch["target"], batch["canvas"], unfinished, batch["delta"], batch.get("text"))
        return F.binary_cross_entropy_with_logits(logits.float(), downsample_mask(mask, logits.shape[-2:]))

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        loss = self.loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["canvas"].shape[0])
        return loss

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        loss = self.loss(batch)
        unfinished, mask = self._masks(batch)
        predicted = self.predict_mask(batch["target"], batch["canvas"], batch["delta"], batch.get("text"), unfinished)
        inter = (predicted * mask).flatten(1).sum(1)
        union = ((predicted + mask) > 0).float().flatten(1).sum(1)
        iou = torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union)).mean()
        b = batch["canvas"].shape[0]
        self.log("val/loss", loss, prog_bar=True, batch_size=b, sync_dist=True)
        self.log("val/mask_iou", iou, batch_size=b, sync_dist=True)
        return loss

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        loss = self.loss(batch)
        self.log("test/loss", loss, batch_size=batch["canvas"].shape[0], sync_dist=True)
        return loss

    @torch.no_grad()
    def predict_mask(self, target: Tensor, canvas: Tensor, delta: Tensor | float, text: Optional[Sequence[str]], unfinished: Optional[Tensor] = None) -> Tensor:
        """Binary ``M̂_t`` ``[B, 1, H, W]`` (§6.6 step 2)."""
        if unfinished is None:
            unfinished = self.difference_mask(target, canvas)
        delta_t = torch.as_tensor(delta, dtype=torch.float32, device=canvas.device)
        if delta_t.ndim == 0:
            delta_t = delta_t.expand(canvas.shape[0])
        probability = torch.sigmoid(self.logits(target, canvas, unfinished, delta_t, text).float())
        return upsample_mask((probability > self.mask_threshold).float(), target.shape[-2:])

    #: no sampler: Lightning's batch progress bar stays
    predict_counts_sampler_steps = False

    def method_label(self) -> str:
        """The rows' method in ``paper_numbers.yaml`` "Sec. 6.3 text: instruction generators" (GT text at test)."""
        return "Mask generator with GT text (ours)" if self.use_text else "Mask generator without text condition"

    @torch.no_grad()
    def sample_for_batch(self, batch: Mapping[str, Any], **_: Any) -> Tensor:
        """``M̂_t`` for each GT pair (GT canvas, GT text, GT Δt): the §6.9 single-update analysis,
        scored by ``StepMaskIoU`` through the EvaluationCallback (``per_batch_generation``)."""
        unfinished, _mask = self._masks(batch)
        return self.predict_mask(batch["target"], batch["canvas"], batch["delta"], batch.get("text"), unfinished)

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        """``M̂_t`` for each painting of a ``predict`` batch (``datamodules.painting_timelapse``):
        ``target``, ``canvas`` (white unless ``predict_canvases``), ``delta``, ``text`` (when the
        user gave none, [choice] the empty instruction ""), written as ``<name>.png``."""
        from datamodules.predict_inputs import restore_from_canvas

        target, canvas = batch["target"], batch["canvas"]
        b = target.shape[0]
        text = list(batch["text"]) if "text" in batch else ([""] * b if self.use_text else None)
        delta = batch.get("delta", torch.full((b,), 20.0))
        masks = self.predict_mask(target, canvas, torch.as_tensor(delta, dtype=torch.float32, device=canvas.device), text)
        writer = self.prediction_writer("masks", {"module": type(self).__name__, "mask_threshold": self.mask_threshold,
                                                  "use_text": self.use_text, "use_time": self.use_time})
        placements = batch.get("placement")
        for i, name in enumerate(names_of(batch, batch_idx, b)):
            mask = masks[i].float().cpu()
            if placements is not None:
                mask = restore_from_canvas(mask, placements[i], interpolation="nearest", max_side=max(mask.shape[-2:]))
            path = writer.save_image(mask * 2 - 1, name)
            source = batch["path"][i] if "path" in batch else f"predict split, batch {batch_idx} item {i}"
            writer.record(source, [path], size=list(mask.shape[-2:]), text=text[i] if text else None,
                          delta_s=float(torch.as_tensor(delta).reshape(-1)[i]), area=float(mask.mean()))
