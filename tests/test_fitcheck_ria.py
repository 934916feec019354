"""Reference image augmentation (thesis 000 Ch. 4, seed ~906-920): matting, harmoniser, background DB, p = 0.5."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.fitcheck_ria import (
    BackgroundDatabase,
    ColourTransferHarmoniser,
    ReferenceAugmentation,
    Sam2Matting,
    TorchScriptHarmoniser,
    WhiteBackgroundMatting,
)
from datamodules.fitcheck_videos import FitCheckVideoDataModule


def _reference(h: int = 16, w: int = 12) -> torch.Tensor:
    """A matted reference: a grey-red figure in the middle of a white image."""
    image = torch.ones(3, h, w)
    image[:, 4:12, 3:9] = torch.tensor([0.4, -0.2, -0.2]).view(3, 1, 1)
    return image


def test_augmentation_rate_white_background_and_colour_moves_towards_each_background() -> None:
    colours = [torch.tensor(c).view(3, 1, 1).expand(3, 16, 12) * 1.0 for c in ((-0.8, -0.8, 0.8), (0.8, 0.8, -0.8))]
    ria = ReferenceAugmentation(WhiteBackgroundMatting(), ColourTransferHarmoniser(0.5), BackgroundDatabase(colours, 16, 12), p=0.5)
    rng = np.random.default_rng(0)
    ref = _reference()
    fig = WhiteBackgroundMatting()(ref).bool()[0]
    applied, differ = [], 0
    for _ in range(400):
        front, back, done = ria(ref, ref, rng)
        applied.append(done)
        if not done:
            assert front is ref and back is ref
            continue
        assert torch.all(front[:, ~fig] == 1) and torch.all(back[:, ~fig] == 1), "background removed again (white)"
        differ += int(not torch.allclose(front, back))
        for out in (front, back):
            moved = out[:, fig].mean(1) - ref[:, fig].mean(1)
            assert moved.abs().sum() > 0.1
            assert torch.sign(moved[2]) == -torch.sign(moved[0]), "towards a blue or a yellow background"
    assert abs(np.mean(applied) - 0.5) < 0.07
    assert differ > 0, "front and back draw their backgrounds independently"


def test_background_database_folder_and_clear_errors(tmp_path: Path) -> None:
    folder = tmp_path / "backgrounds"
    (folder / "sub").mkdir(parents=True)
    Image.new("RGB", (40, 20), (255, 0, 0)).save(folder / "a.png")
    Image.new("RGB", (10, 30), (0, 0, 255)).save(folder / "sub" / "b.jpg")
    db = BackgroundDatabase(str(folder), 16, 12)
    assert len(db) == 2 and db[0].shape == (3, 16, 12) and db[0][0].mean() > 0.9
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="ria_background_database.*no"):
        BackgroundDatabase(str(tmp_path / "empty"), 16, 12)
    with pytest.raises(FileNotFoundError, match="ria_matting"):
        Sam2Matting(str(tmp_path / "no_sam2"))
    with pytest.raises(ValueError, match="ria_harmoniser is not set"):
        TorchScriptHarmoniser(None)  # type: ignore[arg-type]


class _ToyHarmoniser(torch.nn.Module):
    """Stands for an exported harmonisation network: darkens the masked foreground by half."""

    def forward(self, composite: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return composite * (1 - 0.5 * mask)


def test_torchscript_harmoniser_loads_an_export_from_a_path(tmp_path: Path) -> None:
    path = tmp_path / "harmoniser.pt"
    torch.jit.trace(_ToyHarmoniser(), (torch.rand(1, 3, 16, 12), torch.rand(1, 1, 16, 12))).save(str(path))
    harmoniser = TorchScriptHarmoniser(str(path))
    composite, mask = torch.rand(3, 16, 12) * 2 - 1, (torch.rand(1, 16, 12) > 0.5).float()
    expected = ((composite + 1) / 2 * (1 - 0.5 * mask)) * 2 - 1
    torch.testing.assert_close(harmoniser(composite, mask), expected)
    assert "harmoniser.pt" in harmoniser.name
    torch.save({"weight": torch.zeros(1)}, tmp_path / "state.pt")
    with pytest.raises(ValueError, match="not a TorchScript module"):
        TorchScriptHarmoniser(str(tmp_path / "state.pt"))


def test_data_module_applies_ria_to_training_only_and_requires_paths_for_real_data(tmp_path: Path) -> None:
    dm = FitCheckVideoDataModule(size=(32, 24), num_frames=4, embedded_videos=10, embedded_length=8,
                                 embedded_backgrounds="plain", reference_augmentation_p=1.0)
    dm.setup("fit")
    item = dm.train_dataset[0]
    assert bool(item["ria"]) and not torch.allclose(item["front"], item["front_target"])
    assert "ria" not in dm.val_dataset[0]
    for split in ("train", "test"):
        (tmp_path / "root" / split / "v0").mkdir(parents=True)
    real = FitCheckVideoDataModule(root=str(tmp_path / "root"), size=(32, 24))
    with pytest.raises(ValueError, match="ria_matting is not set"):
        real.setup("fit")


def _tiny_sam2_folder(folder: Path, size: int = 64) -> Path:
    """A random-weight SAM 2 in transformers' ``save_pretrained`` layout (config.json, model.safetensors,
    processor_config.json), the layout of huggingface.co/facebook/sam2.1-hiera-large."""
    from transformers import Sam2Config, Sam2ImageProcessor, Sam2Model, Sam2Processor
    from transformers.models.sam2.configuration_sam2 import (Sam2HieraDetConfig, Sam2MaskDecoderConfig,
                                                             Sam2PromptEncoderConfig, Sam2VisionConfig)

    backbone = Sam2HieraDetConfig(hidden_size=8, num_attention_heads=1, image_size=[size, size],
                                  blocks_per_stage=[1, 2, 1, 1], embed_dim_per_stage=[8, 16, 32, 64],
                                  num_attention_heads_per_stage=[1, 1, 1, 1], window_size_per_stage=[4, 4, 4, 4],
                                  global_attention_blocks=[2], window_positional_embedding_background_size=[2, 2])
    vision = Sam2VisionConfig(backbone_config=backbone, backbone_channel_list=[64, 32, 16, 8], fpn_hidden_size=32,
                              backbone_feature_sizes=[[size // 4] * 2, [size // 8] * 2, [size // 16] * 2])
    config = Sam2Config(vision_config=vision,
                        prompt_encoder_config=Sam2PromptEncoderConfig(hidden_size=32, image_size=size, patch_size=16,
                                                                      mask_input_channels=4),
                        mask_decoder_config=Sam2MaskDecoderConfig(hidden_size=32, mlp_dim=64, num_hidden_layers=1,
                                                                  num_attention_heads=2, iou_head_hidden_dim=32))
    torch.manual_seed(0)
    Sam2Model(config).save_pretrained(str(folder))
    Sam2Processor(image_processor=Sam2ImageProcessor(size={"height": size, "width": size},
                                                     mask_size={"height": size // 4, "width": size // 4})
                  ).save_pretrained(str(folder))
    return folder


def test_sam2_matting_loads_a_save_pretrained_folder_and_returns_an_alpha_at_the_input_size(tmp_path: Path) -> None:
    """Random weights: tests the loading path and the mask plumbing (prompt, post-processing), not SAM 2's quality."""
    from safetensors.torch import load_file

    folder = _tiny_sam2_folder(tmp_path / "sam2.1-hiera-tiny")
    matting = Sam2Matting(str(folder))
    saved = load_file(str(folder / "model.safetensors"))
    name = next(k for k in saved if k.endswith("patch_embed.projection.weight"))
    torch.testing.assert_close(dict(matting.model.named_parameters())[name], saved[name])  # weights came from the folder
    alpha = matting(torch.rand(3, 40, 30) * 2 - 1)
    assert alpha.shape == (1, 40, 30) and set(alpha.unique().tolist()) <= {0.0, 1.0}
    assert matting.name == "SAM 2 (sam2.1-hiera-tiny)"
