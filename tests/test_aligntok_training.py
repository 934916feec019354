"""AlignTok stages, flow matching on the core, CFG channels, latent shards, tiny fits (random weights)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cli_runner import run_cli
from datamodules.aligntok_latents import LatentShardDataset, LatentShardWriter, finalize_stats
from diffusion.paths import RectifiedFlowPath
from diffusion.predictions import SD3DirectionAdapter
from lightning_modules.aligntok import AlignTokDiT, AlignTokModule, AlignTokenizer, LightningDiT
from lightning_modules.aligntok.losses import PatchDiscriminator

TINY_ENCODER = {"model_name": "vit_small_patch14_dinov2", "model_kwargs": {"embed_dim": 32, "depth": 1, "num_heads": 2, "img_size": 56}}
TINY_DECODER = {"block_out_channels": [8, 8, 16, 16, 16], "layers_per_block": 1, "norm_num_groups": 4, "attention_levels": 1}


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a shared 2-core runner, 2 threads per process oversubscribe (10x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_tokenizer(latent=4):
    return AlignTokenizer(encoder=TINY_ENCODER, adapter_hidden=8, latent_channels=latent, decoder=TINY_DECODER)


def tiny_module(stage, **kw):
    return AlignTokModule(tiny_tokenizer(), stage=stage, discriminator=PatchDiscriminator(3, 8, 2), lpips_net="alex", **kw)


@pytest.mark.parametrize("stage, trains", [(1, {"adapter", "decoder"}), (2, {"encoder", "adapter", "decoder"}), (3, {"decoder"})])
def test_stage_freezing(stage, trains):
    module = tiny_module(stage)
    trainable = {id(p) for p in module.trainable_parameters()}
    for part in ("encoder", "adapter", "decoder"):
        params = list(getattr(module.tokenizer, part).parameters())
        assert all((id(p) in trainable) == (part in trains) for p in params), part
        assert all(p.requires_grad == (part in trains) for p in params)
    assert all(p.requires_grad for p in module.discriminator.parameters())
    assert not any(p.requires_grad for p in module.lpips.parameters())
    if stage == 2:
        assert module.reference is not None and not any(p.requires_grad for p in module.reference.parameters())
        # the reference starts equal to the stage-1 encoder + adapter
        x = torch.rand(2, 3, 64, 64) * 2 - 1
        assert torch.allclose(module.reference(x), module.tokenizer.encode(x))
    else:
        assert module.reference is None


def test_stage_losses_have_the_paper_terms():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    s1 = tiny_module(1, gan_start_step=5000).generator_losses(x, gan_on=False)
    assert "g_loss" not in s1 and "sp_loss" not in s1
    assert torch.allclose(s1["loss"], s1["l1"] + s1["lpips"])
    s2 = tiny_module(2).generator_losses(x, gan_on=True)
    assert s2["sp_loss"] < 1e-10  # the reference is the same network at the start of stage 2
    assert torch.allclose(s2["loss"], s2["nll"] + 0.5 * s2["gan_adaptive_weight"] * s2["g_loss"]
                          + s2["sp_adaptive_weight"] * s2["sp_loss"])


def test_stage_chain_through_checkpoints(tmp_path):
    base = lambda s: ["fit", "--config", f"aligntok_stage{s}.yaml", "--config", f"tiny/aligntok_stage{s}.yaml",  # noqa: E731
                      "--trainer.enable_progress_bar", "false"]
    run_cli(base(1), tmp_path)
    ckpt1 = tmp_path / "aligntok_stage1+tiny" / "version_0" / "checkpoints" / "last.ckpt"
    saved = torch.load(ckpt1, map_location="cpu", weights_only=False)["state_dict"]
    assert not any(k.startswith("lpips.") for k in saved)
    cli2 = run_cli([*base(2), "--model.init_args.init_checkpoint", str(ckpt1)], tmp_path)
    ckpt2 = tmp_path / "aligntok_stage2+tiny" / "version_0" / "checkpoints" / "last.ckpt"
    state2 = torch.load(ckpt2, map_location="cpu", weights_only=False)
    assert not any(k.startswith("reference.") for k in state2["state_dict"])
    assert any("ema" in v for v in state2["callbacks"].values() if isinstance(v, dict)), "stage 2 keeps an EMA"
    # the stage-1 encoder is unchanged in stage-2's frozen reference
    assert torch.equal(cli2.model.reference[0].model.blocks[0].mlp.fc2.weight,
                       saved["tokenizer.encoder.model.blocks.0.mlp.fc2.weight"])
    cli3 = run_cli([*base(3), "--model.init_args.init_checkpoint", str(ckpt2)], tmp_path)
    ema = next(v["ema"] for v in state2["callbacks"].values() if isinstance(v, dict) and "ema" in v)
    key = "tokenizer.encoder.model.blocks.0.mlp.fc2.weight"
    assert torch.equal(cli3.model.tokenizer.encoder.model.blocks[0].mlp.fc2.weight, ema[key]), "stage 3 starts from EMA"


def test_convention_adapter_round_trip():
    """The paper's (SD3) velocity u(z, s) seen through the adapter is the core's velocity at t = 1 - s."""
    torch.manual_seed(0)
    path = RectifiedFlowPath(network_time_scale=1.0)
    x, eps = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2)
    s = torch.rand(3)
    z_paper = (1 - s.view(-1, 1, 1, 1)) * x + s.view(-1, 1, 1, 1) * eps
    t = 1 - s
    assert torch.allclose(path.add_noise(x, eps, t), z_paper, atol=1e-6)
    oracle = lambda z, s_: eps - x  # noqa: E731  perfect paper-convention network
    core = SD3DirectionAdapter(oracle)
    assert torch.allclose(core(z_paper, t), x - eps)  # the core's velocity target
    back = SD3DirectionAdapter.to_sd3(core)
    assert torch.allclose(back(z_paper, s), eps - x)


def test_cfg_only_on_the_first_three_channels():
    torch.manual_seed(0)
    net = LightningDiT(in_channels=6, input_size=2, hidden_size=32, depth=1, num_heads=2, num_classes=3)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.2)
    module = AlignTokDiT(net, num_classes=3, cfg_channels=[0, 1, 2], cfg_interval=None, sample_shape=(6, 2, 2))
    labels = torch.tensor([0, 1])
    x, t = torch.randn(2, 6, 2, 2), torch.full((2,), 0.5)
    cond = module.denoiser(labels)(x, t)
    guided = module.denoiser(labels, guidance_scale=4.0)(x, t)
    uncond = module.denoiser(torch.full_like(labels, 3))(x, t)
    assert torch.allclose(guided[:, 3:], cond[:, 3:], atol=1e-4)
    assert torch.allclose(guided[:, :3], uncond[:, :3] + 4.0 * (cond[:, :3] - uncond[:, :3]), atol=1e-4)
    assert not torch.allclose(guided[:, :3], cond[:, :3])
    module.cfg_interval = (0.6, 1.0)  # outside the interval: plain conditional output
    assert torch.allclose(module.denoiser(labels, guidance_scale=4.0)(x, t), cond, atol=1e-4)


def test_latent_shards_round_trip_with_stats(tmp_path):
    torch.manual_seed(0)
    writer = LatentShardWriter(tmp_path, shard_size=5)
    batches = [(torch.randn(3, 4, 2, 2) * torch.arange(1, 5).view(1, 4, 1, 1) + 2, torch.randint(0, 9, (3,))) for _ in range(4)]
    for latents, labels in batches:
        writer.add(latents, labels)
    writer.close()
    stats = finalize_stats(tmp_path)
    data = LatentShardDataset(tmp_path)
    assert len(data.files) == 3 and len(data) == 12
    all_latents = torch.cat([b[0] for b in batches]).half().float()
    all_labels = torch.cat([b[1] for b in batches])
    for i in range(12):
        item = data[i]
        assert torch.equal(item["latent"], all_latents[i]) and item["label"] == all_labels[i]
    flat = all_latents.transpose(0, 1).reshape(4, -1).double()
    assert torch.allclose(torch.tensor(stats["mean"]), flat.mean(1).float(), atol=1e-5)
    assert torch.allclose(torch.tensor(stats["std"]), flat.std(1, unbiased=False).float(), atol=1e-5)
    assert json.loads((tmp_path / "stats.json").read_text())["num_items"] == 12


def test_tiny_dit_fit_lowers_the_loss():
    torch.manual_seed(0)
    net = LightningDiT(in_channels=4, input_size=4, hidden_size=32, depth=1, num_heads=2, num_classes=2)
    module = AlignTokDiT(net, tokenizer=tiny_tokenizer(), num_classes=2, sample_shape=(4, 4, 4), label_dropout=0.1)
    opt = torch.optim.AdamW(module.trainable_parameters(), lr=3e-3, betas=(0.9, 0.95))
    data = torch.randn(1, 4, 4, 4).repeat(16, 1, 1, 1) * 0.5 + 1.0
    labels = torch.zeros(16, dtype=torch.long)
    gen = torch.Generator().manual_seed(0)
    evaluate = lambda: module.diffusion_loss(data, labels, generator=torch.Generator().manual_seed(1)).mean().item()  # noqa: E731
    before = evaluate()
    for _ in range(60):
        loss = module.diffusion_loss(data, module.drop_labels(labels), generator=gen).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = evaluate()
    assert after < 0.5 * before, (before, after)
    samples = module.sample(2, labels=torch.tensor([0, 1]), num_steps=4, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (2, 3, 64, 64) and samples.abs().max() <= 1  # decoded by the frozen tokenizer


def test_tiny_tokenizer_fit_lowers_the_reconstruction_loss():
    torch.manual_seed(0)
    module = tiny_module(1, gan_start_step=10_000)
    opt = torch.optim.Adam(module.trainable_parameters(), lr=3e-3)
    x = torch.rand(4, 3, 64, 64) * 2 - 1
    x = torch.nn.functional.avg_pool2d(x, 8).repeat_interleave(8, -1).repeat_interleave(8, -2)
    with torch.no_grad():
        before = module.generator_losses(x, False)["l1"].item()
    for _ in range(30):
        loss = module.generator_losses(x, False)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = module.generator_losses(x, False)["l1"].item()
    assert after < 0.7 * before, (before, after)


def test_tiny_dit_predict_writes_pngs(tmp_path):
    base = ["--config", "aligntok_dit.yaml", "--config", "tiny/aligntok_dit.yaml", "--trainer.enable_progress_bar", "false"]
    cli = run_cli(["predict", *base, "--allow_random_weights", "true"], tmp_path)  # tests the path, not the samples
    folder = Path(cli.model.predictions_dir)
    assert len(list(folder.glob("sample*.png"))) == 4


def test_tiny_tokenizer_test_writes_results_rows(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # results/ rows land here
    base = ["--config", "aligntok_stage3.yaml", "--config", "tiny/aligntok_stage3.yaml",
            "--trainer.enable_progress_bar", "false"]
    cli = run_cli(["test", *base, "--allow_random_weights", "true"], tmp_path)
    evaluation = next(cb for cb in cli.trainer.callbacks if type(cb).__name__ == "EvaluationCallback")
    assert {"rFID", "PSNR", "LPIPS"} <= set(evaluation.last_results)  # paper_numbers.yaml's names
    assert all(row.paper == "aligntok" for row in evaluation.last_rows)
    rows = [json.loads(line) for line in (tmp_path / "results" / "aligntok.jsonl").read_text().splitlines()]
    assert {row["metric"] for row in rows} >= {"rFID", "PSNR", "LPIPS"}
    assert all(row["table"] == "Table 7.1" and row["stand_in_for"] == "ImageNet" for row in rows)
    assert all(row["dataset"] != "ImageNet" and row["resolution"] == "64x64" for row in rows), "stand-in, image pixels"


def test_latent_extraction_then_dit_on_shards(tmp_path):
    from lightning.pytorch import Trainer

    from datamodules.aligntok_latents import AlignTokLatentsDataModule
    from datamodules.imagenet import ImageNetDataModule
    from lightning_modules.aligntok import AlignTokLatentExtractor

    out = tmp_path / "latents"
    extractor = AlignTokLatentExtractor(tiny_tokenizer(), output_dir=str(out), shard_size=6)
    data = ImageNetDataModule(root=None, size=64, crops_per_image=2, val_crops_per_image=1, batch_size=4, crop="center")
    trainer = Trainer(logger=False, enable_progress_bar=False, enable_checkpointing=False, accelerator="cpu")
    trainer.predict(extractor, datamodule=data)
    stats = json.loads((out / "stats.json").read_text())
    data.setup()
    assert len(data.train_dataset) == 16 != len(data.val_dataset)  # 8 photos x 2 train crops vs x 1 val crop
    assert stats["num_items"] == len(data.train_dataset) and len(stats["mean"]) == 4  # the train split, not val
    latents = AlignTokLatentsDataModule(str(out), batch_size=4, val_fraction=0.25)
    latents.setup()
    batch = next(iter(latents.train_dataloader()))
    assert batch["latent"].shape == (4, 4, 4, 4) and batch["label"].dtype == torch.long
    net = LightningDiT(in_channels=4, input_size=4, hidden_size=32, depth=1, num_heads=2, num_classes=8)
    module = AlignTokDiT(net, tokenizer=tiny_tokenizer(), latent_stats=str(out), num_classes=8)
    assert torch.allclose(module.latent_mean.flatten(), torch.tensor(stats["mean"]))
    x = module.batch_data(batch)
    assert torch.allclose(module.decode(x * 0 + module.normalise(batch["latent"])), module.tokenizer.decode(batch["latent"]), atol=1e-5)


def test_missing_checkpoint_names_the_config_key(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.init_args.init_checkpoint.*stage-1"):
        tiny_module(2, init_checkpoint=str(tmp_path / "missing.ckpt"))
    net = LightningDiT(in_channels=4, input_size=4, hidden_size=32, depth=1, num_heads=2, num_classes=2)
    with pytest.raises(FileNotFoundError, match="model.init_args.latent_stats"):
        AlignTokDiT(net, num_classes=2, latent_stats=str(tmp_path / "nostats"))
