"""MediaLogger: fixed noise, PNG/GIF/MP4 files in the run folder, TensorBoard images, EMA weights."""
from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from callbacks.ema import EMACallback
from callbacks.media import MediaLogger


class FakeGenerator(pl.LightningModule):
    """Implements the ``sample`` contract; ``video=True`` returns [B, T, C, H, W]."""

    def __init__(self, video: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.network = nn.Linear(3, 3)
        self.video = video
        self.sample_shape = (3, 8, 10)
        self.seen_noise: list[torch.Tensor] = []
        self.seen_weight: list[torch.Tensor] = []

    def training_step(self, batch, batch_idx):
        (x,) = batch
        return self.network(x).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    @torch.no_grad()
    def sample(self, num_samples, *, noise=None, generator=None, num_steps=None, **kw):
        assert noise is not None and noise.shape == (num_samples, *self.sample_shape)
        self.seen_noise.append(noise.clone())
        self.seen_weight.append(self.network.weight.detach().clone())
        img = torch.tanh(torch.einsum("oc,bchw->bohw", self.network.weight, noise))
        if self.video:
            return torch.stack([img.roll(t, dims=-1) for t in range(4)], dim=1)
        return img


def _fit(tmp_path, module, callbacks, steps=4, **kw):
    x = torch.randn(16, 3)
    trainer = pl.Trainer(
        default_root_dir=tmp_path, max_steps=steps, accelerator="cpu", devices=1,
        logger=TensorBoardLogger(tmp_path, name="tb"), enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=callbacks, **kw,
    )
    trainer.fit(module, DataLoader(TensorDataset(x), batch_size=4), DataLoader(TensorDataset(x[:4]), batch_size=4))
    return trainer


def _tb_image_tags(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"images": 0})
    acc.Reload()
    return {tag: [e.step for e in acc.Images(tag)] for tag in acc.Tags()["images"]}


def test_images_every_n_steps_and_at_validation_from_fixed_noise(tmp_path):
    media = MediaLogger(every_n_steps=2, num_samples=6, nrow=3, seed=7)
    module = FakeGenerator()
    trainer = _fit(tmp_path, module, [media], limit_val_batches=1, val_check_interval=4, num_sanity_val_steps=0)
    folder = tmp_path / "tb" / "version_0" / "media"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["train_step00000002.png", "train_step00000004.png", "val_step00000004.png"]
    grid = Image.open(folder / "train_step00000002.png")
    assert grid.size == (3 * 12 + 2, 2 * 10 + 2) and grid.mode == "RGB"
    # the same noise every time, drawn from the seed
    expected = torch.randn((6, 3, 8, 10), generator=torch.Generator().manual_seed(7))
    assert len(module.seen_noise) == 3
    for n in module.seen_noise:
        torch.testing.assert_close(n, expected, rtol=0, atol=0)
    assert _tb_image_tags(trainer.log_dir) == {"media/train": [2, 4], "media/val": [4]}


def test_video_writes_strip_gif_and_mp4(tmp_path):
    media = MediaLogger(every_n_steps=3, num_samples=2, nrow=2, fps=4)
    trainer = _fit(tmp_path, FakeGenerator(video=True), [media], steps=3, limit_val_batches=0)
    folder = tmp_path / "tb" / "version_0" / "media"
    strip = Image.open(folder / "train_step00000003.png")
    assert strip.size == (4 * 12 + 2, 2 * 10 + 2)  # 4 frames across, one row per sample
    gif = Image.open(folder / "train_step00000003.gif")
    assert gif.n_frames == 4 and gif.info["duration"] == 250
    try:
        import av
    except ImportError:
        pytest.skip("PyAV not installed: no MP4")
    with av.open(str(folder / "train_step00000003.mp4")) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 4
    assert _tb_image_tags(trainer.log_dir) == {"media/train": [3]}


def test_samples_use_ema_weights_and_train_mode_is_restored(tmp_path):
    ema = EMACallback(decay=0.5, warmup=False)
    media = MediaLogger(every_n_steps=4, num_samples=1, on_validation=False)

    class CheckMode(FakeGenerator):
        def sample(self, *args, **kw):
            assert not self.training
            return super().sample(*args, **kw)

    module = CheckMode()
    _fit(tmp_path, module, [ema, media], steps=4, limit_val_batches=0)
    torch.testing.assert_close(module.seen_weight[-1], ema.ema_state_dict()["network.weight"])
    assert not torch.allclose(module.seen_weight[-1], module.network.weight)


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_samples"):
        MediaLogger(num_samples=0)
    with pytest.raises(ValueError, match="fps"):
        MediaLogger(fps=0)
