"""AlignTok tokenizer training in three stages, and the linear probe (thesis 000, Ch. 7 §7.3, §7.5).

* **Stage 1, latent alignment**: encoder E_p frozen; adapter A and decoder D train on L_rec
  (Eq. 7.1: L1 + 1.0 LPIPS + 0.5 x adaptive-weighted GAN, the GAN switched on after 5K steps);
  lr 1e-4.
* **Stage 2, perceptual alignment**: E_p, A and D train on ``L_rec + w_sp * lambda_sp * L_sp``
  with ``L_sp = ||A(E_p(x)) - A0(E0(x))||^2`` against a frozen copy of the stage-1 E_p o A;
  ``lambda_sp`` matches L_sp's gradient norm at the encoder's last layer to L_rec's; w_sp = 1;
  lr 1e-5; EMA (``callbacks.ema.EMACallback`` in the config).
* **Stage 3, decoder refinement**: only D trains on L_rec; lr 1e-4.

Each stage is its own config (``configs/aligntok_stage{1,2,3}.yaml``) and starts from the
previous stage's checkpoint through ``init_checkpoint`` (EMA weights when the checkpoint
has them), so the three runs form a chain. The discriminator carries over too (the GAN
"stays on through stages 2 and 3").

Optimisation is manual: one Adam step for the generator set, then one for the
discriminator (only once the GAN is on). The discriminator step bypasses Lightning's step
counter, so ``global_step`` counts generator steps (the thesis's "steps"); use 32-bit or
bf16 precision (fp16 loss scaling is not applied to the discriminator step).

Choices where the thesis is silent: Adam with betas (0.5, 0.9) and no weight decay (the LDM
autoencoder recipe that VA-VAE uses); hinge discriminator loss; discriminator lr equal to
the generator's; L_sp is the mean squared error; lambda_sp's numerator is the gradient of
L1 + w_p LPIPS (the same numerator as the GAN weight); LPIPS with the VGG backbone (LDM's).

Table 7.1's L_sp ablations are options (overlays in ``configs/aligntok_ablations/``): ``sp_loss:
cosine`` and ``sp_target: encoder`` (pre-adapter); the w_sp rows set ``sp_weight``.
"""
from __future__ import annotations

import copy
import logging
from typing import Any, Mapping, Optional

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor, nn

from lightning_modules.aligntok.checkpoints import load_into, load_stage_state, sub_state
from lightning_modules.components.manual_sync import disable_ddp_reducer, sync_buffers, sync_gradients
from lightning_modules.aligntok.losses import (
    SP_LOSSES,
    PatchDiscriminator,
    adaptive_weight,
    generator_loss,
    hinge_d_loss,
    semantic_preservation_loss,
)
from lightning_modules.aligntok.tokenizer import AlignTokenizer
from lightning_modules.components.image_io import save_grid
from lightning_modules.components.predict_outputs import PredictOutputsMixin

log = logging.getLogger(__name__)

#: Which tokenizer parts train in each stage (the discriminator always trains once the GAN is on).
STAGE_TRAINABLE: dict[int, tuple[str, ...]] = {1: ("adapter", "decoder"), 2: ("encoder", "adapter", "decoder"), 3: ("decoder",)}
#: Parts kept out of checkpoints (rebuilt from their own sources).
_NOT_SAVED = ("lpips.", "reference.")
#: Where L_sp compares the trainable and the frozen stage-1 networks (see ``sp_target``).
SP_TARGETS = ("latent", "encoder")


def _is_sharded(tensor: Tensor) -> bool:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # pragma: no cover - old torch
        return False
    return isinstance(tensor, DTensor)


def psnr(x: Tensor, y: Tensor) -> Tensor:
    """PSNR in dB of ``[-1, 1]`` images mapped to ``[0, 1]``, per image."""
    mse = ((x.float() - y.float()) / 2.0).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return -10.0 * torch.log10(mse)


class AlignTokModule(PredictOutputsMixin, LightningModule):
    """One stage of AlignTok tokenizer training.

    Args:
        tokenizer: the :class:`AlignTokenizer` (encoder weights path, sizes).
        stage: 1, 2 or 3 (see module docstring).
        discriminator: the PatchGAN (``None``: the default 3-layer, 64-channel one).
        lpips_net / lpips_weights: LPIPS backbone and its torchvision weights file
            (``None``: random backbone, tests only).
        lr: Adam learning rate of generator and discriminator (1e-4 / 1e-5 / 1e-4).
        betas: Adam betas.
        perceptual_weight: w_p (1.0).
        gan_weight: w_g (0.5), applied after the adaptive rescaling.
        gan_start_step: generator step at which the GAN loss (and discriminator training)
            starts (5000 in stage 1; 0 in stages 2 and 3).
        sp_weight: w_sp (1 for ImageNet, 3 for LAION, 2 for SigLIP 2); stage 2 only.
        init_checkpoint: the previous stage's checkpoint (``None``: start from the configured
            weights: stage 1 from the pretrained encoder, tests with random weights).
        init_use_ema: take the EMA weights of ``init_checkpoint`` when it has them.
        max_adaptive_weight: clamp of the adaptive weights (VQGAN: 1e4).
        sp_adaptive_eps: the epsilon added to L_sp's gradient norm in lambda_sp (VQGAN's 1e-4; the
            thesis gives none). The tiny overlays lower it: their random stand-in encoder's gradients
            at the last layer are far below 1e-4, where the epsilon, not L_sp, would set lambda_sp.
        sp_loss: ``mse`` (the thesis's L2) or ``cosine`` (Table 7.1's "Cosine L_sp" ablation).
        sp_target: ``latent`` (the thesis: L_sp on the post-adapter latent, against the frozen stage-1
            E_p o A) or ``encoder`` (Table 7.1's "L_sp applied pre-adapter": on E_p's output, against
            the frozen stage-1 E_p only, so the adapter is unregularised).
    """

    predict_counts_sampler_steps = False  # reconstruction, no sampler: Lightning's batch bar stays

    def __init__(
        self,
        tokenizer: AlignTokenizer,
        stage: int = 1,
        discriminator: Optional[PatchDiscriminator] = None,
        lpips_net: str = "vgg",
        lpips_weights: Optional[str] = None,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.5, 0.9),
        perceptual_weight: float = 1.0,
        gan_weight: float = 0.5,
        gan_start_step: int = 5000,
        sp_weight: float = 1.0,
        init_checkpoint: Optional[str] = None,
        init_use_ema: bool = True,
        max_adaptive_weight: float = 1e4,
        sp_adaptive_eps: float = 1e-4,
        sp_loss: str = "mse",
        sp_target: str = "latent",
    ) -> None:
        super().__init__()
        if stage not in STAGE_TRAINABLE:
            raise ValueError(f"stage must be 1, 2 or 3, got {stage}")
        if sp_loss not in SP_LOSSES:
            raise ValueError(f"model.init_args.sp_loss must be one of {list(SP_LOSSES)}, got {sp_loss!r}")
        if sp_target not in SP_TARGETS:
            raise ValueError(f"model.init_args.sp_target must be one of {list(SP_TARGETS)}, got {sp_target!r}")
        self.save_hyperparameters(ignore=["tokenizer", "discriminator"])
        self.automatic_optimization = False
        self.stage = int(stage)
        self.tokenizer = tokenizer
        self.discriminator = discriminator if discriminator is not None else PatchDiscriminator()
        from metrics.perceptual import LPIPSNetwork

        self.lpips = LPIPSNetwork(net=lpips_net, backbone_weights=lpips_weights)
        self.lpips.requires_grad_(False).eval()
        if init_checkpoint is not None:
            state = load_stage_state(
                init_checkpoint, "model.init_args.init_checkpoint", init_use_ema,
                source=f"the AlignTok stage-{max(self.stage - 1, 1)} run",
            )
            load_into(self.tokenizer, sub_state(state, "tokenizer"), "the tokenizer", init_checkpoint)
            disc = sub_state(state, "discriminator")
            if disc:
                load_into(self.discriminator, disc, "the discriminator", init_checkpoint)
        self.reference: Optional[nn.Module] = None
        if self.stage == 2:
            # Frozen copy of the stage-1 E_p o A (E_p alone for the pre-adapter ablation): the target of L_sp.
            parts = [self.tokenizer.encoder] + ([self.tokenizer.adapter] if sp_target == "latent" else [])
            self.reference = nn.Sequential(*(copy.deepcopy(part) for part in parts))
            self.reference.requires_grad_(False).eval()
        self.configure_trainable()

    # ------------------------------------------------------------------ parameters
    def configure_trainable(self) -> None:
        """Set ``requires_grad`` per stage: stage 1 A+D, stage 2 E+A+D, stage 3 D (plus the discriminator)."""
        self.tokenizer.requires_grad_(False)
        for name in STAGE_TRAINABLE[self.stage]:
            getattr(self.tokenizer, name).requires_grad_(True)
        self.discriminator.requires_grad_(True)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The tokenizer parameters this stage trains (what EMA averages); the discriminator has its own optimizer."""
        return [p for p in self.tokenizer.parameters() if p.requires_grad]

    def train(self, mode: bool = True) -> "AlignTokModule":
        super().train(mode)
        self.lpips.eval()
        if self.reference is not None:
            self.reference.eval()
        for name in ("encoder", "adapter", "decoder"):
            if name not in STAGE_TRAINABLE[self.stage]:
                getattr(self.tokenizer, name).eval()
        return self

    def configure_model(self) -> None:
        """FSDP2 under ``ModelParallelStrategy`` (a no-op otherwise): shard the ViT blocks.

        The encoder (304M of stage 2's 350M trainable, and the frozen 304M L_sp reference copy)
        is where the memory is, so each of its transformer blocks becomes an FSDP2 unit
        (``fully_shard`` over the data-parallel mesh), except the last trainable one: it holds
        ``encoder.last_layer()``, the parameter the L_sp adaptive weight differentiates with
        ``torch.autograd.grad``, which needs a plain tensor. Adapter, decoder (41M), the last block
        and the discriminator stay replicated; their gradients are averaged by
        :func:`sync_gradients` (which skips the FSDP2 shards, reduce-scattered by FSDP itself). [GAP]:
        the thesis says only "8 GPUs"; this plan is the suite's choice.
        """
        trainer = getattr(self, "_trainer", None)
        if trainer is None:
            return
        from lightning.pytorch.strategies import ModelParallelStrategy

        if not isinstance(trainer.strategy, ModelParallelStrategy):
            return
        from torch.distributed.fsdp import fully_shard

        from launch.sharding import is_fsdp2

        mesh = trainer.strategy.device_mesh
        dp_mesh = mesh["data_parallel"] if "data_parallel" in (mesh.mesh_dim_names or ()) else mesh
        own = list(self.tokenizer.encoder.model.blocks)
        units = own[:-1]
        if self.reference is not None:
            units += list(self.reference[0].model.blocks)  # frozen: sharded for memory, nothing to reduce
        for block in units:
            if not is_fsdp2(block):
                fully_shard(block, mesh=dp_mesh)
        log.info("AlignTok: FSDP2 over %d ViT blocks (%d ranks); last block, adapter, decoder, discriminator replicated",
                 len(units), dp_mesh.size())

    def on_train_start(self) -> None:
        # two backward passes per step over different parameters: DDP's reducer cannot follow
        # that, so gradients are averaged by sync_gradients in training_step instead
        disable_ddp_reducer(self)

    def configure_optimizers(self) -> Any:
        g_params = self.trainable_parameters()
        log.info("AlignTok stage %d: %.2fM generator + %.2fM discriminator parameters train",
                 self.stage, sum(p.numel() for p in g_params) / 1e6,
                 sum(p.numel() for p in self.discriminator.parameters()) / 1e6)
        betas = tuple(self.hparams.betas)
        # FSDP2 shards (DTensor) and replicated tensors in separate groups: foreach kernels refuse a mix
        sharded = [p for p in g_params if _is_sharded(p)]
        groups = [group for group in ([p for p in g_params if not _is_sharded(p)], sharded) if group]
        opt_g = torch.optim.Adam([{"params": group} for group in groups], lr=self.hparams.lr, betas=betas)
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=self.hparams.lr, betas=betas)
        return [opt_g, opt_d]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith(_NOT_SAVED)]:
            del state[key]

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        missing = [k for k in result.missing_keys if not k.startswith(_NOT_SAVED)]
        if strict and (missing or result.unexpected_keys):
            raise RuntimeError(f"AlignTokModule: checkpoint does not fit; missing {missing[:8]}, "
                               f"unexpected {result.unexpected_keys[:8]}")
        return result

    # ------------------------------------------------------------------ losses
    def gan_active(self) -> bool:
        return self.global_step >= self.hparams.gan_start_step

    def generator_losses(self, images: Tensor, gan_on: bool) -> dict[str, Tensor]:
        """Every term of the generator objective of this stage, and their weighted total ``loss``."""
        hp = self.hparams
        tok = self.tokenizer
        if self.stage == 3:
            with torch.no_grad():
                latents = tok.encode(images)
        else:
            features = tok.encoder(images)  # kept for the pre-adapter L_sp ablation
            latents = tok.adapter(features)
        recon = tok.decode(latents)
        l1 = (recon.float() - images.float()).abs().mean()
        perceptual = self.lpips(recon.float(), images.float()).mean()
        nll = l1 + hp.perceptual_weight * perceptual
        out = {"l1": l1, "lpips": perceptual, "nll": nll, "recon": recon.detach()}
        total = nll
        if gan_on:
            g_loss = generator_loss(self.discriminator(recon))
            weight = adaptive_weight(nll, g_loss, tok.decoder_last_layer(), max_weight=hp.max_adaptive_weight)
            total = total + hp.gan_weight * weight * g_loss
            out.update(g_loss=g_loss, gan_adaptive_weight=weight)
        if self.stage == 2 and self.reference is not None:
            with torch.no_grad():
                target = self.reference(images)
            current = latents if hp.sp_target == "latent" else features
            sp = semantic_preservation_loss(current, target, hp.sp_loss)
            weight = adaptive_weight(nll, sp, tok.encoder.last_layer(), eps=hp.sp_adaptive_eps,
                                     max_weight=hp.max_adaptive_weight)
            total = total + hp.sp_weight * weight * sp
            out.update(sp_loss=sp, sp_adaptive_weight=weight)
        out["loss"] = total
        return out

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        opt_g, opt_d = self.optimizers()
        images = batch["image"]
        gan_on = self.gan_active()
        losses = self.generator_losses(images, gan_on)
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(losses["loss"])
        sync_gradients(self.trainable_parameters())  # DDP: the module syncs (components/manual_sync.py)
        opt_g.step()
        if gan_on:
            logits_real = self.discriminator(images.detach())
            logits_fake = self.discriminator(losses["recon"])
            d_loss = hinge_d_loss(logits_real, logits_fake)
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(d_loss)
            sync_gradients(self.discriminator.parameters())
            opt_d.optimizer.step()  # raw step: global_step counts generator steps only
            sync_buffers(self.discriminator)  # its BatchNorm statistics, as DDP's buffer broadcast would
            losses["d_loss"] = d_loss.detach()
        size = images.shape[0]
        for name, value in losses.items():
            if name != "recon":
                self.log(f"train/{name}", value.detach().float(), prog_bar=name == "loss", batch_size=size)
        return losses["loss"].detach()

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def reconstruct(self, images: Tensor) -> Tensor:
        return self.tokenizer(images).clamp(-1, 1)

    def _eval_step(self, batch: Mapping[str, Tensor], prefix: str) -> Tensor:
        images = batch["image"]
        recon = self.reconstruct(images)
        l1 = (recon - images).abs().mean()
        perceptual = self.lpips(recon.float(), images.float()).mean()
        size = images.shape[0]
        self.log(f"{prefix}/loss", l1 + self.hparams.perceptual_weight * perceptual, batch_size=size, sync_dist=True)
        self.log(f"{prefix}/l1", l1, batch_size=size, sync_dist=True)
        self.log(f"{prefix}/psnr", psnr(recon, images).mean(), batch_size=size, sync_dist=True)
        return l1

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        return self._eval_step(batch, "val")

    def test_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        return self._eval_step(batch, "test")

    def sample_for_batch(self, batch: Mapping[str, Tensor], **_: Any) -> Tensor:
        """The reconstruction of each real image (paired metrics: rFID, PSNR, LPIPS via ``EvaluationCallback``)."""
        return self.reconstruct(batch["image"].to(self.device))

    def sample(self, num_samples: int, **_: Any) -> Tensor:
        raise NotImplementedError(
            "a tokenizer does not generate: evaluate it with paired metrics (rFID via metrics.ReconstructionFID, "
            "PSNR, LPIPS), which use sample_for_batch"
        )

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        """Reconstruct every given image and write it named after its input, at its size.

        User images (``--data.predict_inputs my_images/``) arrive fitted to the tokenizer's
        resolution by ``datamodules.predict_inputs`` (``predict_fit: pad``, the default: resize
        the long side, pad); the reconstruction is cropped back and resized to the input's own
        height x width, so a 300x200 photo gives a 300x200 reconstruction. A grid per batch
        (inputs over reconstructions, at the model canvas) is written beside them.
        """
        images = batch["image"].to(self.device)
        recon = self.reconstruct(images)
        writer = self.prediction_writer("reconstructions", {"module": type(self).__name__})
        self.write_batch_images(writer, recon, batch, batch_idx)
        save_grid(torch.cat([images.to(recon), recon]), writer.folder / f"grid_{batch_idx:04d}.png", nrow=recon.shape[0])


class LinearProbeModule(LightningModule):
    """Linear probing of the adapter output (Ch. 7 §7.5): frozen E_p o A, one linear layer, Adam lr 1e-3, 3 epochs.

    Args:
        tokenizer: the tokenizer architecture.
        tokenizer_checkpoint: a tokenizer-stage checkpoint to probe (EMA weights preferred);
            ``None`` probes the configured weights (random in tests).
        num_classes: 1000 for ImageNet-1K.
        pooling: ``"flatten"`` (the whole 16x16x32 map, 8192 inputs) or ``"mean"`` (global
            average, 32 inputs). [?] The thesis does not say; ``flatten`` is the default.
        lr: Adam learning rate (1e-3).
    """

    def __init__(
        self,
        tokenizer: AlignTokenizer,
        tokenizer_checkpoint: Optional[str] = None,
        num_classes: int = 1000,
        pooling: str = "flatten",
        latent_grid: tuple[int, int] = (16, 16),
        lr: float = 1e-3,
    ) -> None:
        super().__init__()
        if pooling not in ("flatten", "mean"):
            raise ValueError(f"pooling must be 'flatten' or 'mean', got {pooling!r}")
        self.save_hyperparameters(ignore=["tokenizer"])
        if tokenizer_checkpoint is not None:
            state = load_stage_state(tokenizer_checkpoint, "model.init_args.tokenizer_checkpoint",
                                     source="an AlignTok tokenizer run (stage 1, 2 or 3)")
            load_into(tokenizer, sub_state(state, "tokenizer"), "the tokenizer", tokenizer_checkpoint)
        self.tokenizer = tokenizer.requires_grad_(False).eval()
        features = tokenizer.latent_channels * (latent_grid[0] * latent_grid[1] if pooling == "flatten" else 1)
        self.head = nn.Linear(features, num_classes)

    def train(self, mode: bool = True) -> "LinearProbeModule":
        super().train(mode)
        self.tokenizer.eval()
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(self.head.parameters())

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith("tokenizer.")]:
            del state[key]

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        missing = [k for k in result.missing_keys if not k.startswith("tokenizer.")]
        if strict and (missing or result.unexpected_keys):
            raise RuntimeError(f"LinearProbeModule: checkpoint does not fit; missing {missing}")
        return result

    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(self.trainable_parameters(), lr=self.hparams.lr)

    def logits(self, images: Tensor) -> Tensor:
        with torch.no_grad():
            latents = self.tokenizer.encode(images)
        if self.hparams.pooling == "mean":
            features = latents.mean(dim=(2, 3))
        else:
            if tuple(latents.shape[-2:]) != tuple(self.hparams.latent_grid):
                raise ValueError(f"flatten pooling expects a {tuple(self.hparams.latent_grid)} latent grid, "
                                 f"got {tuple(latents.shape[-2:])}; set model.latent_grid")
            features = latents.flatten(1)
        return self.head(features.float())

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        logits = self.logits(batch["image"])
        loss = F.cross_entropy(logits, batch["label"].long())
        self.log("train/loss", loss, prog_bar=True, batch_size=logits.shape[0])
        return loss

    def _eval(self, batch: Mapping[str, Tensor], prefix: str) -> Tensor:
        logits = self.logits(batch["image"])
        labels = batch["label"].long()
        loss = F.cross_entropy(logits, labels)
        top1 = (logits.argmax(-1) == labels).float().mean()
        self.log(f"{prefix}/loss", loss, batch_size=logits.shape[0], sync_dist=True)
        self.log(f"{prefix}/top1", top1, prog_bar=True, batch_size=logits.shape[0], sync_dist=True)
        return loss

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        return self._eval(batch, "val")

    def test_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        return self._eval(batch, "test")
