"""Export a trained diffusion module to diffusers: ``save_pretrained`` weights and, where one fits, a pipeline.

    python -m launch.export --config ddpm_digits.yaml --ckpt_path runs/ddpm_digits/version_0/checkpoints/last.ckpt \\
        --out exported/ddpm_digits
    python -m launch.export --config ddpm_digits.yaml --ckpt_path last --out exported/ddpm_digits   # newest run

What is written into ``--out`` (issue 13 §6):

* ``<network>/`` (``unet/`` for the suite's diffusers UNets): the module's ``network`` written
  with diffusers' ``save_pretrained`` (``config.json`` + ``diffusion_pytorch_model.safetensors``,
  keys without the Lightning ``network.`` prefix), with the **EMA** average from the checkpoint's
  ``EMACallback`` state (``--weights raw`` for the training weights; a checkpoint without an
  average exports the raw weights and says so);
* where a diffusers pipeline reproduces the suite's sampler, the pipeline folder around it
  (``model_index.json``, ``scheduler/``): ``DDPMPipeline`` + ``DDPMScheduler`` for a module that
  samples with ``ddpm`` on a DDPM table, ``DDIMPipeline`` + ``DDIMScheduler`` for ``ddim``;
  the scheduler gets the path's beta table, the prediction type, the timestep spacing and
  offset, ``clip_sample=False`` and ``fixed_small`` variance, so
  ``DDPMPipeline.from_pretrained(out)(num_inference_steps=N, generator=g)`` draws the image
  the suite draws with the same seed (tested in ``tests/test_launch_export.py``);
* ``export.json``: checkpoint, step, epoch, config files, which weights, the pipeline (or why
  none fits), the scheduler config and the suite settings it mirrors.

No pipeline fits, and only the network is written, for: flow-matching modules (diffusers'
flow-matching scheduler runs time the other way and has no unconditional UNet pipeline),
class-conditional baselines (``DDPMPipeline`` passes no class labels), paths other than a
DDPM table, and latent / text-conditional modules (a ``StableDiffusionPipeline`` also needs the
VAE, text encoder and tokenizer folders of the pretrained base, which the suite does not own).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from launch.errors import one_line_errors
from launch.from_config import build_cli, check_fits, ema_weights, load_checkpoint, resolve_ckpt_path
from launch.argv import split_overrides

log = logging.getLogger("export")

__all__ = ["export_module", "scheduler_for", "main"]

_PIPELINES = {"ddpm": ("DDPMPipeline", "DDPMScheduler"), "ddim": ("DDIMPipeline", "DDIMScheduler")}


def scheduler_for(module: Any) -> tuple[Optional[str], Optional[dict[str, Any]], str]:
    """``(pipeline class name, scheduler config, reason)`` of the diffusers pipeline that mirrors ``module``'s sampling."""
    from diffusion.paths import DiscreteDDPMPath

    path = getattr(module, "path", None)
    sampler = getattr(getattr(module, "sampler", None), "name", None)
    if not isinstance(path, DiscreteDDPMPath):
        return None, None, f"path {type(path).__name__} is not a DDPM table (no diffusers pipeline runs it as the suite does)"
    if getattr(module, "num_classes", None) is not None:
        return None, None, "class-conditional network: DDPMPipeline/DDIMPipeline pass no class labels"
    if hasattr(module, "context") or hasattr(module, "vae"):
        return None, None, "latent or text-conditional module: a StableDiffusionPipeline needs the base model's VAE/text encoder"
    if sampler not in _PIPELINES:
        return None, None, f"sampler {sampler!r} has no DDPM/DDIM pipeline equivalent (export the network and pick a scheduler)"
    if module.prediction_type not in ("epsilon", "sample", "v_prediction"):
        return None, None, f"prediction_type {module.prediction_type!r} is not a diffusers scheduler prediction type"
    if module.grid not in ("leading", "trailing", "linspace"):
        return None, None, f"grid {module.grid!r} is not a diffusers timestep spacing"
    config: dict[str, Any] = {
        "num_train_timesteps": int(path.num_train_timesteps),
        "beta_schedule": path.beta_schedule,
        "beta_start": float(path.beta_start),
        "beta_end": float(path.beta_end),
        "prediction_type": module.prediction_type,
        "clip_sample": False,
        "timestep_spacing": module.grid,
        "steps_offset": int(module.grid_steps_offset),
    }
    if sampler == "ddpm":
        config["variance_type"] = getattr(module.sampler, "variance_type", "fixed_small")
        note = ""
    else:
        config["set_alpha_to_one"] = True  # the suite's grids end at t = 1 (final='one')
        eta = float(getattr(module.sampler, "eta", 0.0))
        note = f" (call the pipeline with eta={eta:g})" if eta else ""
    return _PIPELINES[sampler][0], config, f"{sampler} sampler on a DDPM table{note}"


def _apply_weights(module: Any, checkpoint: dict[str, Any], which: str, where: str = "the checkpoint") -> dict[str, Any]:
    """Load the checkpoint's module state, then the EMA average over it; returns what was used."""
    state = checkpoint.get("state_dict") or {}
    check_fits(module, state, where)
    module.load_state_dict(state, strict=False)  # frozen parts are not in the checkpoint (DESIGN.md)
    info: dict[str, Any] = {"weights": "raw"}
    ema = ema_weights(checkpoint)
    if which in ("ema", "auto") and ema is not None:
        params = dict(module.named_parameters())
        unknown = [n for n in ema["ema"] if n not in params]
        if unknown:
            raise SystemExit(f"error: EMA names not in the module: {unknown[:3]}")
        with torch.no_grad():
            for name, value in ema["ema"].items():
                params[name].copy_(value)
        info = {"weights": "ema", "ema_num_updates": int(ema.get("num_updates", 0)), "ema_decay": ema.get("decay")}
    elif which == "ema":
        raise SystemExit("error: --weights ema: the checkpoint has no EMACallback average")
    elif ema is None:
        log.warning("the checkpoint has no EMA average; exporting the raw training weights")
    return info


def export_module(module: Any, checkpoint: dict[str, Any], out: str | Path, weights: str = "auto",
                  pipeline: str = "auto", extra: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Write ``module.network`` (and a pipeline where one fits) into ``out``; return the manifest."""
    out = Path(out)
    network = getattr(module, "network", None)
    if network is None or not callable(getattr(network, "save_pretrained", None)):
        raise SystemExit(f"error: {type(module).__name__}.network is not a diffusers model (no save_pretrained)")
    info = _apply_weights(module, checkpoint, weights, str((extra or {}).get("checkpoint", "the checkpoint")))
    network = network.eval().cpu()
    pipe_name, sched_config, reason = scheduler_for(module)
    if pipeline == "none":
        pipe_name, reason = None, "--pipeline none"
    elif pipeline != "auto" and pipeline != (pipe_name or "").lower().replace("pipeline", ""):
        raise SystemExit(f"error: --pipeline {pipeline}: this module fits {pipe_name or 'no pipeline'} ({reason})")
    folder = "unet" if "UNet" in type(network).__name__ else "network"
    out.mkdir(parents=True, exist_ok=True)
    if pipe_name is not None:
        import diffusers

        scheduler = getattr(diffusers, _PIPELINES[module.sampler.name][1])(**sched_config)
        pipe = getattr(diffusers, pipe_name)(unet=network, scheduler=scheduler)
        pipe.save_pretrained(str(out), safe_serialization=True)
    else:
        network.save_pretrained(str(out / folder), safe_serialization=True)
    manifest = {
        "network": folder,
        "network_class": type(network).__name__,
        "pipeline": pipe_name,
        "pipeline_reason": reason,
        "scheduler": sched_config if pipe_name else None,
        "suite": {
            "module": type(module).__name__,
            "sampler": getattr(module.sampler, "name", None),
            "num_sampling_steps": getattr(module, "num_sampling_steps", None),
            "grid": getattr(module, "grid", None),
            "prediction_type": getattr(module, "prediction_type", None),
            "path": repr(getattr(module, "path", None)),
        },
        "global_step": checkpoint.get("global_step"),
        "epoch": checkpoint.get("epoch"),
        **info,
        **(extra or {}),
    }
    (out / "export.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def parse_args(argv: Optional[Sequence[str]] = None) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="Arguments after `--` are passed to the config parser (e.g. --model.init_args.x y).")
    p.add_argument("--config", action="append", required=True, help="config files as for cli.py (repeatable)")
    p.add_argument("--ckpt_path", required=True, help="a Lightning checkpoint, or `last` (newest of the run)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--weights", choices=("auto", "ema", "raw"), default="auto",
                   help="auto: the EMA average when the checkpoint has one")
    p.add_argument("--pipeline", choices=("auto", "ddpm", "ddim", "none"), default="auto")
    p.add_argument("--runs_dir", default="runs")
    p.add_argument("--run_name", default=None)
    argv = list(sys.argv[1:] if argv is None else argv)
    argv, overrides = split_overrides(argv)
    return p.parse_args(argv), overrides


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("lightning.pytorch").propagate = False  # Lightning prints its own lines
    args, overrides = parse_args(argv)
    with one_line_errors():
        ckpt = resolve_ckpt_path(args.ckpt_path, args.config, args.runs_dir, args.run_name)
        suite = build_cli(args.config, overrides)
        manifest = export_module(suite.model, load_checkpoint(ckpt), args.out, args.weights, args.pipeline,
                                 extra={"checkpoint": str(ckpt), "configs": list(args.config), "overrides": overrides})
    print(f"exported {manifest['network_class']} ({manifest['weights']} weights, step {manifest['global_step']}) "
          f"to {args.out}" + (f" as a {manifest['pipeline']}" if manifest["pipeline"] else
                              f"; no pipeline: {manifest['pipeline_reason']}"))
    return manifest


if __name__ == "__main__":
    main()
