"""MimicMotion's released checkpoints load into Fit Check (issue 29; thesis 000 Ch. 4 §4.5.1).

Synthetic state dicts with the names and shapes of Tencent/MimicMotion's ``MimicMotionModel``
(``unet.*`` as diffusers' spatio-temporal UNet, ``pose_net.*`` of their ``PoseNet``, fp16 as
released). Random weights: they test the importer, not the paper's numbers.
"""
from __future__ import annotations

import pytest
import torch

from fitcheck_tiny import TINY, tiny_module, tiny_unet
from lightning_modules.components.released_weights import ReleasedWeightsError
from lightning_modules.fitcheck.pose_net import PoseNet
from lightning_modules.fitcheck.released import load_mimicmotion

# Their PoseNet (mimicmotion/modules/pose_net.py): index in conv_layers -> (out, in, k); SiLU between.
AUTHORS_POSE_NET = {0: (3, 3, 3), 2: (16, 3, 4), 4: (16, 16, 3), 6: (32, 16, 4), 8: (32, 32, 3),
                    10: (64, 32, 4), 12: (64, 64, 3), 14: (128, 64, 3)}


def _authors_pose_net_state(width: int = 320) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    state = {}
    for index, (out, inp, k) in AUTHORS_POSE_NET.items():
        state[f"pose_net.conv_layers.{index}.weight"] = torch.randn(out, inp, k, k, generator=g).half()
        state[f"pose_net.conv_layers.{index}.bias"] = torch.randn(out, generator=g).half()
    state["pose_net.final_proj.weight"] = torch.randn(width, 128, 1, 1, generator=g).half()
    state["pose_net.final_proj.bias"] = torch.randn(width, generator=g).half()
    state["pose_net.scale"] = torch.ones(1).half() * 2.5  # nn.Parameter(torch.ones(1) * 2), trained
    return state


def test_full_size_pose_net_takes_the_authors_names_and_shapes(tmp_path) -> None:
    unet = tiny_unet(in_channels=8)
    state = {f"unet.{k}": v.half() for k, v in unet.state_dict().items()}
    state.update(_authors_pose_net_state())
    state["vae.encoder.conv_in.weight"] = torch.zeros(1)  # a full MimicMotionModel dump: SVD parts are dropped
    pose_net = PoseNet()  # the paper's PoseNet, out_channels 320
    path = tmp_path / "MimicMotion_1.pth"
    torch.save(state, path)
    mapped = load_mimicmotion(unet, pose_net, path)
    assert not any(k.startswith("vae.") for k in mapped)
    assert float(pose_net.scale.detach()) == 2.5 and pose_net.scale.dtype == torch.float32
    torch.testing.assert_close(pose_net.conv_layers[14].weight, state["pose_net.conv_layers.14.weight"].float())
    torch.testing.assert_close(pose_net.final_proj.bias, state["pose_net.final_proj.bias"].float())


def test_module_records_the_released_checkpoint_and_refuses_another_width(tmp_path) -> None:
    unet = tiny_unet(in_channels=8, num_frames=TINY["unet_config"]["num_frames"])
    pose_net = PoseNet(out_channels=32, **TINY["pose_net_config"])
    state = {f"unet.{k}": v for k, v in unet.state_dict().items()}
    state.update({f"pose_net.{k}": v for k, v in pose_net.state_dict().items()})
    good = tmp_path / "MimicMotion_1-1.pth"
    torch.save(state, good)
    module = tiny_module(mimicmotion_checkpoint=str(good))
    assert module.released_checkpoint == str(good)
    assert tiny_module().released_checkpoint is None
    state["pose_net.final_proj.weight"] = torch.zeros(320, state["pose_net.final_proj.weight"].shape[1], 1, 1)
    bad = tmp_path / "other_width.pth"
    torch.save(state, bad)
    with pytest.raises(ReleasedWeightsError, match=r"other_width\.pth.*final_proj\.weight"):
        tiny_module(mimicmotion_checkpoint=str(bad))
