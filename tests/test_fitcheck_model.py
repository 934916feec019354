"""Fit-Check (thesis 000, Ch. 4) model parts: defining properties on tiny random-weight networks.

Random weights test the code (zero-init, equivalences, parameter sets), not the paper's numbers.
"""
from __future__ import annotations

import copy

import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from fitcheck_tiny import random_batch, tiny_module, tiny_unet
from lightning_modules.components.multi_reference_attention import (
    LiteralMultiReferenceAttnProcessor,
    MultiReferenceAttnProcessor,
    ReferenceFrames,
    set_multi_reference_attention,
    spatial_self_attention_names,
)
from lightning_modules.fitcheck.network import FitCheckNetwork, widen_conv_in
from lightning_modules.fitcheck.pose_net import PoseNet


def _unet_inputs(batch: int, frames: int, channels: int, h: int = 16, w: int = 12):
    g = torch.Generator().manual_seed(1)
    return (
        torch.randn(batch, frames, channels, h, w, generator=g),
        torch.tensor([0.3] * batch),
        torch.randn(batch, 1, 16, generator=g),
        torch.tensor([[6.0, 127.0, 0.0]] * batch),
    )


def _perturb(module: torch.nn.Module, seed: int = 3) -> None:
    """Non-zero weights everywhere (diffusers zero-inits some output layers) so a test can fail."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)


def test_widened_conv_in_is_zero_initialised_and_leaves_the_output_unchanged() -> None:
    unet = tiny_unet(in_channels=8)
    _perturb(unet)
    sample, t, ctx, ids = _unet_inputs(1, 6, 8)
    with torch.no_grad():
        before = unet(sample, t, ctx, ids).sample
        widened = widen_conv_in(copy.deepcopy(unet), 16)
        extra = torch.randn(1, 6, 8, 16, 12)  # back + background latents
        after = widened(torch.cat([sample, extra], dim=2), t, ctx, ids).sample
    assert widened.conv_in.weight.shape[1] == 16 and widened.config.in_channels == 16
    assert torch.count_nonzero(widened.conv_in.weight[:, 8:]) == 0
    torch.testing.assert_close(after, before, rtol=0, atol=1e-6)


def test_posenet_is_zero_initialised_so_poses_have_no_effect_at_start() -> None:
    pose_net = PoseNet(out_channels=32, stage_channels=(4, 8), final_channels=8, num_downsamples=1)
    assert torch.count_nonzero(pose_net.final_proj.weight) == 0 and float(pose_net.scale.detach()) == 2.0
    net = FitCheckNetwork(tiny_unet(), pose_net)
    sample, t, ctx, ids = _unet_inputs(1, 6, 4)
    refs = torch.randn(1, 12, 16, 12)
    poses = torch.rand(1, 6, 3, 32, 24) * 2 - 1
    with torch.no_grad():
        with_pose = net(sample, t, refs, ctx, poses, torch.ones(1), ids)
        without = net(sample, t, refs, ctx, poses, torch.zeros(1), ids)
        torch.testing.assert_close(with_pose, without)
        _perturb(net.pose_net)
        changed = net(sample, t, refs, ctx, poses, torch.ones(1), ids)
    assert not torch.allclose(changed, without), "after training the pose features do reach the UNet"


def _attention(dim: int = 32) -> Attention:
    torch.manual_seed(0)
    return Attention(query_dim=dim, heads=2, dim_head=16, bias=False, out_bias=True)


@pytest.mark.parametrize("references", [(0, 1), (0, 0)], ids=["front-back", "first-frame-only"])
def test_multi_reference_attention_equals_the_literal_width_concatenation(references: tuple[int, int]) -> None:
    attn = _attention()
    frames = ReferenceFrames(num_frames=5, references=references, latent_size=(4, 3))
    hidden = torch.randn(2 * 5, 4 * 3, 32)
    with torch.no_grad():
        literal = LiteralMultiReferenceAttnProcessor(frames)(attn, hidden)
        fast = MultiReferenceAttnProcessor(frames)(attn, hidden)
        plain = AttnProcessor2_0()(attn, hidden)
    torch.testing.assert_close(fast, literal, rtol=1e-5, atol=1e-5)
    # the reference frames themselves see only copies of themselves: plain self-attention
    for ref in set(references):
        torch.testing.assert_close(fast.view(2, 5, 12, 32)[:, ref], plain.view(2, 5, 12, 32)[:, ref], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(fast, plain, atol=1e-4), "target frames do attend to the references"


def test_multi_reference_attention_reduces_to_self_attention_for_identical_frames() -> None:
    attn = _attention()
    frames = ReferenceFrames(num_frames=4, references=(0, 1))
    hidden = torch.randn(1, 12, 32).expand(4, -1, -1).contiguous()
    with torch.no_grad():
        torch.testing.assert_close(MultiReferenceAttnProcessor(frames)(attn, hidden), AttnProcessor2_0()(attn, hidden), rtol=1e-5, atol=1e-5)


def test_mra_in_the_unet_equals_the_literal_form_and_adds_no_parameters() -> None:
    unet = tiny_unet()
    _perturb(unet)
    count, keys = sum(p.numel() for p in unet.parameters()), set(unet.state_dict())
    net = FitCheckNetwork(unet, PoseNet(out_channels=32, stage_channels=(4, 8), final_channels=8, num_downsamples=1))
    names = spatial_self_attention_names(net.unet)
    assert names and all("temporal" not in n and n.endswith("attn1.processor") for n in names)
    assert all(isinstance(net.unet.attn_processors[n], MultiReferenceAttnProcessor) for n in names)
    assert sum(p.numel() for p in net.unet.parameters()) == count + 8 * 32 * 9  # only the conv_in widening
    assert set(net.unet.state_dict()) == keys
    sample, t, ctx, ids = _unet_inputs(1, 6, 4)
    args = (torch.randn(1, 12, 16, 12), ctx, torch.rand(1, 6, 3, 32, 24), torch.ones(1), ids)
    with torch.no_grad():
        fast = net(sample, t, *args)
        set_multi_reference_attention(net.unet, net.frames, literal=True)
        literal = net(sample, t, *args)
        net.frames.enabled = False
        set_multi_reference_attention(net.unet, net.frames)
        plain = net(sample, t, *args)
    torch.testing.assert_close(fast, literal, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(fast, plain, atol=1e-4)


def test_frozen_parts_stay_outside_the_optimizer_and_checkpoint() -> None:
    module = tiny_module()
    optimizer = module.configure_optimizers()
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    for name in ("vae", "image_encoder"):
        part = getattr(module, name)
        assert all(not p.requires_grad and id(p) not in in_optimizer for p in part.parameters())
        assert not part.training
    assert {id(p) for p in module.network.parameters()} == in_optimizer  # main stage: UNet + PoseNet
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    assert not [k for k in checkpoint["state_dict"] if k.startswith(("vae.", "image_encoder."))]


def test_spatial_fine_tuning_trains_only_non_temporal_unet_layers() -> None:
    module = tiny_module(trainable="spatial")
    trainable = {id(p) for p in module.trainable_parameters()}
    temporal = module.network.temporal_parameters()
    assert temporal and all(id(p) not in trainable for _, p in temporal)
    assert all(id(p) not in trainable for p in module.network.pose_net.parameters())
    spatial = [p for n, p in module.network.unet.named_parameters() if "temporal" not in n and "time_mixer" not in n and "time_pos_embed" not in n]
    assert all(id(p) in trainable for p in spatial)


def test_full_size_svd_unet_on_the_meta_device() -> None:
    from diffusers import UNetSpatioTemporalConditionModel

    from lightning_modules.fitcheck.module import SVD_UNET_CONFIG

    with torch.device("meta"):
        unet = UNetSpatioTemporalConditionModel(**SVD_UNET_CONFIG)
        svd = sum(p.numel() for p in unet.parameters())
        net = FitCheckNetwork(unet, PoseNet())
    assert svd == 1_524_623_082  # SVD img2vid-xt UNet (1.52B, [EXT])
    assert net.unet.conv_in.weight.shape == (320, 16, 3, 3)
    assert sum(p.numel() for p in net.unet.parameters()) == svd + 8 * 320 * 9
    assert sum(p.numel() for p in net.pose_net.parameters()) == 205_557  # MimicMotion PoseNet
    assert net.pose_net.downsample_factor == 8  # 1024x576 poses -> 128x72 latents
    assert len(spatial_self_attention_names(net.unet)) == 16  # every spatial attn1 gets MRA


def test_missing_weights_fail_naming_the_key_the_files_and_the_source(tmp_path) -> None:
    from lightning_modules.fitcheck.pretrained import MissingWeightsError

    with pytest.raises(MissingWeightsError) as info:
        tiny_module(pretrained_svd=str(tmp_path / "svd"))
    message = str(info.value)
    assert "model.init_args.pretrained_svd" in message and "config.json" in message and "huggingface.co" in message


def test_condition_dropout_zeroes_each_condition_independently() -> None:
    module = tiny_module(cond_dropout=0.5)
    cond = {"ref_latents": torch.ones(4000, 12, 1, 1), "image_embeds": torch.ones(4000, 1, 2), "pose_keep": torch.ones(4000)}
    out = module.drop_conditions(cond, generator=torch.Generator().manual_seed(0))
    kept = torch.stack([out["ref_latents"][:, 0, 0, 0], out["image_embeds"][:, 0, 0], out["pose_keep"]])
    assert torch.allclose(kept.mean(1), torch.full((3,), 0.5), atol=0.03)
    assert abs(float((kept[0] * kept[1]).mean()) - 0.25) < 0.03  # independent


def test_frame_generation_prefixes_front_and_back_frames() -> None:
    module = tiny_module()
    batch = random_batch(frames=4)
    video, poses = module.compose_clip(batch)
    assert video.shape[1] == 6 and poses.shape[1] == 6
    torch.testing.assert_close(video[:, 0], batch["front"])
    torch.testing.assert_close(video[:, 1], batch["back"])
    torch.testing.assert_close(poses[:, 1], batch["back_pose"])


def test_mimicmotion_checkpoint_loads_before_the_widening(tmp_path) -> None:
    from fitcheck_tiny import TINY

    unet = tiny_unet(in_channels=8, num_frames=TINY["unet_config"]["num_frames"])
    _perturb(unet)
    pose_net = PoseNet(out_channels=32, **TINY["pose_net_config"])
    _perturb(pose_net)
    state = {f"unet.{k}": v for k, v in unet.state_dict().items()}
    state.update({f"pose_net.{k}": v for k, v in pose_net.state_dict().items()})
    state["pose_net.scale"] = state["pose_net.scale"].reshape(1)  # stored as a 1-element tensor
    torch.save(state, tmp_path / "MimicMotion_1.pth")
    module = tiny_module(mimicmotion_checkpoint=str(tmp_path / "MimicMotion_1.pth"))
    loaded = module.network.unet
    torch.testing.assert_close(loaded.conv_in.weight[:, :8], unet.conv_in.weight)
    assert torch.count_nonzero(loaded.conv_in.weight[:, 8:]) == 0
    torch.testing.assert_close(loaded.up_blocks[1].attentions[0].transformer_blocks[0].attn1.to_q.weight,
                               unet.up_blocks[1].attentions[0].transformer_blocks[0].attn1.to_q.weight)
    torch.testing.assert_close(module.network.pose_net.final_proj.weight, pose_net.final_proj.weight)
    with pytest.raises(FileNotFoundError, match="mimicmotion_checkpoint"):
        tiny_module(mimicmotion_checkpoint=str(tmp_path / "missing.pth"))


def test_svd_temporal_decoder_vae_encodes_and_decodes_clips() -> None:
    vae = {"in_channels": 3, "out_channels": 3, "down_block_types": ["DownEncoderBlock2D"] * 2,
           "block_out_channels": [32, 32], "layers_per_block": 1, "latent_channels": 4}
    module = tiny_module(vae_class="AutoencoderKLTemporalDecoder", vae_config=vae, decode_chunk_size=3)
    clip = torch.rand(1, 5, 3, 32, 24) * 2 - 1
    latents = module.vae_encode(clip)
    assert latents.shape == (1, 5, 4, 16, 12)
    frames = module.decode(latents)
    assert frames.shape == clip.shape and frames.abs().max() <= 1


def test_reference_net_features_reach_the_denoiser() -> None:
    """Naive + RefNet (Table 4.1): the denoiser's spatial self-attention reads the ReferenceNet's front /
    back features (changing the back latent changes the output); random weights test the wiring."""
    from fitcheck_tiny import TINY

    frames = TINY["unet_config"]["num_frames"]
    network = FitCheckNetwork(tiny_unet(in_channels=8, num_frames=frames), PoseNet(out_channels=32, **TINY["pose_net_config"]),
                              16, multi_reference_attention=False, reference_net=True, reference_c_noise=-1.5)
    _perturb(network)
    x, t, embeds, time_ids = _unet_inputs(1, frames, 4)
    refs = torch.randn(1, 12, 16, 12, generator=torch.Generator().manual_seed(5))
    poses = torch.zeros(1, frames, 3, 32, 24)
    keep = torch.ones(1)
    with torch.no_grad():
        out = network(x, t, refs, embeds, poses, keep, time_ids)
        other = refs.clone()
        other[:, 4:8] += 1.0  # another back image
        changed = network(x, t, other, embeds, poses, keep, time_ids)
    assert not torch.allclose(out, changed, atol=1e-5)
    assert not network.reference_net.bank.features, "features are not kept after the call"
    names = network.reference_net.names
    assert names and all(type(network.unet.attn_processors[n]).__name__ == "ReferenceAttnProcessor" for n in names)
    with pytest.raises(ValueError, match="Naive \\+ RefNet"):
        FitCheckNetwork(tiny_unet(), PoseNet(out_channels=32, **TINY["pose_net_config"]), 16,
                        multi_reference_attention=True, reference_net=True)
