"""Units and data conventions (design §1): dequantisation of 8-bit images and nats -> bit/px."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

ONE_BELOW = 1.0 - 2.0**-24  # the largest float32 below 1: values clamped into [0,1) stay there


def dequantize(values: np.ndarray | Tensor, generator: torch.Generator | None = None) -> Tensor:
    """x = (v + u) / 256 with u ~ U[0,1) i.i.d.: uint8 values [...] -> float32 on [0,1), same shape."""
    v = torch.as_tensor(values)
    if v.is_floating_point() or v.dtype == torch.bool:
        raise ValueError(f"dequantize expects integer 8-bit values 0..255, found dtype {v.dtype}")
    if v.numel() and (int(v.min()) < 0 or int(v.max()) > 255):
        raise ValueError(f"dequantize expects values in 0..255, found range {int(v.min())}..{int(v.max())}")
    u = torch.rand(v.shape, generator=generator, device=v.device)
    # float32 rounding can turn 255 + u into exactly 256 (u within 2^-17 of 1): keep x strictly below 1.
    return ((v.float() + u) / 256).clamp_max(torch.nextafter(torch.tensor(1.0), torch.tensor(0.0)))


def quantize(x: Tensor) -> Tensor:
    """The 8-bit value of each [0,1) float: clipped to [0,1), times 256, floored; float [...] -> uint8 [...], same
    device. The inverse of `dequantize` (whose noise only moves x within its bin)."""
    return (x.double().clamp(0, ONE_BELOW) * 256).floor().to(torch.uint8)


def bits_per_pixel(log_prob_nats: Tensor | float, num_pixels: int | None = None) -> float:
    """Log-likelihood rate in bit/px: a sum of ln p over num_pixels pixels (or a mean when num_pixels is None)."""
    total = float(torch.as_tensor(log_prob_nats, dtype=torch.float64).sum())
    count = num_pixels if num_pixels is not None else torch.as_tensor(log_prob_nats).numel()
    return total / count / math.log(2)
