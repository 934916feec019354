"""The authors' released Inverse Painting weights in the suite's modules (issue 29; thesis 000, Ch. 6).

What ArmastusChen/inverse_painting released (README, "Download Pretrained Models", a Google Drive folder):

* ``checkpoints/RP/checkpoint-global_step-80000.ckpt`` -- the mask generator ("region predictor"):
  ``{"RP_state_dict": <UNet2DConditionModel state dict, in_channels 9, out_channels 1>,
  "PE_state_dict": <PositionalEncoder: fc1 21->256, fc2 256->512, fc3 512->768>}``.
  **Imported here** into :class:`~.mask_generator.MaskInstructionGenerator` (``released_checkpoint``).
* ``checkpoints/renderer/ckpt/checkpoint-global_step-200000.ckpt`` (+ ``checkpoints/renderer/config.yaml``,
  which their ``demo.py`` reads) -- the renderer: ``{"epoch", "global_step", "unet_state_dict",
  "cur_image_guider_state_dict", "PE_state_dict", "referencenet_state_dict", "image_adpater_state_dict"}``.
  **Imported here** into :class:`~.renderer.InversePaintingRenderer` (``released_checkpoint``), see below.
* ``checkpoints/TP_llava`` (text generator) and ``TP_llava_annotator`` (GT-text annotator): merged
  LLaVA-1.5-7B folders in the original ``liuhaotian/llava`` format. Convert them to the HF format with
  ``src/transformers/models/llava/convert_llava_weights_to_hf.py`` of the transformers repository (not in
  the pip wheel) and set ``backend.init_args.model_path`` (``lora: null``); not tested here.
* ``base_ckpt/realisticVisionV51_v51VAE`` and ``base_ckpt/clip-vit-base-patch32`` are the base models
  (``sd_path``, ``clip_path``).

The mask generator import is exact, given the official settings (refused otherwise, one message):

* keys: ``RP_state_dict.*`` -> ``unet.*``; ``PE_state_dict.fc{1,2,3}.*`` -> ``time_encoder.mlp.{0,2,4}.*``;
* ``conv_in``: the official spatial input is ``[E(I_{t-1}), E(I_T), M_d]``, the suite's (Eq. 6.3)
  ``[E(I_T), E(I_{t-1}), M_d]``: the two 4-channel blocks of ``conv_in.weight`` are swapped;
* the official UNet runs without a timestep embedding: ``unet_time_input: false`` (the unused
  ``time_emb_proj`` weights are loaded, then zeroed);
* the official time map (Δt rounded to 5 s, / 100, clamped, ``2x - 1``): ``time_encoding: official``;
* the token order ([time, text] there, [text, time] here) does not matter: cross-attention has no
  positional encoding over its keys.

The renderer import is exact given the official layouts (``configs/inverse_painting_released/renderer.yaml``;
refused otherwise, one message). What the official code builds (``utils/inference_helpers.load_pipeline``):

* ``unet_state_dict``: ``Hack_UNet2DConditionModel`` = diffusers' SD-1.5 UNet whose forward adds the
  feature encoder's output after ``conv_in`` -> ``network.unet.*`` with ``conv_in.*`` ->
  ``conv_in.conv.*`` (our :class:`~.encoders.ConvInWithFeatures`, ``canvas_mode: add``);
* ``referencenet_state_dict``: the AnimateAnyone ``ReferenceNet`` (SD-1.5 UNet without ``conv_norm_out``,
  ``conv_out`` and the tail of its last transformer block) -> ``network.reference_net.*`` with
  ``reference_net_layout: official``; it runs at timestep 0 on ``E(I_T)`` with the pooled CLIP feature of
  ``I_T`` as context (768 = the UNet's width, no projection), as ours;
* ``cur_image_guider_state_dict``: ``Hack_CurImageGuider(in_channels=4)`` on ``[I_{t-1}, M_t]`` ->
  ``network.canvas_encoder.*`` (``conv_layers`` -> ``body``, ``final_proj`` -> ``out``, ``scale``) with
  ``feature_encoder_layout: official``;
* ``image_adpater_state_dict``: ``NextImageFeaturePredictor`` (fc1 1536->1024, fc2 1024->512, fc3 512->768) ->
  ``network.clip_generator.mlp.{0,2,4}`` with ``clip_hidden: [1024, 512]``;
* ``PE_state_dict``: ``PositionalEncoder(21)`` -> ``network.time_encoder.mlp.{0,2,4}`` with ``time_encoding: official``;
* the reference attention (their ``ReferenceNetAttention``, ``fusion_blocks: full``) is ours: every
  ``attn1`` of the denoiser attends over ``[x, r]`` and keeps the first tokens; the context order
  ``[clip, time, text]`` there, ``[text, clip, time]`` here, is immaterial (see above).

Not reproduced (sampling, not weights): their classifier-free-guidance batch runs its fully unconditional
pass without the reference features (``uc_mask`` in ``ReferenceNetAttention``); ours keeps them in every pass.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Union

import torch
from torch import Tensor, nn

from lightning_modules.components.released_weights import KeyMap, ReleasedWeightsError, import_released
from lightning_modules.components.safe_load import safe_torch_load

KEY = "model.init_args.released_checkpoint"

#: The official mask generator file -> ``{"unet": ..., "time_encoder": ...}`` of MaskInstructionGenerator.
MASK_GENERATOR_KEYS = KeyMap(
    rules=(
        (r"^RP_state_dict\.", "unet."),
        (r"^PE_state_dict\.fc1\.", "time_encoder.mlp.0."),
        (r"^PE_state_dict\.fc2\.", "time_encoder.mlp.2."),
        (r"^PE_state_dict\.fc3\.", "time_encoder.mlp.4."),
    ),
    drop=(r"^(?!RP_state_dict\.|PE_state_dict\.)",),  # step counters, optimiser states
)


RENDERER_PARTS = ("unet_state_dict", "referencenet_state_dict", "cur_image_guider_state_dict",
                  "image_adpater_state_dict", "PE_state_dict")

#: The official renderer file -> the state dict of :class:`~.renderer.RendererNetwork`.
RENDERER_KEYS = KeyMap(
    rules=(
        (r"^unet_state_dict\.conv_in\.", "unet.conv_in.conv."),
        (r"^unet_state_dict\.", "unet."),
        (r"^referencenet_state_dict\.", "reference_net."),
        (r"^cur_image_guider_state_dict\.conv_layers\.", "canvas_encoder.body."),
        (r"^cur_image_guider_state_dict\.final_proj\.", "canvas_encoder.out."),
        (r"^cur_image_guider_state_dict\.scale$", "canvas_encoder.scale"),
        (r"^image_adpater_state_dict\.fc1\.", "clip_generator.mlp.0."),
        (r"^image_adpater_state_dict\.fc2\.", "clip_generator.mlp.2."),
        (r"^image_adpater_state_dict\.fc3\.", "clip_generator.mlp.4."),
        (r"^PE_state_dict\.fc1\.", "time_encoder.mlp.0."),
        (r"^PE_state_dict\.fc2\.", "time_encoder.mlp.2."),
        (r"^PE_state_dict\.fc3\.", "time_encoder.mlp.4."),
    ),
    # epoch / global_step are not tensors (flatten_state drops them); a text_encoder_state_dict
    # (their is_train_text_encoder) is kept, so it is reported as unexpected instead of ignored
    drop=(r"^(?!(unet|referencenet|cur_image_guider|image_adpater|PE|text_encoder)_state_dict\.)",),
)


def flatten_state(raw: Any, prefix: str = "") -> dict[str, Tensor]:
    """Nested dicts of tensors -> ``{"outer.inner": tensor}`` (non-tensor leaves dropped)."""
    out: dict[str, Tensor] = {}
    if isinstance(raw, Mapping):
        for key, value in raw.items():
            name = f"{prefix}{key}"
            if isinstance(value, Tensor):
                out[name] = value
            elif isinstance(value, Mapping):
                out.update(flatten_state(value, f"{name}."))
    return out


def read_official_file(path: Union[str, Path], key: str = KEY) -> dict[str, Tensor]:
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"{key}={str(path)!r} does not exist")
    return flatten_state(safe_torch_load(file, map_location="cpu", key=key))


def import_released_mask_generator(module: Any, path: Union[str, Path], key: str = KEY,
                                   state: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
    """Load the official ``checkpoints/RP/*.ckpt`` into ``module`` (a MaskInstructionGenerator), exactly."""
    wrong = []
    if not module.use_text:
        wrong.append("use_text: true")
    if module.time_encoder is None:
        wrong.append("use_time: true")
    elif module.time_encoder.mode != "official":
        wrong.append("time_encoding: official")
    if module.unet_time_input:
        wrong.append("unet_time_input: false")
    if wrong:
        raise ReleasedWeightsError(
            f"{key}={str(path)!r}: the authors' mask generator needs the official-code settings "
            f"{', '.join(wrong)} (configs/inverse_painting_released/mask.yaml sets them)")
    raw = dict(state) if state is not None else read_official_file(path, key)
    conv = raw.get("RP_state_dict.conv_in.weight")
    if conv is not None and conv.ndim == 4 and conv.shape[1] >= 8:
        latent = (conv.shape[1] - 1) // 2  # [cur (latent), ref (latent), M_d (1)] -> [ref, cur, M_d]
        raw["RP_state_dict.conv_in.weight"] = torch.cat([conv[:, latent:2 * latent], conv[:, :latent], conv[:, 2 * latent:]], 1)
    target = nn.ModuleDict({"unet": module.unet, "time_encoder": module.time_encoder})
    return import_released(target, path, MASK_GENERATOR_KEYS, "Inverse Painting mask generator (RP)", key=key,
                           hint="Expected the official checkpoints/RP/checkpoint-global_step-80000.ckpt with the "
                                "RealisticVision-V5.1 UNet (sd_path) and time_hidden [256, 512].",
                           state=raw)


def import_released_renderer(module: Any, path: Union[str, Path], key: str = KEY,
                             state: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
    """Load the official ``checkpoints/renderer/ckpt/*.ckpt`` into ``module`` (an InversePaintingRenderer), exactly."""
    network = module.network
    wrong = [f"use_{name}: true" for name in ("text", "mask", "time", "clip") if not module.use[name]]
    if not module.use_reference_net:
        wrong.append("use_reference_net: true")
    if network.canvas_mode != "add":
        wrong.append("canvas_mode: add")
    if network.feature_encoder_layout != "official":
        wrong.append("feature_encoder_layout: official")
    if module.use_reference_net and network.reference_net_layout != "official":
        wrong.append("reference_net_layout: official")
    if network.time_encoder is not None and network.time_encoder.mode != "official":
        wrong.append("time_encoding: official")
    if wrong:
        raise ReleasedWeightsError(
            f"{key}={str(path)!r}: the authors' renderer needs the official-code settings "
            f"{', '.join(wrong)} (configs/inverse_painting_released/renderer.yaml sets them)")
    raw = flatten_state(state) if state is not None else read_official_file(path, key)  # nested or flat
    return import_released(network, path, RENDERER_KEYS, "Inverse Painting renderer", key=key,
                           hint="Expected the official checkpoints/renderer/ckpt/checkpoint-global_step-200000.ckpt "
                                f"(parts {', '.join(RENDERER_PARTS)}) with the RealisticVision-V5.1 UNet (sd_path), "
                                "CLIP ViT-B/32 (clip_path, 768-d pooled), clip_hidden [1024, 512], time_hidden [256, 512].",
                           state=raw)


__all__ = ["MASK_GENERATOR_KEYS", "RENDERER_KEYS", "RENDERER_PARTS", "flatten_state", "import_released_mask_generator",
           "import_released_renderer", "read_official_file"]
