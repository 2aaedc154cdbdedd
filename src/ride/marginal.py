"""The data marginal of a training set as plain checkpoint metadata, and i.i.d. draws from it.

Samplers need boundary pixels (design §8): the trainer stores the 8-bit histogram of its training images in every
model it saves (`extra[MARGINAL_KEY]`), and `marginal_boundary` draws dequantised i.i.d. pixels from it; without
a histogram it falls back to a Gaussian with the preconditioner's output mean and covariance.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .units import ONE_BELOW

MARGINAL_KEY = "marginal_histogram"
MARGINAL_FORMAT = "ride-marginal-histogram"


def marginal_histogram(values: Tensor) -> dict[str, Any]:
    """The plain-data marginal to store in a checkpoint's extra[MARGINAL_KEY]: 8-bit values uint8 [..., C, H, W]
    (or [N, C, H, W]) -> {"format", "version", "counts": C lists of 256 counts}."""
    if not isinstance(values, Tensor) or values.dtype != torch.uint8 or values.dim() < 3:
        raise ValueError("marginal_histogram expects uint8 values [..., C, H, W]")
    per_channel = values.movedim(-3, 0).reshape(values.shape[-3], -1)
    counts = [torch.bincount(c.long(), minlength=256).tolist() for c in per_channel]
    return {"format": MARGINAL_FORMAT, "version": 1, "counts": counts}


def _histogram_counts(entry: Any, channels: int) -> Tensor:
    """Validated counts float64 [C, 256] from a checkpoint's marginal entry."""
    ok = (isinstance(entry, dict) and entry.get("format") == MARGINAL_FORMAT and entry.get("version") == 1
          and isinstance(entry.get("counts"), list) and len(entry["counts"]) == channels
          and all(isinstance(c, list) and len(c) == 256 for c in entry["counts"]))
    if not ok:
        raise ValueError(f"the checkpoint's extra[{MARGINAL_KEY!r}] is not a {MARGINAL_FORMAT!r} version 1 entry with "
                         f"{channels} list(s) of 256 counts")
    counts = torch.tensor(entry["counts"], dtype=torch.float64)
    if bool((counts < 0).any()) or bool((counts.sum(1) <= 0).any()):
        raise ValueError(f"the checkpoint's extra[{MARGINAL_KEY!r}] has negative or all-zero counts")
    return counts


def marginal_boundary(model: nn.Module, extra: dict[str, Any], shape: tuple[int, int, int, int],
                      generator: torch.Generator) -> Tensor:
    """Canvases [N, C, H, W] of i.i.d. pixels from the data marginal (see the module docstring), float on [0,1)."""
    n, c, h, w = shape
    if MARGINAL_KEY in extra:
        counts = _histogram_counts(extra[MARGINAL_KEY], c)
        values = torch.stack([torch.multinomial(counts[k], n * h * w, replacement=True, generator=generator)
                              for k in range(c)], 1).view(n, h, w, c).permute(0, 3, 1, 2)
        u = torch.rand(values.shape, generator=generator, dtype=torch.float64)
        return ((values + u) / 256).clamp(0, ONE_BELOW)
    pre = getattr(model, "preconditioner", None)
    if pre is None:
        raise ValueError(f"a {type(model).__name__} needs the training marginal in its checkpoint's "
                         f"extra[{MARGINAL_KEY!r}] (ride train stores it) or a boundary image")
    mean = pre.mean_out.detach().double().cpu()  # (C,)
    # Syy = P P^T + (Syy - P P^T), the second term being colour_out^2 (colour_out is symmetric)
    colour = pre.colour_out.detach().double().cpu()
    predictor = pre.predictor.detach().double().cpu()
    cov = predictor @ predictor.T + colour @ colour.T
    chol = torch.linalg.cholesky(cov + 1e-12 * torch.eye(c, dtype=torch.float64))
    eps = torch.randn(n, h, w, c, generator=generator, dtype=torch.float64)
    return (mean + eps @ chol.T).permute(0, 3, 1, 2).clamp(0, ONE_BELOW)
