"""Fitting the 63-dim patch baseline one conditional at a time (design §6.3, §9.2), resumable.

The model is a `PatchChainMCGSM`: value k of the centred 8x8 patch (bottom-right pixel dropped) is predicted by its
own MCGSM from values 0..k-1, behind its own conditional whitening. `fit_chain` fits the conditionals that are not
done yet, in order, as `PatchChainMCGSM.fit` does (same whitening, same `MCGSM.fit`, L-BFGS with early stopping on
validation patches); each conditional draws its random initialisation from its own generator, seeded by
(seed, k), so a resumed fit gives the same model as an uninterrupted one (without a time budget). An interrupted
conditional continues from its current parameters (`in_progress`); L-BFGS's curvature history and the
early-stopping counter restart.

Library code: no files, no progress bars. `ride fit-mcgsm63` adds the checkpoints, the CSV log and the bar through
the two callbacks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..patch_models import PatchChainMCGSM
from ..preconditioner import Preconditioner

DIM = 63

#: on_iteration(k, iterations of conditional k so far, `MCGSM.fit`'s callback info, the whitening's log-Jacobian)
IterationCallback = Callable[[int, int, dict[str, Any], float], None]
#: on_conditional(k, its record: iterations, stop_reason, train/val NLL in nats (Jacobian included), seconds)
ConditionalCallback = Callable[[int, dict[str, Any]], None]


def conditional_seed(seed: int, k: int) -> int:
    """The seed of conditional k's initialisation: numpy SeedSequence([seed, k]), 63 bits."""
    return int(np.random.SeedSequence([int(seed), int(k)]).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def conditional_inputs(z: Tensor, k: int) -> Tensor:
    """The inputs of conditional k (as in PatchChainMCGSM): z[:, :k] of z [N, 63], or the constant 1 [N, 1] for
    k = 0."""
    return z[:, :k] if k > 0 else z.new_ones(z.shape[0], 1)


def fitted_preconditioner(model: PatchChainMCGSM, z: Tensor, k: int) -> Preconditioner:
    """Conditional k's whitening fitted on z [N, 63], exactly as `PatchChainMCGSM.fit` fits it."""
    like = model.preconditioners[k].mean_in
    if k == 0:  # pixel 0 has no predecessor: its whitening only standardises the output
        single = PatchChainMCGSM(1, 1, 1, dim=1).to(device=like.device, dtype=like.dtype)
        single.fit(z[:, :1], max_iter=0)
        return single.preconditioners[0]
    prec = Preconditioner(k, 1).to(device=like.device, dtype=like.dtype)
    prec.fit(z[:, :k], z[:, k:k + 1])
    return prec


def conditional_cost(model: PatchChainMCGSM, k: int) -> float:
    """Relative cost of one evaluation of conditional k (for sharing a time budget)."""
    m = model.conditionals[k]
    return m.dim_in * (m.num_features + m.num_components) + m.num_components * m.num_scales


def fit_chain(model: PatchChainMCGSM, z: Tensor, zv: Tensor, done: set[int], records: dict[int, dict[str, Any]],
              in_progress: dict[str, int] | None = None, *, seed: int = 0, max_iter: int = 3000,
              val_every: int = 10, patience: int = 5, chunk: int | None = None, max_seconds: float | None = None,
              start: float | None = None, on_iteration: IterationCallback | None = None,
              on_conditional: ConditionalCallback | None = None) -> None:
    """Fit the conditionals of `model` that are not in `done`, in order, on centred patches z [N, 63] with early
    stopping on zv [M, 63] (both in the model's dtype and device).

    `done` and `records` are updated in place as each conditional finishes (its record: iterations, stop_reason,
    train_nll_nats and val_nll_nats of value k given values 0..k-1, whitening Jacobian included, and seconds).
    `in_progress` = {"conditional", "iterations"} continues that conditional from its current parameters.
    `max_seconds`, counted from `start` (time.monotonic(); default now), is shared among the remaining
    conditionals by their cost. `chunk`: rows per chunk of the objective (memory).
    """
    start = time.monotonic() if start is None else start
    costs = [conditional_cost(model, k) for k in range(DIM)]
    todo = [k for k in range(DIM) if k not in done]
    for k in todo:
        cond_start = time.monotonic()
        continuing = in_progress is not None and int(in_progress["conditional"]) == k
        prior_iterations = int(in_progress["iterations"]) if continuing else 0
        if not continuing:
            model.preconditioners[k] = fitted_preconditioner(model, z, k)
        prec, mcgsm = model.preconditioners[k], model.conditionals[k]
        with torch.no_grad():
            h, y = prec(conditional_inputs(z, k), z[:, k:k + 1])
            vh, vy = prec(conditional_inputs(zv, k), zv[:, k:k + 1])
        log_jacobian = float(prec.log_jacobian)
        seconds = None
        if max_seconds is not None:
            remaining = max(max_seconds - (time.monotonic() - start), 0.0)
            seconds = remaining * costs[k] / sum(costs[j] for j in todo if j >= k)

        def progress(info: dict[str, Any], k: int = k, prior: int = prior_iterations,
                     log_jacobian: float = log_jacobian) -> None:
            if on_iteration is not None:
                on_iteration(k, prior + info["iteration"], info, log_jacobian)

        history = mcgsm.fit(h, y, vh, vy, max_iter=max_iter, val_every=val_every, patience=patience,
                            batch_size=chunk, callback=progress, init=not continuing, max_seconds=seconds,
                            generator=torch.Generator().manual_seed(conditional_seed(seed, k)))
        del h, y, vh, vy
        best = history["best_iteration"]
        records[k] = {"conditional": k, "iterations": prior_iterations + history["iterations"],
                      "stop_reason": history["stop_reason"],
                      "train_nll_nats": history["train_nll_nats"][best] - log_jacobian,
                      "val_nll_nats": history["best_val_nll_nats"] - log_jacobian,
                      "seconds": time.monotonic() - cond_start}
        done.add(k)
        in_progress = None
        if on_conditional is not None:
            on_conditional(k, records[k])
