"""MAP denoising of a BSDS300 test crop with a trained grey RIDE as the prior (`ride.restoration.denoise_map`).

    RIDE_DATA=../shared/data python experiments/denoise.py --checkpoint models/bsds300_ride1_64.pt \
        --json runs/denoise.json --figure experiments/denoise.png

Clean image: the central `--crop` x `--crop` crop of BSDS300 test image `--image-id` (luma, 8 bits), put on the
[0,1) scale at the bin centres, x = (v + 0.5) / 256. For each sigma (in 8-bit units; sigma/255 on the [0,1) scale,
i.e. about sigma grey levels) Gaussian noise is added with a generator seeded by (seed, sigma index); the noisy
image is not clipped. MAP estimate: argmax ln p_RIDE(x) - |y - x|^2 / (2 sigma^2) by Adam from the noisy image
(`--steps`, `--lr`), clamped to [0,1). PSNR (peak 1) against the clean crop over all its pixels (the border pixels
the model never predicts included) and over the predicted pixels only. Baseline: a Gaussian blur (reflect padding)
whose width is chosen on a grid to maximise the PSNR on this very image against the clean crop (an oracle tuned on
the test image, so it flatters the baseline).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

import ride
from ride.data import BSDS300, load_image
from ride.model import RIDE
from ride.restoration import denoise_map, psnr
from ride.units import quantize


def gaussian_blur(images: Tensor, width: float) -> Tensor:
    """Separable Gaussian blur of [B, 1, H, W] with standard deviation `width` pixels, reflect padding."""
    radius = max(1, math.ceil(3 * width))
    t = torch.arange(-radius, radius + 1, dtype=images.dtype)
    kernel = torch.exp(-0.5 * (t / width) ** 2)
    kernel = kernel / kernel.sum()
    x = F.pad(images, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))
    return F.conv2d(x, kernel.view(1, 1, -1, 1))


def best_blur(noisy: Tensor, clean: Tensor) -> tuple[float, Tensor, float]:
    """(width, blurred [B, 1, H, W], PSNR in dB) of the Gaussian blur of best PSNR against `clean` (oracle)."""
    best = (0.0, noisy, float(psnr(noisy, clean).mean()))
    for width in np.arange(0.3, 3.01, 0.05):
        blurred = gaussian_blur(noisy, float(width))
        value = float(psnr(blurred, clean).mean())
        if value > best[2]:
            best = (float(width), blurred, value)
    return best


def inner_psnr(a: Tensor, b: Tensor, model: RIDE) -> float:
    """PSNR in dB over the pixels the model predicts (its top, left and right margins left out)."""
    top, left, right = model.margin
    w = a.shape[-1]
    return float(psnr(a[..., top:, left : w - right], b[..., top:, left : w - right]).mean())


def to_png(images: list[Tensor], labels: list[str], columns: int, path: str, zoom: int = 2) -> None:
    """Grid of [1, 1, H, W] images on [0,1), each enlarged `zoom` times (nearest), captioned, written to `path`."""
    from PIL import Image, ImageDraw

    h, w = (zoom * n for n in images[0].shape[-2:])
    gap, caption = 4, 14
    rows = math.ceil(len(images) / columns)
    canvas = Image.new("L", (columns * (w + gap) - gap, rows * (h + caption + gap) - gap), 255)
    draw = ImageDraw.Draw(canvas)
    for k, (img, label) in enumerate(zip(images, labels, strict=True)):
        r, c = divmod(k, columns)
        array = quantize(img[0, 0]).numpy()
        x0, y0 = c * (w + gap), r * (h + caption + gap)
        canvas.paste(Image.fromarray(array).resize((w, h), Image.NEAREST), (x0, y0))
        draw.text((x0 + 2, y0 + h + 1), label, fill=0)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def main() -> None:
    """Parse arguments, denoise at each sigma, print, write the figure and optionally JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default="models/bsds300_ride1_64.pt", help="a grey RIDE (or MCGSM) checkpoint")
    p.add_argument("--data-root", default=None, help="folder holding bsds300/ (default: $RIDE_DATA)")
    p.add_argument("--image-id", default="42049", help="BSDS300 test image id")
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--sigmas", type=float, nargs="+", default=[10.0, 25.0], help="noise std in 8-bit units")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--lr", type=float, default=0.005)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--figure", default="experiments/denoise.png")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    payload = ride.checkpoint.load_payload(args.checkpoint)
    model = ride.load(args.checkpoint)
    if not isinstance(model, RIDE) or model.config.num_channels != 1:
        raise SystemExit(f"{args.checkpoint}: expected a grey RIDE, found {type(model).__name__}")
    for param in model.parameters():
        param.requires_grad_(False)
    extra = payload.get("extra", {})
    source = BSDS300(args.data_root, "test")
    if args.image_id not in source.ids:
        raise SystemExit(f"{args.image_id} is not a BSDS300 test id")
    values = load_image(source.files[source.ids.index(args.image_id)])  # uint8 [1, H, W]
    _, h, w = values.shape
    top, left = (h - args.crop) // 2, (w - args.crop) // 2
    values = values[:, top : top + args.crop, left : left + args.crop]
    clean = ((values.float() + 0.5) / 256)[None]  # [1, 1, crop, crop]

    result = {"checkpoint": args.checkpoint, "checkpoint_sha256": hashlib.sha256(
        Path(args.checkpoint).read_bytes()).hexdigest()[:16], "model": type(model).__name__,
        "model_config": dict(vars(model.config)), "checkpoint_best_stage": extra.get("best_stage"),
        "checkpoint_val_bits_per_pixel": extra.get("val_bits_per_dim"), "image_id": args.image_id,
        "crop": [top, left, args.crop], "steps": args.steps, "lr": args.lr, "seed": args.seed, "sigmas": []}
    figures, labels = [], []
    for k, sigma8 in enumerate(args.sigmas):
        sigma = sigma8 / 255
        gen = torch.Generator().manual_seed(args.seed * 1000 + k)
        noisy = clean + sigma * torch.randn(clean.shape, generator=gen)
        width, blurred, blur_psnr = best_blur(noisy, clean)
        start = time.monotonic()
        estimate, history = denoise_map(model, noisy, sigma, num_steps=args.steps, lr=args.lr)
        seconds = time.monotonic() - start
        row = {"sigma_8bit": sigma8, "sigma": sigma, "seconds": seconds,
               "psnr_noisy": float(psnr(noisy, clean).mean()), "psnr_blur": blur_psnr, "blur_width_px": width,
               "psnr_map": float(psnr(estimate, clean).mean()),
               "psnr_noisy_predicted": inner_psnr(noisy, clean, model),
               "psnr_blur_predicted": inner_psnr(blurred, clean, model),
               "psnr_map_predicted": inner_psnr(estimate, clean, model),
               "objective_nats": {str(s): float(history[s, 0]) for s in range(0, args.steps + 1, 25)}}
        result["sigmas"].append(row)
        print(f"sigma {sigma8:g}/255: PSNR noisy {row['psnr_noisy']:.2f} dB, Gaussian blur (width {width:.2f} px, "
              f"tuned on this image) {blur_psnr:.2f} dB, RIDE MAP {row['psnr_map']:.2f} dB "
              f"({args.steps} Adam steps, {seconds:.0f} s); predicted pixels only: {row['psnr_noisy_predicted']:.2f} /"
              f" {row['psnr_blur_predicted']:.2f} / {row['psnr_map_predicted']:.2f} dB", flush=True)
        figures += [clean, noisy, blurred, estimate]
        labels += ["clean", f"noisy {sigma8:g}/255: {row['psnr_noisy']:.2f} dB", f"Gaussian blur: {blur_psnr:.2f} dB",
                   f"RIDE MAP: {row['psnr_map']:.2f} dB"]
    to_png(figures, labels, 4, args.figure)
    print(f"wrote {args.figure}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
