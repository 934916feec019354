"""AlignTok performance: tiny tokenizer (stages 1-3) and tiny DiT training steps/s and peak memory.

Builds the modules of ``configs/tiny/aligntok_*.yaml`` (random weights) and times full training
steps (generator forward/backward/Adam step + discriminator step for the tokenizer; DiT
forward/backward/AdamW step), after warm-up, median over repeats, all in this one run. Peak
memory: ``torch.cuda.max_memory_allocated`` on a GPU, the process's peak RSS on the CPU.
``--full`` times the full-size models instead (ViT-L/14 tokenizer at 256 px, LightningDiT-XL/1
on 16x16x32 latents) in bf16 autocast; meant for a GPU.

    python -m benchmarks.perf_aligntok [--steps 20] [--device cpu] [--full] [--batch 4]
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time
from pathlib import Path

import torch
import yaml

from lightning_modules.aligntok import AlignTokDiT, AlignTokModule, AlignTokenizer, LightningDiT, PatchDiscriminator
from lightning_modules.aligntok.losses import generator_loss, hinge_d_loss

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def tiny_tokenizer_args() -> dict:
    overlay = yaml.safe_load((CONFIGS / "tiny" / "aligntok_stage1.yaml").read_text())
    return overlay["model"]["init_args"]["tokenizer"]["init_args"]


def full_tokenizer_args() -> dict:
    config = yaml.safe_load((CONFIGS / "aligntok_stage1.yaml").read_text())
    args = config["model"]["init_args"]["tokenizer"]["init_args"]
    args["encoder"] = {"model_name": args["encoder"]["model_name"], "pretrained_path": None}
    return args


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_steps(step, steps: int, warmup: int, device: torch.device) -> float:
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def tokenizer_step_fn(stage: int, full: bool, batch: int, device: torch.device, amp: bool):
    args = full_tokenizer_args() if full else tiny_tokenizer_args()
    disc = PatchDiscriminator() if full else PatchDiscriminator(3, 8, 2)
    module = AlignTokModule(AlignTokenizer(**args), stage=stage, discriminator=disc,
                            lpips_net="vgg" if full else "alex", gan_start_step=0).to(device)
    module.train()
    size = 256 if full else 64
    images = torch.rand(batch, 3, size, size, device=device) * 2 - 1
    opt_g = torch.optim.Adam(module.trainable_parameters(), lr=1e-4, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(module.discriminator.parameters(), lr=1e-4, betas=(0.5, 0.9))

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            losses = module.generator_losses(images, gan_on=True)
        opt_g.zero_grad(set_to_none=True)
        losses["loss"].backward()
        opt_g.step()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            d_loss = hinge_d_loss(module.discriminator(images), module.discriminator(losses["recon"]))
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()

    trainable = sum(p.numel() for p in module.trainable_parameters())
    return step, trainable


def dit_step_fn(full: bool, batch: int, device: torch.device, amp: bool):
    if full:
        net = LightningDiT(in_channels=32, input_size=16, size="XL", num_classes=1000)
        shape = (32, 16, 16)
    else:
        overlay = yaml.safe_load((CONFIGS / "tiny" / "aligntok_dit.yaml").read_text())
        args = overlay["model"]["init_args"]["network"]["init_args"]
        net = LightningDiT(**{k: v for k, v in args.items() if k != "size"})
        shape = (args["in_channels"], args["input_size"], args["input_size"])
    module = AlignTokDiT(net, num_classes=net.num_classes, sample_shape=shape).to(device)
    module.train()
    latents = torch.randn(batch, *shape, device=device)
    labels = torch.randint(0, net.num_classes, (batch,), device=device)
    opt = torch.optim.AdamW(module.trainable_parameters(), lr=2e-4, betas=(0.9, 0.95))

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = module.diffusion_loss(latents, module.drop_labels(labels)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step, sum(p.numel() for p in net.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--full", action="store_true", help="full-size models (GPU), bf16 autocast")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (1: stable on a shared 2-core machine)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    amp = args.full
    torch.manual_seed(0)
    print(f"AlignTok perf ({'full size, bf16' if args.full else 'tiny configs, fp32'}; device {device}; "
          f"batch {args.batch}; threads {torch.get_num_threads()})")
    print(f"{'part':<22}{'trainable':>12}{'s/step':>10}{'steps/s':>10}{'peak MB':>10}")
    for name, build in [
        ("tokenizer stage 1", lambda: tokenizer_step_fn(1, args.full, args.batch, device, amp)),
        ("tokenizer stage 2", lambda: tokenizer_step_fn(2, args.full, args.batch, device, amp)),
        ("tokenizer stage 3", lambda: tokenizer_step_fn(3, args.full, args.batch, device, amp)),
        ("LightningDiT" + ("-XL/1" if args.full else " tiny"), lambda: dit_step_fn(args.full, args.batch, device, amp)),
    ]:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        step, trainable = build()
        seconds = time_steps(step, args.steps, args.warmup, device)
        print(f"{name:<22}{trainable / 1e6:>11.3f}M{seconds:>10.4f}{1 / seconds:>10.2f}{peak_memory_mb(device):>10.0f}")
        del step
    print("CPU peak memory is the process's peak RSS so far (it only grows); GPU peak is per part.")


if __name__ == "__main__":
    main()
