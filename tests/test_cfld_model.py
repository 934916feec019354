"""CFLD networks: Table 1 parameter counts on the meta device, zero-init HGA, Eq. 4, trainable set, Eq. 7, NFE.

Random-weight tests check the code, not the paper's numbers.
"""
from __future__ import annotations

import pytest
import torch
from diffusers import UNet2DConditionModel

from cfld_helpers import cfld_single_thread, tiny_batch, tiny_cfld  # noqa: F401 (autouse fixture)
from diffusion import CubicTimeSampler, DiscreteDDPMPath
from lightning_modules.cfld.hga import literal_biased_attention, up_cross_attentions
from lightning_modules.cfld.network import SD15_UNET_CONFIG, CFLDNetwork

# Paper Table 1 (seed 003), millions of trainable parameters.
TABLE1 = {"swin (H_S)": 87.0, "hga (H_A)": 22.5, "prd (H_D)": 97.7, "pose adapter (H_P)": 30.6, "unet k/v (H_N)": 10.3}


@pytest.fixture(scope="module")
def model():
    return tiny_cfld()


def test_full_size_parameter_counts_match_table1_on_meta_device(capsys: pytest.CaptureFixture[str]) -> None:
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(SD15_UNET_CONFIG)
        net = CFLDNetwork(unet, latent_size=64, source_size=256)
    groups = net.parameter_groups()
    with capsys.disabled():
        print("\nCFLD trainable parameters at full size (ours vs paper Table 1):")
        for part, paper in TABLE1.items():
            print(f"  {part:20s} {groups[part] / 1e6:7.2f}M   paper {paper:5.1f}M")
        print(f"  {'total':20s} {sum(groups.values()) / 1e6:7.2f}M   paper 248.2M")
    for part, paper in TABLE1.items():
        assert round(groups[part] / 1e6, 1) == paper, part
    assert round(sum(groups.values()) / 1e6, 1) == 248.2
    # the up-block K/V count is exactly sum 2 * 768 * c over 3 modules at c in {1280, 640, 320}
    assert groups["unet k/v (H_N)"] == sum(3 * 2 * 768 * c for c in (1280, 640, 320))
    assert len(net.cross_attentions) == 9 and len(net.appearance_encoders) == 9
    # full-size shapes (meta): Swin levels and their pairing with the up-block grids 16/32/64
    assert net.swin.grids == [64, 32, 16, 8] and net.swin.channels == [128, 256, 512, 1024]
    assert net.appearance_levels == [2, 2, 2, 1, 1, 1, 0, 0, 0]
    pose = net.pose_adapter(torch.empty(1, 21, 256, 256, device="meta"))
    assert [tuple(f.shape[1:]) for f in pose] == [(320, 64, 64), (640, 32, 32), (1280, 16, 16)]


def test_only_intended_parameters_train(model) -> None:
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    unet_trainable = {n for n in trainable if n.startswith("network.unet.")}
    assert unet_trainable, "the up-block cross-attention K/V must train"
    assert all(".up_blocks." in n and ".attn2.to_k." in n or ".attn2.to_v." in n for n in unet_trainable)
    assert not any("to_q" in n for n in unet_trainable)
    expected = {f"network.unet.{name}.{proj}.weight" for name, *_ in up_cross_attentions(model.network.unet) for proj in ("to_k", "to_v")}
    assert unet_trainable == expected
    assert not any(n.startswith("vae.") for n in trainable)
    for part in ("swin", "prompt_head", "appearance_encoders", "pose_adapter"):
        params = list(getattr(model.network, part).parameters())
        assert params and all(p.requires_grad for p in params), part
    assert model.network.null_prompt.requires_grad
    assert {id(p) for p in model.trainable_parameters()} == {id(p) for n, p in model.named_parameters() if n in trainable}


def test_ablation_b4_also_trains_queries_and_b3_has_no_hga() -> None:
    b4 = tiny_cfld(unet_trainable=["to_q", "to_k", "to_v"], hga=False)
    names = {n for n, p in b4.network.unet.named_parameters() if p.requires_grad}
    assert any(".attn2.to_q." in n for n in names)
    assert b4.network.appearance_encoders is None
    b5 = tiny_cfld(prompt="swin_linear")
    assert b5.network.null_prompt.shape[1] == 4  # one prompt token per f4 token (2x2 in the tiny Swin)


def test_zero_initialised_hga_has_no_effect_at_start(model) -> None:
    batch = tiny_batch()
    net = model.network
    with torch.no_grad():
        prompt, biases = net.appearance(torch.nn.functional.interpolate(batch["source_image"], size=(64, 64)))
        assert biases and all(torch.count_nonzero(b) == 0 for b in biases)
        x = torch.randn(2, 4, 16, 16)
        t = torch.tensor([500, 20])
        pose = net.pose_features(model.pose_map(batch["target_keypoints"], (64, 44)))
        with_hga = net(x, t, prompt, pose, biases)
        without = net(x, t, prompt, pose, None)
    torch.testing.assert_close(with_hga, without, rtol=0, atol=0)


def test_query_bias_attention_equals_eq4(model) -> None:
    _, attn, _, channels = up_cross_attentions(model.network.unet)[0]
    hidden, context = torch.randn(2, 16, channels), torch.randn(2, 4, 32)
    bias = torch.randn(2, 16, channels)
    model.network.bias_context.set([bias])
    try:
        out = attn(hidden, encoder_hidden_states=context)
    finally:
        model.network.bias_context.set(None)
    torch.testing.assert_close(out, literal_biased_attention(attn, hidden, context, bias), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(out, attn(hidden, encoder_hidden_states=context)), "the bias changes the output"


def test_cubic_timesteps_follow_one_minus_u_cubed() -> None:
    path = DiscreteDDPMPath()
    t = CubicTimeSampler(path)(200_000, generator=torch.Generator().manual_seed(0))
    k = path.timestep_from_t(t)
    assert torch.allclose(k, k.round(), atol=1e-3) and float(k.min()) > -0.5 and float(k.max()) < 999.5
    k = k.round()
    assert abs(float((k + 0.5).mean()) / 1000 - 0.75) < 0.005  # E[1 - u^3] = 3/4
    # P(k < 500) = P(u^3 > 0.5) = 1 - 0.5^(1/3)
    assert abs(float((k < 500).float().mean()) - (1 - 0.5 ** (1 / 3))) < 0.005


def test_three_branch_guidance_is_eq7_with_at_most_three_evaluations_per_step(model) -> None:
    batch = tiny_batch()
    unet = model.network.unet
    seen: list[int] = []
    handle = unet.register_forward_pre_hook(lambda mod, args, kwargs: seen.append(args[0].shape[0]), with_kwargs=True)
    try:
        steps = 3
        pose = model.pose_map(batch["target_keypoints"], (64, 44))
        gen = torch.Generator().manual_seed(0)
        model.transfer(batch["source_image"], pose, num_steps=steps, generator=gen)
        assert len(seen) == steps, "one batched UNet call per step"
        assert sum(seen) / (2 * steps) == 3, "three network evaluations per image per step"
        seen.clear()
        model.transfer(batch["source_image"], pose, num_steps=steps, generator=gen, batched=False)
        assert len(seen) == 3 * steps and set(seen) == {2}
        assert model.nfe(steps) == 3 * steps
        # Eq. 7 algebra against explicit branch evaluations
        with torch.no_grad():
            prompt, biases = model.network.appearance(torch.nn.functional.interpolate(batch["source_image"], size=(64, 64)))
            biases = [torch.randn_like(b) for b in biases]  # non-zero biases so the appearance branch differs
            feats = model.network.pose_features(pose)
            x, t = torch.randn(2, 4, 16, 16), torch.full((2,), 0.4)
            guided = model.guided_denoiser(prompt, biases, feats, 2.0, 2.0)(x, t)
            k = model.path.network_time(t)
            null = model.network.null_prompt.expand_as(prompt)
            e00 = model.network(x, k, null, [f * 0 for f in feats], [b * 0 for b in biases])
            e0p = model.network(x, k, null, feats, [b * 0 for b in biases])
            esp = model.network(x, k, prompt, feats, biases)
        torch.testing.assert_close(guided, e00 + 2 * (e0p - e00) + 2 * (esp - e0p), rtol=1e-4, atol=1e-5)
    finally:
        handle.remove()


def test_learning_rate_schedule_warmup_and_epoch_50_decay(model) -> None:
    class _T:
        current_epoch = 0

    model.warmup_steps = 1000
    config = model.configure_optimizers()
    scheduler = config["lr_scheduler"]["scheduler"]
    factor = scheduler.lr_lambdas[0]
    assert factor(0) == pytest.approx(0.1) and factor(999) == pytest.approx(0.1 + 0.9 * 999 / 1000)
    assert factor(1000) == pytest.approx(1.0)
    model._trainer = None
    type(model).current_epoch  # property of LightningModule reads the trainer; patch through a fake one
    fake = type("Fake", (), {"current_epoch": 50, "global_step": 5000})()
    object.__setattr__(model, "_trainer", fake)
    try:
        assert factor(5000) == pytest.approx(0.1)
    finally:
        object.__setattr__(model, "_trainer", None)
        model.warmup_steps = 2


def test_checkpoint_holds_only_the_trainable_state(model) -> None:
    checkpoint = {"state_dict": model.state_dict()}
    model.on_save_checkpoint(checkpoint)
    keys = set(checkpoint["state_dict"])
    assert not any(k.startswith("vae.") for k in keys)
    unet_keys = {k for k in keys if k.startswith("network.unet.")}
    assert unet_keys and all(".attn2.to_k." in k or ".attn2.to_v." in k for k in unet_keys)
    model.load_state_dict(checkpoint["state_dict"], strict=True)  # frozen parts come from their own files


HEADS = {"b1_multiscale_prompt": "ZeroPrompt", "b2_clip_prompt": "CLIPImagePrompt", "b3_prd_only": "PerceptionRefinedDecoder",
         "b4_train_queries": "PerceptionRefinedDecoder", "b5_swin_prompt": "SwinLinearPrompt"}


@pytest.mark.parametrize("overlay", sorted(HEADS))
def test_ablation_overlays_build_the_table3_variants(overlay: str) -> None:
    import yaml

    from cfld_helpers import REPO

    args = yaml.safe_load((REPO / "configs" / "cfld_ablations" / f"{overlay}.yaml").read_text())["model"]["init_args"]
    args.pop("clip_path", None)  # the tiny overlay's random CLIP (clip_config) instead of the real weights
    model = tiny_cfld(**args)
    net = model.network
    trains_q = any(".attn2.to_q." in n for n, p in net.unet.named_parameters() if p.requires_grad)
    assert trains_q == (overlay == "b4_train_queries")
    assert (net.appearance_encoders is None) == (overlay in ("b2_clip_prompt", "b3_prd_only", "b4_train_queries"))
    assert type(net.prompt_head).__name__ == HEADS[overlay]
    assert (model.results_table, model.results_method) == ("Table 3", overlay[:2].upper())  # the Table 3 row
    loss = model.pair_loss(tiny_batch())
    assert loss.shape == (4,) and torch.isfinite(loss).all()
    if overlay == "b1_multiscale_prompt":  # appearance enters the keys/values: 4 tokens of the prompt width
        assert all(p.target == "context" for p in (a.processor for _, a, _, _ in net.cross_attentions))
        _, biases = net.appearance(torch.zeros(1, 3, 64, 64))
        assert [tuple(b.shape) for b in biases] == [(1, 4, 32)] * len(net.cross_attentions)
        assert all(torch.count_nonzero(b) == 0 for b in biases)
    if overlay == "b2_clip_prompt":  # frozen CLIP: not trained, not checkpointed; one-token prompt
        assert net.swin is None and net.null_prompt.shape[1] == 1
        assert not any(p.requires_grad for p in net.prompt_head.clip.parameters())
        checkpoint = {"state_dict": model.state_dict()}
        model.on_save_checkpoint(checkpoint)
        assert not any(".clip." in k for k in checkpoint["state_dict"])


def test_missing_weights_fail_naming_the_key_the_files_and_the_source(tmp_path) -> None:
    from lightning_modules.components.pretrained_paths import MissingWeightsError

    with pytest.raises(MissingWeightsError) as info:
        tiny_cfld(sd_path=str(tmp_path / "stable-diffusion-v1-5"))
    message = str(info.value)
    assert "model.init_args.sd_path" in message and "unet/config.json" in message and "stable-diffusion-v1-5" in message
    with pytest.raises(MissingWeightsError, match="swin_checkpoint"):
        tiny_cfld(swin_checkpoint=str(tmp_path / "swin.pth"))


def test_paper_first_defaults_and_the_official_code_preset(model) -> None:
    """Sec. 4.1 lr 5e-7 x total batch; Eq. 6 L_mse + L_rec; x_s and x_p dropped together (the preset undoes each)."""
    import yaml
    from types import SimpleNamespace

    from cfld_helpers import REPO

    assert model.drop_pose and model.drop_hga and model.loss_reduction == "sum"
    paper = yaml.safe_load((REPO / "configs" / "cfld.yaml").read_text())["model"]["init_args"]
    assert paper["lr_per_sample"] == 5e-7 and model.lr_per_sample is None  # the tiny overlay keeps its own lr
    per_sample = torch.tensor([1.0, 3.0, 5.0, 7.0])  # 2B = 4 UNet samples (B = 2 targets + 2 reconstructions)
    assert float(model.reduce_loss(per_sample)) == 8.0  # mean(L_mse) + mean(L_rec) = 2 x mean over 2B
    model._trainer = SimpleNamespace(datamodule=SimpleNamespace(batch_size=28), world_size=8, accumulate_grad_batches=1,
                                     current_epoch=0)
    model.lr_per_sample = 5e-7
    try:
        optimizer = model.configure_optimizers()["optimizer"]
    finally:
        model._trainer, model.lr_per_sample = None, None
    assert all(abs(g["initial_lr"] - 5e-7 * 224) < 1e-12 for g in optimizer.param_groups)  # 1.12e-4 at 224 (warm-up from 0.1 x)
    preset = yaml.safe_load((REPO / "configs" / "cfld_official_code.yaml").read_text())["model"]["init_args"]
    assert preset["drop_pose"] is False and preset["drop_hga"] is False and preset["loss_reduction"] == "mean"
    assert preset["lr_per_sample"] is None and preset["optimizer"]["init_args"]["lr"] == 1e-4
    official = tiny_cfld(drop_pose=False, drop_hga=False, loss_reduction="mean")
    assert float(official.reduce_loss(per_sample)) == 4.0
