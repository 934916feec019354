"""VIDM's released motion generator (MKFMIKU/vidm, checkpoint_accum_clevrer_robust_400000.pth.tar) in MotionNetwork.

Synthetic files in the authors' layout (tests/released_helpers.py, from their ComplexUModel code); random values:
these test the importer, not the paper's numbers.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lightning_modules.components.released_weights import ReleasedWeightsError
from lightning_modules.vidm import MotionNetwork, VIDMMotion
from lightning_modules.vidm.released import import_vidm_motion
from released_helpers import vidm_complex_umodel_state, vidm_released_file

TINY = dict(model_channels=16, channel_mult=(1, 2), num_res_blocks=1, num_head_channels=8, norm_num_groups=8,
            attention_resolutions=[8])


def _net(**kw) -> MotionNetwork:
    return MotionNetwork(unet={**TINY, **kw.pop("unet", {})}, image_size=16, residual_form="repo",
                         flow={"variant": "tiny", "input_range": "raw"}, **kw)


def test_released_file_loads_every_key_from_the_ema_weights(tmp_path: Path) -> None:
    ema = vidm_complex_umodel_state()
    torch.save(vidm_released_file(ema), tmp_path / "checkpoint_accum_clevrer_robust_400000.pth.tar")
    net = _net()
    mapped = import_vidm_motion(net, tmp_path / "checkpoint_accum_clevrer_robust_400000.pth.tar")
    own = net.state_dict()
    assert set(mapped) == set(own), "no missing or unexpected keys"
    assert len(ema) - len(own) == 2 * sum(k.endswith("emb_layers.coords") for k in ema), "only the cached grids dropped"
    w = ema["module.unet.input_blocks.1.0.emb_layers.linear_1.2.weight"]
    assert torch.equal(own["unet.input_blocks.1.0.modulation.mlp.4.weight"], w[:, :, None, None]), "the EMA weights"
    assert torch.equal(own["flow_net.basic_module.1.basic_module.0.conv.weight"],
                       ema["module.spynet.basic_module.1.basic_module.0.conv.weight"])


def _their_resblock(state: dict, p: str, x: torch.Tensor, dt: torch.Tensor, vt: torch.Tensor, groups: int) -> torch.Tensor:
    """Their ResBlock(no up/down) + CoordinatesEMB forward, written from vidm/cunet.py (GroupNorm groups as configured)."""
    h = F.conv2d(F.silu(F.group_norm(x, groups, state[p + "in_layers.0.weight"], state[p + "in_layers.0.bias"])),
                 state[p + "in_layers.2.weight"], state[p + "in_layers.2.bias"], padding=1)
    n, _, hh, ww = h.shape
    lin = torch.linspace(-1, 1, 1000)[dt], torch.linspace(-1, 1, 128)[vt]
    rows = torch.linspace(-1, 1, hh).view(1, -1, 1, 1).expand(n, hh, ww, 1)
    cols = torch.linspace(-1, 1, ww).view(1, 1, -1, 1).expand(n, hh, ww, 1)
    tv = torch.stack(lin, dim=-1).view(n, 1, 1, 2).expand(n, hh, ww, 2)
    coords = torch.cat([tv, rows, cols], dim=-1).reshape(-1, 4)  # (dt, vt, h, w)
    e = p + "emb_layers."
    f = F.linear(torch.sin(F.linear(coords, state[e + "linear_0.weight"], state[e + "linear_0.bias"])),
                 state[e + "linear_1.0.weight"], state[e + "linear_1.0.bias"])
    f = F.linear(F.silu(f), state[e + "linear_1.2.weight"], state[e + "linear_1.2.bias"])
    scale, shift = f.view(n, hh, ww, -1).permute(0, 3, 1, 2).chunk(2, dim=1)
    h = F.group_norm(h, groups, state[e + "out_norm.weight"], state[e + "out_norm.bias"]) * (1 + scale) + shift
    h = F.conv2d(F.silu(h), state[e + "out_rest.1.weight"], state[e + "out_rest.1.bias"], padding=1)
    skip = F.conv2d(x, state[p + "skip_connection.weight"], state[p + "skip_connection.bias"]) if p + "skip_connection.weight" in state else x
    return skip + h


def test_posgn_block_computes_what_their_coordinates_emb_does() -> None:
    """The one layout that differs (coordinate order, Linear vs 1x1 conv): same outputs after the import."""
    ema = {k[len("module."):]: v for k, v in vidm_complex_umodel_state(seed=3).items()}
    net = _net()
    import_vidm_motion(net, "in-memory", state=ema)
    x = torch.randn(2, 16, 8, 8)  # the level-1 ResBlock (16 -> 32 channels, skip conv) at 8x8
    dt, vt = torch.tensor([999, 17]), torch.tensor([0, 5])
    p = "unet.input_blocks.3.0."
    net.context.set(vt, dt)
    ours = net.unet.input_blocks[3][0](x)
    torch.testing.assert_close(ours, _their_resblock(ema, p, x, dt, vt, groups=8), atol=1e-5, rtol=1e-4)


def test_mismatching_files_are_refused_with_one_message(tmp_path: Path) -> None:
    deeper = vidm_complex_umodel_state(num_res_blocks=2)
    with pytest.raises(ReleasedWeightsError, match=r"not a VIDM motion-generator .*missing.*unexpected.*num_res_blocks"):
        import_vidm_motion(_net(), "deeper.pth.tar", state=deeper)
    with pytest.raises(ReleasedWeightsError, match=r"trained on 32x32 frames.*image_size=16"):
        import_vidm_motion(_net(), "big.pth.tar", state=vidm_complex_umodel_state(image_size=32))
    adm = {"input_blocks.0.0.weight": torch.zeros(16, 3, 3, 3), "time_embed.0.weight": torch.zeros(64, 16)}
    torch.save(adm, tmp_path / "adm.pt")
    with pytest.raises(ReleasedWeightsError, match="adm.pt.*VIDM motion-generator") as info:
        import_vidm_motion(_net(), tmp_path / "adm.pt")
    assert str(info.value).count("\n") == 0


def test_module_flag_imports_and_is_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a trainer-less prediction writer points at ./predictions
    torch.save(vidm_released_file(vidm_complex_umodel_state()), tmp_path / "released.pth.tar")
    module = VIDMMotion(_net(), image_size=16, num_frames=3, num_sampling_steps=2,
                        released_checkpoint=str(tmp_path / "released.pth.tar"))
    assert module.released_checkpoint == str(tmp_path / "released.pth.tar")
    video = torch.rand(2, 3, 3, 16, 16) * 2 - 1
    out = module.sample_for_batch({"video": video}, generator=torch.Generator().manual_seed(0))
    assert out.shape == video.shape and torch.equal(out[:, 0], video[:, 0]), "image-to-video from each clip's first frame"
    writer = module.prediction_writer("released")
    assert writer.settings["released_checkpoint"] == str(tmp_path / "released.pth.tar"), "predict manifests name the file"


def test_the_shipped_overlay_is_the_released_layout_at_full_size() -> None:
    """configs/vidm_eval/released_clevrer.yaml builds exactly their 128 px ComplexUModel (names and shapes, on meta)."""
    import yaml

    from cli_runner import CONFIGS
    from lightning_modules.components.released_weights import mismatch_report
    from lightning_modules.vidm.released import MOTION_KEY_MAP, _reshape_modulation
    from released_helpers import meta_tensors

    network = yaml.safe_load((CONFIGS / "vidm_eval" / "released_clevrer.yaml").read_text())["model"]["init_args"]["network"]
    with torch.device("meta"):
        net = MotionNetwork(**network["init_args"])
    with meta_tensors():  # their training script: model_channels 128, (1,1,2,2,4,4), 2 blocks, attention rate 16
        theirs = vidm_complex_umodel_state(model_channels=128, channel_mult=(1, 1, 2, 2, 4, 4), num_res_blocks=2,
                                           attention_ds=(16,), image_size=128, spynet_levels=6,
                                           spynet_widths=(32, 64, 32, 16), spynet_kernel=7)
    assert mismatch_report(net.state_dict(), _reshape_modulation(MOTION_KEY_MAP.apply(theirs))) == []
    assert net.residual_form == "repo" and net.flow_net.input_range == "raw"
