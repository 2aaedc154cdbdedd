"""Core speed benchmark: fast paths against their plain references, run in the same process.

    python benchmarks/bench_core.py            # the issue's three measurements, default model (about 2 min)
    python benchmarks/bench_core.py --quick    # smaller sizes, for a smoke run

Measures, for the default RIDE (1 layer, 64 hidden units, nb_size 5, float32):
1. training step (forward + backward of the mean NLL) on 32 patches of 64x64: anti-diagonal sweep vs the batched
   raster-loop reference, in pixels/s; the achieved FLOP/s of the sweep under the design §12 cost model, as a
   fraction of a same-run matrix-product rate;
2. log_prob_pixels of one 321x481 image (batch 1, no grad): sweep vs raster reference;
3. sampling one 256x256 image: skewed front vs raster-order sampling.
Fast paths are timed as the best of several repeats after a warm-up; references once (they take seconds).
"""

from __future__ import annotations

import argparse
import json
import math
import platform

import torch
from timing import best_time, once  # benchmarks/timing.py

from ride import RIDE, dead_leaves_images, dequantize
from ride.runtime import keep_freed_memory


def matmul_rate(n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of a float32 n x n matrix product, best of `repeats`."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / best_time(lambda: a @ b, repeats)


def slstm_train_flops_per_pixel(model: RIDE) -> float:
    """Spec §12: forward 2*5*D*(K_in + 2D) + 40*D per pixel and layer; training about 3x forward."""
    d = model.config.num_hiddens
    return 3 * sum(2 * 5 * d * (layer.input_size + 2 * d) + 40 * d for layer in model.layers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller problems (smoke run)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--default-malloc", action="store_true",
                        help="leave glibc malloc as it is (the CLI, and by default this script, keep freed memory)")
    args = parser.parse_args()
    malloc_tuned = False if args.default_malloc else keep_freed_memory()
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)

    batch, patch = (8, 32) if args.quick else (32, 64)
    big = (64, 96) if args.quick else (321, 481)
    sample_size = 48 if args.quick else 256

    # A default model with its preconditioner fitted on dead leaves (realistic inputs, finite densities).
    model = RIDE()
    data = dequantize(dead_leaves_images(4, 512, seed=7)[:, None], gen)
    model.fit_preconditioner(data, 200_000, gen)
    patches = data[:, :, :256, :256].unfold(2, patch, patch).unfold(3, patch, patch).reshape(-1, 1, patch, patch)
    patches = patches[:batch].contiguous()
    image = data[:1, :, : big[0], : big[1]].contiguous()
    canvas = data[:1, :, :sample_size, :sample_size].contiguous()
    results: dict[str, float | str] = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
        "torch": torch.__version__,
        "keep_freed_memory": malloc_tuned,
    }

    # 1. training step
    def train_step(impl: str) -> None:
        model.zero_grad(set_to_none=True)
        loss = -model.log_prob_pixels(patches, impl=impl).mean()
        loss.backward()

    pixels = patches.shape[0] * math.prod(model.neighbourhood.grid_shape(patch, patch))
    t_fast = best_time(lambda: train_step("sweep"), 3)
    t_ref = once(lambda: train_step("raster"))
    rate = matmul_rate()
    flops = slstm_train_flops_per_pixel(model) * pixels / t_fast
    results.update(train_pixels=pixels, train_sweep_s=t_fast, train_raster_s=t_ref,
                   train_sweep_px_per_s=pixels / t_fast, train_raster_px_per_s=pixels / t_ref,
                   train_speedup=t_ref / t_fast, matmul_flops=rate, sweep_flops=flops,
                   sweep_flops_fraction=flops / rate)
    print(f"training step, {batch} patches of {patch}x{patch} ({pixels} predicted pixels):")
    print(f"  sweep   {t_fast:8.3f} s   {pixels / t_fast:10.0f} px/s")
    print(f"  raster  {t_ref:8.3f} s   {pixels / t_ref:10.0f} px/s   speed-up {t_ref / t_fast:.1f}x")
    print(f"  SLSTM cost model (design §12): {flops / 1e9:.1f} GFLOP/s = {flops / rate:.1%} of the same-run "
          f"{rate / 1e9:.0f} GFLOP/s 2048^2 float32 matmul")

    # 2. log_prob_pixels of one large image
    with torch.no_grad():
        t_fast = best_time(lambda: model.log_prob_pixels(image, impl="sweep"), 3)
        t_ref = once(lambda: model.log_prob_pixels(image, impl="raster"))
        lp = model.log_prob_pixels(image)
    results.update(logprob_sweep_s=t_fast, logprob_raster_s=t_ref, logprob_speedup=t_ref / t_fast,
                   logprob_finite=bool(torch.isfinite(lp).all()))
    print(f"log_prob_pixels, one {big[0]}x{big[1]} image:")
    print(f"  sweep   {t_fast:8.3f} s\n  raster  {t_ref:8.3f} s   speed-up {t_ref / t_fast:.1f}x")

    # 3. sampling one image
    t_fast = best_time(lambda: model.sample(canvas, generator=torch.Generator().manual_seed(1)), 2)
    t_ref = once(lambda: model.sample(canvas, generator=torch.Generator().manual_seed(1), order="raster"))
    results.update(sample_front_s=t_fast, sample_raster_s=t_ref, sample_speedup=t_ref / t_fast)
    print(f"sampling one {sample_size}x{sample_size} image:")
    print(f"  front   {t_fast:8.3f} s\n  raster  {t_ref:8.3f} s   speed-up {t_ref / t_fast:.1f}x")
    print(f"machine: {results['machine']}, torch {torch.__version__}, glibc keeps freed memory: {malloc_tuned}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
