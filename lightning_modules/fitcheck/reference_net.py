"""ReferenceNet for the "Naive + RefNet" ablation of Table 4.1 (thesis 000, Ch. 4, §4.2.2 and §4.5 (2)).

Seed ~764: "One option is to add a ReferenceNet [106, 262], which extracts features from the
front and back images and injects them into the denoising network via self-attention"; it
"requires extra parameters, reducing model efficiency" (Fig. 4.3 (c)). The form here is Animate
Anyone's [106]: a trainable copy of the denoising UNet (same architecture and initial weights)
runs on each reference's VAE latent; the input of every spatial self-attention layer of the copy
is recorded, and the denoising UNet's matching layer attends with keys/values from
``[own tokens, front tokens, back tokens]`` (queries from its own tokens), the same widening as
multi-reference attention but with the features of a second network.

Choices where the thesis is silent ([GAP]): the copy is made from the pretrained 8-input UNet
before conv_in is widened and sees ``[reference latent, reference latent]`` (SVD's noisy and
conditioning-image slots) at the smallest noise level of the schedule; each reference runs as a
one-frame clip so the temporal layers do not mix front and back; its CLIP conditioning and time ids
are the denoiser's; the features are recomputed at every network call (not cached across steps).
"""
from __future__ import annotations

import copy
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.components.multi_reference_attention import (_check_plain, _heads, _merge_heads, _output,
                                                                    spatial_self_attention_names)


class FeatureBank:
    """Spatial self-attention inputs recorded by the ReferenceNet, per layer name: ``[B * R, N, C]``."""

    def __init__(self) -> None:
        self.features: dict[str, Tensor] = {}
        self.num_references = 0

    def clear(self) -> None:
        self.features.clear()


class RecordingAttnProcessor:
    """The ReferenceNet's own self-attention (plain SDPA), storing its input in the bank."""

    def __init__(self, bank: FeatureBank, name: str) -> None:
        self.bank, self.name = bank, name

    def __call__(self, attn: nn.Module, hidden_states: Tensor, encoder_hidden_states: Optional[Tensor] = None,
                 attention_mask: Optional[Tensor] = None, temb: Optional[Tensor] = None, *args, **kwargs) -> Tensor:
        _check_plain(attn)
        self.bank.features[self.name] = hidden_states
        query = _heads(attn.to_q(hidden_states), attn.heads)
        key = _heads(attn.to_k(hidden_states), attn.heads)
        value = _heads(attn.to_v(hidden_states), attn.heads)
        out = F.scaled_dot_product_attention(query, key, value, scale=attn.scale)
        return _output(attn, _merge_heads(out).to(query.dtype), hidden_states)


class ReferenceAttnProcessor:
    """The denoiser's spatial self-attention: Q own tokens, K/V ``[own, reference_1, ..., reference_R]``."""

    def __init__(self, bank: FeatureBank, name: str) -> None:
        self.bank, self.name = bank, name

    def __call__(self, attn: nn.Module, hidden_states: Tensor, encoder_hidden_states: Optional[Tensor] = None,
                 attention_mask: Optional[Tensor] = None, temb: Optional[Tensor] = None, *args, **kwargs) -> Tensor:
        _check_plain(attn)
        context = hidden_states
        refs = self.bank.features.get(self.name)
        if refs is not None:
            r = self.bank.num_references
            nf, tokens, channels = hidden_states.shape
            batch = refs.shape[0] // r
            if nf % batch:
                raise ValueError(f"{self.name}: {nf} denoiser rows for {batch} reference samples")
            frames = nf // batch
            per_sample = refs.reshape(batch, 1, r * tokens, channels).expand(-1, frames, -1, -1)
            context = torch.cat([hidden_states, per_sample.reshape(nf, r * tokens, channels).to(hidden_states.dtype)], 1)
        query = _heads(attn.to_q(hidden_states), attn.heads)
        key = _heads(attn.to_k(context), attn.heads)
        value = _heads(attn.to_v(context), attn.heads)
        out = F.scaled_dot_product_attention(query, key, value, scale=attn.scale)
        return _output(attn, _merge_heads(out).to(query.dtype), hidden_states)


class ReferenceNet(nn.Module):
    """A trainable copy of ``unet`` recording its spatial self-attention inputs; installs the readers on ``target``."""

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.unet = copy.deepcopy(unet)
        self.bank = FeatureBank()
        self.names = spatial_self_attention_names(self.unet)
        processors = dict(self.unet.attn_processors)
        for name in self.names:
            processors[name] = RecordingAttnProcessor(self.bank, name)
        self.unet.set_attn_processor(processors)

    def install(self, target: nn.Module) -> None:
        """Give ``target``'s matching spatial self-attention layers :class:`ReferenceAttnProcessor`."""
        processors = dict(target.attn_processors)
        missing = [n for n in self.names if n not in processors]
        if missing:
            raise ValueError(f"the denoising UNet has no layers {missing[:3]} to take ReferenceNet features")
        for name in self.names:
            processors[name] = ReferenceAttnProcessor(self.bank, name)
        target.set_attn_processor(processors)

    def record(self, references: Tensor, c_noise: Tensor, image_embeds: Tensor, added_time_ids: Tensor) -> None:
        """Run on ``references [B, R, 4, h, w]`` (one-frame clips) and fill the bank."""
        batch, count = references.shape[:2]
        self.bank.clear()
        self.bank.num_references = count
        flat = references.flatten(0, 1).unsqueeze(1)  # [B*R, 1, 4, h, w]
        sample = torch.cat([flat, flat], dim=2)  # SVD's [noisy, conditioning image] slots
        self.unet(sample, c_noise.reshape(1).expand(batch * count).to(sample.dtype),
                  encoder_hidden_states=image_embeds.repeat_interleave(count, 0).to(sample.dtype),
                  added_time_ids=added_time_ids.repeat_interleave(count, 0).to(sample.dtype), return_dict=False)


__all__ = ["FeatureBank", "RecordingAttnProcessor", "ReferenceAttnProcessor", "ReferenceNet"]
