"""The CFLD authors' released checkpoint layout loads into the suite's network exactly.

The authors' key names and shapes are written here from their code (YanzuoLu/CFLD:
``pose_transfer_train.build_model``, ``models/*.py``, ``defaults/deepfashion.py``); a synthetic
folder in their layout (random values) is loaded through ``released_checkpoint``.
Random-weight tests check the code, not the paper's numbers.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from diffusers import UNet2DConditionModel

from cfld_helpers import cfld_single_thread, tiny_cfld  # noqa: F401 (autouse fixture)
from lightning_modules.cfld.network import SD15_UNET_CONFIG, CFLDNetwork
from lightning_modules.cfld.released import authors_key_map
from lightning_modules.components.released_weights import ReleasedWeightsError, mismatch_report

# Full size, from their defaults/deepfashion.py: Swin-B (embed 128, window 16), INNER_DIMS / EMBED_DIMS /
# CTX_DIMS of the appearance encoder (i = 0 feeds UNet block 11), decoder N_CTX 16 x CTX_DIM 768, pose encoder.
AUTHORS_FULL_SIZE = {
    "backbone.patch_embed.proj.weight": (128, 3, 4, 4),
    "backbone.layers.0.downsample.reduction.weight": (256, 512),  # closes stage 0 (Microsoft layout)
    "backbone.layers.2.downsample.norm.weight": (2048,),
    "backbone.layers.2.blocks.1.attn.relative_position_bias_table": (31 * 31, 16),  # window 16 on the 16x16 grid
    "backbone.layers.3.blocks.1.attn.relative_position_bias_table": (15 * 15, 32),  # window clamped to the 8x8 grid
    "decoder.query_feat": (16, 768),
    "decoder.pos_embed": (16, 768),
    "decoder.kv_pos_embed": (1, 64, 1024),
    "decoder.blocks.7.attn2.to_k.weight": (768, 1024),
    "decoder.blocks.0.ff.net.0.proj.weight": (6144, 768),
    "appearance_encoder.zero_conv_ins.0.weight": (64, 128, 1, 1),
    "appearance_encoder.zero_conv_outs.0.weight": (320, 64, 1, 1),
    "appearance_encoder.zero_conv_ins.8.weight": (256, 512, 1, 1),
    "appearance_encoder.zero_conv_outs.8.weight": (1280, 256, 1, 1),
    "appearance_encoder.blocks.4.3.attn1.to_q.weight": (128, 128),
    "pose_encoder.conv_in.weight": (320, 21 * 16, 1, 1),
    "pose_encoder.resnets.2.conv_shortcut.weight": (1280, 640, 1, 1),
    "learnable_vector": (1, 16, 768),
    "model.up_blocks.3.attentions.2.transformer_blocks.0.attn2.to_k.weight": (320, 768),
}


def test_authors_full_size_keys_land_on_same_shaped_parameters() -> None:
    with torch.device("meta"):
        net = CFLDNetwork(UNet2DConditionModel.from_config(SD15_UNET_CONFIG), latent_size=64, source_size=256)
    own = net.state_dict()
    key_map = authors_key_map(4, 9)
    for name, shape in AUTHORS_FULL_SIZE.items():
        target = key_map.rename(name)
        assert target in own, (name, target)
        assert tuple(own[target].shape) == shape, (name, target, tuple(own[target].shape))
    # their encoder 0 (block 11) is the suite's last up-block cross-attention (up_blocks.3, 320 channels)
    assert key_map.rename("appearance_encoder.zero_conv_outs.0.bias") == "appearance_encoders.8.zero_out.bias"
    assert key_map.rename("backbone.layers.0.downsample.norm.bias") == "swin.model.layers.1.downsample.norm.bias"


def authors_layout(network) -> tuple[dict, dict]:
    """Their two files for ``network``'s shapes: (pytorch_model.bin, pytorch_model_1.bin), random values.

    Names written the authors' way: Microsoft Swin (``layers.i.downsample`` closes stage i, with
    ``relative_position_index`` / ``attn_mask`` buffers), appearance encoder i = last up-block first.
    """
    n = len(network.appearance_encoders)
    conditioning, unet = {}, {}
    generator = torch.Generator().manual_seed(1)
    for name, value in network.state_dict().items():
        fresh = torch.randn(value.shape, generator=generator) if value.is_floating_point() else value.clone()
        if name.startswith("unet."):
            unet["model." + name[len("unet."):]] = fresh
            continue
        m = re.match(r"swin\.model\.layers\.(\d+)\.downsample\.(.*)", name)
        if m:
            theirs = f"backbone.layers.{int(m.group(1)) - 1}.downsample.{m.group(2)}"
        elif name.startswith("swin.model."):
            theirs = "backbone." + name[len("swin.model."):]
        elif name.startswith("prompt_head."):
            theirs = "decoder." + name[len("prompt_head."):]
        elif m := re.match(r"appearance_encoders\.(\d+)\.(zero_in|zero_out|layers)\.(.*)", name):
            part = {"zero_in": "zero_conv_ins", "zero_out": "zero_conv_outs", "layers": "blocks"}[m.group(2)]
            theirs = f"appearance_encoder.{part}.{n - 1 - int(m.group(1))}.{m.group(3)}"
        elif name.startswith("pose_adapter.stem."):
            theirs = "pose_encoder.conv_in." + name[len("pose_adapter.stem."):]
        elif name.startswith("pose_adapter.blocks."):
            theirs = "pose_encoder.resnets." + name[len("pose_adapter.blocks."):]
        elif name == "null_prompt":
            theirs = "learnable_vector"
        else:
            raise AssertionError(f"no authors' name for {name}")
        conditioning[theirs] = fresh
    for stage, block in enumerate(network.swin.model.layers):  # their persistent buffers, rebuilt on both sides
        for j, _ in enumerate(block.blocks):
            conditioning[f"backbone.layers.{stage}.blocks.{j}.attn.relative_position_index"] = torch.zeros(16, 16, dtype=torch.long)
            conditioning[f"backbone.layers.{stage}.blocks.{j}.attn_mask"] = torch.zeros(4, 16, 16)
    return conditioning, unet


@pytest.fixture(scope="module")
def authors_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    folder = tmp_path_factory.mktemp("cfld_release")
    conditioning, unet = authors_layout(tiny_cfld().network)
    torch.save(conditioning, folder / "pytorch_model.bin")
    torch.save(unet, folder / "pytorch_model_1.bin")
    return folder, conditioning, unet


def test_synthetic_authors_folder_loads_every_weight(authors_folder) -> None:
    folder, conditioning, unet = authors_folder
    model = tiny_cfld(released_checkpoint=str(folder))  # strict: no missing or unexpected key
    assert model.released_checkpoint == str(folder)
    own = model.network.state_dict()
    assert torch.equal(own["null_prompt"], conditioning["learnable_vector"])
    assert torch.equal(own["prompt_head.query_feat"], conditioning["decoder.query_feat"])
    assert torch.equal(own["swin.model.layers.1.downsample.reduction.weight"], conditioning["backbone.layers.0.downsample.reduction.weight"])
    n = len(model.network.appearance_encoders)
    assert torch.equal(own[f"appearance_encoders.{n - 1}.zero_in.weight"], conditioning["appearance_encoder.zero_conv_ins.0.weight"])
    assert torch.equal(own["pose_adapter.stem.weight"], conditioning["pose_encoder.conv_in.weight"])
    k = "up_blocks.3.attentions.0.transformer_blocks.0.attn2.to_k.weight"
    assert torch.equal(own[f"unet.{k}"], unet[f"model.{k}"])
    expected = {name for name in own}
    loaded = {authors_key_map(4, n).rename(k) for k in [*conditioning, *unet]
              if not re.search(r"relative_position_index$|attn_mask$", k)}
    assert loaded == expected and not mismatch_report(own, {k: own[k] for k in loaded})


def test_mismatching_release_is_refused_with_one_message(authors_folder, tmp_path: Path) -> None:
    folder, conditioning, _ = authors_folder
    with pytest.raises(ReleasedWeightsError) as info:  # the suite's first PRD reading has other parameters
        tiny_cfld(released_checkpoint=str(folder), prd={"num_queries": 4, "depth": 2, "num_heads": 2, "layout": "pre_norm"})
    message = str(info.value)
    assert "missing" in message and "unexpected" in message and "prompt_head." in message and "\n" not in message
    only_one = tmp_path / "half"
    only_one.mkdir()
    torch.save(conditioning, only_one / "pytorch_model.bin")
    with pytest.raises(ReleasedWeightsError, match="pytorch_model_1.bin"):
        tiny_cfld(released_checkpoint=str(only_one))
    with pytest.raises(ReleasedWeightsError, match="input_normalization"):
        swin = {"embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 2, 2, 4], "window_size": 4, "input_normalization": "imagenet"}
        tiny_cfld(released_checkpoint=str(folder), swin=swin)


def test_swin_checkpoint_folder_or_hub_id_is_read_from_the_resolved_path(tmp_path: Path, monkeypatch) -> None:
    """A Microsoft-layout Swin file inside a folder (what a hub id resolves to) loads; the raw value is not reopened."""
    import lightning_modules.cfld.swin as swin_module
    from lightning_modules.cfld.swin import SwinEncoder

    kwargs = dict(img_size=64, embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4), window_size=4)
    source = SwinEncoder(**kwargs)
    state = {}
    for name, value in source.model.state_dict().items():  # timm -> Microsoft names (merging closes stage i)
        m = re.match(r"layers\.(\d+)\.downsample\.(.*)", name)
        state[f"layers.{int(m.group(1)) - 1}.downsample.{m.group(2)}" if m else name] = value.clone()
    folder = tmp_path / "snapshot"
    folder.mkdir()
    torch.save({"model": state}, folder / "swin_tiny_test.pth")
    monkeypatch.setattr(swin_module, "require_files", lambda path, key, expected, source: folder)
    loaded = SwinEncoder(**kwargs, checkpoint="microsoft/swin-for-tests")  # a hub id, resolved to the folder
    for name, value in source.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], value), name
