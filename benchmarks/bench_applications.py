"""Application speed benchmark: sampling and inpainting with the default RIDE.

    python benchmarks/bench_applications.py            # 256x256 samples, raster reference included (a few min)
    python benchmarks/bench_applications.py --quick    # 64x64 samples, one timed sweep (smoke run)

Measures, for the default RIDE (1 layer, 64 hidden units, nb_size 5, float32; preconditioner fitted on dead leaves,
the other weights at their initial values, which does not change the cost):
1. sampling one 256x256 image: the skewed front (one batched step per front, on `front.SkewedFront`) against the
   plain front loop it replaced (`order="front_reference"`, the baseline, same run) and raster order (one pixel per
   step), seconds per image and the speed-ups;
2. inpainting a 71x71 hole in the middle of a 128x128 image: seconds for the initialisation (best of 5 ancestral
   fills), seconds per Metropolis-within-Gibbs sweep (5x5 blocks, stride 3, 19x19 windows: 529 block proposals in
   16 batched steps), seconds per MAP gradient step.
Fast paths are timed as the best of several repeats after a warm-up; the raster reference once.
"""

from __future__ import annotations

import argparse
import json
import platform

import torch
from timing import best_time, once  # benchmarks/timing.py

from ride import RIDE, dead_leaves_images, dequantize
from ride import inpainting as inp
from ride.runtime import keep_freed_memory, resolve_device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="64x64 samples, one timed sweep (smoke run)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu", help="default cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    keep_freed_memory()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)

    sample_size = 64 if args.quick else 256
    repeats = 1 if args.quick else 3
    model = RIDE()
    data = dequantize(dead_leaves_images(4, 512, seed=7)[:, None], gen)
    model.fit_preconditioner(data, 200_000, gen)
    model = model.to(device).eval()
    data = data.to(device)
    results: dict[str, float | str] = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "torch": torch.__version__,
        "sample_size": sample_size,
    }

    # 1. sampling one image
    canvas = data[:1, :, :sample_size, :sample_size].contiguous()
    t_front = best_time(lambda: model.sample(canvas, generator=torch.Generator().manual_seed(1)), repeats)
    t_plain = best_time(lambda: model.sample(canvas, generator=torch.Generator().manual_seed(1),
                                             order="front_reference"), repeats)
    t_raster = once(lambda: model.sample(canvas, generator=torch.Generator().manual_seed(1), order="raster"))
    results.update(sample_front_s=t_front, sample_front_reference_s=t_plain, sample_raster_s=t_raster,
                   sample_speedup=t_raster / t_front, sample_front_speedup=t_plain / t_front)
    print(f"sampling one {sample_size}x{sample_size} image ({results['device']}):")
    print(f"  front            {t_front:8.3f} s")
    print(f"  front_reference  {t_plain:8.3f} s   (the plain front loop; front is {t_plain / t_front:.2f}x faster)")
    print(f"  raster           {t_raster:8.3f} s   speed-up {t_raster / t_front:.1f}x")

    # 2. inpainting a 71x71 hole in a 128x128 image
    image = data[:1, :, 100:228, 100:228].contiguous()
    mask = torch.zeros(128, 128, dtype=torch.bool, device=device)
    mask[28:99, 28:99] = True
    t_init = best_time(lambda: inp.initialize(model, image, mask, 5, torch.Generator().manual_seed(2)), repeats)
    start = inp.initialize(model, image, mask, 5, torch.Generator().manual_seed(2))
    plan = inp._make_plan(model, mask, 5, 3, 19)
    num_blocks = sum(len(g.crop_rows) for g in plan.groups)
    stats: list[inp.SweepStats] = []

    def sweeps(n: int) -> None:
        _, s = inp.inpaint_mcmc(model, image, mask, n, torch.Generator().manual_seed(3), init=start)
        stats.extend(s)

    sweeps(1)  # warm-up
    n_sweeps = 1 if args.quick else 3
    t_sweep = once(lambda: sweeps(n_sweeps)) / n_sweeps
    n_steps = 10 if args.quick else 30
    t_map = once(lambda: inp.inpaint_map(model, image, mask, n_steps, init=start)) / n_steps
    acceptance = sum(s.acceptance_rate for s in stats[1:]) / max(len(stats) - 1, 1)
    results.update(inpaint_init_s=t_init, inpaint_sweep_s=t_sweep, inpaint_blocks_per_sweep=num_blocks,
                   inpaint_batched_steps_per_sweep=len(plan.groups), inpaint_acceptance=acceptance,
                   inpaint_map_step_s=t_map)
    print("inpainting a 71x71 hole in a 128x128 image:")
    print(f"  initialisation (best of 5 ancestral fills)  {t_init:8.3f} s")
    print(f"  Metropolis-within-Gibbs sweep                {t_sweep:8.3f} s   ({num_blocks} blocks in "
          f"{len(plan.groups)} batched steps, acceptance {acceptance:.2f})")
    print(f"  MAP gradient step                            {t_map:8.3f} s")
    print(f"machine: {results['machine']}, torch {torch.__version__}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
