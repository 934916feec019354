"""Inverse Painting canvas renderer (thesis 000, Ch. 6, §6.2 one-stage, §6.5 two-stage, §6.6 sampling).

``I_t = f(I_{t-1}, I_T, Δt [, p_t, M_t])``: a latent-diffusion UNet ``g_u`` (SD-1.5 family, Realistic
Vision V5.1 in the paper) denoises ``z = E(I_t)`` with the conditions

* the target painting ``I_T`` through a ReferenceNet ``g_r`` (a second UNet, same init) whose
  self-attention inputs are concatenated as extra keys / values in every self-attention of ``g_u``
  (:mod:`lightning_modules.components.reference_attention`); [code] ``g_r`` runs at timestep 0 with
  the CLIP image feature of ``I_T`` as its cross-attention context;
* the current canvas ``I_{t-1}`` (and the step mask ``M_t`` in the two-stage model) through the
  9-layer feature encoder ``g_f`` (``canvas_mode``: ``"concat"`` thesis / ``"add"`` code);
* the interval ``Δt`` through the time encoder ``g_t`` (one token);
* the predicted next CLIP embedding ``g_c(CLIP(I_{t-1}), CLIP(I_T))`` (one token);
* the instruction text ``p_t`` through the frozen SD text encoder (77 tokens, two-stage only).

The cross-attention context is ``[text (77), clip (1), time (1)]``. Training: epsilon MSE (Eq. 6.1)
on the DDPM path (``[code]``: 1000 steps, linear betas 0.00085 -> 0.012), each of text / mask /
time / CLIP dropped (zeroed) independently with probability 0.1 (§6.5); AdamW lr 1e-5.
Trainable: ``g_u``, ``g_r``, ``g_f``, ``g_t``, ``g_c``; frozen: VAE, CLIP image and text encoders.

Sampling (§6.6): Euler ancestral, 25 steps, multi-condition CFG with scales text 5, mask 5,
time 5, CLIP 2. [choice] The composition is not given; the default is the nested
(InstructPix2Pix-like) form of ``diffusion.guidance.ClassifierFreeGuidance`` in the order
clip -> time -> mask -> text (``guidance_mode="independent"`` gives the composable form).

Layouts of the official code (needed to load the authors' released renderer, :mod:`.released`;
``configs/inverse_painting_released/renderer.yaml`` sets them; the defaults are the thesis reading):

* ``feature_encoder_layout: official``: ``g_f`` with the official pose-guider kernels / channels
  (:class:`~.encoders.CanvasFeatureEncoder`), with ``canvas_mode: add``;
* ``reference_net_layout: official``: ``g_r`` without the parts whose outputs no written
  reference feature depends on (``conv_norm_out``, ``conv_out``, and everything after ``norm1``
  in the last transformer block: ``attn1`` projections, ``norm2``, ``attn2``, ``norm3``, ``ff``,
  and that block's ``proj_out``), as the official ``ReferenceNet`` drops them. The features ``g_r``
  writes, hence the renderer's output, are the same as with ``full`` (tested);
* ``time_encoding: official``: the official ``Δt`` map of :class:`~.encoders.TimeEncoder`;
* ``clip_hidden: [1024, 512]``: the official next-CLIP MLP sizes.

Ablation flags (Table 6.1): ``use_text`` (Ours-TG / one-stage), ``use_mask`` (Ours-MG / one-stage),
``use_time`` (Ours-TE), ``use_reference_net`` (Ours-RN: ``I_T`` is fed to ``g_f`` instead),
``use_clip`` (Ours-CE).
"""
from __future__ import annotations

import logging
from typing import Any, Mapping, Optional, Sequence

import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from diffusion.denoisers import ConditionedEpsilon, unwrap_output
from diffusion.grids import discrete_grid
from diffusion.guidance import ClassifierFreeGuidance
from diffusion.paths import DiscreteDDPMPath
from diffusion.time_samplers import DiscreteTimeSampler
from lightning_modules.components.reference_attention import ReferenceBank, install_reference_attention
from lightning_modules.components.loss_term_steps import PairLossSteps
from lightning_modules.diffusion_module import DiffusionModule

from .common import broadcast_keep, drop_mask
from .difference_mask import DifferenceMask
from .encoders import CanvasFeatureEncoder, ConvInWithFeatures, NextClipGenerator, TimeEncoder, widen_conv_in
from .pretrained import ClipImageEncoder, TextEncoder, build_unet, build_vae, vae_factor

log = logging.getLogger(__name__)

CONDITIONS = ("text", "mask", "time", "clip")
REFERENCE_NET_LAYOUTS = ("full", "official")


def trim_reference_net(unet: nn.Module) -> None:
    """``reference_net_layout: official``: drop the ReferenceNet parts no written feature depends on.

    The last self-attention input the ReferenceNet writes is ``norm1``'s output in its last
    transformer block; what follows it there (``attn1``'s projections, ``norm2``, ``attn2``,
    ``norm3``, ``ff``, the block's ``proj_out``) and the output head (``conv_norm_out``,
    ``conv_out``) only shape the ReferenceNet's own output, which is discarded. They become
    parameter-free stand-ins (identity maps, ``attn2 = None``) so the forward still runs.
    """
    attentions = getattr(unet.up_blocks[-1], "attentions", None)
    if not attentions:
        raise ValueError("reference_net_layout 'official' needs a UNet whose last up block has attention "
                         "(CrossAttnUpBlock2D, as SD-1.5's)")
    transformer = attentions[-1]
    block = transformer.transformer_blocks[-1]
    attn = block.attn1
    attn.to_q, attn.to_k, attn.to_v = nn.Identity(), nn.Identity(), nn.Identity()
    attn.to_out = nn.ModuleList([nn.Identity(), nn.Identity()])
    block.norm2, block.attn2, block.norm3, block.ff = nn.Identity(), None, nn.Identity(), nn.Identity()
    transformer.proj_out = nn.Identity()
    unet.conv_norm_out = None
    unet.conv_out = nn.Identity()


class RendererNetwork(nn.Module):
    """``g_u`` + ``g_r`` + ``g_f`` + ``g_t`` + ``g_c``; ``forward(z_t, timestep, canvas, ...)`` -> epsilon."""

    def __init__(
        self,
        unet: nn.Module,
        reference_net: Optional[nn.Module],
        canvas_channels: int,
        downsample: int,
        canvas_mode: str = "add",
        clip_dim: Optional[int] = None,
        clip_hidden: Sequence[int] = (768, 384),
        time_hidden: Sequence[int] = (256, 512),
        use_time: bool = True,
        literal_reference_attention: bool = False,
        feature_encoder_layout: str = "thesis",
        reference_net_layout: str = "full",
        time_encoding: str = "scaled",
    ) -> None:
        super().__init__()
        if reference_net_layout not in REFERENCE_NET_LAYOUTS:
            raise ValueError(f"reference_net_layout must be one of {list(REFERENCE_NET_LAYOUTS)}, got {reference_net_layout!r}")
        self.canvas_mode = canvas_mode
        self.feature_encoder_layout, self.reference_net_layout = feature_encoder_layout, reference_net_layout
        context_dim = int(unet.config.cross_attention_dim)
        self.latent_channels = int(unet.config.in_channels)
        if canvas_mode == "concat":
            self.canvas_encoder = CanvasFeatureEncoder(canvas_channels, self.latent_channels, downsample, mode="concat",
                                                       layout=feature_encoder_layout)
            widen_conv_in(unet, self.latent_channels)
        else:
            self.canvas_encoder = CanvasFeatureEncoder(canvas_channels, int(unet.config.block_out_channels[0]), downsample, mode="add",
                                                       layout=feature_encoder_layout)
            unet.conv_in = ConvInWithFeatures(unet.conv_in)
        self.unet = unet
        self.reference_net = reference_net
        self.bank = ReferenceBank()
        if reference_net is not None:
            if reference_net_layout == "official":
                trim_reference_net(reference_net)
            install_reference_attention(reference_net, unet, self.bank, literal=literal_reference_attention)
            self.reference_context = nn.Identity() if clip_dim == context_dim else nn.Linear(int(clip_dim or context_dim), context_dim)
        self.time_encoder = TimeEncoder(context_dim, time_hidden, mode=time_encoding) if use_time else None
        self.clip_generator = NextClipGenerator(clip_dim, clip_hidden, context_dim) if clip_dim else None

    @property
    def context_dim(self) -> int:
        return int(self.unet.config.cross_attention_dim)

    def write_reference(self, target_latent: Tensor, target_clip: Optional[Tensor]) -> None:
        """Run ``g_r`` on ``E(I_T)`` at timestep 0 and keep its self-attention inputs for the denoiser."""
        if self.reference_net is None:
            return
        b = target_latent.shape[0]
        if target_clip is None:
            context = torch.zeros(b, 1, self.context_dim, device=target_latent.device, dtype=target_latent.dtype)
        else:
            context = self.reference_context(target_clip).unsqueeze(1)
        self.bank.features.clear()
        self.bank.mode = "write"
        try:
            self.reference_net(target_latent, torch.zeros(b, device=target_latent.device), encoder_hidden_states=context)
        finally:
            self.bank.mode = "read"

    def clear_reference(self) -> None:
        self.bank.clear()

    def forward(self, z_t: Tensor, timestep: Tensor, canvas: Tensor, context: Tensor) -> Tensor:
        """``canvas``: ``g_f``'s input at image resolution; ``context``: ``[B, N, D]`` tokens."""
        features = self.canvas_encoder(canvas)
        if self.canvas_mode == "concat":
            return unwrap_output(self.unet(torch.cat([z_t, features.to(z_t.dtype)], dim=1), timestep, encoder_hidden_states=context))
        self.unet.conv_in.extra = features
        try:
            return unwrap_output(self.unet(z_t, timestep, encoder_hidden_states=context))
        finally:
            self.unet.conv_in.extra = None


class InversePaintingRenderer(PairLossSteps, DiffusionModule):
    """The renderer as a ``DiffusionModule`` (config ``configs/inverse_painting_renderer.yaml``).

    Batches (``datamodules.painting_timelapse``): ``canvas`` ``I_{t-1}``, ``next`` ``I_t``, ``target``
    ``I_T`` (``[B, 3, H, W]`` in ``[-1, 1]``), ``delta`` ``[B]`` seconds, ``mask`` ``M_t`` ``[B, 1, H, W]``,
    ``text`` (``B`` strings).

    Args:
        sd_path: diffusers folder of the SD-1.5-family model (``unet/``, ``vae/``, ``text_encoder/``,
            ``tokenizer/``); ``null`` builds random parts from the ``*_config`` dicts.
        clip_path: CLIP image encoder folder; ``null`` uses ``clip_config``.
        use_text, use_mask, use_time, use_reference_net, use_clip: the conditions (ablations).
        canvas_mode: ``"concat"`` (thesis) or ``"add"`` (code) for ``g_f``.
        condition_dropout: per-condition drop probability in training (0.1).
        guidance: per-condition CFG scales at sampling (``{text: 5, mask: 5, time: 5, clip: 2}``).
        guidance_mode, guidance_order: the composition (see module docstring).
        image_size: training / rendering resolution ``(H, W)`` (a multiple of the VAE factor * 8).
        feature_encoder_layout: ``"thesis"`` (default) or ``"official"`` (``g_f`` kernels / channels).
        reference_net_layout: ``"full"`` (default) or ``"official"`` (``g_r`` without its unused tail).
        time_encoding: ``"scaled"`` (Δt / 100, default) or ``"official"`` (see :class:`~.encoders.TimeEncoder`).
        released_checkpoint: the authors' released renderer
            (``checkpoints/renderer/ckpt/checkpoint-global_step-200000.ckpt``), imported by
            :func:`.released.import_released_renderer`; needs the official layouts above.
    """

    loss_batch_key = "canvas"  # PairLossSteps: the batch size is read from this tensor

    def __init__(
        self,
        sd_path: Optional[str] = None,
        unet_config: Optional[dict] = None,
        vae_config: Optional[dict] = None,
        text_encoder_config: Optional[dict] = None,
        clip_path: Optional[str] = None,
        clip_config: Optional[dict] = None,
        clip_feature: str = "pooled",
        use_text: bool = True,
        use_mask: bool = True,
        use_time: bool = True,
        use_reference_net: bool = True,
        use_clip: bool = True,
        canvas_mode: str = "add",
        clip_hidden: Sequence[int] = (768, 384),
        time_hidden: Sequence[int] = (256, 512),
        condition_dropout: float = 0.1,
        guidance: Optional[dict[str, float]] = None,
        guidance_mode: str = "nested",
        guidance_order: Sequence[str] = ("clip", "time", "mask", "text"),
        image_size: int | Sequence[int] = 512,
        beta_schedule: str = "linear",
        num_train_timesteps: int = 1000,
        steps_offset: int = 1,
        sampler: str = "euler_ancestral",
        num_sampling_steps: int = 25,
        gradient_checkpointing: bool = False,
        literal_reference_attention: bool = False,
        difference_mask: Optional[DifferenceMask] = None,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        val_seed: int = 1234,
        predict_seed: int = 0,
        feature_encoder_layout: str = "thesis",
        reference_net_layout: str = "full",
        time_encoding: str = "scaled",
        released_checkpoint: Optional[str] = None,
    ) -> None:
        if not 0.0 <= condition_dropout < 1.0:
            raise ValueError(f"condition_dropout must be in [0, 1), got {condition_dropout}")
        unet = build_unet(sd_path, unet_config, "model.init_args.sd_path")
        reference_net = build_unet(sd_path, unet_config, "model.init_args.sd_path") if use_reference_net else None
        vae = build_vae(sd_path, vae_config, "model.init_args.sd_path")
        factor = vae_factor(vae)
        height, width = (image_size, image_size) if isinstance(image_size, int) else tuple(int(s) for s in image_size)
        multiple = factor * 2 ** (len(unet.config.block_out_channels) - 1)
        if height % multiple or width % multiple:
            raise ValueError(f"image_size {height}x{width} must be a multiple of {multiple} (VAE factor x UNet downsampling)")
        clip_encoder = ClipImageEncoder(clip_path, clip_config, "model.init_args.clip_path", clip_feature) if (use_clip or use_reference_net) else None
        text_encoder = TextEncoder(sd_path, text_encoder_config, "model.init_args.sd_path") if use_text else None
        context_dim = int(unet.config.cross_attention_dim)
        if text_encoder is not None and text_encoder.dim != context_dim:
            raise ValueError(f"text encoder width {text_encoder.dim} != UNet cross_attention_dim {context_dim}")
        canvas_channels = 3 + (1 if use_mask else 0) + (0 if use_reference_net else 3)
        network = RendererNetwork(
            unet,
            reference_net,
            canvas_channels=canvas_channels,
            downsample=factor,
            canvas_mode=canvas_mode,
            clip_dim=clip_encoder.dim if clip_encoder is not None else None,
            clip_hidden=clip_hidden,
            time_hidden=time_hidden,
            use_time=use_time,
            literal_reference_attention=literal_reference_attention,
            feature_encoder_layout=feature_encoder_layout,
            reference_net_layout=reference_net_layout,
            time_encoding=time_encoding,
        )
        if not use_clip:
            network.clip_generator = None
        if gradient_checkpointing:
            unet.enable_gradient_checkpointing()
            if reference_net is not None:
                reference_net.enable_gradient_checkpointing()
        path = DiscreteDDPMPath(beta_schedule, 0.00085, 0.012, num_train_timesteps)
        latent_channels = int(vae.config.latent_channels)
        super().__init__(
            network=network,
            path=path,
            prediction_type="epsilon",
            time_sampler=DiscreteTimeSampler(path),
            sampler=sampler,
            num_sampling_steps=num_sampling_steps,
            grid="leading",
            sample_shape=(latent_channels, height // factor, width // factor),
            optimizer=optimizer,
            val_seed=val_seed,
            predict_seed=predict_seed,
        )
        self.register_frozen("vae", vae)
        if difference_mask is not None:
            self.register_frozen("difference_mask", difference_mask)
        else:
            self.difference_mask = None
        if clip_encoder is not None:
            self.register_frozen("clip_encoder", clip_encoder)
        else:
            self.clip_encoder = None
        if text_encoder is not None:
            self.register_frozen("text_encoder", text_encoder)
        else:
            self.text_encoder = None
        self.latent_scale = float(getattr(vae.config, "scaling_factor", 0.18215))
        self.image_size = (height, width)
        self.vae_factor = factor
        self.use = {"text": use_text, "mask": use_mask, "time": use_time, "clip": use_clip}
        self.use_reference_net = use_reference_net
        self.condition_dropout = float(condition_dropout)
        self.guidance = dict(guidance if guidance is not None else {"text": 5.0, "mask": 5.0, "time": 5.0, "clip": 2.0})
        self.guidance_mode = guidance_mode
        self.guidance_order = tuple(guidance_order)
        self.steps_offset = int(steps_offset)
        self.released_checkpoint = released_checkpoint
        if released_checkpoint is not None:
            from .released import import_released_renderer

            import_released_renderer(self, released_checkpoint)
        self.uses_random_weights = sd_path is None and released_checkpoint is None  # rows say weights: random
        self.loads_own_weights = released_checkpoint is not None  # cli.py: test / predict need no --ckpt_path

    # ------------------------------------------------------------------ VAE
    @torch.no_grad()
    def encode(self, images: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        dist = self.vae.encode(images.to(self.vae.dtype)).latent_dist
        noise = torch.randn(dist.mean.shape, generator=generator, device=dist.mean.device, dtype=dist.mean.dtype)
        return ((dist.mean + dist.std * noise) * self.latent_scale).float()

    def decode(self, latents: Tensor) -> Tensor:
        return self.vae.decode((latents / self.latent_scale).to(self.vae.dtype)).sample.float()

    # ------------------------------------------------------------------ conditions
    def conditions(self, canvas: Tensor, target: Tensor, delta: Tensor, text: Optional[Sequence[str]], mask: Optional[Tensor],
                   drop_missing: bool = False) -> dict[str, Tensor]:
        """All condition tensors of a batch (before dropout / guidance) plus the unguided ``canvas`` input.

        ``drop_missing`` (``predict`` on a user's files): a text or mask that was not given is the
        dropped (zero) condition the renderer was trained with 10% of the time (§6.5), instead of an error.
        """
        b, device = canvas.shape[0], canvas.device
        cond: dict[str, Tensor] = {}
        parts = [canvas]
        if self.use["mask"]:
            if mask is None and drop_missing:
                mask = torch.zeros(b, 1, *canvas.shape[-2:], device=device)
            if mask is None:
                raise ValueError("this renderer uses the step mask M_t (use_mask=true) but none was given")
            cond["mask"] = mask.float()
        if not self.use_reference_net:
            parts.append(target)  # Ours-RN: the target painting goes through g_f instead
        cond["canvas"] = torch.cat(parts, dim=1)
        if self.use["text"]:
            if text is None and drop_missing:
                cond["text"] = torch.zeros_like(self.text_encoder([""] * b)).to(device)
            elif text is None:
                raise ValueError("this renderer uses text instructions (use_text=true) but none were given")
            else:
                cond["text"] = self.text_encoder(list(text)).to(device)
        if self.use["time"]:
            cond["time"] = self.network.time_encoder(delta.to(device).float())
        if self.use["clip"]:
            cond["clip"] = self.network.clip_generator(self.clip_encoder(canvas), self.clip_encoder(target))
        return cond

    def null_conditions(self, cond: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return {k: torch.zeros_like(v[:1]) for k, v in cond.items() if k in CONDITIONS}

    def drop_conditions(self, cond: Mapping[str, Tensor], generator: Optional[torch.Generator] = None) -> dict[str, Tensor]:
        """Zero each of text / mask / time / CLIP independently per sample with probability ``condition_dropout`` (§6.5)."""
        out = dict(cond)
        if self.condition_dropout <= 0:
            return out
        for key in CONDITIONS:
            if key in out:
                value = out[key]
                keep = drop_mask(value.shape[0], self.condition_dropout, value.device, generator)
                out[key] = value * broadcast_keep(keep, value)
        return out

    def write_reference(self, target: Tensor, generator: Optional[torch.Generator] = None) -> None:
        if self.use_reference_net:
            clip = self.clip_encoder(target) if self.clip_encoder is not None else None
            self.network.write_reference(self.encode(target, generator), clip)

    def _run(self, z_t: Tensor, timestep: Tensor, cond: Mapping[str, Tensor]) -> Tensor:
        canvas = cond["canvas"]
        if "mask" in cond:
            canvas = torch.cat([canvas[:, :3], cond["mask"].to(canvas.dtype), canvas[:, 3:]], dim=1)
        tokens = [cond[k] for k in ("text", "clip", "time") if k in cond]
        if not tokens:  # every token condition ablated: one zero token keeps cross-attention defined
            tokens = [torch.zeros(z_t.shape[0], 1, self.network.context_dim, device=z_t.device, dtype=z_t.dtype)]
        return self.network(z_t, timestep, canvas, torch.cat(tokens, dim=1))

    # ------------------------------------------------------------------ training
    def pair_loss(self, batch: Mapping[str, Any], generator: Optional[torch.Generator] = None, train: bool = True) -> Tensor:
        """Epsilon MSE (Eq. 6.1) of one (I_{t-1} -> I_t) pair per batch item, conditions dropped in training."""
        canvas, target, nxt = batch["canvas"], batch["target"], batch["next"]
        mask = batch.get("mask")
        if mask is None and self.use["mask"]:
            if self.difference_mask is None:
                raise ValueError("the batch has no 'mask' (real data): set model.init_args.difference_mask to compute "
                                 "M_t = D(I_t, I_{t-1}, 0.2) (LPIPS with AlexNet weights)")
            mask = self.difference_mask(nxt, canvas)
        cond = self.conditions(canvas, target, batch["delta"], batch.get("text"), mask)
        if train:
            cond = self.drop_conditions(cond, generator)
        z0 = self.encode(nxt, generator)
        t = self.time_sampler(z0.shape[0], z0.device, generator=generator).to(z0.dtype)
        noise = torch.randn(z0.shape, generator=generator, device=z0.device, dtype=z0.dtype)
        z_t = self.path.add_noise(z0, noise, t)
        self.write_reference(target, generator)
        try:
            prediction = self._run(z_t, self.path.network_time(t), cond)
        finally:
            self.network.clear_reference()
        return (prediction.float() - noise.float()).pow(2).flatten(1).mean(1)


    # ------------------------------------------------------------------ sampling
    def sampling_grid(self, num_steps: int, device: torch.device) -> Tensor:
        return discrete_grid(self.path, num_steps, spacing="leading", steps_offset=self.steps_offset).to(device)

    def guided_denoiser(self, cond: Mapping[str, Tensor], guidance: Optional[Mapping[str, float]] = None) -> Any:
        scales = dict(self.guidance if guidance is None else guidance)
        scales = {k: float(scales.get(k, 1.0)) for k in self.guidance_order if k in cond}

        def net(x_t: Tensor, t: Tensor, c: Mapping[str, Tensor]) -> Tensor:
            return self._run(x_t, self.path.network_time(t), c)

        if not scales or all(s == 1.0 for s in scales.values()):
            return ConditionedEpsilon(net, dict(cond))
        return ClassifierFreeGuidance(
            net, "epsilon", cond=dict(cond), null_cond=self.null_conditions(cond), scale=scales, mode=self.guidance_mode,
        )

    @torch.no_grad()
    def render(
        self,
        canvas: Tensor,
        target: Tensor,
        delta: Tensor | float,
        text: Optional[Sequence[str]] = None,
        mask: Optional[Tensor] = None,
        *,
        num_steps: Optional[int] = None,
        guidance: Optional[Mapping[str, float]] = None,
        generator: Optional[torch.Generator] = None,
        drop_missing: bool = False,
    ) -> Tensor:
        """One keyframe ``I_t`` ``[B, 3, H, W]`` from ``I_{t-1}``, ``I_T``, ``Δt`` (+ text, mask) (§6.6 step 3)."""
        b = canvas.shape[0]
        delta_t = torch.as_tensor(delta, dtype=torch.float32, device=canvas.device).expand(b) if not isinstance(delta, Tensor) or delta.ndim == 0 else delta
        cond = self.conditions(canvas, target, delta_t, text, mask, drop_missing=drop_missing)
        noise = torch.randn((b, *self.sample_shape), generator=generator, device=canvas.device)
        grid = self.sampling_grid(num_steps or self.num_sampling_steps, canvas.device)
        self.write_reference(target, generator)
        try:
            latents = self.sampler.sample(self.guided_denoiser(cond, guidance), self.path, noise, grid, generator=generator)
        finally:
            self.network.clear_reference()
        return self.decode(latents).clamp(-1, 1)

    def sample(self, num_samples: int, **kwargs: Any) -> Tensor:  # type: ignore[override]
        """Unconditional sampling is undefined for the renderer: it always needs a canvas and a target."""
        raise NotImplementedError(
            "InversePaintingRenderer renders one step from (canvas, target, delta[, text, mask]): use render(), "
            "or InversePainting.paint() for the whole rollout"
        )

    def nfe_per_step(self) -> int:
        """Network passes per sampler step (1 + guided conditions, batched into one call)."""
        return 1 + sum(1 for k in self.guidance_order if self.use.get(k, False))

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        """One rendered step ``I_t`` per painting of the batch, written as ``<input name>.png``.

        Batches of ``datamodules.painting_timelapse`` ``predict``: ``target`` (the user's painting,
        padded to the model's size), ``canvas`` (white unless ``predict_canvases``), ``delta``
        (``predict_interval``) and ``text`` when given. [choice] Without a step mask (the renderer
        alone has no ``g_mask``) it uses ``M_d = D(I_T, I_{t-1}, 0.2)`` (the unfinished region) when
        ``difference_mask`` is set, else the dropped (zero) mask; a missing text is the dropped text.
        The output is cropped back to the painting's aspect ratio (long side = the model's).
        The chained time-lapse is ``InversePainting``'s predict.
        """
        canvas, target = batch["canvas"], batch["target"]
        delta = batch.get("delta", torch.full((canvas.shape[0],), 20.0))
        mask = batch.get("mask")
        if mask is None and self.use["mask"] and self.difference_mask is not None:
            mask = self.difference_mask(target, canvas)
        seed = self.predict_seed + batch_idx
        generator = torch.Generator(device=self.device).manual_seed(seed)
        images = self.render(canvas, target, delta, batch.get("text"), mask, generator=generator, drop_missing=True)
        writer = self.prediction_writer(str(getattr(self.sampler, "name", "sampler")), self.predict_settings())
        self.write_batch_images(writer, images, batch, batch_idx, max_side=max(images.shape[-2:]), seed=seed,
                                delta_s=[float(d) for d in torch.as_tensor(delta).reshape(-1)],
                                text=list(batch["text"]) if "text" in batch else None)


