"""DiFT components (thesis 001 Ch. 4): tokenizer, coordinates, per-view timesteps, attention, text, rollout, sizes."""
from __future__ import annotations

import math

import pytest
import torch

from datamodules.dift.embedded import DEFAULT_INTRINSICS, look_at
from lightning_modules.dift import DiFT, DiFTTransformer, FieldTokenizer, IdentityAutoencoder, ViewSampler
from lightning_modules.dift.tokenizer import camera_rays


def _randomise(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights everywhere (adaLN-Zero starts closed, so the defaults hide every path)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    return module


def _net(**kw) -> DiFTTransformer:
    args = dict(in_channels=3, patch_size=2, latent_size=8, hidden_size=32, depth=2, num_heads=4, fourier_bands=3)
    args.update(kw)
    return _randomise(DiFTTransformer(**args))


def test_tokenize_detokenize_is_identity_with_identity_autoencoder() -> None:
    ae, tok = IdentityAutoencoder(3), FieldTokenizer(3, 2, 16)
    views = torch.rand(2, 3, 3, 8, 8) * 2 - 1
    latents = ae.encode(views.flatten(0, 1)).reshape(views.shape)
    tokens = tok.patchify(latents)
    assert tokens.shape == (2, 3 * 16, 12)
    assert torch.equal(ae.decode(tok.unpatchify(tokens, 3, 8, 8).flatten(0, 1)).reshape(views.shape), views)


def test_coordinates_of_a_view_select_exactly_its_tokens() -> None:
    tok = FieldTokenizer(3, 2, 16, coordinates=("hw", "frame"))
    latents = torch.randn(2, 4, 3, 8, 8)
    frames = torch.tensor([[5.0, 6.0, 7.0, 8.0], [0.0, 3.0, 1.0, 2.0]])
    raw = tok.raw_coordinates({"frame_index": frames}, 2, 4, 4, 4, "cpu")
    tokens = tok.patchify(latents)
    for b in range(2):
        for v in range(4):
            chosen = tokens[b][raw["frame"][b, :, 0] == frames[b, v]]
            assert torch.equal(chosen, tok.patchify(latents[b: b + 1, v: v + 1])[0])
            # and their (h, w) coordinates are one full grid of the view
            hw = raw["hw"][b][raw["frame"][b, :, 0] == frames[b, v]]
            assert hw.shape == (16, 2) and torch.unique(hw, dim=0).shape[0] == 16


def test_per_view_timesteps_reach_the_modulation() -> None:
    net = _net(text_dim=8)
    text = torch.randn(1, 5, 8)
    c = net.conditioning(torch.tensor([[10.0, 900.0]]), 2, text, None, 1)
    n = net.tokens_per_view
    assert not torch.allclose(c[:, :n], c[:, n:]), "two views at different t get different modulation"
    same = net.conditioning(torch.tensor([[10.0, 10.0]]), 2, text, None, 1)
    assert torch.equal(same[:, :n], same[:, n:])
    # and the network output of view 0 depends on view 1's timestep only through attention (sampled_views)
    x = torch.randn(1, 2, 3, 8, 8)
    out_a = net(x, torch.tensor([[10.0, 900.0]]), {}, text)
    out_b = net(x, torch.tensor([[10.0, 10.0]]), {}, text)
    assert not torch.allclose(out_a[:, 1], out_b[:, 1])


def test_text_modulation_is_identical_across_views() -> None:
    net = _net(text_dim=8)
    text = torch.randn(2, 20, 8)
    t = torch.full((2, 3), 77.0)
    c = net.conditioning(t, 3, text, None, 2)
    n = net.tokens_per_view
    text_part = net.text(text, None, 2)
    for v in range(3):
        assert torch.equal(c[:, v * n: (v + 1) * n], c[:, :n])
    assert torch.allclose(c[:, :n] - c[:, :1] + text_part[:, :1], text_part, atol=1e-6)
    # CFG dropout swaps in the learned null embedding for the dropped rows only
    dropped = net.text(text, torch.tensor([True, False]), 2)
    assert torch.equal(dropped[0], net.text.null_embedding) and torch.equal(dropped[1], text_part[1])


def test_block_diagonal_attention_equals_running_each_view_alone() -> None:
    torch.manual_seed(0)
    net = _net(attention="per_view", coordinates=("hw", "frame"), text_dim=8)
    x, t = torch.randn(2, 3, 3, 8, 8), torch.tensor([[3.0, 400.0, 999.0], [0.0, 1.0, 2.0]])
    frames, text = torch.tensor([[0.0, 1.0, 2.0], [4.0, 5.0, 6.0]]), torch.randn(2, 7, 8)
    joint = net(x, t, {"frame_index": frames}, text)
    for v in range(3):
        alone = net(x[:, v: v + 1], t[:, v: v + 1], {"frame_index": frames[:, v: v + 1]}, text)
        torch.testing.assert_close(joint[:, v: v + 1], alone, atol=1e-5, rtol=1e-5)
    full = _net(attention="sampled_views", coordinates=("hw", "frame"), text_dim=8)
    full.load_state_dict(net.state_dict())
    assert not torch.allclose(full(x, t, {"frame_index": frames}, text), joint, atol=1e-4), "full attention mixes views"


def _tiny_module(modality: str, **kw) -> DiFT:
    coords = {"image": ("hw",), "video": ("hw", "frame"), "game": ("hw", "frame", "action")}[modality]
    net = _net(coordinates=coords, num_actions=4 if modality == "game" else 0, text_dim=8 if modality == "video" else None)
    return DiFT(net, modality=modality, image_size=8, num_sampling_steps=4, **kw)


def test_autoregressive_rollout_calls_the_network_once_per_frame_per_step_with_the_window() -> None:
    module = _tiny_module("game", window=3).eval()
    calls: list[int] = []
    module.network.register_forward_hook(lambda mod, args, out: calls.append(args[0].shape[1]))
    start = torch.randn(1, 1, 3, 8, 8)
    actions = torch.nn.functional.one_hot(torch.tensor([[0, 1, 3, 2, 0]]), 4).float()
    frames = module.autoregressive_rollout(start, 4, None, actions, num_steps=5)
    assert frames.shape == (1, 4, 3, 8, 8)
    assert len(calls) == 4 * 5, "one network call per generated frame per sampler step"
    assert set(calls) == {3}, "every call sees exactly `window` views"
    with pytest.raises(ValueError, match="action sequence has 5 frames"):
        module.autoregressive_rollout(start, 5, None, actions, num_steps=2)


def test_video_cfg_is_one_batched_call_per_step() -> None:
    module = _tiny_module("video", window=2, guidance_scale=8.5).eval()
    calls: list[int] = []
    module.network.register_forward_hook(lambda mod, args, out: calls.append(args[0].shape[0]))
    text = torch.randn(2, 6, 8)
    video = module.sample_video(text, 3, num_steps=3)
    assert video.shape == (2, 3, 3, 8, 8)
    assert calls == [4] * 6, "first window of 2 frames (3 steps) + 1 rollout frame x 3 steps; cond and null batched"


def test_cross_view_consistent_noise_and_view_counts() -> None:
    sampler = ViewSampler(num_views=3, consistent_noise=True)
    noise = sampler.noise((2, 3, 3, 4, 4))
    assert torch.equal(noise[:, 0], noise[:, 2]) and not torch.equal(noise[0, 0], noise[1, 0])
    independent = ViewSampler(num_views=3, consistent_noise=False).noise((2, 3, 3, 4, 4))
    assert not torch.equal(independent[:, 0], independent[:, 1])
    index = ViewSampler(num_views=3, order="consecutive").view_index(4, 10)
    assert torch.equal(index[:, 1:] - index[:, :-1], torch.ones(4, 2, dtype=torch.long))
    random_views = ViewSampler(num_views=5, order="random").view_index(4, 5)
    assert all(sorted(row.tolist()) == list(range(5)) for row in random_views)
    with pytest.raises(ValueError, match="num_views=6 is more than the 5 views"):
        ViewSampler(num_views=6).view_index(1, 5)
    pairs = ViewSampler(mode="uniform_pairs", pair_fraction=0.25)
    assert pairs.token_index(2, 64).shape == (2, 16) and pairs.token_index(2, 256).shape == (2, 64)


def test_camera_rays_are_the_r6_coordinate() -> None:
    pose = torch.from_numpy(look_at(torch.tensor([0.0, -3.0, 1.0]).numpy())).float()
    k = torch.from_numpy(DEFAULT_INTRINSICS).float()
    rays = camera_rays(pose, k, 3, 3)
    assert rays.shape == (9, 6)
    torch.testing.assert_close(rays[:, :3], pose[:3, 3].expand(9, 3))
    torch.testing.assert_close(rays[4, 3:], pose[:3, 2], atol=1e-6, rtol=0)  # centre pixel looks along +z (forward)
    torch.testing.assert_close(rays[:, 3:].norm(dim=-1), torch.ones(9))
    with pytest.raises(ValueError, match="camera must be"):
        camera_rays(pose[:3], k, 3, 3)


def test_missing_coordinates_fail_naming_the_key() -> None:
    net = _net(coordinates=("hw", "camera"))
    with pytest.raises(KeyError, match="'camera'.*no 'camera'"):
        net(torch.randn(1, 2, 3, 8, 8), torch.zeros(1, 2), {"frame_index": torch.zeros(1, 2)})


def test_uniform_pairs_training_step_runs_on_a_token_subset() -> None:
    module = _tiny_module("video", view_sampler=ViewSampler(mode="uniform_pairs", pair_fraction=0.5))
    batch = {"views": torch.rand(2, 4, 3, 8, 8) * 2 - 1, "frame_index": torch.arange(4.0).expand(2, 4), "text": torch.randn(2, 5, 8)}
    tokens: list[int] = []
    module.network.blocks[0].register_forward_hook(lambda mod, args, out: tokens.append(args[0].shape[1]))
    loss = module.field_loss(batch)
    assert torch.isfinite(loss) and tokens == [4 * 16 // 2]


def test_full_size_is_dit_xl_on_the_meta_device() -> None:
    with torch.device("meta"):
        net = DiFTTransformer(in_channels=4, patch_size=2, latent_size=32, coordinates=("hw", "frame"), text_dim=4096)
    total = sum(p.numel() for p in net.parameters())
    text = sum(p.numel() for p in net.text.parameters())
    assert len(net.blocks) == 28 and net.hidden_size == 1152 and net.blocks[0].attn.num_heads == 16
    assert 670e6 < total - text < 680e6, f"{(total - text) / 1e6:.1f}M without the T5 projection (DiT-XL ~675M)"
    assert net.tokens_per_view == 256, "f8 VAE at 256 px with 2x2 patches: 256 tokens per view (= the T5 length)"
    x = torch.empty(1, 8, 4, 32, 32, device="meta")
    out = net(x, torch.empty(1, 8, device="meta"), {"frame_index": torch.empty(1, 8, device="meta")},
              torch.empty(1, 256, 4096, device="meta"))
    assert out.shape == x.shape
    assert math.isclose(net.text.proj.in_features, 4096)


def test_grouped_attention_agrees_with_torch_multihead_attention_under_a_block_diagonal_mask() -> None:
    from lightning_modules.components.dit_block import GroupedSelfAttention

    torch.manual_seed(0)
    ours = GroupedSelfAttention(16, 4)
    peer = torch.nn.MultiheadAttention(16, 4, batch_first=True)
    with torch.no_grad():
        peer.in_proj_weight.copy_(ours.qkv.weight)
        peer.in_proj_bias.copy_(ours.qkv.bias)
        peer.out_proj.weight.copy_(ours.proj.weight)
        peer.out_proj.bias.copy_(ours.proj.bias)
    x = torch.randn(2, 12, 16)
    blocked = torch.block_diag(*[torch.ones(4, 4, dtype=torch.bool)] * 3)
    expected, _ = peer(x, x, x, attn_mask=~blocked, need_weights=False)  # torch: True = masked out
    torch.testing.assert_close(ours(x, groups=3), expected, atol=1e-5, rtol=1e-5)
    full, _ = peer(x, x, x, need_weights=False)
    torch.testing.assert_close(ours(x), full, atol=1e-5, rtol=1e-5)


def test_cfg_guides_only_the_first_three_channels() -> None:
    net = _net(in_channels=4, coordinates=("hw", "frame"), text_dim=8)
    module = DiFT(net, modality="video", image_size=8, autoencoder=IdentityAutoencoder(4), sampler="ddim").eval()
    text, noise = torch.randn(1, 5, 8), torch.randn(1, 2, 4, 8, 8)
    coords = {"frame_index": torch.arange(2.0).unsqueeze(0)}
    guided = module.generate(None, coords, 2, text, num_steps=1, guidance_scale=8.5, noise=noise)
    plain = module.generate(None, coords, 2, text, num_steps=1, guidance_scale=1.0, noise=noise)
    assert not torch.allclose(guided[:, :, :3], plain[:, :, :3]), "channels 0-2 are guided"
    torch.testing.assert_close(guided[:, :, 3], plain[:, :, 3])  # channel 3 stays conditional


def test_next_frame_protocol_predicts_after_each_context_fraction_and_the_metric_picks_those_frames() -> None:
    """Table 4.2's reading (metrics/next_frame.py) on a stub rollout that copies the last context frame: the
    prediction for fraction f is the clip's frame ceil(f N) - 1, and the metric compares with frame ceil(f N). Tests the protocol plumbing, not the paper's numbers."""
    from types import SimpleNamespace

    from metrics.next_frame import NextFramePSNR, context_positions

    assert context_positions([0.1, 0.5, 1.0], 100) == [9, 49, 99]
    assert context_positions([0.1, 0.25, 1.0], 4) == [0, 0, 3]
    video = torch.linspace(-1, 1, 11).view(1, 11, 1, 1, 1).expand(2, 11, 3, 4, 4).clone()  # frame k is constant
    seen = []

    def rollout(start, n, text, actions, **kw):
        seen.append((start.shape[1], actions.shape[1]))
        return start[:, -1:]

    stub = SimpleNamespace(device=torch.device("cpu"), encode_views=lambda v: v, decode_views=lambda v: v,
                           autoregressive_rollout=rollout)
    preds = DiFT.next_frame_predictions(stub, {"views": video, "actions": torch.zeros(2, 11, 4)}, [0.1, 0.5, 1.0])
    assert seen == [(1, 2), (5, 6), (10, 11)], "contexts of ceil(f N) real frames and their actions (+ the next one)"
    assert torch.equal(preds[:, :, 0, 0, 0], video[:, [0, 4, 9], 0, 0, 0])
    metric = NextFramePSNR([0.1, 0.5, 1.0])
    metric.update(video[:, [1, 5, 10]], video[:, 1:])  # perfect predictions of the picked frames
    assert all(float(v) == 100.0 for v in metric.compute().values())
    with pytest.raises(ValueError, match="eval_context_fractions"):
        metric.update(video[:, :2], video[:, 1:])
