"""The chained Inverse Painting model (thesis 000, Ch. 6): text -> mask -> render, as one LightningModule.

* ``fit`` trains the three networks on the same pair batches. They share no parameters and their
  losses are independent (§6.5: "the three networks are independent and can be trained in
  parallel"), so the summed loss with one optimizer holding one parameter group per network (its
  own lr: renderer 1e-5, mask 1e-5, text 1e-4) gives each network the gradient it would get alone.
  It is **not** the same run as the three stage configs, though: the joint run has one
  ``max_steps`` (the stages: renderer 200k steps, mask 80k steps, text 10 epochs), one batch size
  (the stages: 1, 1, 16), one precision and one data size (renderer/mask 512 px, LLaVA 336 px), and
  one gradient clip over all parameters. For the paper's schedule train each network with its own
  config and load it here with ``*_checkpoint`` (a Lightning checkpoint of that network's module).
* ``predict`` takes finished paintings (``data.init_args.predict_images``) and writes, per
  painting, the time-lapse as MP4 and GIF plus the keyframes, masks and instructions
  (:func:`lightning_modules.inverse_painting.rollout.write_rollout`).
* ``test`` rolls out every validation painting (``sample_for_batch``) and the config's
  ``callbacks.evaluation.EvaluationCallback`` scores §6.8 with
  :class:`~.evaluation.PaintingProcessMetrics` (LPIPS against the generated frame nearest in time,
  max-IoU of difference masks, DDC, DTS, FID / FVD when configured) and writes the Table 6.1 rows.

Ablations (Table 6.1) are config overlays in ``configs/inverse_painting_ablations/``.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
from lightning.pytorch import LightningModule
from torch import Tensor, nn

from metrics.perceptual import LPIPSNetwork
from datamodules.predict_inputs import restore_from_canvas
from lightning_modules.components.predict_outputs import PredictOutputsMixin, names_of

from .difference_mask import MinSizeLPIPS
from .evaluation import uniform_frames  # noqa: F401 - re-exported (moved to .evaluation)
from .mask_generator import MaskInstructionGenerator
from .renderer import InversePaintingRenderer
from .rollout import Rollout, StopCriterion, rollout, write_rollout
from .text_generator import TextInstructionGenerator
from lightning_modules.components.safe_load import safe_torch_load

log = logging.getLogger(__name__)


def load_stage(module: nn.Module, path: Optional[str], key: str) -> None:
    """Load a stage's Lightning checkpoint into ``module`` (frozen parts come from their own files)."""
    if path is None:
        return
    if not Path(path).is_file():
        raise FileNotFoundError(f"{key}: checkpoint '{path}' not found; train the stage with its own config first "
                                "(docs/inverse_painting.md, 'Training')")
    state = safe_torch_load(path, key=key)
    module.load_state_dict(state["state_dict"], strict=True)


class InversePainting(PredictOutputsMixin, LightningModule):
    """Text generator + mask generator + renderer with the §6.6 rollout and the §6.8 evaluation.

    Args:
        renderer: the :class:`InversePaintingRenderer`.
        mask_generator: ``g_mask`` (``null`` for renderers without a mask: Ours-MG, one-stage).
        text_generator: ``g_text`` (``null`` for renderers without text: Ours-TG, one-stage).
        renderer_checkpoint, mask_checkpoint, text_checkpoint: stage checkpoints to load.
        interval: ``Δ̂`` in seconds (20; 10 and 30 in Table 6.1).
        max_keyframes: step limit of the rollout.
        stop_eps: the LPIPS stop threshold (1e-3).
        lpips_backbone: AlexNet weights of the LPIPS network of the stop criterion; ``null`` =
            random backbone (tests; results rows say ``weights: random``).
        train_stages: networks that ``fit`` trains (``renderer``, ``mask``, ``text``).
        learning_rates: per-network learning rates of the joint optimizer.
        method_name: the rows' method (Table 6.1 names: ``Ours``, ``Ours-TE``, ...).
    """

    def __init__(
        self,
        renderer: InversePaintingRenderer,
        mask_generator: Optional[MaskInstructionGenerator] = None,
        text_generator: Optional[TextInstructionGenerator] = None,
        renderer_checkpoint: Optional[str] = None,
        mask_checkpoint: Optional[str] = None,
        text_checkpoint: Optional[str] = None,
        interval: float = 20.0,
        max_keyframes: int = 50,
        stop_eps: float = 1e-3,
        num_sampling_steps: Optional[int] = None,
        lpips_backbone: Optional[str] = None,
        train_stages: tuple[str, ...] = ("renderer", "mask", "text"),
        learning_rates: Optional[dict[str, float]] = None,
        weight_decay: float = 0.01,
        method_name: str = "Ours",
        fps: float = 2.0,
        predict_seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["renderer", "mask_generator", "text_generator"])
        if renderer.use["mask"] and mask_generator is None:
            raise ValueError("model.init_args.mask_generator is null but the renderer uses masks (use_mask: true)")
        if renderer.use["text"] and text_generator is None:
            raise ValueError("model.init_args.text_generator is null but the renderer uses text (use_text: true)")
        if mask_generator is not None and mask_generator.use_text and text_generator is None:
            raise ValueError("the mask generator uses text (use_text: true) but model.init_args.text_generator is null")
        load_stage(renderer, renderer_checkpoint, "model.init_args.renderer_checkpoint")
        if mask_generator is not None:
            load_stage(mask_generator, mask_checkpoint, "model.init_args.mask_checkpoint")
        if text_generator is not None:
            load_stage(text_generator, text_checkpoint, "model.init_args.text_checkpoint")
        self.renderer, self.mask_generator, self.text_generator = renderer, mask_generator, text_generator
        # the stages' own files (stage checkpoints, the authors' released renderer / mask generator) make a
        # test / predict without --ckpt_path meaningful (cli.py); rows record the released files
        released_renderer = getattr(renderer, "released_checkpoint", None)
        released_mask = getattr(mask_generator, "released_checkpoint", None)
        released = [f for f in (released_renderer, released_mask) if f]
        self.released_checkpoint = "; ".join(released) if released else None
        self.loads_own_weights = bool((renderer_checkpoint or released_renderer)
                                      and (mask_checkpoint or released_mask or mask_generator is None)
                                      and (text_checkpoint or text_generator is None))
        unknown = set(train_stages) - {"renderer", "mask", "text"}
        if unknown:
            raise ValueError(f"train_stages has unknown names {sorted(unknown)}; use renderer, mask, text")
        self.train_stages = tuple(train_stages)
        self.learning_rates = {"renderer": 1e-5, "mask": 1e-5, "text": 1e-4, **(learning_rates or {})}
        self.weight_decay = float(weight_decay)
        self.interval, self.max_keyframes, self.stop_eps = float(interval), int(max_keyframes), float(stop_eps)
        self.num_sampling_steps = num_sampling_steps
        self.lpips = MinSizeLPIPS(LPIPSNetwork("alex", lpips_backbone)).requires_grad_(False)
        self.method_name, self.fps = method_name, float(fps)
        self.predict_seed = int(predict_seed)
        self._painted = 0
        self._keyframes = 0

    # ------------------------------------------------------------------ parameters / checkpoint
    def _stages(self) -> dict[str, Optional[nn.Module]]:
        return {"renderer": self.renderer, "mask": self.mask_generator, "text": self.text_generator}

    def trainable_parameters(self) -> list[nn.Parameter]:
        params: list[nn.Parameter] = []
        for name in self.train_stages:
            stage = self._stages()[name]
            if stage is not None:
                params += stage.trainable_parameters()
        return params

    def configure_optimizers(self) -> Any:
        groups = []
        for name in self.train_stages:
            stage = self._stages()[name]
            if stage is not None:
                groups.append({"params": stage.trainable_parameters(), "lr": self.learning_rates[name], "name": name})
        if not groups:
            raise ValueError("train_stages selects no network to train")
        return torch.optim.AdamW(groups, weight_decay=self.weight_decay)

    def _is_saved(self, key: str) -> bool:
        if key.startswith(("lpips.",)):
            return False
        for prefix, stage in (("renderer.", self.renderer), ("mask_generator.", self.mask_generator), ("text_generator.", self.text_generator)):
            if stage is not None and key.startswith(prefix):
                inner = key[len(prefix):]
                return not any(inner.startswith(f"{f}.") for f in getattr(stage, "_frozen", {}))
        return True

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]
        for key in [k for k in state if not self._is_saved(k)]:
            del state[key]

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        missing = [k for k in result.missing_keys if self._is_saved(k)]
        if strict and (missing or result.unexpected_keys):
            raise RuntimeError(f"InversePainting: checkpoint does not fit; missing {missing[:10]}, unexpected {result.unexpected_keys[:10]}")
        return result

    # ------------------------------------------------------------------ training
    def stage_losses(self, batch: Mapping[str, Any], train: bool = True) -> dict[str, Tensor]:
        losses: dict[str, Tensor] = {}
        generator = None if train else torch.Generator(device=self.device).manual_seed(1234)
        if "renderer" in self.train_stages or not train:
            losses["renderer"] = self.renderer.pair_loss(batch, generator, train=train).mean()
        if self.mask_generator is not None and ("mask" in self.train_stages or not train):
            losses["mask"] = self.mask_generator.loss(batch)
        if self.text_generator is not None and ("text" in self.train_stages or not train):
            losses["text"] = self.text_generator.loss(batch)
        return losses

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        losses = self.stage_losses(batch)
        b = batch["canvas"].shape[0]
        for name, value in losses.items():
            self.log(f"train/{name}_loss", value, batch_size=b)
        loss = sum(losses.values())
        self.log("train/loss", loss, prog_bar=True, batch_size=b)
        return loss

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        losses = self.stage_losses(batch, train=False)
        b = batch["canvas"].shape[0]
        for name, value in losses.items():
            self.log(f"val/{name}_loss", value, batch_size=b, sync_dist=True)
        loss = sum(losses.values())
        self.log("val/loss", loss, prog_bar=True, batch_size=b, sync_dist=True)
        return loss

    # ------------------------------------------------------------------ rollout
    def paint(self, target: Tensor, generator: Optional[torch.Generator] = None, interval: Optional[float] = None) -> Rollout:
        """The §6.6 rollout of one target ``[1, 3, H, W]``."""
        stop = StopCriterion(lambda a, b: self.lpips(a, b), self.stop_eps)
        return rollout(
            target, self.renderer, self.mask_generator, self.text_generator,
            interval=self.interval if interval is None else interval, max_keyframes=self.max_keyframes,
            stop=stop, num_steps=self.num_sampling_steps, generator=generator,
        )

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        """Paint every target; one folder per painting (named after it) and ``manifest.json``.

        Targets were resized to the model's size; the time-lapse frames and masks are mapped
        back to the painting's aspect ratio (long side = the model's, ``restore_from_canvas``).
        """
        targets = batch["target"]
        writer = self.prediction_writer("timelapses", {
            "module": type(self).__name__, "interval": self.interval, "max_keyframes": self.max_keyframes,
            "num_sampling_steps": self.num_sampling_steps, "predict_seed": self.predict_seed,
        })
        names = names_of(batch, batch_idx, targets.shape[0])
        placements = batch.get("placement")
        for i in range(targets.shape[0]):
            seed = self.predict_seed + batch_idx * 1000 + i
            generator = torch.Generator(device=self.device).manual_seed(seed)
            result = self.paint(targets[i : i + 1], generator)
            if placements is not None:
                side = max(targets.shape[-2:])
                place = placements[i]
                result = replace(
                    result,
                    frames=restore_from_canvas(result.frames.float().cpu(), place, max_side=side),
                    masks=[restore_from_canvas(m.float().cpu(), place, interpolation="nearest", max_side=side)
                           for m in result.masks],
                )
            folder = writer.path_for(names[i], ext="")
            info = write_rollout(result, folder, self.fps)
            outputs = [folder / "timelapse.mp4", folder / "timelapse.gif", folder / "process.json"]
            source = batch["path"][i] if "path" in batch else f"predict split, batch {batch_idx} item {i}"
            writer.record(source, outputs, keyframes=len(result.times) - 1, stopped=result.stopped, seed=seed,
                          size=list(result.frames.shape[-2:]))
            log.info("%s: %d keyframes (%s), %.1fs text / %.1fs mask / %.1fs render", names[i], len(result.times) - 1,
                     result.stopped, result.seconds["text"], result.seconds["mask"], result.seconds["render"])
            del info

    # ------------------------------------------------------------------ evaluation (§6.8)
    @property
    def uses_random_weights(self) -> bool:
        """Random renderer weights or a random LPIPS backbone: rows say ``weights: random``."""
        return bool(self.renderer.uses_random_weights or self.hparams.lpips_backbone is None)

    @property
    def guidance_scale(self) -> float:
        return float(self.renderer.guidance.get("text", 1.0))

    def nfe(self, num_steps: Optional[int] = None) -> int:
        """Network passes per rendered keyframe (sampler steps x (1 + guided conditions))."""
        steps = num_steps or self.num_sampling_steps or self.renderer.num_sampling_steps
        return int(self.renderer.nfe_per_step() * steps)

    def results_row_extra(self) -> dict[str, Any]:
        """Added to every results row by the EvaluationCallback."""
        return {"interval_s": self.interval, "keyframes": self._keyframes, "guidance_scales": dict(self.renderer.guidance),
                "text_backend_stand_in": bool(self.text_generator is not None and self.text_generator.is_stand_in)}

    @torch.no_grad()
    def sample_for_batch(self, batch: Mapping[str, Any], *, generator: Optional[torch.Generator] = None,
                         num_steps: Optional[int] = None, **_: Any) -> Any:
        """For the EvaluationCallback (``per_batch_generation``):

        * sequence batches (``frames``, ``times``: ``data.test_items: sequences``): one §6.6 rollout per
          painting (target = the last real frame) -> ``PaintingProcessMetrics`` (Table 6.1) and
          ``InstructionSequenceAgreement`` (§6.9 whole sequences);
        * pair batches (``canvas``, ``target``, ``delta``: ``data.test_items: pairs``): the §6.9
          single update with the *predicted* text: ``g_text`` on the GT canvas, then ``g_mask`` with
          that text -> the masks ``[B, 1, H, W]`` for ``StepMaskIoU`` ("Mask generator with predicted text").
        """
        if "frames" not in batch:
            return self.masks_from_predicted_text(batch)
        frames = batch["frames"]
        results = []
        for i in range(frames.shape[0]):
            seed = self.predict_seed + self._painted
            gen = torch.Generator(device=self.device).manual_seed(seed) if generator is None else generator
            result = self.paint(frames[i][-1:].contiguous(), gen) if num_steps is None else self._paint_steps(frames[i][-1:], gen, num_steps)
            self._painted += 1
            self._keyframes += len(result.times) - 1
            results.append(result)
        return results

    @torch.no_grad()
    def masks_from_predicted_text(self, batch: Mapping[str, Any]) -> Tensor:
        """``g_mask(I_T, I_{t-1}, D(I_T, I_{t-1}), g_text(I_{t-1}, I_T), Δt)`` on GT pairs (§6.9: IoU 0.64)."""
        if self.mask_generator is None:
            raise ValueError("the predicted-text mask analysis needs model.init_args.mask_generator")
        canvas, target = batch["canvas"], batch["target"]
        text = self.text_generator.generate(target, canvas) if self.text_generator is not None else None
        unfinished = batch.get("unfinished")
        return self.mask_generator.predict_mask(target, canvas, batch["delta"], text, unfinished)

    def _paint_steps(self, target: Tensor, generator: torch.Generator, num_steps: int) -> Rollout:
        saved = self.num_sampling_steps
        self.num_sampling_steps = int(num_steps)
        try:
            return self.paint(target.contiguous(), generator)
        finally:
            self.num_sampling_steps = saved

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        """Nothing to compute here: the EvaluationCallback calls :meth:`sample_for_batch` and scores."""
        return None

    def on_test_epoch_start(self) -> None:
        self._painted, self._keyframes = 0, 0
