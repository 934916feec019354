"""The predict contract for the papers that take the user's images at their own size: LFG-Diffusion,
Bi-Noising, D2SM, LTT-GAN and the lecture's translation models (docs/architecture.md, "The predict
contract"). A folder of images of different sizes goes through each datamodule's real
``predict_dataloader`` (``UserInputsPredictMixin``) and each paper's real predict code; the network
is a stub (identity / zeros), so these test the plumbing: every input processed despite an
overlay's batch limit, outputs named after the inputs, at the input's size (SR: exactly 4x).
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_modules.components.predict_outputs import PredictOutputsMixin

SIZES = {"wide": (20, 36), "tall": (33, 14), "square": (16, 16)}  # (H, W), odd aspect ratios


def _folder(folder: Path, masks: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, (h, w) in SIZES.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / f"{name}.png")
        if masks:
            mask = np.zeros((h, w), dtype=np.uint8)
            mask[: h // 2, : w // 2] = 255
            Image.fromarray(mask).save(folder / f"{name}_mask.png")
    return folder


def _batches(datamodule: Any) -> list[dict]:
    datamodule.trainer = SimpleNamespace(limit_predict_batches=1)  # the tiny overlays' limit
    batches = list(datamodule.predict_dataloader())
    assert datamodule.trainer.limit_predict_batches == 1.0, "an overlay's batch limit never truncates user inputs"
    return batches


def _sizes(folder: Path, variant: str = "") -> dict[str, tuple[int, int]]:
    manifest = json.loads((folder / "manifest.json").read_text())
    outputs = [out for item in manifest["items"] for out in item["outputs"]]
    assert len(outputs) == len(set(outputs)), "no output overwrites another"
    sizes = {}
    for out in outputs:
        if out.endswith(f"{variant}.png"):
            with Image.open(folder / out) as image:
                sizes[out.removesuffix(".png")] = (image.height, image.width)
    return sizes


class _Stub(PredictOutputsMixin):
    device = torch.device("cpu")
    _trainer = None
    predict_seed = 0

    def nfe(self, steps: int) -> int:
        return steps


def test_lfg_shadow_predict_takes_every_image_and_mask_at_its_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from datamodules.lfg_shadow.datamodule import ShadowRemovalDataModule
    from lightning_modules.lfg_shadow.predict import predict_batch

    monkeypatch.chdir(tmp_path)
    data = ShadowRemovalDataModule(predict_root=str(_folder(tmp_path / "in", masks=True)), batch_size=4)
    batches = _batches(data)
    assert sorted(n for b in batches for n in b["name"]) == sorted(SIZES), "masks are not inputs; every image is"
    stub = _Stub()
    stub.image_size, stub.num_sampling_steps, stub.mask_dilation = 16, 2, 3
    stub.sampler = SimpleNamespace(name="ddim")
    stub.remove_shadows = lambda shadow, mask, generator=None: shadow
    for index, batch in enumerate(batches):
        assert batch["shadow"].shape[-2:] == batch["raw_mask"].shape[-2:]
        predict_batch(stub, batch, index)
    assert _sizes(Path(stub.predictions_dir)) == SIZES


def test_bi_noising_sr_predict_is_exactly_four_times_each_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from datamodules.bi_noising.datamodule import BiNoisingDataModule
    from lightning_modules.bi_noising.predict import predict_batch

    monkeypatch.chdir(tmp_path)
    data = BiNoisingDataModule(task="sr", size=16, predict_root=[str(_folder(tmp_path / "lr"))], batch_size=2)
    stub = _Stub()
    stub.image_size, stub.num_sampling_steps, stub.task, stub.last_network_calls = 16, 2, "sr", 0
    stub.sampler = SimpleNamespace(name="sr3")
    stub.restore = lambda conditions, generator=None: torch.zeros_like(conditions)
    for index, batch in enumerate(_batches(data)):
        predict_batch(stub, batch, index)
    assert _sizes(Path(stub.predictions_dir)) == {n: (4 * h, 4 * w) for n, (h, w) in SIZES.items()}


def test_d2sm_predict_restores_every_file_of_a_manifest_at_its_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from datamodules.d2sm import EmbeddedD2SMDataModule
    from lightning_modules.d2sm.module import D2SMRestorationModule

    monkeypatch.chdir(tmp_path)
    _folder(tmp_path / "in")
    (tmp_path / "list.txt").write_text("in/tall.png\nin/wide.png\nin/square.png\n")
    data = EmbeddedD2SMDataModule(predict_inputs=[str(tmp_path / "list.txt")], predict_sigma=25.0)
    stub = _Stub()
    stub.task, stub.restorer = "denoise", SimpleNamespace(takes_noise_level=False)
    stub.hparams = SimpleNamespace(predict_dir=None)
    D2SMRestorationModule.on_predict_epoch_start(stub)
    with monkeypatch.context() as patch:
        patch.setattr("lightning_modules.d2sm.module.run_restorer", lambda restorer, inputs, sigma: inputs)
        for index, batch in enumerate(_batches(data)):
            D2SMRestorationModule.predict_step(stub, batch, index)
    assert _sizes(Path(stub.predictions_dir)) == SIZES
    items = json.loads((Path(stub.predictions_dir) / "manifest.json").read_text())["items"]
    assert [Path(i["input"]).name for i in items] == ["tall.png", "wide.png", "square.png"], "the manifest's order"
    assert {i["sigma"] for i in items} == {25.0}


def test_ltt_gan_predict_maps_face_and_uncertainty_back_to_each_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from datamodules.ltt_gan.faces import TurbulenceFaceDataModule
    from lightning_modules.ltt_gan.module import LTTGAN

    monkeypatch.chdir(tmp_path)
    data = TurbulenceFaceDataModule(size=16, predict_root=str(_folder(tmp_path / "in")), predict_fit="pad", batch_size=2)
    data.trainer = SimpleNamespace(limit_predict_batches=1)
    stub = _Stub()
    stub.generator = SimpleNamespace(num_branches=2)
    stub.restore = lambda x: SimpleNamespace(mean=x, variance=x[:, :1].abs())
    for index, batch in enumerate(data.predict_dataloader()):
        LTTGAN.predict_step(stub, batch, index)
    assert _sizes(Path(stub.predictions_dir), "__uncertainty") == {f"{n}__uncertainty": s for n, s in SIZES.items()}
    assert {n: s for n, s in _sizes(Path(stub.predictions_dir)).items() if "__" not in n} == SIZES


def test_pix2pix_predict_translates_every_image_at_its_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from datamodules.lecture import PairedDataModule
    from lightning_modules.baselines.lecture_predict import WritesPredictions
    from lightning_modules.baselines.pix2pix import Pix2Pix

    monkeypatch.chdir(tmp_path)
    data = PairedDataModule(predict_root=str(_folder(tmp_path / "in")), batch_size=4)
    stub = SimpleNamespace(device=torch.device("cpu"), multiple=8, generator=lambda x: -x, _trainer=None)
    stub.writer = lambda kind: WritesPredictions.writer(stub, kind)
    stub.__dict__["_prediction_writers"] = {}
    for index, batch in enumerate(_batches(data)):
        Pix2Pix.predict_step(stub, batch, index)
    assert _sizes(Path(stub.predictions_dir)) == SIZES
