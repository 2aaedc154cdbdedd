"""Core speed benchmark: fast paths against their plain references, run in the same process.

    python benchmarks/bench_core.py                # all measurements, default model, 1 thread (about 3 min)
    python benchmarks/bench_core.py --train-only   # only the trainer's step (1), about 20 s
    python benchmarks/bench_core.py --quick        # smaller sizes, for a smoke run

Measures, for the default RIDE (1 layer, 64 hidden units, nb_size 5, float32), on `--threads` torch threads:
1. the trainer's step: forward + backward of the mean NLL on a batch of `TrainConfig.batch_size` (50) patches of
   the curriculum's sizes (16 and its last, 22; and 32), as `ride train` runs it. Reported: step time, predicted
   pixels/s, and the achieved FLOP/s under the design §12 cost model (which counts the spatial LSTM only) as a
   fraction of two same-run float32 GEMM rates: a GEMM of the LSTM's own shape, [N x (K_in + 2D)] @
   [(K_in + 2D) x 5D] with N = batch x the cells of the longest anti-diagonal (the sweep's products), and the
   2048 x 2048 product. Also the share of the step in the MCGSM (forward + backward on the same hidden states),
   which the cost model does not count, and the same step with torch's element-wise passes instead of the compiled
   loops of `ride.sweep_kernels` and `ride.mcgsm_kernels` (the baseline of those, in the same process);
2. training step on 32 patches of 64x64: anti-diagonal sweep vs the batched raster-loop reference, in pixels/s;
3. log_prob_pixels of one 321x481 image (batch 1, no grad): sweep vs raster reference;
4. sampling one 256x256 image: skewed front vs raster-order sampling.
Fast paths are timed as the best of several repeats after a warm-up; references once (they take seconds).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
from typing import Any

import torch
from timing import best_time, once  # benchmarks/timing.py

from ride import RIDE, dead_leaves_images, dequantize, mcgsm_kernels, sweep_kernels
from ride.neighbourhood import extract_pairs
from ride.runtime import keep_freed_memory, set_threads
from ride.train.config import TrainConfig


def matmul_rate(n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of a float32 n x n matrix product, best of `repeats`."""
    return gemm_rate(n, n, n, repeats)


def gemm_rate(m: int, k: int, n: int, repeats: int) -> float:
    """FLOP/s of a float32 [m x k] @ [k x n] product into a preallocated output, best of `repeats`."""
    a, b, out = torch.randn(m, k), torch.randn(k, n), torch.empty(m, n)
    return 2 * m * k * n / best_time(lambda: torch.mm(a, b, out=out), repeats)


def slstm_train_flops_per_pixel(model: RIDE) -> float:
    """Spec §12: forward 2*5*D*(K_in + 2D) + 40*D per pixel and layer; training about 3x forward."""
    d = model.config.num_hiddens
    return 3 * sum(2 * 5 * d * (layer.input_size + 2 * d) + 40 * d for layer in model.layers)


def trainer_step_at(model: RIDE, patches: torch.Tensor, repeats: int) -> dict[str, Any]:
    """Times of one trainer step on patches [B, 1, P, P] and of its MCGSM part, with the GEMM reference."""
    d, k_in = model.config.num_hiddens, model.layers[0].input_size
    hp, wp = model.neighbourhood.grid_shape(patches.shape[2], patches.shape[3])
    pixels = patches.shape[0] * hp * wp

    def step() -> None:  # what the trainer does: ImageTask.nll, then backward
        model.zero_grad(set_to_none=True)
        loss = -model.log_prob_pixels(patches).mean()
        loss.backward()

    t_step = best_time(step, repeats)
    # the same step with torch's element-wise passes instead of the compiled loops of `ride.sweep_kernels` and
    # `ride.mcgsm_kernels` (the path before them, and the one without numba or with several threads)
    real = sweep_kernels.usable, mcgsm_kernels.usable
    try:
        sweep_kernels.usable = mcgsm_kernels.usable = lambda t: False
        t_torch_passes = best_time(step, repeats)
    finally:
        sweep_kernels.usable, mcgsm_kernels.usable = real
    t_step = min(t_step, best_time(step, repeats))
    # the MCGSM's part: forward + backward of the same mean NLL on the (detached) hidden states
    with torch.no_grad():
        x, y = model.preconditioner(*extract_pairs(patches, model.neighbourhood))
        hidden = model.hidden_states(x).reshape(-1, d)
    hidden.requires_grad_(True)

    def mcgsm_step() -> None:
        model.zero_grad(set_to_none=True)
        hidden.grad = None
        (-model.mcgsm.log_prob_unchecked(hidden, y.reshape(-1, 1)).mean()).backward()

    t_mcgsm = best_time(mcgsm_step, repeats)
    real_mcgsm = mcgsm_kernels.usable
    try:
        mcgsm_kernels.usable = lambda t: False
        t_mcgsm_torch = best_time(mcgsm_step, repeats)
    finally:
        mcgsm_kernels.usable = real_mcgsm
    t_mcgsm = min(t_mcgsm, best_time(mcgsm_step, repeats))
    n_rows = patches.shape[0] * min(hp, wp)  # cells of the longest anti-diagonal, all patches
    rate_lstm = gemm_rate(n_rows, k_in + 2 * d, 5 * d, 20 * repeats)
    flops = slstm_train_flops_per_pixel(model) * pixels / t_step
    return {"patch": patches.shape[2], "pixels": pixels, "step_s": t_step, "px_per_s": pixels / t_step,
            "cost_model_flops": flops, "lstm_gemm_rows": n_rows, "lstm_gemm_flops": rate_lstm,
            "fraction_of_lstm_gemm": flops / rate_lstm, "mcgsm_s": t_mcgsm, "mcgsm_share": t_mcgsm / t_step,
            "compiled_loops": real[0](patches), "torch_passes_step_s": t_torch_passes,
            "mcgsm_torch_passes_s": t_mcgsm_torch}


def trainer_step(model: RIDE, data: torch.Tensor, results: dict[str, Any], sizes: list[int], repeats: int) -> None:
    """Measurement 1: the trainer's step (`ImageTask.nll`, then backward) at its batch size, per patch size."""
    batch = TrainConfig().batch_size
    rate_big = matmul_rate()
    print(f"trainer step: default RIDE (1 layer, D={model.config.num_hiddens}, K_in={model.layers[0].input_size}), "
          f"float32, {batch} patches per step; cost model {slstm_train_flops_per_pixel(model):.0f} FLOP per "
          "predicted pixel (design §12, spatial LSTM only)")
    rows = []
    for size in sizes:
        patches = data.unfold(2, size, size).unfold(3, size, size).reshape(-1, 1, size, size)[:batch]
        rows.append(trainer_step_at(model, patches.contiguous(), repeats))
    rate_big = max(rate_big, matmul_rate())  # measured before and after the steps: the better of the two
    print("  patch  step ms     px/s  GFLOP/s | LSTM-shape GEMM (rows): fraction | 2048^2 GEMM: fraction | MCGSM share"
          " | step with torch's passes")
    for r in rows:
        r["fraction_of_2048_gemm"] = r["cost_model_flops"] / rate_big
        print(f"  {r['patch']:3d}^2 {r['step_s'] * 1e3:8.2f} {r['px_per_s']:8.0f}  "
              f"{r['cost_model_flops'] / 1e9:7.1f} | {r['lstm_gemm_flops'] / 1e9:5.1f} GFLOP/s "
              f"({r['lstm_gemm_rows']:4d}): {r['fraction_of_lstm_gemm']:6.1%} | {rate_big / 1e9:5.1f} GFLOP/s: "
              f"{r['fraction_of_2048_gemm']:6.1%} | {r['mcgsm_share']:6.1%} | {r['torch_passes_step_s'] * 1e3:6.2f} ms "
              f"({r['torch_passes_step_s'] / r['step_s']:.2f}x; MCGSM alone {r['mcgsm_s'] * 1e3:.1f} ms, "
              f"torch's passes {r['mcgsm_torch_passes_s'] * 1e3:.1f} ms)")
    if not rows[0]["compiled_loops"]:
        print("  (the compiled loops were not used: numba missing or more than one thread; both columns are torch's "
              "passes)")
    results.update(trainer_step=rows, matmul_flops_2048=rate_big)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller problems (smoke run)")
    parser.add_argument("--train-only", action="store_true", help="only the trainer's step (measurement 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--default-malloc", action="store_true",
                        help="leave glibc malloc as it is (the CLI, and by default this script, keep freed memory)")
    args = parser.parse_args()
    malloc_tuned = False if args.default_malloc else keep_freed_memory()
    set_threads(args.threads)
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
    results: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
        "torch": torch.__version__,
        "keep_freed_memory": malloc_tuned,
    }

    print(f"threads: {torch.get_num_threads()} (torch intra-op)")
    trainer_step(model, data, results, [16] if args.quick else [16, 22, 32], 3 if args.quick else 10)
    if args.train_only:
        finish(results, malloc_tuned, args.json)
        return

    # 2. training step against the raster reference
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

    # 3. log_prob_pixels of one large image
    with torch.no_grad():
        t_fast = best_time(lambda: model.log_prob_pixels(image, impl="sweep"), 3)
        t_ref = once(lambda: model.log_prob_pixels(image, impl="raster"))
        lp = model.log_prob_pixels(image)
    results.update(logprob_sweep_s=t_fast, logprob_raster_s=t_ref, logprob_speedup=t_ref / t_fast,
                   logprob_finite=bool(torch.isfinite(lp).all()))
    print(f"log_prob_pixels, one {big[0]}x{big[1]} image:")
    print(f"  sweep   {t_fast:8.3f} s\n  raster  {t_ref:8.3f} s   speed-up {t_ref / t_fast:.1f}x")

    # 4. sampling one image
    t_fast = best_time(lambda: model.sample(canvas, generator=torch.Generator().manual_seed(1)), 2)
    t_ref = once(lambda: model.sample(canvas, generator=torch.Generator().manual_seed(1), order="raster"))
    results.update(sample_front_s=t_fast, sample_raster_s=t_ref, sample_speedup=t_ref / t_fast)
    print(f"sampling one {sample_size}x{sample_size} image:")
    print(f"  front   {t_fast:8.3f} s\n  raster  {t_ref:8.3f} s   speed-up {t_ref / t_fast:.1f}x")
    finish(results, malloc_tuned, args.json)


def finish(results: dict[str, Any], malloc_tuned: bool, json_path: str | None) -> None:
    print(f"machine: {results['machine']}, torch {torch.__version__}, glibc keeps freed memory: {malloc_tuned}")
    if json_path:
        with open(json_path, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
