"""The real-set statistics of CFLD's FID protocol: all DeepFashion *training* images at the evaluation size.

CFLD/PIDM/NTED compute FID between the 8,570 generated test images and every training image
(``train_highres``) resized to 256x176 or 512x352 (digest 002-003 A8), with torchvision's
Inception-v3 (IMAGENET1K_V1) pool features. This writes those statistics once as ``.npz``
(``mu``, ``sigma``, ``count``), the file the EvaluationCallback's ``reference_statistics: {FID: ...}`` points to
(configs/cfld.yaml, read at ``test`` start only):

    python -m lightning_modules.cfld.fid_reference --root data/deepfashion --size 256 176 \\
        --inception pretrained/inception_v3_google-0cc3c7bd.pth --out pretrained/cfld_fid_train_256x176.npz
"""
from __future__ import annotations

import argparse
from typing import Optional, Sequence

import torch

from datamodules.deepfashion import DeepFashionDataModule
from lightning_modules.cfld.module import quantise
from metrics.fid import FrechetInceptionDistance


@torch.no_grad()
def write_fid_reference(
    root: str,
    size: Sequence[int],
    out: str,
    metric: Optional[FrechetInceptionDistance] = None,
    inception_weights: Optional[str] = None,
    batch_size: int = 32,
    num_workers: int = 4,
    device: str = "cpu",
) -> int:
    """Stream the training images (uint8-quantised like the generated ones) into ``metric``; save; return the count."""
    if metric is None:
        from metrics.inception import TorchvisionInceptionFeatures

        metric = FrechetInceptionDistance(TorchvisionInceptionFeatures(inception_weights), reset_real_features=False)
    metric = metric.to(device)
    data = DeepFashionDataModule(root=root, target_eval_size=tuple(size), batch_size=batch_size, num_workers=num_workers)
    count = 0
    for batch in data.fid_real_dataloader():
        images = quantise(batch["image"].to(device))
        metric.update(images, real=True)
        count += images.shape[0]
    metric.save_real_statistics(out)
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="DeepFashion folder (train_highres/ inside)")
    parser.add_argument("--size", type=int, nargs=2, default=(256, 176), metavar=("H", "W"))
    parser.add_argument("--inception", required=True, help="torchvision inception_v3_google-0cc3c7bd.pth")
    parser.add_argument("--out", required=True)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-workers", type=int, default=4)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    count = write_fid_reference(args.root, args.size, args.out, inception_weights=args.inception,
                                batch_size=args.batch_size, num_workers=args.num_workers, device=args.device)
    print(f"FID reference of {count} training images at {args.size[0]}x{args.size[1]} -> {args.out}")


if __name__ == "__main__":
    main()
