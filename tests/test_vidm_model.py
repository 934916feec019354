"""VIDM components (thesis 001 Ch. 3): PosGN, SpyNet, the feature residual, the Charbonnier loss, sizes, C3D IS."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lightning_modules.components.adm_unet import ADMUNet, ResBlock
from lightning_modules.vidm.losses import charbonnier
from lightning_modules.vidm.networks import ContentNetwork, MotionNetwork, count_parameters_on_meta
from lightning_modules.vidm.posgn import CoordinateContext, PosGNFactory
from lightning_modules.vidm.spynet import SpyNet, flow_warp, load_spynet_weights
from metrics.c3d import C3D, C3DProbabilities, VideoInceptionScore

TINY_UNET = dict(model_channels=16, channel_mult=(1, 2), num_res_blocks=1, num_head_channels=8, norm_num_groups=8,
                 attention_resolutions=[8])


def _tiny_motion(**kw) -> MotionNetwork:
    torch.manual_seed(0)
    return MotionNetwork(unet=TINY_UNET, image_size=16, flow={"variant": "tiny"}, **kw)


# ------------------------------------------------------------------ PosGN
def test_posgn_block_is_the_identity_at_init_and_modulates_once_trained() -> None:
    torch.manual_seed(0)
    ctx = CoordinateContext(video_timesteps=8, diffusion_timesteps=100)
    block = ResBlock(16, None, 0.0, 16, groups=8)
    block.modulation = PosGNFactory(ctx)(16)
    x = torch.randn(2, 16, 8, 8)
    ctx.set(torch.tensor([1, 5]), torch.tensor([3.0, 90.0]))
    assert torch.equal(block(x), x), "zero-init output conv: a fresh PosGN block returns its input"
    torch.nn.init.normal_(block.out_layers[-1].weight)
    out_a = block(x)
    ctx.set(torch.tensor([6, 2]), torch.tensor([3.0, 90.0]))
    assert not torch.allclose(out_a, block(x)), "once the output conv is non-zero, the frame index n changes the output"


def test_posgn_coordinates_are_normalised_and_cached_across_steps() -> None:
    ctx = CoordinateContext(video_timesteps=128, diffusion_timesteps=1000)
    feature = torch.zeros(2, 4, 5, 7)
    ctx.set(torch.tensor([0, 127]), torch.tensor([0.0, 999.0]))
    coords = ctx.coordinates(feature)
    assert coords.shape == (2, 4, 5, 7)
    assert torch.allclose(coords[0, 0, :, 0], torch.linspace(-1, 1, 5)), "h over the rows"
    assert torch.allclose(coords[0, 1, 0, :], torch.linspace(-1, 1, 7)), "w over the columns"
    assert coords[0, 2].eq(-1).all() and coords[1, 2].eq(1).all(), "n over 128 frames"
    assert coords[0, 3].eq(-1).all() and coords[1, 3].eq(1).all(), "t over 1000 steps"
    net = _tiny_motion(diffusion_timesteps=1000, video_timesteps=128)
    x, first = torch.randn(1, 3, 16, 16), torch.rand(1, 3, 16, 16) * 2 - 1
    flow = net.compute_flow(first, first)
    net(x, torch.tensor([999.0]), torch.tensor([1]), first, flow)
    builds = net.context.grid_builds
    assert builds == 2, "one (h, w) grid per feature-map size (16 and 8 px)"
    for step in (800.0, 500.0, 10.0):
        net(x, torch.tensor([step]), torch.tensor([1]), first, flow)
    assert net.context.grid_builds == builds, "later denoising steps reuse the cached grids"


def test_block_modulation_hook_refuses_a_timestep_embedding_and_leaves_plain_unets_unchanged() -> None:
    sizes = dict(model_channels=16, channel_mult=(1, 2), num_res_blocks=1, num_head_channels=8, norm_num_groups=8, attention_ds=(2,))
    with pytest.raises(ValueError, match="use_timestep_embedding=False"):
        ADMUNet(**sizes, block_modulation=PosGNFactory(CoordinateContext()))
    plain = ADMUNet(**sizes)
    assert not any("modulation" in k for k in plain.state_dict()), "no hook, no new keys (ADM checkpoints still load)"


# ------------------------------------------------------------------ SpyNet
def _mmediting_state(num_levels: int = 6) -> dict[str, torch.Tensor]:
    """A synthetic checkpoint in mmediting's published key layout (spynet_20210409-c6c1bd09.pth)."""
    chans = [8, 32, 64, 32, 16, 2]
    state = {}
    for level in range(num_levels):
        for j in range(5):
            key = f"basic_module.{level}.basic_module.{j}.conv"
            state[f"{key}.weight"] = torch.randn(chans[j + 1], chans[j], 7, 7) * 0.01
            state[f"{key}.bias"] = torch.zeros(chans[j + 1])
    state["mean"] = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    state["std"] = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return state


def test_spynet_loads_mmediting_key_names_and_names_the_file_on_other_keys(tmp_path: Path) -> None:
    state = _mmediting_state()
    path = tmp_path / "spynet_20210409-c6c1bd09.pth"
    torch.save({"state_dict": {f"generator.spynet.{k}": v for k, v in state.items()}, "meta": {}}, path)
    net = SpyNet(weights_path=str(path))
    assert torch.equal(net.basic_module[3].basic_module[2].conv.weight, state["basic_module.3.basic_module.2.conv.weight"])
    per_level = sum(a * b * 49 + b for a, b in zip([8, 32, 64, 32, 16], [32, 64, 32, 16, 2]))
    assert sum(p.numel() for p in net.parameters()) == 6 * per_level, "six levels of the published 7x7 stack"
    bad = tmp_path / "other.pth"
    torch.save({k.replace("basic_module.", "layers.", 1): v for k, v in state.items()}, bad)
    with pytest.raises(ValueError, match="other.pth"):
        SpyNet(weights_path=str(bad))
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_spynet_weights(SpyNet(), tmp_path / "missing.pth")


def test_flow_warp_of_zero_flow_is_exactly_the_identity_and_integer_shifts_move_pixels() -> None:
    x = torch.randn(2, 3, 9, 11)
    assert torch.equal(flow_warp(x, torch.zeros(2, 2, 9, 11)), x)
    shift = torch.zeros(2, 2, 9, 11)
    shift[:, 0] = 1.0  # sample one pixel to the right
    assert torch.allclose(flow_warp(x, shift)[..., :-1], x[..., 1:], atol=1e-5)
    flow = torch.randn(2, 2, 9, 11) * 3  # peer: grid_sample with border padding, align_corners=True (mmediting)
    ys, xs = torch.meshgrid(torch.arange(9.0), torch.arange(11.0), indexing="ij")
    grid = torch.stack([2 * (xs + flow[:, 0]) / 10 - 1, 2 * (ys + flow[:, 1]) / 8 - 1], dim=-1)
    peer = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)
    assert torch.allclose(flow_warp(x, flow), peer, atol=1e-5)


def test_trained_tiny_spynet_gives_near_zero_flow_for_identical_frames() -> None:
    torch.manual_seed(0)
    net = SpyNet.tiny()
    frames = torch.rand(16, 3, 16, 16) * 2 - 1
    before = net(frames, frames).abs().mean().item()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for step in range(60):  # supervised on known integer shifts, including zero
        torch.manual_seed(step)
        img = F.avg_pool2d(torch.rand(8, 3, 20, 20) * 2 - 1, 3, 1)  # smooth textures, 18 px
        dx = torch.randint(-1, 2, (8,)).float()
        ref = img[..., 1:17, 1:17]
        supp = torch.stack([torch.roll(img[i], int(-dx[i]), dims=-1)[..., 1:17, 1:17] for i in range(8)])
        target = torch.zeros(8, 2, 16, 16)
        target[:, 0] = dx[:, None, None]
        loss = (net(ref, supp) - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = net(frames, frames).abs().mean().item()
    assert after < 0.1 and after < before, f"identical frames: mean |flow| {after:.3f} px (random init {before:.3f})"


# ------------------------------------------------------------------ residual, loss, sizes
def test_feature_residual_at_scale_zero_is_exactly_the_plain_unet() -> None:
    net = _tiny_motion(residual_scale=0.0)
    torch.manual_seed(1)
    for p in net.parameters():
        p.data.normal_(0, 0.1)  # non-zero everywhere, so the residual would show
    plain = MotionNetwork(unet=TINY_UNET, image_size=16, flow={"variant": "tiny"}, use_residual=False)
    plain.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith("encoder.")})
    x, first = torch.randn(2, 3, 16, 16), torch.rand(2, 3, 16, 16) * 2 - 1
    args = (x, torch.tensor([5.0, 700.0]), torch.tensor([1, 3]), first, net.compute_flow(first, first))
    assert torch.equal(net(*args), plain(*args))
    net.residual_scale = 0.2
    assert not torch.allclose(net(*args), plain(*args)), "at 0.2 the first-frame encoder contributes"


def test_charbonnier_tends_to_abs_error_and_to_the_mse_shape_near_zero() -> None:
    e = torch.linspace(-2, 2, 41).view(1, -1)
    zero = torch.zeros_like(e)
    assert torch.allclose(charbonnier(e, zero, eta=1e-6), e.abs().mean(1), atol=1e-5)
    small, eta = torch.full((1, 8), 1e-3, dtype=torch.float64), 1.0
    quad = (charbonnier(small, torch.zeros_like(small), eta) - eta) * 2 * eta
    assert torch.allclose(quad, small.pow(2).mean(1), rtol=1e-3), "eta + e^2 / (2 eta) for |e| << eta"
    with pytest.raises(ValueError, match="eta"):
        charbonnier(e, zero, -1.0)


def test_repo_sized_networks_on_the_meta_device() -> None:
    spynet = count_parameters_on_meta(SpyNet)
    content = count_parameters_on_meta(ContentNetwork, image_size=256)
    motion = count_parameters_on_meta(MotionNetwork, image_size=256)
    no_extras = count_parameters_on_meta(MotionNetwork, image_size=256, use_flow=False, use_residual=False)
    encoder = motion - no_extras - spynet
    assert 0 < encoder < no_extras, "the residual encoder is a copy of the encoder half only"
    assert content > 1e8 and motion > content, f"content {content:,}, motion {motion:,}"
    with torch.device("meta"):
        net = MotionNetwork(image_size=256)
        x = torch.empty(1, 3, 256, 256)
        out = net(x, torch.tensor([10.0]), torch.tensor([3]), x, torch.empty(1, 2, 256, 256), return_variance=True)
    assert out.shape == (1, 6, 256, 256), "epsilon + learned-variance channels at 256 px"


# ------------------------------------------------------------------ video IS with C3D
def test_c3d_loads_its_layer_names_and_video_is_matches_its_definition(tmp_path: Path) -> None:
    tiny = C3D(num_classes=5, base_width=2, fc_width=8, input_size=16)
    path = tmp_path / "c3d_tiny.pt"
    torch.save(tiny.state_dict(), path)
    probe = C3DProbabilities(weights_path=str(path), network=C3D(num_classes=5, base_width=2, fc_width=8, input_size=16), resolution=16)
    assert torch.equal(probe.net.fc8.weight, tiny.fc8.weight)
    assert not probe.protocol.random_weights
    assert C3DProbabilities(network=C3D(5, 2, 8, 16), resolution=16).protocol.random_weights, "no weights: a named stand-in"
    torch.save({"conv1a.weight": tiny.conv1a.weight}, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match="partial.pt"):
        C3DProbabilities(weights_path=str(tmp_path / "partial.pt"), network=C3D(5, 2, 8, 16), resolution=16)
    assert probe(torch.rand(2, 16, 3, 16, 16) * 2 - 1).shape == (2, 5)


class _ColourClassifier(torch.nn.Module):
    """A video classifier whose log-probabilities vary per clip (C3D stand-in for the IS peer check)."""

    num_features = 5

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(3, 5) * 4)

    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(videos.mean(dim=(1, 3, 4)) @ self.weight, dim=1)


def test_video_inception_score_matches_torchmetrics() -> None:
    from torchmetrics.image.inception import InceptionScore as TorchmetricsIS

    torch.manual_seed(0)
    classifier = _ColourClassifier()
    colours = torch.rand(12, 1, 3, 1, 1) * 2 - 1
    videos = (colours + 0.1 * torch.randn(12, 4, 3, 8, 8)).clamp(-1, 1)  # one dominant colour per clip
    ours = VideoInceptionScore(classifier=classifier, splits=1)
    ours.update(videos, real=False)
    ours.update(videos, real=True)  # real clips are ignored
    peer = TorchmetricsIS(feature=classifier, splits=1)
    peer.update(videos)
    value = float(ours.compute()["value"])
    assert value > 1.05, "the stand-in's predictions differ across clips"
    assert abs(value - float(peer.compute()[0])) < 1e-5


# ------------------------------------------------------------------ ablation overlays
def test_ablation_networks_run_and_every_overlay_names_real_arguments() -> None:
    import inspect

    import yaml

    from cli_runner import CONFIGS
    from lightning_modules.vidm import VIDMContent, VIDMMotion

    x, first = torch.randn(2, 3, 16, 16), torch.rand(2, 3, 16, 16) * 2 - 1
    t, n = torch.tensor([5.0, 700.0]), torch.tensor([1, 3])
    no_posgn = _tiny_motion(use_posgn=False)
    assert no_posgn.context is None and no_posgn.unet.time_embed is not None, "w/o PosGN: AdaGN timestep embedding"
    assert no_posgn(x, t, n, first, no_posgn.compute_flow(first, first)).shape == (2, 3, 16, 16)
    vanilla = _tiny_motion(use_posgn=False, use_flow=False, use_residual=False)
    assert vanilla.unet.in_channels == 3 and vanilla.flow_net is None and vanilla.encoder is None
    assert vanilla(x, t, n, first).shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match="compute_flow"):
        _tiny_motion()(x, t, n, first)
    accepted = {name: set(inspect.signature(cls).parameters) for name, cls in
                (("model", VIDMMotion), ("content", VIDMContent), ("motion_net", MotionNetwork), ("content_net", ContentNetwork))}
    overlays = sorted((CONFIGS / "vidm_ablations").glob("*.yaml"))
    assert len(overlays) == 7
    for overlay in overlays:
        model = yaml.safe_load(overlay.read_text())["model"]["init_args"]
        network = model.pop("network", {}).get("init_args", {})
        assert set(model) <= accepted["model"] | accepted["content"], overlay.name
        assert set(network) <= accepted["motion_net"] | accepted["content_net"], overlay.name
