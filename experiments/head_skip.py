"""Probe (issue 33): does RIDE's MCGSM gain from reading the whitened neighbourhood x~ beside the top states h?

The MCGSM baseline reads raw pixels; RIDE's MCGSM reads only h, so every pixel value it uses has passed through the
LSTM's gates and tanh. `SkipRIDE` gives the head [h, x~] (D + K inputs). It starts as `photo_grey` with zero
features and predictors on the new inputs (the same density, as `ride.growth.widen` does for new units), and both
arms then train the same way from `photo_grey`: Adam on 48 px patches of the photograph mix (the trainer's batches,
`ImageTask`), the same steps, the same learning rate. The control arm is photo_grey itself under this loop.

    RIDE_DATA=../shared/data OMP_NUM_THREADS=1 python experiments/head_skip.py train skip --steps 2400
    RIDE_DATA=../shared/data OMP_NUM_THREADS=1 python experiments/head_skip.py train control --steps 2400
    RIDE_DATA=../shared/data OMP_NUM_THREADS=1 python experiments/head_skip.py lbfgs   # the head alone, both arms

Writes runs/head_skip_<arm>.pt (state dict) and runs/head_skip_<arm>.csv (step, seconds, training NLL, capped
validation of both sets).
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from pathlib import Path

import torch
from torch import Tensor

from ride.growth import _widen_mcgsm
from ride.mcgsm import MCGSM
from ride.model import RIDE
from ride.model_zoo import pretrained
from ride.train.config import TrainConfig
from ride.train.tasks import ImageTask, load_images

RUNS = Path("runs")


class SkipRIDE(RIDE):
    """RIDE whose MCGSM reads [h, x~]: the top states and the whitened neighbourhood, [B, Hp, Wp, D + K]."""

    def __init__(self, **config: int) -> None:
        super().__init__(**config)
        c = self.config
        self.mcgsm = MCGSM(c.num_hiddens + self.preconditioner.dim_in, c.num_channels, c.num_components,
                           c.num_scales, c.num_features)

    def hidden_states(self, whitened_inputs: Tensor, impl: str = "sweep") -> Tensor:
        return torch.cat([super().hidden_states(whitened_inputs, impl), whitened_inputs], -1)


def skip_from(model: RIDE) -> SkipRIDE:
    """`model` as a SkipRIDE with the same density: the head's new inputs start with zero weights."""
    new = SkipRIDE(**vars(model.config)).to(next(model.parameters()).dtype)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("mcgsm.")}
    new.load_state_dict(state, strict=False)
    _widen_mcgsm(model.mcgsm, new.mcgsm)
    return new


def make(arm: str) -> RIDE:
    base = pretrained("photo_grey")
    return skip_from(base) if arm == "skip" else base


def train(arm: str, steps: int, lr: float, every: int) -> None:
    config = TrainConfig(data="photos", patch_sizes=[48], learning_rates=[lr], batch_size=50, flip=True, seed=11,
                         val_max_tiles=200)
    task = ImageTask(config, *load_images(config))
    model = make(arm)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    RUNS.mkdir(exist_ok=True)
    log = open(RUNS / f"head_skip_{arm}.csv", "w", newline="")
    writer = csv.writer(log)
    writer.writerow(["step", "seconds", "train_bits_per_px", "val_bsds300", "val_wikipedia"])

    def validate(step: int, seconds: float, train_bits: float) -> None:
        model.eval()
        v = task.validate(model)
        writer.writerow([step, f"{seconds:.0f}", f"{train_bits:.4f}", f"{v['val_bsds300_bits_per_dim']:.4f}",
                         f"{v['val_wikipedia_photos_bits_per_dim']:.4f}"])
        log.flush()
        print(step, f"{seconds:.0f}s train {train_bits:.4f} val bsds {v['val_bsds300_bits_per_dim']:.4f} "
              f"wiki {v['val_wikipedia_photos_bits_per_dim']:.4f}", flush=True)
        model.train()

    start, running = time.perf_counter(), []
    validate(0, 0.0, float("nan"))
    epoch, step_in_epoch = 0, 0
    for step in range(1, steps + 1):
        if step_in_epoch == task.num_steps(0, epoch):
            epoch, step_in_epoch = epoch + 1, 0
        batch = task.batch(0, epoch, step_in_epoch)
        step_in_epoch += 1
        opt.zero_grad(set_to_none=True)
        loss = task.nll(model, batch)
        loss.backward()
        opt.step()
        running.append(loss.item())
        if step % every == 0 or step == steps:
            # nats per pixel on [0,1) -> bits per pixel, sign flipped so that higher is better as in validation
            validate(step, time.perf_counter() - start, -sum(running) / len(running) / math.log(2))
            running = []
            torch.save(model.state_dict(), RUNS / f"head_skip_{arm}.pt")


def lbfgs(train_pixels: int, val_pixels: int, iterations: int) -> None:
    """The head alone: L-BFGS (`MCGSM.fit`, as the trainer's fine-tuning) on frozen (h, y~) or ([h, x~], y~) pairs of
    64 px tiles of the mix's training images, early stopping on pairs of the validation images."""
    config = TrainConfig(data="photos", patch_sizes=[48], learning_rates=[1e-4], seed=5, finetune_tile=64)
    task = ImageTask(config, *load_images(config))
    for arm in ("skip", "control"):
        model = make(arm)
        gen = torch.Generator().manual_seed(1)
        h, y = task.hidden_pairs(model, train_pixels, gen, "train")
        vh, vy = task.hidden_pairs(model, val_pixels, gen, "val")
        start = time.perf_counter()
        r = model.mcgsm.fit(h, y, vh, vy, max_iter=iterations, val_every=10, patience=5, init=False)
        bits = [v / math.log(2) for v in (r["val_nll_nats"][0], r["best_val_nll_nats"], r["train_nll_nats"][0],
                                          r["train_nll_nats"][-1])]
        print(f"{arm}: head inputs {h.shape[1]}; validation NLL {bits[0]:.5f} -> best {bits[1]:.5f} bit/px; training "
              f"{bits[2]:.5f} -> {bits[3]:.5f}; {r['iterations']} iterations ({r['stop_reason']}), "
              f"{time.perf_counter() - start:.0f} s", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["train", "lbfgs"])
    p.add_argument("arm", nargs="?", choices=["skip", "control"], help="train: which arm")
    p.add_argument("--steps", type=int, default=2400)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--every", type=int, default=400)
    p.add_argument("--pixels", type=int, nargs=2, default=[300_000, 100_000], help="lbfgs: training, validation")
    a = p.parse_args()
    torch.set_num_threads(1)
    if a.what == "train":
        if a.arm is None:
            p.error("train needs an arm: skip or control")
        train(a.arm, a.steps, a.lr, a.every)
    else:
        lbfgs(*a.pixels, iterations=200)


if __name__ == "__main__":
    main()
