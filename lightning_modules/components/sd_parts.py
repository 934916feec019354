"""Stable Diffusion parts built from a local diffusers folder or a config dict (generic component).

Moved here from ``lightning_modules/inverse_painting/pretrained.py`` when the portrait-editing
paper (thesis 000, Ch. 5) needed the same parts: the SD UNet (with explicit in/out channel
resizing), the VAE, the frozen SD text encoder (with a hashed-word stand-in tokenizer for random
weights) and a frozen CLIP image encoder (pooled, projected or all hidden tokens). Loading
happens at module construction, never at config parsing; a path set to ``null`` builds the part
with random weights from its config dict (tests and tiny configs).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch
from torch import Tensor, nn

from lightning_modules.components.pretrained_paths import build_diffusers_model, require_files

SD_SOURCE = "an SD-1.5-family model in diffusers layout (unet/, vae/, text_encoder/, tokenizer/)"
CLIP_SOURCE = "a CLIP image encoder in transformers layout, e.g. huggingface.co/openai/clip-vit-base-patch32"


def build_unet(path: Optional[str], config: Optional[Mapping[str, Any]], key: str, source: str = SD_SOURCE, **overrides: Any) -> nn.Module:
    """The SD UNet from ``path/unet`` or a random one from ``config``; ``overrides`` change the config.

    With ``path``, the pretrained UNet loads at its own shape and ``in_channels`` / ``out_channels``
    overrides are applied explicitly (:func:`~lightning_modules.components.unet_inputs.resize_unet_channels`:
    what fits copied, new input weights zero, new output weights zero); never
    ``ignore_mismatched_sizes``, which leaves the resized layers uninitialised under diffusers 0.42.
    """
    from diffusers import UNet2DConditionModel

    from lightning_modules.components.unet_inputs import resize_unet_channels

    if path is None:
        if config is None:
            raise ValueError(f"{key} is null and no unet_config was given")
        return UNet2DConditionModel.from_config({**dict(config), **overrides})
    shape = {k: overrides.pop(k) for k in ("in_channels", "out_channels") if k in overrides}
    if overrides:
        raise ValueError(f"{key}: a pretrained UNet takes only in_channels / out_channels overrides, got {sorted(overrides)}")
    unet = build_diffusers_model(UNet2DConditionModel, key=key, path=path, subfolder="unet", source=source)
    return resize_unet_channels(unet, **shape)


def build_vae(path: Optional[str], config: Optional[Mapping[str, Any]], key: str, source: str = SD_SOURCE) -> nn.Module:
    from diffusers import AutoencoderKL

    return build_diffusers_model(AutoencoderKL, key=key, path=path, subfolder="vae", config=config, source=source)


class HashWordTokenizer:
    """Stand-in tokenizer for random-weight text encoders: words -> stable hashed ids, BOS/EOS, padded.

    Not CLIP's BPE: used only when ``sd_path`` is null (tests, tiny configs).
    """

    def __init__(self, vocab_size: int, max_length: int = 77) -> None:
        if vocab_size < 4:
            raise ValueError("vocab_size must be >= 4")
        self.vocab_size, self.model_max_length = int(vocab_size), int(max_length)
        self.bos, self.eos, self.pad = 0, 1, 1

    def word_id(self, word: str) -> int:
        digest = hashlib.sha1(word.encode("utf-8")).digest()
        return 2 + int.from_bytes(digest[:4], "little") % (self.vocab_size - 2)

    def __call__(self, texts: Sequence[str]) -> Tensor:
        rows = []
        for text in texts:
            ids = [self.bos] + [self.word_id(w) for w in text.lower().split()][: self.model_max_length - 2] + [self.eos]
            rows.append(ids + [self.pad] * (self.model_max_length - len(ids)))
        return torch.tensor(rows, dtype=torch.long)


class TextEncoder(nn.Module):
    """The frozen SD text encoder ``g_p``: strings -> ``[B, 77, D]`` token embeddings."""

    def __init__(self, path: Optional[str], config: Optional[Mapping[str, Any]], key: str, source: str = SD_SOURCE) -> None:
        super().__init__()
        from transformers import CLIPTextConfig, CLIPTextModel

        if path is None:
            if config is None:
                raise ValueError(f"{key} is null and no text_encoder_config was given")
            self.model = CLIPTextModel(CLIPTextConfig(**dict(config)))
            self.tokenizer: Any = HashWordTokenizer(self.model.config.vocab_size, self.model.config.max_position_embeddings)
        else:
            from transformers import CLIPTokenizer

            root = Path(path).expanduser()
            require_files(root, key, ["text_encoder/config.json", "tokenizer/vocab.json"], source)
            self.model = CLIPTextModel.from_pretrained(str(root), subfolder="text_encoder", local_files_only=True)
            self.tokenizer = CLIPTokenizer.from_pretrained(str(root), subfolder="tokenizer", local_files_only=True)
        self.max_length = int(self.model.config.max_position_embeddings)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def token_ids(self, texts: Sequence[str]) -> Tensor:
        if isinstance(self.tokenizer, HashWordTokenizer):
            return self.tokenizer(texts)
        return self.tokenizer(list(texts), padding="max_length", max_length=self.max_length, truncation=True, return_tensors="pt").input_ids

    @torch.no_grad()
    def forward(self, texts: Sequence[str]) -> Tensor:
        ids = self.token_ids(texts).to(next(self.model.parameters()).device)
        return self.model(input_ids=ids).last_hidden_state


class ClipImageEncoder(nn.Module):
    """Frozen CLIP image encoder: images in ``[-1, 1]`` -> one feature vector ``[B, D]``.

    ``feature="pooled"`` takes the pooled (post-layernorm CLS) output, ``hidden_size`` wide (768 for
    ViT-B/32, the code's choice); ``"projected"`` the projected image embedding; ``"tokens"`` the last
    hidden state ``[B, 1 + patches, hidden]`` (50 x 768 for ViT-B/32: DreamPose's adapter input).
    """

    MEAN = (0.48145466, 0.4578275, 0.40821073)
    STD = (0.26862954, 0.26130258, 0.27577711)

    def __init__(self, path: Optional[str], config: Optional[Mapping[str, Any]], key: str, feature: str = "pooled",
                 source: str = CLIP_SOURCE) -> None:
        super().__init__()
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

        if feature not in ("pooled", "projected", "tokens"):
            raise ValueError(f"feature must be 'pooled', 'projected' or 'tokens', got {feature!r}")
        if path is None:
            if config is None:
                raise ValueError(f"{key} is null and no clip_config was given")
            self.model = CLIPVisionModelWithProjection(CLIPVisionConfig(**dict(config)))
        else:
            root = require_files(path, key, ["config.json"], source)
            self.model = CLIPVisionModelWithProjection.from_pretrained(str(root), local_files_only=True)
        self.feature = feature
        self.image_size = int(self.model.config.image_size)
        self.register_buffer("mean", torch.tensor(self.MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.STD).view(1, 3, 1, 1), persistent=False)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size if self.feature == "pooled" else self.model.config.projection_dim)

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        x = torch.nn.functional.interpolate(images.float(), size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        x = ((x + 1) / 2 - self.mean) / self.std
        out = self.model(pixel_values=x.to(next(self.model.parameters()).dtype))
        if self.feature == "projected":
            return out.image_embeds.float()
        if self.feature == "tokens":  # every hidden token [B, 1 + patches, hidden] (DreamPose's CLIP input)
            return out.last_hidden_state.float()
        return self.model.vision_model.post_layernorm(out.last_hidden_state[:, 0]).float()


def vae_factor(vae: nn.Module) -> int:
    return 2 ** (len(vae.config.block_out_channels) - 1)


__all__ = ["CLIP_SOURCE", "ClipImageEncoder", "HashWordTokenizer", "SD_SOURCE", "TextEncoder", "build_unet", "build_vae", "vae_factor"]
