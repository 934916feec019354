"""Synthetic checkpoints in the authors' layouts, written from their model code's names and shapes.

Nothing here calls the suite's networks: the key lists are enumerated from the authors' module
definitions (read in their repositories), so a wrong key map in the suite shows up as missing /
unexpected keys in the tests, not as a circular pass. Values are random (tests of code, not of
the papers' numbers).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import Tensor


_META = {"on": False}


def _rand(*shape: int, generator: torch.Generator) -> Tensor:
    if _META["on"]:  # full-size layouts: shapes only
        return torch.empty(*shape, device="meta")
    return torch.randn(*shape, generator=generator) * 0.1


class meta_tensors:
    """``with meta_tensors(): state = vidm_complex_umodel_state(<full size>)``: names and shapes, no memory."""

    def __enter__(self) -> None:
        _META["on"] = True

    def __exit__(self, *exc: object) -> None:
        _META["on"] = False


def vidm_complex_umodel_state(model_channels: int = 16, channel_mult: Sequence[int] = (1, 2), num_res_blocks: int = 1,
                              attention_ds: Iterable[int] = (2,), out_channels: int = 6, image_size: int = 16,
                              spynet_levels: int = 2, spynet_widths: Sequence[int] = (8, 8, 8, 8), spynet_kernel: int = 3,
                              cached_batch: int = 3, seed: int = 0, prefix: str = "module.") -> dict[str, Tensor]:
    """MKFMIKU/vidm ``ComplexUModel`` (``vidm/network.py``): ``encoder`` (EncoderUNetModel, input blocks only),
    ``unet`` (``vidm/cunet.py`` UNetModel: PosGN ``CoordinatesEMB`` as every ResBlock's ``emb_layers``, no
    time embedding, no ``out_layers``), ``spynet`` (mmediting SPyNet), as saved under DDP (``module.``).
    The lazily registered ``coords`` / ``new_coords`` buffers are included as a trained file has them."""
    g = torch.Generator().manual_seed(seed)
    attention_ds = set(int(d) for d in attention_ds)
    state: dict[str, Tensor] = {}

    def res(p: str, cin: int, cout: int, size: int) -> None:
        state[p + "in_layers.0.weight"], state[p + "in_layers.0.bias"] = 1 + _rand(cin, generator=g), _rand(cin, generator=g)
        state[p + "in_layers.2.weight"], state[p + "in_layers.2.bias"] = _rand(cout, cin, 3, 3, generator=g), _rand(cout, generator=g)
        e = p + "emb_layers."
        state[e + "linear_0.weight"], state[e + "linear_0.bias"] = 10 * _rand(cout, 4, generator=g), _rand(cout, generator=g)
        state[e + "linear_1.0.weight"], state[e + "linear_1.0.bias"] = _rand(2 * cout, cout, generator=g), _rand(2 * cout, generator=g)
        state[e + "linear_1.2.weight"], state[e + "linear_1.2.bias"] = _rand(2 * cout, 2 * cout, generator=g), _rand(2 * cout, generator=g)
        state[e + "out_norm.weight"], state[e + "out_norm.bias"] = 1 + _rand(cout, generator=g), _rand(cout, generator=g)
        state[e + "out_rest.1.weight"], state[e + "out_rest.1.bias"] = _rand(cout, cout, 3, 3, generator=g), _rand(cout, generator=g)
        device = "meta" if _META["on"] else "cpu"
        state[e + "coords"] = torch.zeros(cached_batch, size, size, 2, device=device)
        state[e + "new_coords"] = torch.zeros(1000, 128, 1, 1, 2, device=device)
        if cin != cout:
            state[p + "skip_connection.weight"] = _rand(cout, cin, 1, 1, generator=g)
            state[p + "skip_connection.bias"] = _rand(cout, generator=g)

    def attn(p: str, ch: int) -> None:
        state[p + "norm.weight"], state[p + "norm.bias"] = 1 + _rand(ch, generator=g), _rand(ch, generator=g)
        state[p + "qkv.weight"], state[p + "qkv.bias"] = _rand(3 * ch, ch, 1, generator=g), _rand(3 * ch, generator=g)
        state[p + "proj_out.weight"], state[p + "proj_out.bias"] = _rand(ch, ch, 1, generator=g), _rand(ch, generator=g)

    def input_half(root: str, in_channels: int) -> tuple[list[int], int, int, int]:
        ch = int(channel_mult[0] * model_channels)
        state[f"{root}input_blocks.0.0.weight"] = _rand(ch, in_channels, 3, 3, generator=g)
        state[f"{root}input_blocks.0.0.bias"] = _rand(ch, generator=g)
        chans, ds, index, size = [ch], 1, 1, image_size
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                res(f"{root}input_blocks.{index}.0.", ch, int(mult * model_channels), size)
                ch = int(mult * model_channels)
                if ds in attention_ds:
                    attn(f"{root}input_blocks.{index}.1.", ch)
                chans.append(ch)
                index += 1
            if level != len(channel_mult) - 1:
                res(f"{root}input_blocks.{index}.0.", ch, ch, size // 2)  # resblock_updown: down (grid after pooling)
                chans.append(ch)
                index, ds, size = index + 1, ds * 2, size // 2
        return chans, ch, ds, size

    input_half("encoder.", 3)
    chans, ch, ds, size = input_half("unet.", 3 + 2)
    res("unet.middle_block.0.", ch, ch, size)
    attn("unet.middle_block.1.", ch)
    res("unet.middle_block.2.", ch, ch, size)
    index = 0
    for level, mult in list(enumerate(channel_mult))[::-1]:
        for i in range(num_res_blocks + 1):
            skip = chans.pop()
            res(f"unet.output_blocks.{index}.0.", ch + skip, int(model_channels * mult), size)
            ch, j = int(model_channels * mult), 1
            if ds in attention_ds:
                attn(f"unet.output_blocks.{index}.1.", ch)
                j = 2
            if level and i == num_res_blocks:
                res(f"unet.output_blocks.{index}.{j}.", ch, ch, size * 2)  # resblock_updown: up (grid after upsampling)
                ds, size = ds // 2, size * 2
            index += 1
    state["unet.out.0.weight"], state["unet.out.0.bias"] = 1 + _rand(ch, generator=g), _rand(ch, generator=g)
    state["unet.out.2.weight"], state["unet.out.2.bias"] = _rand(out_channels, ch, 3, 3, generator=g), _rand(out_channels, generator=g)
    chans_spy = [8, *spynet_widths, 2]
    for level in range(spynet_levels):
        for j in range(len(chans_spy) - 1):
            p = f"spynet.basic_module.{level}.basic_module.{j}.conv."
            state[p + "weight"] = _rand(chans_spy[j + 1], chans_spy[j], spynet_kernel, spynet_kernel, generator=g)
            state[p + "bias"] = _rand(chans_spy[j + 1], generator=g)
    state["spynet.mean"] = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    state["spynet.std"] = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return {prefix + k: v for k, v in state.items()}


def vidm_released_file(ema: dict[str, Tensor]) -> dict:
    """The container ``diffusion_ddp_accum_constant_cu_frame_CLEVRER_robust.py`` saves (training weights zeroed here)."""
    return {"iters": 400000, "state_dict": {k: torch.zeros_like(v) for k, v in ema.items()}, "ema_state_dict": ema,
            "optimizer": {"state": {}, "param_groups": [{"lr": 2e-5, "params": [0, 1]}]}}


def guided_diffusion_unet_state(model_channels: int = 16, channel_mult: Sequence[int] = (1, 2), num_res_blocks: int = 1,
                                attention_ds: Iterable[int] = (2,), in_channels: int = 3, out_channels: int = 6,
                                seed: int = 0) -> dict[str, Tensor]:
    """openai/guided-diffusion ``UNetModel`` (``unet.py``) with ``use_scale_shift_norm`` and ``resblock_updown``, no
    classes: ``time_embed.{0,2}``, ResBlock ``in_layers.{0,2}`` / ``emb_layers.1`` / ``out_layers.{0,3}`` /
    ``skip_connection``, AttentionBlock ``norm`` / ``qkv`` / ``proj_out``, ``out.{0,2}`` (as 256x256_diffusion_uncond.pt)."""
    g = torch.Generator().manual_seed(seed)
    attention_ds = set(int(d) for d in attention_ds)
    emb = 4 * model_channels
    state: dict[str, Tensor] = {"time_embed.0.weight": _rand(emb, model_channels, generator=g), "time_embed.0.bias": _rand(emb, generator=g),
                                "time_embed.2.weight": _rand(emb, emb, generator=g), "time_embed.2.bias": _rand(emb, generator=g)}

    def res(p: str, cin: int, cout: int) -> None:
        state[p + "in_layers.0.weight"], state[p + "in_layers.0.bias"] = 1 + _rand(cin, generator=g), _rand(cin, generator=g)
        state[p + "in_layers.2.weight"], state[p + "in_layers.2.bias"] = _rand(cout, cin, 3, 3, generator=g), _rand(cout, generator=g)
        state[p + "emb_layers.1.weight"], state[p + "emb_layers.1.bias"] = _rand(2 * cout, emb, generator=g), _rand(2 * cout, generator=g)
        state[p + "out_layers.0.weight"], state[p + "out_layers.0.bias"] = 1 + _rand(cout, generator=g), _rand(cout, generator=g)
        state[p + "out_layers.3.weight"], state[p + "out_layers.3.bias"] = _rand(cout, cout, 3, 3, generator=g), _rand(cout, generator=g)
        if cin != cout:
            state[p + "skip_connection.weight"] = _rand(cout, cin, 1, 1, generator=g)
            state[p + "skip_connection.bias"] = _rand(cout, generator=g)

    def attn(p: str, ch: int) -> None:
        state[p + "norm.weight"], state[p + "norm.bias"] = 1 + _rand(ch, generator=g), _rand(ch, generator=g)
        state[p + "qkv.weight"], state[p + "qkv.bias"] = _rand(3 * ch, ch, 1, generator=g), _rand(3 * ch, generator=g)
        state[p + "proj_out.weight"], state[p + "proj_out.bias"] = _rand(ch, ch, 1, generator=g), _rand(ch, generator=g)

    ch = int(channel_mult[0] * model_channels)
    state["input_blocks.0.0.weight"], state["input_blocks.0.0.bias"] = _rand(ch, in_channels, 3, 3, generator=g), _rand(ch, generator=g)
    chans, ds, index = [ch], 1, 1
    for level, mult in enumerate(channel_mult):
        for _ in range(num_res_blocks):
            res(f"input_blocks.{index}.0.", ch, int(mult * model_channels))
            ch = int(mult * model_channels)
            if ds in attention_ds:
                attn(f"input_blocks.{index}.1.", ch)
            chans.append(ch)
            index += 1
        if level != len(channel_mult) - 1:
            res(f"input_blocks.{index}.0.", ch, ch)
            chans.append(ch)
            index, ds = index + 1, ds * 2
    res("middle_block.0.", ch, ch)
    attn("middle_block.1.", ch)
    res("middle_block.2.", ch, ch)
    index = 0
    for level, mult in list(enumerate(channel_mult))[::-1]:
        for i in range(num_res_blocks + 1):
            res(f"output_blocks.{index}.0.", ch + chans.pop(), int(model_channels * mult))
            ch, j = int(model_channels * mult), 1
            if ds in attention_ds:
                attn(f"output_blocks.{index}.1.", ch)
                j = 2
            if level and i == num_res_blocks:
                res(f"output_blocks.{index}.{j}.", ch, ch)
                ds //= 2
            index += 1
    state["out.0.weight"], state["out.0.bias"] = 1 + _rand(ch, generator=g), _rand(ch, generator=g)
    state["out.2.weight"], state["out.2.bias"] = _rand(out_channels, ch, 3, 3, generator=g), _rand(out_channels, generator=g)
    return state
