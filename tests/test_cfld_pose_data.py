"""CFLD pose encoding (21 channels, sigma 6 heatmaps, missing joints empty) and the DeepFashion reader."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cfld_helpers import cfld_single_thread  # noqa: F401 (autouse fixture)
from datamodules.deepfashion import DeepFashionDataModule, PoseTransferRequests, read_annotations, read_keypoint_file
from lightning_modules.cfld.pose import POSE_LIMBS, draw_skeleton, encode_pose, scale_keypoints


def _keypoints() -> torch.Tensor:
    kp = torch.full((1, 18, 2), -1.0)
    kp[0, 0] = torch.tensor([88.0, 40.0])  # nose (x, y) in the 256x176 frame
    kp[0, 1] = torch.tensor([88.0, 70.0])  # neck
    kp[0, 2] = torch.tensor([60.0, 72.0])  # right shoulder; right elbow (3) stays missing
    return kp


def test_heatmaps_peak_at_the_keypoints_and_missing_joints_are_empty() -> None:
    pose = encode_pose(_keypoints(), (256, 176), size=256, sigma=6.0)
    assert pose.shape == (1, 21, 256, 256) and pose.min() >= 0 and pose.max() <= 1
    heat = pose[0, 3:]
    # nose at x = 88 * 256 / 176 = 128, y = 40: the peak is 1 there
    assert heat[0, 40, 128] == pytest.approx(1.0)
    assert int(heat[0].flatten().argmax()) == 40 * 256 + 128
    # sigma = 6: value exp(-1/2) at one sigma from the peak
    assert heat[0, 46, 128] == pytest.approx(float(np.exp(-0.5)), rel=1e-4)
    missing = [j for j in range(18) if j not in (0, 1, 2)]
    assert torch.count_nonzero(heat[missing]) == 0


def test_skeleton_draws_bones_only_between_present_joints() -> None:
    xy, present = scale_keypoints(_keypoints(), (256, 176), 256)
    rgb = draw_skeleton(xy, present, 256)
    assert rgb.shape == (1, 3, 256, 256)
    # neck -> nose bone (1, 0) is drawn halfway between them
    assert rgb[0, :, 55, 128].sum() > 0
    # the right upper arm (2 -> 3) has a missing end: nothing beyond the shoulder's disc
    assert (2, 3) in POSE_LIMBS
    left_of_shoulder = rgb[0, :, 60:90, 0:80]
    assert torch.count_nonzero(left_of_shoulder) == 0


def _write_layout(root: Path) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        folder = root / f"{split}_highres"
        folder.mkdir(parents=True)
        names = [f"MEN{split}id0000{i}01_{i}front.jpg" for i in range(3)]
        for name in names:
            Image.fromarray(rng.integers(0, 255, (176, 120, 3), dtype=np.uint8)).save(folder / name)
        (root / f"fasion-resize-pairs-{split}.csv").write_text("from,to\n" + "".join(f"{names[i]},{names[(i + 1) % 3]}\n" for i in range(3)))
        lines = ["name:keypoints_y:keypoints_x"]
        for i, name in enumerate(names):
            ys = [10 + 10 * j for j in range(18)]
            xs = [5 + 5 * j + i for j in range(18)]
            ys[4], xs[4] = -1, -1  # right wrist missing
            lines.append(f"{name}: {json.dumps(ys)}: {json.dumps(xs)}")
        (root / f"fasion-resize-annotation-{split}.csv").write_text("\n".join(lines) + "\n")


def test_deepfashion_reader_on_a_fake_published_layout(tmp_path: Path) -> None:
    _write_layout(tmp_path)
    annotations = read_annotations(tmp_path / "fasion-resize-annotation-train.csv")
    first = annotations["MENtrainid0000001_0front.jpg"]
    assert first.shape == (18, 2)
    assert first[0].tolist() == [5.0, 10.0]  # (x, y) from the y / x columns
    assert first[4].tolist() == [-1.0, -1.0]
    dm = DeepFashionDataModule(root=str(tmp_path), load_size=32, target_eval_size=(256, 176), batch_size=2)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch["source_image"].shape == (2, 3, 32, 32) and batch["target_image"].shape == (2, 3, 32, 32)
    assert batch["source_image"].min() >= -1 and batch["source_image"].max() <= 1
    assert batch["source_keypoints"].shape == (2, 18, 2)
    assert batch["keypoint_frame"][0].tolist() == [256.0, 176.0]
    test = next(iter(dm.test_dataloader()))
    assert test["target_image_eval"].shape == (2, 3, 256, 176)
    assert test["name"][0] == "MENtestid0000001_0front___MENtestid0000101_1front"
    assert len(dm.fid_real_dataloader().dataset) == 3


def test_deepfashion_reader_names_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="train_highres"):
        DeepFashionDataModule(root=str(tmp_path)).setup()
    _write_layout(tmp_path)
    (tmp_path / "fasion-resize-annotation-train.csv").write_text("name:keypoints_y:keypoints_x\nbad: [1, 2]: [3]\n")
    with pytest.raises(ValueError, match="line 2"):
        DeepFashionDataModule(root=str(tmp_path)).setup()


def test_embedded_default_has_the_deepfashion_batch_keys() -> None:
    dm = DeepFashionDataModule(root=None, load_size=32, embedded_samples=20, batch_size=2)
    dm.setup()
    batch = next(iter(dm.test_dataloader()))
    assert {"source_image", "target_image", "source_keypoints", "target_keypoints", "keypoint_frame", "target_image_eval"} <= set(batch)
    assert batch["keypoint_frame"][0].tolist() == [64.0, 44.0]


def test_predict_requests_read_keypoint_files_and_images(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((176, 120, 3), dtype=np.uint8)).save(tmp_path / "person.png")
    (tmp_path / "pose.json").write_text(json.dumps({"keypoints": [[10 + j, 20 + j] for j in range(18)], "frame": [256, 176]}))
    (tmp_path / "pose.csv").write_text("\n".join(f"{j},{j}" for j in range(18)))
    keypoints, frame = read_keypoint_file(tmp_path / "pose.json")
    assert keypoints[3].tolist() == [13.0, 23.0] and frame == (256, 176)
    assert read_keypoint_file(tmp_path / "pose.csv")[0].shape == (18, 2)
    dm = PoseTransferRequests(sources=[str(tmp_path / "person.png")] * 2, targets=[str(tmp_path / "pose.json"), str(tmp_path / "person.png")], load_size=32)
    items = list(dm.predict_dataloader())
    assert "target_keypoints" in items[0] and "target_pose_image" in items[1]


def test_fid_reference_is_computed_from_the_training_images(tmp_path: Path) -> None:
    from lightning_modules.cfld.fid_reference import write_fid_reference
    from metrics.fid import FrechetInceptionDistance

    class Features(torch.nn.Module):  # a tiny injected feature network (the protocol's is Inception-v3)
        num_features = 3

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return images.mean(dim=(2, 3))

    _write_layout(tmp_path)
    out = tmp_path / "ref.npz"
    count = write_fid_reference(str(tmp_path), (64, 44), str(out), metric=FrechetInceptionDistance(Features(), reset_real_features=False), num_workers=0)
    assert count == 3
    metric = FrechetInceptionDistance(Features())
    metric.load_real_statistics(str(out))
    assert int(metric.real_count) == 3


def test_deepfashion_train_loader_resumes_mid_epoch() -> None:
    """The train order comes from (seed, epoch) and a checkpointed position resumes it (issue 12, point 10)."""
    from types import SimpleNamespace

    from datamodules.resumable import resume_state

    def batches(loader, lightning_epoch: int) -> list[float]:
        loader.sampler.set_epoch(lightning_epoch)  # what Lightning does every epoch (one loader for the run)
        return [float(b["source_image"].sum()) for b in loader]

    straight = DeepFashionDataModule(root=None, load_size=16, embedded_samples=20, batch_size=3).train_dataloader()
    epoch0, epoch1 = batches(straight, 0), batches(straight, 1)
    assert epoch0 != epoch1 and len(epoch0) == 6  # 18 train pairs, drop_last [R]
    progress = SimpleNamespace(total=SimpleNamespace(processed=2))
    trainer = SimpleNamespace(num_training_batches=len(epoch0), fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress)))
    state = resume_state(trainer)  # a checkpoint after 2 batches of epoch 0
    resumed = DeepFashionDataModule(root=None, load_size=16, embedded_samples=20, batch_size=3)
    resumed.load_state_dict(state)
    loader = resumed.train_dataloader()
    # Lightning counts the interrupted epoch as done and starts epoch 1; the data finishes epoch 0 first
    assert batches(loader, 1) == epoch0[2:]
    assert batches(loader, 2) == epoch1


def test_openpose_wrapper_loads_lazily_from_the_resolved_folder(tmp_path, monkeypatch) -> None:
    """A stand-in ``controlnet_aux`` Body (the package is an optional extra): the wrapper's code, not OpenPose."""
    import sys
    import types

    import lightning_modules.cfld.pose_detector as pd

    calls: list[str] = []

    class FakeBody:
        def __init__(self, path: str) -> None:
            calls.append(path)

        def __call__(self, image):  # candidates (x, y, score, id); subset rows: 18 indices, score, count
            candidate = np.array([[10.0, 20.0, 0.9, 0], [30.0, 40.0, 0.8, 1]])
            subset = np.full((1, 20), -1.0)
            subset[0, 0], subset[0, 5], subset[0, 18] = 0, 1, 1.7
            return candidate, subset

    fake = types.ModuleType("controlnet_aux.open_pose.body")
    fake.Body = FakeBody
    for name in ("controlnet_aux", "controlnet_aux.open_pose"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "controlnet_aux.open_pose.body", fake)
    resolved = tmp_path / "snapshot"
    resolved.mkdir()
    (resolved / "body_pose_model.pth").write_bytes(b"")
    detector = pd.OpenPoseBodyDetector(model_dir="lllyasviel/Annotators")  # a hub id: nothing read at build time
    assert detector.body is None and not calls
    monkeypatch.setattr(pd, "require_files", lambda path, key, expected, source: resolved)
    keypoints = detector(torch.zeros(2, 3, 8, 8))
    assert calls == [str(resolved / "body_pose_model.pth")]  # the hub id's cached folder, not the raw value
    assert keypoints.shape == (2, 18, 2)
    assert keypoints[0, 0].tolist() == [10.0, 20.0] and keypoints[0, 5].tolist() == [30.0, 40.0]
    assert (keypoints[0, 1] == -1).all()
    monkeypatch.setitem(sys.modules, "controlnet_aux.open_pose.body", None)  # package absent
    with pytest.raises(ImportError, match=r"pose"):
        pd.OpenPoseBodyDetector(model_dir=str(resolved)).load()


def test_deepfashion_prepare_flattens_the_published_tree(tmp_path) -> None:
    from datamodules.deepfashion_prepare import flat_name, main

    assert flat_name("MEN", "Denim", "id_00000080", "01_1_front.jpg") == "fashionMENDenimid0000008001_1front.jpg"
    images, root = tmp_path / "img_highres", tmp_path / "fashion"
    for rel in ("MEN/Denim/id_00000080/01_1_front.jpg", "WOMEN/Blouses_Shirts/id_00000001/02_2_side.jpg",
                "WOMEN/Dresses/id_00000002/03_4_full.jpg"):
        (images / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(images / rel)
    root.mkdir()
    (root / "train.lst").write_text("fashionMENDenimid0000008001_1front.jpg\nfashionWOMENBlouses_Shirtsid0000000102_2side.jpg\n")
    (root / "test.lst").write_text("fashionWOMENDressesid0000000203_4full.jpg\n")
    assert main(["--images", str(images), "--root", str(root)]) == 0
    assert sorted(p.name for p in (root / "train_highres").iterdir()) == [
        "fashionMENDenimid0000008001_1front.jpg", "fashionWOMENBlouses_Shirtsid0000000102_2side.jpg"]
    assert [p.name for p in (root / "test_highres").iterdir()] == ["fashionWOMENDressesid0000000203_4full.jpg"]
    assert main(["--images", str(tmp_path / "nowhere"), "--root", str(root)]) == 2


def test_mask_transfer_takes_the_target_pose_from_the_reference(tmp_path) -> None:
    """Sec. 4.6: with no target given, the reference's pose is the target (keypoint file, else its image)."""
    rng = np.random.default_rng(0)
    for name in ("source.png", "reference.png", "mask.png"):
        Image.fromarray(rng.integers(0, 255, (32, 22, 3), dtype=np.uint8)).save(tmp_path / name)
    (tmp_path / "reference.json").write_text(json.dumps({"keypoints": [[1 + j, 2 + j] for j in range(18)], "frame": [32, 22]}))
    common = dict(sources=[str(tmp_path / "source.png")], load_size=16, references=[str(tmp_path / "reference.png")],
                  masks=[str(tmp_path / "mask.png")])
    by_image = next(iter(PoseTransferRequests(**common).predict_dataloader()))
    assert torch.equal(by_image["target_pose_image"], by_image["reference_image"])  # the detector reads the reference
    assert by_image["name"] == ["source__reference"]
    by_file = next(iter(PoseTransferRequests(**common, reference_poses=[str(tmp_path / "reference.json")]).predict_dataloader()))
    assert by_file["target_keypoints"][0, 3].tolist() == [4.0, 5.0] and "target_pose_image" not in by_file
    with pytest.raises(ValueError, match="may leave targets out"):
        PoseTransferRequests(sources=[str(tmp_path / "source.png")])
