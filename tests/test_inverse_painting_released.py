"""The authors' released Inverse Painting renderer in the suite's renderer (issue 29; thesis 000, Ch. 6).

A synthetic checkpoint written with the official key names and shapes (ArmastusChen/inverse_painting,
``training_scripts/train_renderer.py`` / ``utils/inference_helpers.load_pipeline``) at a tiny size.
Random weights: these test the import code, not the paper's numbers.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from inverse_painting_helpers import CLIP, TEXT, UNET, renderer

#: an 8x VAE: the official pose-guider layout halves three times
VAE8 = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=[4, 4, 4, 4],
            down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4, layers_per_block=1,
            norm_num_groups=2, sample_size=32)
OFFICIAL = dict(feature_encoder_layout="official", reference_net_layout="official", time_encoding="official",
                canvas_mode="add", clip_hidden=(24, 12), time_hidden=(8, 16))


class OfficialGuider(nn.Module):
    """The official ``Hack_CurImageGuider`` as its code defines it (names, kernels, strides), for comparison."""

    def __init__(self, in_channels: int = 4, out_channels: int = 8) -> None:
        super().__init__()
        spec = [(3, 3, 1), (16, 4, 2), (16, 3, 1), (32, 4, 2), (32, 3, 1), (64, 4, 2), (64, 3, 1), (128, 3, 1)]
        layers, previous = [], in_channels
        for channels, kernel, stride in spec:
            layers += [nn.Conv2d(previous, channels, kernel, stride, 1), nn.SiLU()]
            previous = channels
        self.conv_layers = nn.Sequential(*layers)
        self.final_proj = nn.Conv2d(128, out_channels, 1)  # zero-initialised there; random here so outputs differ
        self.scale = nn.Parameter(torch.ones(1) * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_proj(self.conv_layers(x)) * self.scale


def _trimmed(state: dict) -> dict:
    """What the official ReferenceNet lacks: conv_norm_out, conv_out and the tail of its last transformer block."""
    last = f"up_blocks.{len(UNET['up_block_types']) - 1}.attentions.{UNET['layers_per_block']}."
    tail = tuple(last + p for p in ("proj_out.", "transformer_blocks.0.attn1.to_", "transformer_blocks.0.norm2.",
                                    "transformer_blocks.0.attn2.", "transformer_blocks.0.norm3.", "transformer_blocks.0.ff."))
    return {k: v for k, v in state.items() if not k.startswith(("conv_norm_out.", "conv_out.") + tail)}


def _official_state(seed: int = 0) -> tuple[dict, nn.Module, OfficialGuider]:
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    unet, reference = UNet2DConditionModel(**UNET), UNet2DConditionModel(**UNET)
    guider = OfficialGuider(4, UNET["block_out_channels"][0])
    adapter = [nn.Linear(2 * 16, 24), nn.Linear(24, 12), nn.Linear(12, 16)]
    pe = [nn.Linear(21, 8), nn.Linear(8, 16), nn.Linear(16, 16)]
    state = {
        "epoch": 3, "global_step": 200000,
        "unet_state_dict": unet.state_dict(),
        "referencenet_state_dict": _trimmed(reference.state_dict()),
        "cur_image_guider_state_dict": guider.state_dict(),
        "image_adpater_state_dict": {f"fc{i + 1}.{k}": v for i, m in enumerate(adapter) for k, v in m.state_dict().items()},
        "PE_state_dict": {f"fc{i + 1}.{k}": v for i, m in enumerate(pe) for k, v in m.state_dict().items()},
    }
    return state, unet, guider


def _tiny(**overrides):
    return renderer(vae_config=VAE8, image_size=32, **overrides)


def test_released_renderer_imports_exactly_and_matches_the_official_forward(tmp_path) -> None:
    """No missing / unexpected keys; g_f equals their guider; the denoiser equals their Hack UNet
    (conv_in(x) + guider([I_{t-1}, M_t])) with no reference written."""
    from lightning_modules.components.released_weights import ReleasedWeightsError

    state, official_unet, guider = _official_state()
    file = tmp_path / "checkpoint-global_step-200000.ckpt"
    torch.save(state, file)
    with pytest.raises(ReleasedWeightsError, match="feature_encoder_layout: official, reference_net_layout: official, "
                                                    "time_encoding: official"):
        _tiny(released_checkpoint=str(file), clip_hidden=(24, 12))
    ours = _tiny(released_checkpoint=str(file), **OFFICIAL).eval()
    assert ours.released_checkpoint == str(file) and ours.loads_own_weights and not ours.uses_random_weights
    net = ours.network
    assert torch.equal(net.unet.conv_in.conv.weight, official_unet.conv_in.weight)
    assert torch.equal(net.canvas_encoder.body[2].weight, guider.conv_layers[2].weight)
    assert net.canvas_encoder.body[2].weight.shape[-1] == 4 and net.canvas_encoder.scale.shape == (1,)
    assert torch.equal(net.clip_generator.mlp[2].bias, state["image_adpater_state_dict"]["fc2.bias"])

    torch.manual_seed(1)
    canvas = torch.cat([torch.rand(1, 3, 32, 32) * 2 - 1, (torch.rand(1, 1, 32, 32) > 0.5).float()], 1)
    z, t, context = torch.randn(1, 4, 4, 4), torch.tensor([500]), torch.randn(1, 79, 16)
    with torch.no_grad():
        features = guider(canvas)
        assert torch.allclose(net.canvas_encoder(canvas), features, atol=1e-6)
        hook = official_unet.conv_in.register_forward_hook(lambda m, i, o: o + features)  # their Hack_UNet2DConditionModel
        reference = official_unet(z, t, encoder_hidden_states=context).sample
        hook.remove()
        mine = net(z, t, canvas, context)
    assert torch.allclose(mine, reference, atol=1e-5), (mine - reference).abs().max()


def test_official_reference_net_layout_writes_the_same_features_as_the_full_one() -> None:
    """The parts the official ReferenceNet drops feed no written feature: same output with them present (any values)."""
    from lightning_modules.inverse_painting.released import import_released_renderer

    state, _, _ = _official_state(seed=2)
    trimmed = _tiny(**OFFICIAL).eval()
    mapped = import_released_renderer(trimmed, "synthetic.ckpt", state=state)
    full = _tiny(**{**OFFICIAL, "reference_net_layout": "full"}).eval()
    result = full.network.load_state_dict(mapped, strict=False)
    assert not result.unexpected_keys
    assert result.missing_keys and all(k.startswith("reference_net.") for k in result.missing_keys)
    torch.manual_seed(3)
    latent, clip = torch.randn(1, 4, 4, 4), torch.randn(1, 16)
    canvas, z, context = torch.randn(1, 4, 32, 32), torch.randn(1, 4, 4, 4), torch.randn(1, 79, 16)
    outputs = []
    with torch.no_grad():
        for model in (trimmed, full):
            model.network.write_reference(latent, clip)
            outputs.append(model.network(z, torch.tensor([10]), canvas, context))
            written = dict(model.network.bank.features)
            model.network.clear_reference()
    assert len(written) == 2 * 1 + 1 + 2 * 2  # every attn1 (down 2, mid 1, up 4), the last one included
    assert torch.allclose(outputs[0], outputs[1], atol=1e-6)
    no_reference = trimmed.network(z, torch.tensor([10]), canvas, context)
    assert not torch.allclose(outputs[0], no_reference, atol=1e-4)  # the reference does reach the output


def test_released_renderer_refuses_a_mismatching_file_with_one_message() -> None:
    from lightning_modules.components.released_weights import ReleasedWeightsError
    from lightning_modules.inverse_painting.released import import_released_renderer

    state, _, _ = _official_state()
    ours = _tiny(**OFFICIAL)
    wrong = dict(state, cur_image_guider_state_dict=OfficialGuider(3, 8).state_dict())  # no mask channel
    del wrong["PE_state_dict"]
    with pytest.raises(ReleasedWeightsError) as info:
        import_released_renderer(ours, "renderer.ckpt", state=wrong)
    message = str(info.value)
    assert "renderer.ckpt" in message and "6 missing (time_encoder.mlp.0.bias" in message
    assert "other shapes" in message and "canvas_encoder.body.0.weight (3, 3, 3, 3) vs (3, 4, 3, 3)" in message
    with pytest.raises(ValueError, match="needs canvas_mode 'add' and an 8x VAE"):
        renderer(feature_encoder_layout="official")  # the tiny 2x VAE


def test_released_overlays_set_what_the_importer_needs_and_the_pipeline_records_the_file(tmp_path) -> None:
    """configs/inverse_painting_released/{renderer,pipeline}.yaml hold the same renderer settings, and those
    (at tiny sizes) pass the importer; the full pipeline records the released file."""
    from pathlib import Path

    import yaml

    from inverse_painting_helpers import mask_generator, text_generator
    from lightning_modules.inverse_painting import InversePainting

    root = Path(__file__).resolve().parents[1] / "configs" / "inverse_painting_released"
    stage = yaml.safe_load((root / "renderer.yaml").read_text())["model"]["init_args"]
    nested = yaml.safe_load((root / "pipeline.yaml").read_text())["model"]["init_args"]
    assert nested["renderer"]["init_args"] == stage
    assert stage["released_checkpoint"] == "checkpoints/renderer/ckpt/checkpoint-global_step-200000.ckpt"
    assert stage["clip_hidden"] == [1024, 512] and stage["time_hidden"] == [256, 512]
    state, _, _ = _official_state()
    file = tmp_path / "renderer.ckpt"
    torch.save(state, file)
    settings = {k: v for k, v in stage.items() if k not in ("clip_hidden", "time_hidden", "released_checkpoint")}
    ours = _tiny(**{**settings, "clip_hidden": (24, 12), "time_hidden": (8, 16), "released_checkpoint": str(file)})
    assert ours.loads_own_weights and ours.released_checkpoint == str(file)
    chain = InversePainting(ours, mask_generator(), text_generator())
    assert chain.released_checkpoint == str(file)  # results rows record it (run_provenance)
    assert not chain.loads_own_weights  # the mask and text stages still need their files


def test_official_layout_at_full_size_has_the_released_key_names_and_shapes() -> None:
    """At SD-1.5 size (meta device, nothing allocated): the trimmed ReferenceNet is their up_blocks[3].attentions[2]
    cut, g_f has their shapes, and all 16 self-attentions still get a reference feature."""
    from diffusers import UNet2DConditionModel

    from lightning_modules.inverse_painting.renderer import RendererNetwork

    sd15 = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=[320, 640, 1280, 1280],
                down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"], up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
                cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32)
    with torch.device("meta"):
        full = UNet2DConditionModel.from_config(sd15).state_dict()
        net = RendererNetwork(UNet2DConditionModel.from_config(sd15), UNet2DConditionModel.from_config(sd15), canvas_channels=4,
                              downsample=8, canvas_mode="add", clip_dim=768, clip_hidden=(1024, 512),
                              feature_encoder_layout="official", reference_net_layout="official", time_encoding="official")
        net.write_reference(torch.zeros(1, 4, 64, 64), torch.zeros(1, 768))
        out = net(torch.zeros(1, 4, 64, 64), torch.zeros(1), torch.zeros(1, 4, 512, 512), torch.zeros(1, 79, 768))
    assert out.shape == (1, 4, 64, 64) and len(net.bank.features) == 16
    dropped = set(full) - set(net.reference_net.state_dict())
    assert not set(net.reference_net.state_dict()) - set(full)
    assert {k.split(".")[0] for k in dropped} == {"conv_norm_out", "conv_out", "up_blocks"}
    block = "up_blocks.3.attentions.2.transformer_blocks.0."
    assert {k for k in dropped if k.startswith("up_blocks")} == {
        k for k in full if k.startswith("up_blocks.3.attentions.2.proj_out.")
        or (k.startswith(block) and not k.startswith(block + "norm1."))}
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert shapes["canvas_encoder.body.0.weight"] == (3, 4, 3, 3) and shapes["canvas_encoder.body.2.weight"] == (16, 3, 4, 4)
    assert shapes["canvas_encoder.body.14.weight"] == (128, 64, 3, 3) and shapes["canvas_encoder.out.weight"] == (320, 128, 1, 1)
    assert shapes["clip_generator.mlp.0.weight"] == (1024, 1536) and shapes["time_encoder.mlp.0.weight"] == (256, 21)
    assert shapes["unet.conv_in.conv.weight"] == (320, 4, 3, 3)
