"""Defining properties of the lecture's networks: PatchGAN receptive fields and output sizes,
generator shapes, the cycle loss of inverse generators, the VAE's closed-form KL."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_modules.baselines.cyclegan import CycleGAN, cycle_consistency_loss
from lightning_modules.baselines.gan_networks import DCGANDiscriminator, DCGANGenerator
from lightning_modules.baselines.translation_networks import ResnetGenerator, UNetGenerator
from lightning_modules.baselines.vae import VAE, gaussian_kl
from lightning_modules.components.patchgan import PatchGANDiscriminator, conv_output_size


@pytest.mark.parametrize("field, expected_field, expected_out", [(1, 1, 256), (16, 16, 126), (70, 70, 30), ("full", 286, 6)])
def test_patchgan_output_size_follows_the_receptive_field_arithmetic(field, expected_field, expected_out) -> None:
    d = PatchGANDiscriminator(in_channels=6, receptive_field=field, base_channels=4, image_size=256)
    assert d.receptive_field == expected_field
    # by hand: every 4x4 conv with padding 1 maps s -> floor((s + 2 - 4) / stride) + 1
    size = 256
    if field != 1:
        for _ in range(d.n_layers):
            size = conv_output_size(size, 4, 2, 1)
        size = conv_output_size(conv_output_size(size, 4, 1, 1), 4, 1, 1)
    assert size == expected_out == d.output_size(256)
    assert d(torch.randn(1, 6, 256, 256)).shape == (1, 1, expected_out, expected_out)


@pytest.mark.parametrize("field", [16, 70])
def test_patchgan_output_pixel_sees_exactly_its_receptive_field(field: int) -> None:
    d = PatchGANDiscriminator(in_channels=1, receptive_field=field, base_channels=4, image_size=128).eval()
    x = torch.randn(1, 1, 128, 128, requires_grad=True)
    out = d(x)
    centre = out.shape[-1] // 2
    out[0, 0, centre, centre].backward()
    rows = x.grad[0, 0].abs().sum(1).nonzero().flatten()
    cols = x.grad[0, 0].abs().sum(0).nonzero().flatten()
    assert int(rows.max() - rows.min() + 1) == field
    assert int(cols.max() - cols.min() + 1) == field


def test_patchgan_receptive_field_larger_than_the_image_is_an_error() -> None:
    with pytest.raises(ValueError, match="receptive_field=70 is larger than the 32x32"):
        PatchGANDiscriminator(receptive_field=70, image_size=32)
    with pytest.raises(ValueError, match="receptive_field=50"):
        PatchGANDiscriminator(receptive_field=50, image_size=256)


def test_generators_keep_the_input_size_and_reject_bad_multiples() -> None:
    unet = UNetGenerator(3, 3, num_downs=4, base_channels=4)
    assert unet(torch.randn(2, 3, 32, 48)).shape == (2, 3, 32, 48)
    with pytest.raises(ValueError, match="multiples of 16"):
        unet(torch.randn(1, 3, 20, 32))
    resnet = ResnetGenerator(3, 3, base_channels=4, n_blocks=1)
    assert resnet(torch.randn(1, 3, 20, 28)).shape == (1, 3, 20, 28)
    g = DCGANGenerator(latent_dim=8, image_size=32, channels=1, base_channels=4, num_classes=10)
    images = g(torch.randn(3, 8), torch.tensor([0, 1, 2]))
    assert images.shape == (3, 1, 32, 32) and images.abs().max() <= 1
    d = DCGANDiscriminator(image_size=32, channels=1, base_channels=4, num_classes=10)
    assert d(images, torch.tensor([0, 1, 2])).shape == (3,)


def test_dcgan_classic_64px_has_no_fully_connected_layer_and_the_paper_widths() -> None:
    with torch.device("meta"):
        g = DCGANGenerator(latent_dim=100, image_size=64, channels=3, base_channels=128)
        d = DCGANDiscriminator(image_size=64, channels=3, base_channels=128)
    assert not any(isinstance(m, nn.Linear) for m in [*g.modules(), *d.modules()])
    convs = [m for m in g.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [c.out_channels for c in convs] == [1024, 512, 256, 128, 3]  # Radford et al. Fig. 1


class _Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = nn.Parameter(torch.tensor(float(factor)))

    def forward(self, x):
        return x * self.factor


def test_cycle_loss_is_zero_for_inverse_generators_and_positive_otherwise() -> None:
    d = lambda: PatchGANDiscriminator(3, 16, 4, image_size=16)  # noqa: E731
    batch = {"image_a": torch.rand(2, 3, 16, 16) - 0.5, "image_b": torch.rand(2, 3, 16, 16) - 0.5}
    inverse = CycleGAN(_Scale(2.0), _Scale(0.5), d(), d(), pool_size=0)
    generated = inverse.generate(batch)
    terms = inverse.generator_terms(batch, generated)
    assert terms["cycle_a"].item() == pytest.approx(0.0, abs=1e-7)
    assert terms["cycle_b"].item() == pytest.approx(0.0, abs=1e-7)
    assert inverse.evaluate_batch(batch)["cycle_l1_a"].item() == pytest.approx(0.0, abs=1e-7)
    not_inverse = CycleGAN(_Scale(2.0), _Scale(2.0), d(), d(), pool_size=0)
    assert not_inverse.generator_terms(batch, not_inverse.generate(batch))["cycle_a"] > 0.1
    x = torch.randn(4, 3, 8, 8)
    assert cycle_consistency_loss(x, x + 0.25).item() == pytest.approx(0.25)


def test_closed_form_kl_matches_monte_carlo_and_torch_distributions() -> None:
    mu, logvar = torch.randn(3, 4) * 0.7, torch.randn(3, 4) * 0.5
    closed = gaussian_kl(mu, logvar)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    torch.testing.assert_close(closed, torch.distributions.kl_divergence(q, p).sum(1))  # peer
    z = q.sample((200_000,))
    monte_carlo = (q.log_prob(z) - p.log_prob(z)).sum(-1).mean(0)
    torch.testing.assert_close(monte_carlo, closed, atol=0.02, rtol=0.01)


def test_vae_importance_weighted_bound_is_tighter_than_the_elbo() -> None:
    vae = VAE(image_size=8, channels=1, latent_dim=2, hidden=(16,))
    x = torch.rand(5, 1, 8, 8) * 2 - 1
    g = torch.Generator().manual_seed(0)
    elbo = torch.stack([vae.elbo(x, g)["elbo"] for _ in range(200)]).mean(0)
    nll = vae.importance_weighted_nll(x, num_samples=64, generator=g)
    assert (-nll >= elbo - 1e-3).all()
    with pytest.raises(ValueError, match="model.image_size"):
        vae.elbo(torch.zeros(2, 1, 16, 16))


def test_full_size_parameter_counts_equal_the_reference_implementations() -> None:
    """At full size on the meta device: the pix2pix/CycleGAN authors' code prints 54.414 M (unet_256),
    2.769 M (basic 70x70 D on 6 channels), 11.378 M (resnet_9blocks), 2.765 M (basic D, 3 channels,
    instance norm); PyTorch's DCGAN example has 3,576,704 (G) and 2,765,568 (D) at 64x64, width 64."""
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    with torch.device("meta"):
        assert round(count(UNetGenerator(3, 3, 8, 64)) / 1e6, 3) == 54.414
        assert round(count(PatchGANDiscriminator(6, 70, 64, 256)) / 1e6, 3) == 2.769
        assert round(count(ResnetGenerator(3, 3, 64, 9)) / 1e6, 3) == 11.378
        assert round(count(PatchGANDiscriminator(3, 70, 64, 256, norm="instance")) / 1e6, 3) == 2.765
        assert count(DCGANGenerator(100, 64, 3, 64)) == 3_576_704
        assert count(DCGANDiscriminator(64, 3, 64)) == 2_765_568
