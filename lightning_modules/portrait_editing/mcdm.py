"""The Multi-Conditioned Diffusion Model (MCDM) of thesis 000, Ch. 5 (§5.2.3, §5.2.4, §5.5.2, §5.5.3).

``eps_theta(z_t, t, {c_s, c_im, c_pb})`` on an SD-1.5-family UNet initialised from the checkpoint
that generated the pairs:

* **spatial** ``c_s = E(x_A)``: concatenated with ``z_t`` at the UNet input; ``conv_in`` is widened
  4 -> 8 with the new input weights zero (``components.unet_inputs.expand_conv_in``), so at the
  start the UNet computes exactly the pretrained function;
* **text** ``c_pb``: the frozen SD text encoder on the target prompt ``p_b`` (77 tokens);
* **image** ``c_im = MLP([E(x_A), CLIP_im(x_A)])``: :class:`~.adapter.ImageEmbedAdapter` (DreamPose);
* the cross-attention context is ``concat(c_pb tokens, c_im tokens)``.

Frozen: VAE, text encoder, CLIP image encoder. Trainable: UNet and adapter.

**Training (§5.2.3, §5.5.2).** Epsilon MSE on SD's DDPM path (1000 steps, scaled-linear betas
0.00085 -> 0.012: [?] not restated in the thesis; SD's own). With probability ``identity_swap``
(5%) the target is ``x_A`` and the prompt ``p_a`` (identity edit, needed by the mask). With
probability ``condition_dropout`` (20%) "any combination of c_s, c_im, c_p, or even all of them" is
dropped: [choice] the thesis gives no split, so the 20% is spread uniformly over the 7 non-empty
subsets of ``{c_s, c_im, c_p}`` (each ~2.86%, so each condition alone is dropped ~11.4% of the
time, all three together ~2.86%). Nulls: ``c_s`` and ``c_im`` computed from a black image, ``c_p``
from the empty prompt. Batch 4, lr 5e-6, 200k steps; AdamW ([?] the optimiser is not stated).

**Inference (§5.2.4, §5.5.3).** UniPC, 20 steps (diffusers' ``UniPCMultistepScheduler``, see
``components.diffusers_sampler``). Nested three-condition CFG (Eq. 5.1 extended): image ``s1 = 3``,
spatial ``s2 = 3``, text ``s3 = 5``, in that order, ``e0 + s1 (e_im - e0) + s2 (e_im,s - e_im) +
s3 (e_im,s,p - e_im,s)``: 4 passes batched into one network call (``diffusion.guidance``).
Edit mask (DiffEdit adapted): ``x_A``'s latent is noised to the middle of the 20-step schedule
(step index ``mask_step = 10``, "for 10 steps"), one guided UniPC step is taken with ``p_a`` and
one with ``p_b`` (both predictions from one network call, 5 evaluations); ``|z_{t-1} - z'_{t-1}|`` is averaged over the 4 latent channels ([?] the reduction is
not given), normalised to ``[0, 1]`` per image (divided by its maximum; all zero stays zero),
blurred with a 5x5 Gaussian; the maps of ``mask_seeds = 10`` noise seeds are averaged and then
thresholded at ``lambda`` (0.2 costume, 0.35 expression) ([choice] average-then-threshold as
DiffEdit). Mask-guided noise at every step: ``eps_hat = eps~(.., p_b) * M + eps~(.., p_a) * (1 - M)``
(two nested-CFG predictions whose shared passes -- null, image, image + spatial -- are evaluated once:
5 passes per step in one call, ``diffusion.guidance.MaskedComposition``). The mask lives at latent resolution.

Ablations (Table 5.1): ``pretrained=false`` (w/o Prt: the UNet's architecture with random
weights), ``use_spatial=false`` (w/o Spt: no ``c_s``, conv_in stays 4 channels),
``use_image_embedding=false`` (w/o Iemb), ``use_mask=false`` (w/o Mask).
"""
from __future__ import annotations

import logging
from typing import Any, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from datamodules.portrait_pairs import TASKS, check_task
from diffusion.denoisers import ConditionedEpsilon, unwrap_output
from diffusion.guidance import ClassifierFreeGuidance, MaskedComposition
from diffusion.paths import DiscreteDDPMPath
from diffusion.time_samplers import DiscreteTimeSampler
from lightning_modules.components.diffusers_sampler import DiffusersSchedulerSampler
from lightning_modules.components.sd_parts import ClipImageEncoder, TextEncoder, build_unet, build_vae, vae_factor
from lightning_modules.components.unet_inputs import expand_conv_in
from lightning_modules.components.loss_term_steps import PairLossSteps
from lightning_modules.diffusion_module import DiffusionModule

from .adapter import ImageEmbedAdapter

log = logging.getLogger(__name__)

SD_SOURCE = ("the SD-1.5-family checkpoint that generated the pairs (thesis §5.5.1: Realistic Vision v4.0 for costume, "
             "a fine-tuned Realistic Vision v1.3 for cartoon expressions) in diffusers layout")
CLIP_SOURCE = "a CLIP image encoder with 768-wide hidden states, e.g. huggingface.co/openai/clip-vit-base-patch32"
GUIDED = ("image", "spatial", "text")




class _Fixed:
    """A denoiser returning a precomputed prediction (one scheduler step from the state it was computed at)."""

    prediction_type = "epsilon"

    def __init__(self, out: Tensor) -> None:
        self.out = out

    def __call__(self, x_t: Tensor, t: Tensor) -> Tensor:
        return self.out


class MCDMNetwork(nn.Module):
    """UNet (conv_in 8 when ``use_spatial``) + adapter; ``forward(z_t, timestep, cond)`` -> epsilon."""

    def __init__(self, unet: nn.Module, adapter: Optional[ImageEmbedAdapter], use_spatial: bool = True) -> None:
        super().__init__()
        self.latent_channels = int(unet.config.in_channels)
        self.use_spatial = bool(use_spatial)
        if self.use_spatial:
            expand_conv_in(unet, 2 * self.latent_channels)
        self.unet = unet
        self.adapter = adapter
        self.calls = 0  # network calls (tests and benchmarks count them)

    @property
    def context_dim(self) -> int:
        return int(self.unet.config.cross_attention_dim)

    def forward(self, z_t: Tensor, timestep: Tensor, cond: Mapping[str, Tensor]) -> Tensor:
        self.calls += 1
        x = torch.cat([z_t, cond["spatial"].to(z_t.dtype)], dim=1) if self.use_spatial else z_t
        tokens = [cond["text"]] + ([cond["image"]] if "image" in cond else [])
        context = torch.cat([t.to(z_t.dtype) for t in tokens], dim=1)
        return unwrap_output(self.unet(x, timestep, encoder_hidden_states=context))


class MCDM(PairLossSteps, DiffusionModule):
    """The MCDM (module docstring). Batches: ``datamodules.portrait_pairs`` (``x_A``, ``x_B``, ``p_a``, ``p_b``).

    Args:
        sd_path: diffusers folder of the pair-generation SD checkpoint (``unet/``, ``vae/``,
            ``text_encoder/``, ``tokenizer/``); ``null`` builds random parts from the ``*_config`` dicts.
        clip_path: CLIP image encoder folder (transformers layout); ``null``: ``clip_config``.
        task: ``costume`` / ``expression`` (sets the default mask threshold 0.2 / 0.35).
        pretrained: ``false`` = w/o Prt (the UNet's architecture, random weights).
        use_spatial, use_image_embedding, use_mask: the ablations of Table 5.1.
        identity_swap: probability of the identity edit (x_A, p_a) as target (0.05).
        condition_dropout: probability of dropping a non-empty subset of the conditions (0.2).
        guidance: nested CFG scales ``{image: 3, spatial: 3, text: 5}`` applied in ``guidance_order``.
        mask_threshold: lambda (``null``: the task's value), ``mask_seeds`` (10), ``mask_step``
            (schedule index the latent is noised to, 10 of 20), ``mask_blur`` (Gaussian kernel, 5).
        num_sampling_steps: UniPC steps (20).
        image_size: the square training / editing resolution (512).
    """

    loss_batch_key = "x_A"  # PairLossSteps: the batch size is read from this tensor

    def __init__(
        self,
        sd_path: Optional[str] = None,
        unet_config: Optional[dict] = None,
        vae_config: Optional[dict] = None,
        text_encoder_config: Optional[dict] = None,
        clip_path: Optional[str] = None,
        clip_config: Optional[dict] = None,
        task: str = "costume",
        pretrained: bool = True,
        use_spatial: bool = True,
        use_image_embedding: bool = True,
        use_mask: bool = True,
        identity_swap: float = 0.05,
        condition_dropout: float = 0.2,
        guidance: Optional[dict[str, float]] = None,
        guidance_order: Sequence[str] = GUIDED,
        mask_threshold: Optional[float] = None,
        mask_seeds: int = 10,
        mask_step: int = 10,
        mask_blur: int = 5,
        num_sampling_steps: int = 20,
        image_size: int = 512,
        gradient_checkpointing: bool = False,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        val_seed: int = 1234,
        predict_seed: int = 0,
    ) -> None:
        spec = check_task(task)
        for name, p in (("identity_swap", identity_swap), ("condition_dropout", condition_dropout)):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {p}")
        if sorted(guidance_order) != sorted(GUIDED):
            raise ValueError(f"guidance_order must order {list(GUIDED)}, got {list(guidance_order)}")
        if not 0 <= mask_step < num_sampling_steps:
            raise ValueError(f"mask_step must index the {num_sampling_steps}-step schedule, got {mask_step}")
        key = "model.init_args.sd_path"
        unet = build_unet(sd_path, unet_config, key, source=SD_SOURCE)
        if not pretrained:  # w/o Prt: same architecture, fresh random weights
            from diffusers import UNet2DConditionModel

            unet = UNet2DConditionModel.from_config(dict(unet.config))
        vae = build_vae(sd_path, vae_config, key, source=SD_SOURCE)
        text_encoder = TextEncoder(sd_path, text_encoder_config, key, source=SD_SOURCE)
        factor = vae_factor(vae)
        latent = image_size // factor
        multiple = factor * 2 ** (len(unet.config.block_out_channels) - 1)
        if image_size % multiple:
            raise ValueError(f"image_size {image_size} must be a multiple of {multiple} (VAE factor x UNet downsampling)")
        context_dim = int(unet.config.cross_attention_dim)
        if text_encoder.dim != context_dim:
            raise ValueError(f"text encoder width {text_encoder.dim} != UNet cross_attention_dim {context_dim}")
        clip = adapter = None
        if use_image_embedding:
            clip = ClipImageEncoder(clip_path, clip_config, "model.init_args.clip_path", feature="tokens", source=CLIP_SOURCE)
            cfg = clip.model.config
            n_tokens = 1 + (int(cfg.image_size) // int(cfg.patch_size)) ** 2
            adapter = ImageEmbedAdapter(int(vae.config.latent_channels), latent, n_tokens, clip.dim, context_dim)
        network = MCDMNetwork(unet, adapter, use_spatial)
        if gradient_checkpointing:
            unet.enable_gradient_checkpointing()
        path = DiscreteDDPMPath("scaled_linear", 0.00085, 0.012, 1000)
        super().__init__(
            network=network, path=path, prediction_type="epsilon", time_sampler=DiscreteTimeSampler(path),
            sampler="ddim", num_sampling_steps=num_sampling_steps,
            sample_shape=(int(vae.config.latent_channels), latent, latent), optimizer=optimizer,
            val_seed=val_seed, predict_seed=predict_seed,
        )
        self.sampler = DiffusersSchedulerSampler("UniPCMultistepScheduler", name="unipc")
        self.register_frozen("vae", vae)
        self.register_frozen("text_encoder", text_encoder)
        if clip is not None:
            self.register_frozen("clip_encoder", clip)
        else:
            self.clip_encoder = None
        self.latent_scale = float(getattr(vae.config, "scaling_factor", 0.18215))
        self.task = task
        self.image_size = int(image_size)
        self.use = {"spatial": bool(use_spatial), "image": bool(use_image_embedding), "text": True}
        self.use_mask = bool(use_mask)
        self.identity_swap, self.condition_dropout = float(identity_swap), float(condition_dropout)
        self.guidance = dict(guidance if guidance is not None else {"image": 3.0, "spatial": 3.0, "text": 5.0})
        self.guidance_order = tuple(guidance_order)
        self.mask_threshold = float(spec["mask_threshold"] if mask_threshold is None else mask_threshold)
        self.mask_seeds, self.mask_step, self.mask_blur = int(mask_seeds), int(mask_step), int(mask_blur)
        self.uses_random_weights = sd_path is None

    # ------------------------------------------------------------------ VAE
    @torch.no_grad()
    def encode(self, images: Tensor, generator: Optional[torch.Generator] = None, sample: bool = True) -> Tensor:
        dist = self.vae.encode(images.to(self.vae.dtype)).latent_dist
        z = dist.mean
        if sample:
            z = z + dist.std * torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
        return (z * self.latent_scale).float()

    def decode(self, latents: Tensor) -> Tensor:
        return self.vae.decode((latents / self.latent_scale).to(self.vae.dtype)).sample.float()

    # ------------------------------------------------------------------ conditions
    def image_conditions(self, x_a: Tensor) -> dict[str, Tensor]:
        """``spatial`` = E(x_A) (latent mean) and ``image`` = adapter(E(x_A), CLIP tokens) as used."""
        out: dict[str, Tensor] = {}
        z = self.encode(x_a, sample=False)
        if self.use["spatial"]:
            out["spatial"] = z
        if self.use["image"]:
            out["image"] = self.network.adapter(z, self.clip_encoder(x_a))
        return out

    def conditions(self, x_a: Tensor, prompts: Sequence[str]) -> dict[str, Tensor]:
        cond = self.image_conditions(x_a)
        cond["text"] = self.text_encoder(list(prompts)).to(x_a.device)
        return cond

    def null_conditions(self, like: Tensor) -> dict[str, Tensor]:
        """Nulls: the conditions of a black image and of the empty prompt (batch 1)."""
        black = -torch.ones((1, *like.shape[1:]), device=like.device, dtype=like.dtype)
        return self.conditions(black, [""])

    def drop_conditions(self, cond: Mapping[str, Tensor], null: Mapping[str, Tensor],
                        generator: Optional[torch.Generator] = None) -> dict[str, Tensor]:
        """With prob. ``condition_dropout`` per sample, replace a uniformly drawn non-empty subset by nulls."""
        out = dict(cond)
        if self.condition_dropout <= 0:
            return out
        b = cond["text"].shape[0]
        device = cond["text"].device
        drop = torch.rand(b, generator=generator, device=device) < self.condition_dropout
        subset = torch.randint(1, 8, (b,), generator=generator, device=device)  # bits: spatial 1, image 2, text 4
        for bit, key in ((1, "spatial"), (2, "image"), (4, "text")):
            if key not in out:
                continue
            hit = (drop & (subset & bit).bool()).reshape(-1, *([1] * (out[key].ndim - 1)))
            out[key] = torch.where(hit, null[key].expand_as(out[key]).to(out[key].dtype), out[key])
        return out

    # ------------------------------------------------------------------ training
    def pair_loss(self, batch: Mapping[str, Any], generator: Optional[torch.Generator] = None, train: bool = True) -> Tensor:
        x_a, x_b = batch["x_A"], batch["x_B"]
        b = x_a.shape[0]
        prompts_a, prompts_b = list(batch["p_a"]), list(batch["p_b"])
        if train and self.identity_swap > 0:
            swap = torch.rand(b, generator=generator, device=x_a.device) < self.identity_swap
        else:
            swap = torch.zeros(b, dtype=torch.bool, device=x_a.device)
        target = torch.where(swap.reshape(-1, 1, 1, 1), x_a, x_b)
        prompts = [pa if bool(s) else pb for pa, pb, s in zip(prompts_a, prompts_b, swap.tolist())]
        cond = self.conditions(x_a, prompts)
        if train:
            cond = self.drop_conditions(cond, self.null_conditions(x_a), generator)
        z0 = self.encode(target, generator)
        t = self.time_sampler(b, z0.device, generator=generator).to(z0.dtype)
        noise = torch.randn(z0.shape, generator=generator, device=z0.device, dtype=z0.dtype)
        z_t = self.path.add_noise(z0, noise, t)
        prediction = self.network(z_t, self.path.network_time(t), cond)
        return (prediction.float() - noise.float()).pow(2).flatten(1).mean(1)


    # ------------------------------------------------------------------ guidance
    def _net(self, x_t: Tensor, t: Tensor, cond: Mapping[str, Tensor]) -> Tensor:
        return self.network(x_t, self.path.network_time(t), cond)

    def guided_denoiser(self, cond: Mapping[str, Tensor], null: Mapping[str, Tensor],
                        guidance: Optional[Mapping[str, float]] = None) -> Any:
        """Nested CFG over the used conditions in ``guidance_order`` (Eq. 5.1 for three conditions)."""
        scales = dict(self.guidance if guidance is None else guidance)
        scales = {k: float(scales.get(k, 1.0)) for k in self.guidance_order if k in cond}
        if all(s == 1.0 for s in scales.values()):
            return ConditionedEpsilon(self._net, dict(cond))
        return ClassifierFreeGuidance(self._net, "epsilon", cond=dict(cond), null_cond={k: null[k] for k in scales},
                                      scale=scales, mode="nested", order=list(scales))

    def nfe_per_step(self, masked: Optional[bool] = None) -> int:
        """Network evaluations per sampler step, all in one call: 1 + guided conditions (4); with mask
        guidance the ``p_a`` branch adds only the passes that contain the text (1 with text last: 5)."""
        used = [k for k in self.guidance_order if self.use[k]]
        n = 1 + len(used)
        if not (self.use_mask if masked is None else masked):
            return n
        return n + (len(used) - used.index("text"))

    # ------------------------------------------------------------------ editing
    def _blur(self, x: Tensor) -> Tensor:
        k = self.mask_blur
        if k <= 1:
            return x
        sigma = 0.3 * ((k - 1) * 0.5 - 1) + 0.8  # torchvision's default sigma for this kernel size
        r = torch.arange(k, device=x.device, dtype=x.dtype) - (k - 1) / 2
        g = torch.exp(-(r**2) / (2 * sigma**2))
        g = g / g.sum()
        kernel = (g[:, None] * g[None, :]).reshape(1, 1, k, k)
        return F.conv2d(F.pad(x, [k // 2] * 4, mode="reflect"), kernel)

    @torch.no_grad()
    def edit_mask(self, x_a: Tensor, cond_a: Mapping[str, Tensor], cond_b: Mapping[str, Tensor],
                  null: Mapping[str, Tensor], *, num_steps: Optional[int] = None, seed: int = 0,
                  threshold: Optional[float] = None, soft: bool = False) -> Tensor:
        """The DiffEdit-style edit mask ``[B, 1, h, w]`` (module docstring); ``soft`` returns the averaged map."""
        steps = int(num_steps or self.num_sampling_steps)
        start = min(self.mask_step, steps - 1) if num_steps is None else steps // 2
        z_a = self.encode(x_a, sample=False)
        timestep = int(self.sampler.timesteps(self.path, steps)[start])
        pair = MaskedComposition([(1.0, None, self.guided_denoiser(cond_b, null)), (1.0, None, self.guided_denoiser(cond_a, null))])
        t = self.path.t_from_timestep(torch.tensor(float(timestep), dtype=torch.float64)).float().to(z_a.device).expand(z_a.shape[0])
        total = torch.zeros_like(z_a[:, :1])
        for s in range(self.mask_seeds):
            g = torch.Generator(device=z_a.device).manual_seed(seed + s)
            noise = torch.randn(z_a.shape, generator=g, device=z_a.device, dtype=z_a.dtype)
            z_t = self.sampler.add_noise(self.path, z_a, noise, timestep)
            eps_b, eps_a = pair.term_outputs(z_t, t)  # both guided predictions in one call (shared passes once)
            rec = self.sampler.run(_Fixed(eps_a), self.path, z_t, steps, start=start, stop=start + 1)
            tgt = self.sampler.run(_Fixed(eps_b), self.path, z_t, steps, start=start, stop=start + 1)
            diff = (tgt - rec).abs().mean(dim=1, keepdim=True)
            peak = diff.flatten(1).amax(dim=1).reshape(-1, 1, 1, 1)
            total += self._blur(torch.where(peak > 0, diff / peak.clamp_min(1e-12), torch.zeros_like(diff)))
        soft_map = total / max(1, self.mask_seeds)
        if soft:
            return soft_map
        lam = self.mask_threshold if threshold is None else float(threshold)
        return (soft_map > lam).to(z_a.dtype)

    def edit_denoiser(self, cond_a: Mapping[str, Tensor], cond_b: Mapping[str, Tensor], null: Mapping[str, Tensor],
                      mask: Optional[Tensor], guidance: Optional[Mapping[str, float]] = None) -> Any:
        """``eps~(p_b) * M + eps~(p_a) * (1 - M)`` (§5.2.4), or ``eps~(p_b)`` without a mask."""
        den_b = self.guided_denoiser(cond_b, null, guidance)
        if mask is None:
            return den_b
        den_a = self.guided_denoiser(cond_a, null, guidance)
        return MaskedComposition([(1.0, mask, den_b), (1.0, 1.0 - mask, den_a)])

    @torch.no_grad()
    def edit(self, x_a: Tensor, p_a: Sequence[str], p_b: Sequence[str], *, num_steps: Optional[int] = None,
             guidance: Optional[Mapping[str, float]] = None, use_mask: Optional[bool] = None,
             generator: Optional[torch.Generator] = None, seed: int = 0) -> tuple[Tensor, Optional[Tensor]]:
        """``(x_B_hat [B, 3, H, W] in [-1, 1], mask [B, 1, h, w] or None)``."""
        steps = int(num_steps or self.num_sampling_steps)
        null = self.null_conditions(x_a)
        cond_b = self.conditions(x_a, p_b)
        cond_a = {**cond_b, "text": self.text_encoder(list(p_a)).to(x_a.device)}
        masked = self.use_mask if use_mask is None else use_mask
        mask = self.edit_mask(x_a, cond_a, cond_b, null, num_steps=num_steps, seed=seed) if masked else None
        noise = torch.randn((x_a.shape[0], *self.sample_shape), generator=generator, device=x_a.device)
        latents = self.sampler.sample(self.edit_denoiser(cond_a, cond_b, null, mask, guidance), self.path, noise, steps,
                                      generator=generator)
        return self.decode(latents).clamp(-1, 1), mask

    def sample_for_batch(self, batch: Mapping[str, Any], *, num_steps: Optional[int] = None, sampler: Any = None,
                         guidance_scale: Optional[float] = None, generator: Optional[torch.Generator] = None) -> Tensor:
        """One edit of each ``x_A`` towards its ``p_b`` (scored against the generated ``x_B``, Table 5.1)."""
        images, _ = self.edit(batch["x_A"].to(self.device), batch["p_a"], batch["p_b"], num_steps=num_steps,
                              generator=generator)
        return images

    def sample(self, num_samples: int, **kwargs: Any) -> Tensor:  # type: ignore[override]
        raise NotImplementedError("MCDM edits a portrait: use edit(x_A, p_a, p_b) or cli.py predict with "
                                  "--data.predict_inputs and --data.direction")

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        """Writes ``<input>__<direction>.png`` (the edit) and ``<input>__<direction>_mask.png`` per portrait."""
        generator = torch.Generator(device=self.device).manual_seed(self.predict_seed + batch_idx)
        x_a = batch["x_A"].to(self.device)
        images, mask = self.edit(x_a, batch["p_a"], batch["p_b"], generator=generator, seed=self.predict_seed)
        direction = list(batch.get("direction_name", ["edit"] * x_a.shape[0]))
        writer = self.prediction_writer("edits", self.predict_settings())
        self.write_batch_images(writer, images, batch, batch_idx, variants=direction, p_b=list(batch["p_b"]))
        if mask is not None:
            full = F.interpolate(mask, size=x_a.shape[-2:], mode="nearest").expand(-1, 3, -1, -1) * 2.0 - 1.0
            self.write_batch_images(writer, full, batch, batch_idx, variants=[f"{d}_mask" for d in direction],
                                    mask_threshold=self.mask_threshold)

    def predict_settings(self) -> dict[str, Any]:
        return {"module": type(self).__name__, "sampler": "unipc", "num_sampling_steps": self.num_sampling_steps,
                "guidance": self.guidance, "guidance_order": list(self.guidance_order), "use_mask": self.use_mask,
                "mask_threshold": self.mask_threshold, "mask_seeds": self.mask_seeds, "predict_seed": self.predict_seed,
                "task": self.task}


__all__ = ["GUIDED", "MCDM", "MCDMNetwork", "TASKS"]
