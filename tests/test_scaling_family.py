"""The Ch. 2 UNet family on the meta device: Table 2.1 parameter counts, channels, FLOPs; the SR input widening."""
from __future__ import annotations

import pytest
import torch

from codi_helpers import meta_unet
from lightning_modules.components.network_info import count_parameters
from lightning_modules.ldm_scaling.family import count_flops, scaled_unet_config

# digest §1.2 [verified]: diffusers UNet2DConditionModel, channels [c, 2c, 4c, 4c], 1024-d context
EXPECTED_M = {64: 38.8, 96: 83.4, 128: 144.8, 320: 865.9, 512: 2191.7}
TABLE_LABELS_M = {64: 39, 96: 83, 128: 145, 320: 866}


@pytest.mark.parametrize("width", sorted(EXPECTED_M))
def test_parameter_counts_match_table_2_1(width: int) -> None:
    unet = meta_unet(width)
    millions = count_parameters(unet) / 1e6
    assert round(millions, 1) == EXPECTED_M[width]
    if width in TABLE_LABELS_M:
        assert round(millions) == TABLE_LABELS_M[width]
    assert list(unet.config.block_out_channels) == [width, 2 * width, 4 * width, 4 * width]
    assert next(unet.parameters()).device.type == "meta"


def test_only_the_width_changes() -> None:
    a, b = scaled_unet_config(64), scaled_unet_config(320)
    assert {k for k in a if a[k] != b[k]} == {"block_out_channels"}


def test_flops_per_forward() -> None:
    # Table 2.1 GFLOPS at 64x64x4; measured with torch's flop counter (digest: 53.0 for c=64, 99.7 for c=96)
    assert abs(count_flops(meta_unet(64)) / 1e9 - 53.0) < 0.5
    assert abs(count_flops(meta_unet(96)) / 1e9 - 99.7) < 0.5


def test_expand_conv_in_zero_init_keeps_the_output() -> None:
    from diffusers import UNet2DConditionModel

    from lightning_modules.components.unet_inputs import expand_conv_in

    unet = UNet2DConditionModel.from_config(scaled_unet_config(32, context_dim=16, layers_per_block=1, sample_size=8,
                                                               levels=2))
    x, ctx, k = torch.randn(1, 4, 8, 8), torch.randn(1, 3, 16), torch.tensor([10.0])
    with torch.no_grad():
        before = unet(x, k, encoder_hidden_states=ctx).sample
        expand_conv_in(unet, 8)
        after = unet(torch.cat([x, torch.randn_like(x)], 1), k, encoder_hidden_states=ctx).sample
    assert unet.config.in_channels == 8
    assert torch.allclose(before, after, atol=1e-6)
