"""VIDM generation and cli.py: autoregressive counts, tiny fits lower the loss, predict writes N-frame videos, test rows."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cli_runner import run_cli
from datamodules.vidm import VIDMDataModule
from lightning_modules.vidm import ContentNetwork, MotionNetwork, VIDMContent, VIDMMotion

TINY_UNET = dict(model_channels=16, channel_mult=(1, 2), num_res_blocks=1, num_head_channels=8, norm_num_groups=8,
                 attention_resolutions=[8])
MOTION = ["--config", "vidm_motion.yaml", "--config", "tiny/vidm_motion.yaml"]


def _motion_module(**kw) -> VIDMMotion:
    torch.manual_seed(0)
    net = MotionNetwork(unet=TINY_UNET, image_size=16, flow={"variant": "tiny"})
    content = ContentNetwork(unet=TINY_UNET, image_size=16)
    return VIDMMotion(net, content_network=content, image_size=16, num_sampling_steps=3, **kw)


def test_generation_is_one_content_sample_then_n_minus_1_motion_samples_with_flow_once_per_frame() -> None:
    module = _motion_module(num_frames=5)
    calls = {"motion": 0}
    original = module.network.forward

    def counted(*args, **kwargs):
        calls["motion"] += 1
        return original(*args, **kwargs)

    module.network.forward = counted  # type: ignore[method-assign]
    videos = module.generate(2, generator=torch.Generator().manual_seed(0))
    assert videos.shape == (2, 5, 3, 16, 16)
    assert module.content_samples == 2, "one content sample per video"
    assert module.motion_samples == 2 * 4, "N - 1 motion samples per video"
    assert module.flow_calls == 4 and module.network.flow_net.calls == 4, "SpyNet once per frame"
    assert calls["motion"] == 4 * 3, "every denoising step reuses the frame's cached flow"
    first = torch.rand(1, 3, 16, 16) * 2 - 1
    video = module.generate(1, first_frames=first, num_frames=3)
    assert torch.equal(video[0, 0], first[0]) and module.content_samples == 2, "image-to-video starts from the user's frame"
    with pytest.raises(ValueError, match="first_frames"):
        module.generate(1, first_frames=torch.zeros(1, 3, 8, 8))


def _fixed_loss(module, batches) -> float:
    with torch.no_grad():
        return float(torch.stack([module.losses(b, torch.Generator().manual_seed(10 * i + s))["total"].mean()
                                  for i, b in enumerate(batches) for s in range(4)]).mean())


@pytest.mark.parametrize("task", ["content", "motion"])
def test_tiny_fits_lower_the_loss(task: str) -> None:
    torch.manual_seed(0)
    dm = VIDMDataModule(task=task, size=16, clip_length=8, eval_frames=8, embedded_max_frames=32, embedded_shapes=4,
                        embedded_shape_frames=16, train_items=8, batch_size=8)
    dm.setup("fit")
    batches = [next(iter(dm.train_dataloader()))]
    module = _motion_module() if task == "motion" else VIDMContent(ContentNetwork(unet=TINY_UNET, image_size=16), image_size=16)
    before = _fixed_loss(module, batches)
    opt = torch.optim.AdamW(module.network.parameters(), lr=2e-3)
    for step in range(30):
        loss = module.losses(batches[0], torch.Generator().manual_seed(1000 + step))["total"].mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.network.parameters(), 1.0)
        opt.step()
    assert _fixed_loss(module, batches) < 0.9 * before


def test_content_checkpoint_chain_loads_the_ema_export_and_a_lightning_checkpoint(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    torch.manual_seed(3)
    trained = VIDMContent(ContentNetwork(unet=TINY_UNET, image_size=16), image_size=16)
    export = tmp_path / "vidm_content_ema.safetensors"
    save_file({n: p.detach().contiguous() for n, p in trained.named_parameters()}, str(export))
    ckpt = tmp_path / "last.ckpt"
    torch.save({"state_dict": trained.state_dict(), "global_step": 2}, ckpt)
    for path in (export, ckpt):
        module = _motion_module(content_checkpoint=str(path))
        assert not module.uses_random_weights
        module.generate(1, num_frames=2)
        for name, value in trained.network.state_dict().items():
            assert torch.equal(module.content.state_dict()[name], value), (path.name, name)


def test_motion_tuples_from_validation_clips_and_bad_content_checkpoint(tmp_path: Path) -> None:
    module = _motion_module()
    clip = torch.rand(3, 6, 3, 16, 16) * 2 - 1
    tuples = module.tuples_from_clips(clip, torch.Generator().manual_seed(0))
    rows = torch.arange(3)
    assert torch.equal(tuples["previous"], clip[rows, tuples["frame_index"] - 1])
    assert torch.equal(tuples["target"], clip[rows, tuples["frame_index"]])
    bad = tmp_path / "content.safetensors"
    from safetensors.torch import save_file

    save_file({"something.else": torch.zeros(1)}, str(bad))
    module = _motion_module(content_checkpoint=str(bad))
    with pytest.raises(ValueError, match="content.safetensors"):
        module.generate(1)
    net = MotionNetwork(unet=TINY_UNET, image_size=16, flow={"variant": "tiny"}, diffusion_timesteps=100, video_timesteps=8)
    with pytest.raises(ValueError, match="num_train_timesteps"):
        VIDMMotion(net, image_size=16)
    net = MotionNetwork(unet=TINY_UNET, image_size=16, flow={"variant": "tiny"}, video_timesteps=8)
    with pytest.raises(ValueError, match="video_timesteps"):
        VIDMMotion(net, image_size=16, num_frames=16)
    assert _motion_module().uses_random_weights, "an untrained content network is a stand-in the rows name"


@pytest.mark.slow
def test_cli_fit_predict_videos_and_test_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # results/ rows land here
    run_cli(["fit", *MOTION], tmp_path)
    cli = run_cli(["predict", *MOTION, "--ckpt_path", "last", "--data.init_args.num_samples", "2"], tmp_path)
    folder = Path(cli.model.predictions_dir)
    gifs = sorted(folder.glob("video*.gif"))
    assert len(gifs) == 2
    assert Image.open(gifs[0]).n_frames == 8, "a video of num_frames frames"
    import av

    with av.open(str(gifs[0].with_suffix(".mp4"))) as container:
        assert sum(1 for _ in container.decode(container.streams.video[0])) == 8
    inputs = tmp_path / "frames"
    inputs.mkdir()
    Image.fromarray((np.random.rand(30, 50, 3) * 255).astype("uint8")).save(inputs / "wide_shot.png")
    Image.fromarray((np.random.rand(40, 24, 3) * 255).astype("uint8")).save(inputs / "tall_shot.jpg")
    cli = run_cli(["predict", *MOTION, "--ckpt_path", "last", "--data.init_args.predict_inputs", str(inputs)], tmp_path)
    folder = Path(cli.model.predictions_dir)
    # both predicts load the same run, so they share its predictions folder: the second keeps the
    # first's manifest.json and writes manifest_1.json (components.predict_outputs)
    assert (folder / "manifest.json").is_file()
    manifest = json.loads((folder / "manifest_1.json").read_text())
    assert sorted(Path(i["input"]).name for i in manifest["items"]) == ["tall_shot.jpg", "wide_shot.png"]
    wide = Image.open(folder / "wide_shot.gif")
    assert wide.n_frames == 8 and wide.size == (16, 10), "named after the input, its aspect ratio at the model size"
    run_cli(["test", *MOTION, "--ckpt_path", "last"], tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "results" / "vidm.jsonl").read_text().splitlines()]
    assert {r["metric"] for r in rows} >= {"FVD-16"}  # the tiny overlay scores Table 3.1's column only
    assert all(r["table"] == "Table 3.1 (256-UCF101)" for r in rows)
    assert all(r["paper"] == "vidm" for r in rows)
