"""Pixels for people: [0, 1) images to 8-bit arrays, and several images arranged in one grid."""

from __future__ import annotations

import math

import numpy as np
from torch import Tensor

from .units import quantize

GAP = 2  # pixels between the images of a grid


def to_uint8(images: Tensor) -> np.ndarray:
    """[0,1) images [...] -> uint8 numpy array [...] (on the CPU): clipped to [0,1), times 256, floored
    (`units.quantize`, the inverse of `units.dequantize`)."""
    return quantize(images).cpu().numpy()


def grid_image(images: np.ndarray, columns: int | None = None) -> np.ndarray:
    """uint8 [N, C, H, W] -> one uint8 image [rows*H + gaps, cols*W + gaps] (C=1) or [..., 3] (C=3), white gaps."""
    n, c, h, w = images.shape
    cols = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    canvas = np.full((c, rows * h + (rows - 1) * GAP, cols * w + (cols - 1) * GAP), 255, dtype=np.uint8)
    for k in range(n):
        r, q = divmod(k, cols)
        canvas[:, r * (h + GAP) : r * (h + GAP) + h, q * (w + GAP) : q * (w + GAP) + w] = images[k]
    return canvas[0] if c == 1 else canvas.transpose(1, 2, 0)
