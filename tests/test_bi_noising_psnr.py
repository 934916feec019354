"""Bi-noising vs plain SR3 sampling on a tiny colourisation model (thesis 001 Ch. 8, Table 8.1's direction).

A measured comparison, not a reproduction: f_phi (colourisation, L_simple) and eps_theta (unconditional,
L_simple on the same clean crops) are tiny ADM UNets trained for a few dozen steps on the embedded photo
crops (16x16); both samplers run the same 10 DDPM steps with clipping on the same validation conditions and
seeds. The PSNRs are printed; only the direction (bi-noising above SR3) is asserted.
"""
from __future__ import annotations

import time

import pytest
import torch

from datamodules._common import collate_dicts
from datamodules.bi_noising import BiNoisingDataModule
from lightning_modules.bi_noising import BiNoisingRestoration, ConditionalADMUNet
from lightning_modules.components.adm_unet import ADMUNet
from metrics.image_quality import PeakSignalNoiseRatio

TINY = dict(model_channels=16, num_res_blocks=1, attention_ds=(), channel_mult=(1, 2), num_head_channels=-1,
            num_heads=1, norm_num_groups=8)


def _train(seed: int, steps: int) -> tuple[BiNoisingRestoration, dict]:
    torch.manual_seed(seed)
    data = BiNoisingDataModule(task="colorization", size=16, photos=["astronaut", "coffee", "chelsea", "rocket"],
                               crops_per_image=16, val_crops_per_image=4, batch_size=16, seed=seed)
    data.setup()
    module = BiNoisingRestoration(ConditionalADMUNet(**TINY), prior=ADMUNet(**TINY), image_size=16, num_sampling_steps=10)
    prior = module.prior.requires_grad_(True).train()  # trained here in-process, then frozen
    opt_f = torch.optim.AdamW(module.network.parameters(), lr=2e-3)
    opt_p = torch.optim.AdamW(prior.parameters(), lr=2e-3)
    batches = iter([])
    for _ in range(steps):
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(data.train_dataloader())
            batch = next(batches)
        module.network.train()
        loss = module.losses(batch)["total"].mean()
        opt_f.zero_grad(), loss.backward(), opt_f.step()
        y0 = batch["image"]
        t, noise = module.time_sampler(y0.shape[0], y0.device), torch.randn_like(y0)
        prior_loss = (prior(module.path.add_noise(y0, noise, t), module.path.network_time(t)) - noise).pow(2).mean()
        opt_p.zero_grad(), prior_loss.backward(), opt_p.step()
    prior.requires_grad_(False)
    module.eval()
    val = collate_dicts([data.val_dataset[i] for i in range(len(data.val_dataset))])
    return module, val


def _psnr(module: BiNoisingRestoration, val: dict, sampler: str) -> float:
    values = []
    for seed in range(2):
        out = module.restore(val["condition"], sampler=sampler, generator=torch.Generator().manual_seed(seed))
        metric = PeakSignalNoiseRatio()
        metric.update(out, val["image"])
        values.append(float(metric.compute()))
    return sum(values) / len(values)


@pytest.mark.slow
def test_bi_noising_beats_sr3_on_psnr_for_a_tiny_colourisation_model() -> None:
    start = time.perf_counter()
    module, val = _train(seed=0, steps=60)
    sr3, binoise = _psnr(module, val, "sr3"), _psnr(module, val, "bi_noising")
    print(f"tiny colourisation, 60 steps, {len(val['name'])} crops: PSNR SR3 {sr3:.2f} dB, bi-noising {binoise:.2f} dB "
          f"({time.perf_counter() - start:.1f} s)")
    assert binoise > sr3
