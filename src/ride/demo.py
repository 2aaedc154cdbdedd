"""`ride demo`: an MCGSM baseline and a small RIDE fitted on fresh dead-leaves images, compared on held-out data.

The fitting is budgeted in work (L-BFGS iterations, Adam steps), not seconds, so that the same seed gives the same
figures on a quiet and on a busy machine (a time budget on a loaded 2-core machine fitted 8-10x fewer steps and
reported RIDE below the MCGSM). `seconds_per_model` switches to the old time budget. Another CPU type can still
move the figures in the second decimal: its vector kernels round floats differently, and hundreds of L-BFGS
iterations carry that forward (RESULTS.md), so the run reports which kernels it used.

Application layer (progress bars, PNG output); the library modules stay free of both.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from tqdm import tqdm

from .checkpoint import save
from .deadleaves import DEAD_LEAVES_TEST_SEED, DEAD_LEAVES_TRAIN_SEED, dead_leaves_images
from .images import to_uint8
from .model import RIDE
from .neighbourhood import extract_pairs
from .protocols import tiles as protocol_tiles
from .units import dequantize

PRECONDITIONER_PAIRS = 200_000  # pairs the conditional whitening is fitted on (one pass: cheap)


@dataclass
class DemoConfig:
    out_dir: str = "demo_out"
    # Work budgets (README.md and RESULTS.md give the time they take): counts, not seconds, so that the figures do not
    # depend on the machine's load.
    mcgsm_iterations: int = 300  # L-BFGS iterations of the MCGSM baseline (early stopping may end it sooner)
    ride_steps: int = 800  # Adam steps of RIDE on random crops
    ride_mcgsm_iterations: int = 40  # L-BFGS iterations of RIDE's MCGSM over the frozen hidden states
    mcgsm_pairs: int = 25_000  # (neighbourhood, pixel) pairs of the MCGSM baseline's L-BFGS (validation: a quarter)
    ride_mcgsm_crops: int = 16  # 64x64 crops whose hidden states RIDE's MCGSM is fitted on (validation: a quarter)
    seconds_per_model: float | None = None  # time budget per model instead of the work budgets (not reproducible)
    num_train: int = 60
    num_test: int = 10
    image_size: int = 256
    tile_size: int = 64  # held-out images are cut into independent tiles, as in design §9.1
    patch_size: int = 32  # RIDE trains on random crops of this size
    batch_size: int = 8  # crops per Adam step (8 learns more per second than 16 here)
    learning_rate: float = 1e-2
    num_hiddens: int = 32
    nb_size: int = 5
    num_samples: int = 4
    sample_size: int = 64
    seed: int = 0


def tiles(images: torch.Tensor, size: int) -> torch.Tensor:
    """Non-overlapping size x size tiles of images [B, C, H, W] (remainder dropped) -> [N, C, size, size]."""
    return torch.cat([protocol_tiles(image, size) for image in images])


@torch.no_grad()
def rate_bits_per_pixel(model: RIDE, images: torch.Tensor, batch_size: int = 64) -> tuple[float, float, int]:
    """Mean log-likelihood rate (bit/px) over all predicted pixels, its standard error over images, pixel count."""
    per_image = torch.cat([model.log_prob_pixels(images[k : k + batch_size]).flatten(1).double().mean(1)
                           for k in range(0, len(images), batch_size)]) / math.log(2)
    count = images.shape[0] * model.log_prob_pixels(images[:1]).numel()
    stderr = float(per_image.std() / math.sqrt(len(per_image))) if len(per_image) > 1 else float("nan")
    return float(per_image.mean()), stderr, count


def random_crops(images: torch.Tensor, size: int, num: int, generator: torch.Generator) -> torch.Tensor:
    """num random size x size crops of images [B, C, H, W] -> [num, C, size, size]."""
    b, _, h, w = images.shape
    idx = torch.randint(b, (num,), generator=generator)
    top = torch.randint(h - size + 1, (num,), generator=generator)
    left = torch.randint(w - size + 1, (num,), generator=generator)
    return torch.stack([images[i, :, y : y + size, x : x + size] for i, y, x in zip(idx, top, left, strict=True)])


def check_budgets(cfg: DemoConfig) -> None:
    """ValueError for a budget that cannot run: negative counts, a time budget that is not a positive number."""
    for name in ("mcgsm_iterations", "ride_steps", "ride_mcgsm_iterations", "num_train", "num_hiddens"):
        value = getattr(cfg, name)
        minimum = 2 if name == "num_train" else 1 if name == "num_hiddens" else 0
        if not isinstance(value, int) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, found {value!r}")
    if cfg.seconds_per_model is not None and not (cfg.seconds_per_model > 0 and math.isfinite(cfg.seconds_per_model)):
        raise ValueError(f"seconds_per_model must be a positive number of seconds, found {cfg.seconds_per_model!r}")


def fit_mcgsm(model: RIDE, hidden: torch.Tensor, y: torch.Tensor, val_hidden: torch.Tensor, val_y: torch.Tensor,
              max_iter: int, seconds: float | None, desc: str, init: bool, generator: torch.Generator) -> dict:
    """L-BFGS on the MCGSM of `model` with early stopping: `max_iter` iterations, or `seconds` when given.

    The bar counts iterations (seconds with a time budget) and shows the training NLL of the pixels in bit/px
    (MCGSM NLL of y~ minus the preconditioner's Jacobian).
    """
    log_jacobian = float(model.preconditioner.log_jacobian)
    timed = seconds is not None
    bar = tqdm(total=int(seconds) if timed else max_iter, desc=desc, unit="s" if timed else "it",
               bar_format="{l_bar}{bar}| {n}/{total} s {postfix}" if timed else None)

    def progress(info: dict) -> None:
        bar.n = min(int(info["elapsed_s"]) if timed else info["iteration"], bar.total)
        nll = (info["train_nll_nats"] - log_jacobian) / math.log(2)
        bar.set_postfix_str(f"iter {info['iteration']}, train NLL {nll:.3f} bit/px", refresh=False)
        bar.update(0)

    history = model.mcgsm.fit(hidden, y, val_hidden, val_y, max_iter=100_000 if timed else max_iter, val_every=10,
                              patience=5, callback=progress, init=init,
                              max_seconds=max(seconds, 0.0) if timed else None, generator=generator)
    bar.close()
    return history


def fit_mcgsm_baseline(model: RIDE, train: torch.Tensor, val: torch.Tensor, cfg: DemoConfig,
                       generator: torch.Generator) -> dict:
    """The MCGSM baseline (num_layers=0): preconditioner, then the MCGSM on x~ with L-BFGS (cfg.mcgsm_pairs
    training pairs, a quarter as many validation pairs)."""
    model.fit_preconditioner(train, PRECONDITIONER_PAIRS, generator)
    x, y = model.preconditioner(*model.training_pairs(train, cfg.mcgsm_pairs, generator))
    vx, vy = model.preconditioner(*model.training_pairs(val, cfg.mcgsm_pairs // 4, generator))
    return fit_mcgsm(model, x, y, vx, vy, cfg.mcgsm_iterations, cfg.seconds_per_model, "MCGSM (L-BFGS)", True,
                     generator)


@torch.no_grad()
def hidden_pairs(model: RIDE, images: torch.Tensor, num_crops: int, size: int,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-layer states [N, D] and whitened pixels y~ [N, C] of random crops (frozen SLSTM)."""
    x, y = model.preconditioner(*extract_pairs(random_crops(images, size, num_crops, generator), model.neighbourhood))
    hidden = model.hidden_states(x)
    return hidden.reshape(-1, hidden.shape[-1]), y.reshape(-1, y.shape[-1])


def train_ride(model: RIDE, train: torch.Tensor, val: torch.Tensor, cfg: DemoConfig,
               generator: torch.Generator) -> tuple[list[float], dict]:
    """Adam on random crops (cfg.ride_steps steps, or 75% of the time budget), then L-BFGS on the MCGSM over frozen
    hidden states (cfg.ride_mcgsm_iterations iterations, or the rest of the time) (design §6).

    Returns the running training NLL curve of the Adam phase (bit/px) and the L-BFGS history (`MCGSM.fit`).
    """
    model.fit_preconditioner(train, PRECONDITIONER_PAIRS, generator)
    # Start the MCGSM near the linear predictor of y~ from the initial hidden states: better than random.
    model.mcgsm.initialize(*hidden_pairs(model, train, 64, cfg.patch_size, generator), generator=generator)
    seconds, lr = cfg.seconds_per_model, cfg.learning_rate
    timed = seconds is not None
    adam_seconds = 0.75 * seconds if timed else math.inf
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    start, curve, running = time.monotonic(), [], None
    bar = tqdm(total=int(adam_seconds) if timed else cfg.ride_steps, desc="RIDE (Adam)", unit="s" if timed else "step",
               bar_format="{l_bar}{bar}| {n}/{total} s {postfix}" if timed else None)
    step = 0
    while (elapsed := time.monotonic() - start) < adam_seconds if timed else step < cfg.ride_steps:
        done = elapsed / adam_seconds if timed else step / cfg.ride_steps
        for group in optimizer.param_groups:  # cosine decay over the budget
            group["lr"] = lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * done)))
        crops = random_crops(train, cfg.patch_size, cfg.batch_size, generator)
        loss = -model.log_prob_pixels(crops).mean() / math.log(2)  # NLL, bit/px
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        curve.append(running)
        step += 1
        bar.n = min(int(time.monotonic() - start) if timed else step, bar.total)
        bar.set_postfix_str(f"step {step}, NLL {running:.3f} bit/px", refresh=False)
        bar.update(0)
    bar.close()
    crops = cfg.ride_mcgsm_crops
    history = fit_mcgsm(model, *hidden_pairs(model, train, crops, 64, generator),
                        *hidden_pairs(model, val, max(1, crops // 4), 64, generator), cfg.ride_mcgsm_iterations,
                        seconds - (time.monotonic() - start) if timed else None, "RIDE MCGSM (L-BFGS)", False,
                        generator)
    return curve, history


def sample_canvas(model: RIDE, marginal: torch.Tensor, cfg: DemoConfig, generator: torch.Generator) -> torch.Tensor:
    """cfg.num_samples samples of cfg.sample_size^2: a larger canvas initialised from the data marginal, cropped."""
    extra = 8  # drop the first rows/columns too: they still remember the random boundary
    top, left, right = model.margin
    h, w = cfg.sample_size + top + extra, cfg.sample_size + left + right + 2 * extra
    idx = torch.randint(marginal.numel(), (cfg.num_samples, 1, h, w), generator=generator)
    canvas = marginal.flatten()[idx]
    samples = model.sample(canvas, generator=generator)
    return samples[:, :, top + extra :, left + extra : left + extra + cfg.sample_size]


def write_grid(rows: list[tuple[str, np.ndarray]], path: Path, scale: int = 2) -> None:
    """A PNG with one labelled row of images per (label, uint8 [N, H, W])."""
    label_w, pad = 130, 4
    n, h, w = rows[0][1].shape
    canvas = Image.new("L", (label_w + n * (w * scale + pad), len(rows) * (h * scale + pad)), 255)
    draw = ImageDraw.Draw(canvas)
    for r, (label, imgs) in enumerate(rows):
        y = r * (h * scale + pad)
        draw.text((4, y + h * scale // 2 - 6), label, fill=0)
        for k, img in enumerate(imgs):
            tile = Image.fromarray(img).resize((w * scale, h * scale), Image.NEAREST)
            canvas.paste(tile, (label_w + k * (w * scale + pad), y))
    canvas.save(path)


def run_demo(cfg: DemoConfig) -> dict:
    """The whole demo; prints results and returns them ({"MCGSM": {...}, "RIDE": {...}}: rate, stderr, pixels)."""
    check_budgets(cfg)
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    train_u8 = dead_leaves_images(cfg.num_train, cfg.image_size, seed=DEAD_LEAVES_TRAIN_SEED)
    test_u8 = dead_leaves_images(cfg.num_test, cfg.image_size, seed=DEAD_LEAVES_TEST_SEED)
    train = dequantize(train_u8[:, None], generator)
    test = tiles(dequantize(test_u8[:, None], torch.Generator().manual_seed(1234)), cfg.tile_size)
    n_val = max(1, cfg.num_train // 10)
    val, train = train[:n_val], train[n_val:]
    print(f"dead leaves: {len(train)} training + {n_val} validation images of {cfg.image_size}x{cfg.image_size}, "
          f"{cfg.num_test} test images cut into {len(test)} tiles of {cfg.tile_size}x{cfg.tile_size} "
          f"({time.monotonic() - t0:.1f} s)")

    mcgsm = RIDE(num_layers=0, nb_size=cfg.nb_size)
    history = fit_mcgsm_baseline(mcgsm, train, val, cfg, generator)
    ride = RIDE(num_hiddens=cfg.num_hiddens, nb_size=cfg.nb_size)
    curve, ride_history = train_ride(ride, train, val, cfg, generator)
    work = {"mcgsm_iterations": history["iterations"], "ride_steps": len(curve),
            "ride_mcgsm_iterations": ride_history["iterations"]}
    print(f"work done: MCGSM {work['mcgsm_iterations']} L-BFGS iterations ({history['stop_reason']}); RIDE "
          f"{work['ride_steps']} Adam steps, then {work['ride_mcgsm_iterations']} L-BFGS iterations "
          f"({ride_history['stop_reason']}); {torch.get_num_threads()} torch thread(s), "
          f"{torch.backends.cpu.get_cpu_capability()} CPU kernels")

    results: dict = {"work": work}
    print("\nheld-out log-likelihood rate on dead-leaves test tiles (bit/px, continuous density on the [0,1) "
          "scale, higher is better;\n8 - rate bounds the code length of the 8-bit pixels, lower is better):")
    for name, model in (("MCGSM", mcgsm), ("RIDE", ride)):
        model.eval()
        rate, stderr, count = rate_bits_per_pixel(model, test)
        results[name] = {"bits_per_pixel": rate, "stderr": stderr, "num_pixels": count}
        print(f"  {name:6s} {rate:7.3f} ± {stderr:.3f} bit/px   (discrete bound {8 - rate:.3f} bit/px, "
              f"{count} pixels)")
        save(model, out / f"{name.lower()}.pt", extra={"demo": "dead leaves", "bits_per_pixel": rate})

    marginal = train.flatten()
    real = tiles(test, cfg.sample_size)[: cfg.num_samples]
    rows = [("real (test)", to_uint8(real)[:, 0])]
    for name, model in (("MCGSM", mcgsm), ("RIDE", ride)):
        rows.append((f"{name} sample", to_uint8(sample_canvas(model, marginal, cfg, generator))[:, 0]))
    png = out / "demo_samples.png"
    write_grid(rows, png)
    final = f"RIDE final running NLL {curve[-1]:.3f} bit/px; " if curve else ""
    print(f"\nsamples: {png}   models: {out / 'mcgsm.pt'}, {out / 'ride.pt'}   "
          f"({final}total {time.monotonic() - t0:.0f} s)")
    return results
