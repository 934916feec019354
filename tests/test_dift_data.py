"""DiFT data: published-layout readers on tiny files written in those layouts, embedded fields, pretrained loaders."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.dift import DiFTDataModule
from datamodules.dift.layouts import read_srn_intrinsics
from lightning_modules.dift import CLIPViewEmbedder, LDMAutoencoder


def _png(path: Path, size: tuple[int, int], value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[0], size[1], 3), value, dtype=np.uint8)).save(path)


def test_srn_cars_layout_reads_views_poses_and_normalised_intrinsics(tmp_path: Path) -> None:
    for split in ("train", "test"):
        obj = tmp_path / f"cars_{split}" / "1a2b"
        for i in range(4):
            _png(obj / "rgb" / f"{i:06d}.png", (16, 16), 40 * i)
            pose = np.eye(4)
            pose[:3, 3] = [0.0, 0.0, 1.0 + i]
            (obj / "pose").mkdir(exist_ok=True)
            (obj / "pose" / f"{i:06d}.txt").write_text(" ".join(str(v) for v in pose.reshape(-1)))
        (obj / "intrinsics.txt").write_text("20.0 8.0 8.0 0.\n0. 0. 0.\n1.\n16 16\n")
    dm = DiFTDataModule(modality="views", source="srn_cars", root=str(tmp_path), size=8, views_per_field=3)
    dm.setup()
    item = dm.train_dataset[0]
    assert item["views"].shape == (3, 3, 8, 8) and item["input_view"].shape == (3, 8, 8)
    assert item["camera"].shape == (3, 4, 4) and sorted(item["camera"][:, 2, 3].tolist() + [item["input_camera"][2, 3].item()]) == [1, 2, 3, 4]
    torch.testing.assert_close(item["intrinsics"][0], torch.tensor([[1.25, 0, 0.5], [0, 1.25, 0.5], [0, 0, 1.0]]))
    too_many = DiFTDataModule(modality="views", source="srn_cars", root=str(tmp_path), size=8, views_per_field=4)
    too_many.setup()
    with pytest.raises(ValueError, match="4 views, but 4 target views"):
        too_many.train_dataset[0]
    (tmp_path / "bad.txt").write_text("f cx\n")
    with pytest.raises(ValueError, match="bad.txt"):
        read_srn_intrinsics(tmp_path / "bad.txt")


def test_mario_layout_reads_frames_and_actions_and_rejects_short_action_files(tmp_path: Path) -> None:
    for split in ("train", "test"):
        episode = tmp_path / split / "ep0"
        for i in range(6):
            _png(episode / "frames" / f"{i:05d}.png", (12, 10), 30 * i)
        (episode / "actions.txt").write_text("\n".join(str(i % 4) for i in range(6)) + "\n")
    dm = DiFTDataModule(modality="game", source="mario", root=str(tmp_path), size=8, clip_frames=3)
    dm.setup()
    assert len(dm.train_dataset) == 2
    item = dm.train_dataset[1]
    assert item["views"].shape == (3, 3, 8, 8) and item["target"].shape == (2, 3, 8, 8)
    assert item["actions"].argmax(-1).tolist() == [3, 0, 1]
    (tmp_path / "train" / "ep0" / "actions.txt").write_text("0\n1\n")
    with pytest.raises(ValueError, match="actions.txt has 2 actions for 6 frames"):
        DiFTDataModule(modality="game", source="mario", root=str(tmp_path), size=8, clip_frames=3).setup()


def test_celebv_text_layout_reads_frames_captions_and_precomputed_t5(tmp_path: Path) -> None:
    for vid in ("clip_a", "clip_b"):
        for i in range(5):
            _png(tmp_path / "frames" / vid / f"{i:04d}.png", (20, 16), 50 * i)
        (tmp_path / "texts").mkdir(exist_ok=True)
        (tmp_path / "texts" / f"{vid}.txt").write_text(f"a person {vid}\n")
        (tmp_path / "t5").mkdir(exist_ok=True)
        torch.save(torch.randn(7, 12), tmp_path / "t5" / f"{vid}.pt")
    (tmp_path / "train.txt").write_text("clip_a\n")
    (tmp_path / "test.txt").write_text("clip_b\n")
    dm = DiFTDataModule(modality="video", source="celebv_text", root=str(tmp_path), size=8, clip_frames=4)
    dm.setup()
    item = dm.val_dataset[0]
    assert item["views"].shape == (4, 3, 8, 8) and item["text"].shape == (7, 12) and item["caption"] == "a person clip_b"
    (tmp_path / "t5" / "clip_a.pt").unlink()
    with pytest.raises(FileNotFoundError, match="clip_a: no precomputed T5 embedding"):
        dm.train_dataset[0]


def test_cifar_folder_and_embedded_fields(tmp_path: Path) -> None:
    for split in ("train", "test"):
        for k in range(2):
            _png(tmp_path / split / "cat" / f"{k}.png", (32, 32), 100 + k)
    cifar = DiFTDataModule(modality="image", source="cifar10", root=str(tmp_path), size=8)
    cifar.setup()
    assert len(cifar.train_dataset) == 2 and cifar.val_dataset[0]["views"].shape == (1, 3, 8, 8)
    for modality, keys in (("image", {"views", "image"}), ("video", {"views", "video", "frame_index", "text", "caption"}),
                           ("views", {"views", "camera", "intrinsics", "input_view", "input_camera"}),
                           ("game", {"views", "frame_index", "actions", "target"})):
        dm = DiFTDataModule(modality=modality, size=8, clip_frames=4, views_per_field=3, text_dim=6, num_train=4, num_val=2)
        dm.setup()
        item = dm.train_dataset[0]
        assert set(item) == keys and item["views"].min() >= -1 and item["views"].max() <= 1
        again = DiFTDataModule(modality=modality, size=8, clip_frames=4, views_per_field=3, text_dim=6, num_train=4, num_val=2)
        again.setup()
        assert torch.equal(again.train_dataset[0]["views"], item["views"]), "embedded fields are deterministic"
    views = DiFTDataModule(modality="views", size=16, views_per_field=4, num_train=2, num_val=1)
    views.setup()
    rendered = views.train_dataset[0]["views"]
    assert not torch.equal(rendered[0], rendered[1]), "different cameras see different images"
    with pytest.raises(ValueError, match="data.source='mario' is not one of"):
        DiFTDataModule(modality="video", source="mario", root="x")
    with pytest.raises(ValueError, match="needs data.root"):
        DiFTDataModule(modality="image", source="cifar10")


def test_ldm_autoencoder_loads_a_tiny_autoencoderkl_saved_in_the_diffusers_layout(tmp_path: Path) -> None:
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 2,
                        up_block_types=["UpDecoderBlock2D"] * 2, block_out_channels=[8, 8], latent_channels=4,
                        norm_num_groups=4, layers_per_block=1, sample_size=16)
    vae.save_pretrained(tmp_path / "vae")
    ae = LDMAutoencoder(str(tmp_path / "vae"))
    assert ae.downsample_factor == 2 and ae.latent_channels == 4
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    latents = ae.encode(x)
    torch.testing.assert_close(latents, vae.encode(x).latent_dist.mean * vae.config.scaling_factor)
    assert ae.decode(latents).shape == x.shape
    # the latent path of the module: views -> VAE latents -> transformer -> epsilon loss / samples decoded to pixels
    from lightning_modules.dift import DiFT, DiFTTransformer

    net = DiFTTransformer(in_channels=4, patch_size=2, latent_size=8, hidden_size=16, depth=1, num_heads=2)
    module = DiFT(net, modality="image", autoencoder=ae, image_size=16, num_sampling_steps=2)
    assert torch.isfinite(module.field_loss({"views": x.unsqueeze(1)}))
    assert module.sample(2).shape == (2, 3, 16, 16)
    assert not any(p.requires_grad for p in module.autoencoder.parameters()), "the VAE is frozen"
    with pytest.raises(FileNotFoundError, match="model.autoencoder path"):
        LDMAutoencoder(str(tmp_path / "missing"))


def test_clip_view_embedder_loads_a_tiny_clip_vision_model(tmp_path: Path) -> None:
    from transformers import CLIPVisionConfig, CLIPVisionModel

    config = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                              image_size=16, patch_size=8)
    CLIPVisionModel(config).save_pretrained(tmp_path / "clip")
    embedder = CLIPViewEmbedder(str(tmp_path / "clip"))
    tokens = embedder(torch.rand(2, 3, 24, 24) * 2 - 1)
    assert tokens.shape == (2, 5, 16) and embedder.embed_dim == 16
