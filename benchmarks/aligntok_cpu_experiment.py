"""AlignTok's claim at CPU scale (thesis 000, Ch. 7, Table 7.3): does a tokenizer aligned from an encoder
give a latent space that a DiT learns faster than a vanilla VAE's?

Steps (all random-init, embedded data; NOT part of the test suite, ~10-20 min on 2 cores):

1. train the tiny AlignTok tokenizer of ``configs/tiny/aligntok_stage*.yaml`` through stages 1, 2, 3
   (stage 2 with L_sp against the frozen stage-1 encoder+adapter) on the bundled photo crops at 64 px;
2. train a vanilla tiny KL-VAE with the same latent shape (8 x 4 x 4), the same decoder and the same
   reconstruction loss (L1 + LPIPS) plus KL 1e-6, for the same total number of steps;
3. train the same tiny LightningDiT with flow matching on each latent space (normalised per channel)
   for the same number of steps, class-conditional on the 8 photos;
4. report rPSNR and gFID (TF-Inception, Euler 30 steps, CFG 1) of both; rows are written to
   ``results/aligntok_cpu_experiment.jsonl`` with ``data: embedded`` and ``weights: random``.

Caveat, stated in every row: with no pretrained DINOv2 on the machine the "foundation encoder" is a
randomly initialised ViT, so this compares *architectures and training recipes* (ViT + adapter,
deterministic latent, semantic-preservation stage) against a CNN KL-VAE, not the paper's
pretrained-feature claim. The GAN term is off in both (too slow and unstable at this scale).

    python -m benchmarks.aligntok_cpu_experiment [--tok_steps 300 200 100] [--dit_steps 1500] [--samples 256]
"""
from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from datamodules.imagenet import ImageNetDataModule
from lightning_modules.aligntok import AlignTokDiT, AlignTokModule, AlignTokenizer, LightningDiT, PatchDiscriminator
from lightning_modules.aligntok.module import psnr
from lightning_modules.aligntok.tokenizer import build_decoder
from metrics.fid import FrechetInceptionDistance
from metrics.results_rows import ResultRow, append_rows, git_commit, utc_now

ENCODER = {"model_name": "vit_small_patch14_dinov2", "model_kwargs": {"embed_dim": 64, "depth": 4, "num_heads": 4, "img_size": 56}}
DECODER = {"block_out_channels": [16, 16, 32, 32, 64], "layers_per_block": 1, "norm_num_groups": 8, "attention_levels": 1}
LATENT = 8


class TinyKLVAE(nn.Module):
    """Vanilla VAE baseline: diffusers' LDM conv ``Encoder`` (x16 down, mean+logvar) + the same decoder."""

    def __init__(self) -> None:
        super().__init__()
        from diffusers.models.autoencoders.vae import Encoder

        self.encoder = Encoder(in_channels=3, out_channels=LATENT, down_block_types=("DownEncoderBlock2D",) * 5,
                               block_out_channels=(16, 16, 32, 32, 64), layers_per_block=1, norm_num_groups=8,
                               double_z=True)
        self.decoder = build_decoder(LATENT, DECODER)

    def moments(self, x):
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-30, 20)

    def encode(self, x):  # the mean, as LightningDiT's latent extraction of VA-VAE does
        return self.moments(x)[0]

    def decode(self, z):
        return self.decoder(z)


def batches(data: ImageNetDataModule):
    while True:
        yield from data.train_dataloader()


def train_tokenizer(data, steps, lr, log_every=50):
    tok = AlignTokenizer(encoder=ENCODER, adapter_hidden=32, latent_channels=LATENT, decoder=DECODER)
    stream = batches(data)
    module = None
    for stage, n in zip((1, 2, 3), steps):
        module = AlignTokModule(tok, stage=stage, discriminator=PatchDiscriminator(3, 16, 2), lpips_net="alex",
                                gan_start_step=10**9, lr=lr)
        module.train()
        opt = torch.optim.Adam(module.trainable_parameters(), lr=lr if stage != 2 else lr / 10, betas=(0.5, 0.9))
        for i in range(n):
            losses = module.generator_losses(next(stream)["image"], gan_on=False)
            opt.zero_grad()
            losses["loss"].backward()
            opt.step()
            if i % log_every == 0:
                extra = f" sp {losses['sp_loss']:.5f}" if "sp_loss" in losses else ""
                print(f"  tokenizer stage {stage} step {i}: l1 {losses['l1']:.4f} lpips {losses['lpips']:.4f}{extra}", flush=True)
        tok = module.tokenizer
    return tok.eval()


def train_vae(data, steps, lr, log_every=100):
    vae = TinyKLVAE()
    from metrics.perceptual import LPIPSNetwork

    lpips = LPIPSNetwork("alex").requires_grad_(False).eval()
    opt = torch.optim.Adam(vae.parameters(), lr=lr, betas=(0.5, 0.9))
    stream = batches(data)
    for i in range(steps):
        x = next(stream)["image"]
        mean, logvar = vae.moments(x)
        z = mean + (0.5 * logvar).exp() * torch.randn_like(mean)
        recon = vae.decode(z)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).sum(dim=(1, 2, 3)).mean()
        loss = (recon - x).abs().mean() + lpips(recon, x).mean() + 1e-6 * kl
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i % log_every == 0:
            print(f"  vae step {i}: loss {loss.item():.4f} kl {kl.item():.1f}", flush=True)
    return vae.eval()


@torch.no_grad()
def encode_all(model, loader):
    latents, labels, images = [], [], []
    for batch in loader:
        latents.append(model.encode(batch["image"]))
        labels.append(batch["label"])
        images.append(batch["image"])
    return torch.cat(latents), torch.cat(labels), torch.cat(images)


def train_dit(latents, labels, steps, batch_size, tokenizer, seed=0):
    torch.manual_seed(seed)
    mean = latents.mean(dim=(0, 2, 3))
    std = latents.std(dim=(0, 2, 3))
    net = LightningDiT(in_channels=LATENT, input_size=4, hidden_size=128, depth=4, num_heads=4, num_classes=8)
    module = AlignTokDiT(net, tokenizer=tokenizer, num_classes=8, sample_shape=(LATENT, 4, 4), num_sampling_steps=30)
    module.latent_mean.copy_(mean.view(1, -1, 1, 1))
    module.latent_std.copy_(std.view(1, -1, 1, 1))
    module.train()
    opt = torch.optim.AdamW(module.trainable_parameters(), lr=2e-4, betas=(0.9, 0.95), weight_decay=0.0)
    data = module.normalise(latents)
    for i in range(steps):
        idx = torch.randint(0, len(data), (batch_size,))
        loss = module.diffusion_loss(data[idx], module.drop_labels(labels[idx])).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i % 250 == 0:
            print(f"  dit step {i}: loss {loss.item():.4f}", flush=True)
    return module.eval()


@torch.no_grad()
def gfid(module, real, num_samples, seed=0):
    fid = FrechetInceptionDistance("inception")
    for start in range(0, len(real), 64):
        fid.update(real[start:start + 64], real=True)
    generator = torch.Generator().manual_seed(seed)
    for start in range(0, num_samples, 64):
        n = min(64, num_samples - start)
        labels = torch.arange(start, start + n) % 8
        images = module.sample(n, labels=labels, generator=generator)  # decoded by the frozen tokenizer/VAE
        fid.update(images, real=False)
    return float(fid.compute())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tok_steps", type=int, nargs=3, default=[300, 200, 100])
    parser.add_argument("--dit_steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--real", type=int, default=256, help="real train crops for the FID reference")
    parser.add_argument("--results", default="results/aligntok_cpu_experiment.jsonl")
    args = parser.parse_args()
    torch.manual_seed(0)
    data = ImageNetDataModule(root=None, size=64, crops_per_image=64, val_crops_per_image=32,
                              batch_size=args.batch, crop="random", hflip=True)
    data.setup()
    eval_data = ImageNetDataModule(root=None, size=64, crops_per_image=64, val_crops_per_image=32,
                                   batch_size=64, crop="center")
    eval_data.setup()
    start = time.time()
    print("== AlignTok tokenizer (stages 1-3)")
    tok = train_tokenizer(data, args.tok_steps, args.lr)
    print("== vanilla KL-VAE")
    vae = train_vae(data, sum(args.tok_steps), args.lr)
    train_loader = eval_data.train_dataloader()
    rows = []
    for name, model in (("aligntok_tiny", tok), ("vanilla_vae_tiny", vae)):
        latents, labels, images = encode_all(model, train_loader)
        _, _, val_images = encode_all(model, eval_data.val_dataloader())
        with torch.no_grad():
            rec_psnr = float(psnr(model.decode(model.encode(val_images)).clamp(-1, 1), val_images).mean())
        print(f"== DiT on {name} latents (rPSNR {rec_psnr:.2f} dB)")
        dit = train_dit(latents, labels, args.dit_steps, args.batch * 4, model)
        value = gfid(dit, images[: args.real], args.samples)
        print(f"{name}: gFID {value:.2f} (rPSNR {rec_psnr:.2f})", flush=True)
        for metric, v, evaluator in (("gfid", value, "TF-Inception FID vs train crops"), ("psnr", rec_psnr, "psnr")):
            rows.append(ResultRow(
                paper="aligntok", method=name, dataset="embedded skimage photos (8 classes)",
                split="train" if metric == "gfid" else "val",
                resolution="64", num_samples=args.samples if metric == "gfid" else len(val_images),
                nfe=30 if metric == "gfid" else None, guidance=1.0 if metric == "gfid" else None,
                metric=metric, value=v, evaluator=evaluator, config="benchmarks/aligntok_cpu_experiment.py",
                commit=git_commit(), date=utc_now(), weights="random", data="embedded",
                extra={"comparison": "embedded-data / random-init comparison", "tok_steps": args.tok_steps,
                       "dit_steps": args.dit_steps, "note": "random-init ViT stands in for DINOv2"},
            ))
    append_rows(args.results, rows)
    print(f"rows -> {args.results}; total {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
