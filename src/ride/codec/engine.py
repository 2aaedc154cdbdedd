"""Portable lossless coding with the integer RIDE (`fixedpoint`): the engine of codec format version 2.

The image is cut into `stripes` horizontal stripes of equal height (the last may be shorter), each in its own
constant frame (the image's rounded mean), and the stripes are stepped side by side along the skewed front, so that
a front holds up to stripes x (cells per stripe) pixels. Each pixel value v is coded as 8 / b digits of b bits, most
significant first (b = `digit_bits`): a digit chooses one of 2^b equal sub-intervals of the values still possible,
with probabilities proportional to the integer mixture CDF's masses Cq(e_(j+1)) - Cq(e_j) on them (`fixedpoint`),
rescaled in integer arithmetic to frequencies g_j with sum 2^24 - 2^b; `constriction`'s range coder receives g_j
as float64 and its leaky quantiser turns them into g_j + 1 with total exactly 2^24 (every quantity inside it is then
an integer below 2^24 and its scale factor is exactly 1, so its float arithmetic is exact). Coding order: front,
digit, then cells (stripe, row). The decoder evaluates the CDF only at the edges its digits need: 8 / b rounds of
2^b - 1 edges per pixel, the encoder all of them at once.
"""

from __future__ import annotations

from collections.abc import Callable

import constriction
import numpy as np
import torch
from torch import Tensor

from .fixedpoint import FrontStepper, IntRIDE

PRECISION = 24  # constriction's default range coder: frequencies sum to 2^24
_CATEGORICAL = constriction.stream.model.Categorical(perfect=False)

Progress = Callable[[int, int], None]


def stripe_layout(height: int, stripes: int) -> tuple[int, int]:
    """(stripe height, number of stripes actually used) for `stripes` requested on an image of `height` rows."""
    stripes = max(1, min(stripes, height))
    rows = -(-height // stripes)
    return rows, -(-height // rows)


class _Canvases:
    """The stripes' framed canvases of pixel codes 2v + 1 [B, top + rows, left + W + right] and the front stepper."""

    def __init__(self, im: IntRIDE, height: int, width: int, pad: int, stripes: int) -> None:
        top, left, right = im.margin
        self.rows, self.count = stripe_layout(height, stripes)
        self.height, self.width, self.top, self.left = height, width, top, left
        self.canvas = torch.full((self.count, top + self.rows, left + width + right), 2 * pad + 1, dtype=torch.int64)
        self.stepper = FrontStepper(im, self.canvas)
        # stripe b's grid row i is image row b * rows + i (dummy rows past the image's end are never coded)
        self.stripe_rows = torch.tensor([min(self.rows, height - b * self.rows) for b in range(self.count)])

    def fill(self, pixels: np.ndarray) -> None:
        codes = 2 * torch.from_numpy(pixels.astype(np.int64)) + 1
        for b in range(self.count):
            part = codes[b * self.rows : (b + 1) * self.rows]
            self.canvas[b, self.top : self.top + part.shape[0], self.left : self.left + self.width] = part

    def cells(self, t: int) -> tuple[int, int, Tensor, Tensor]:
        """Front t: grid rows lo..hi, the valid mask [B * n] (rows inside the image) and the image raster index
        [B * n] of every cell (0 for invalid ones)."""
        lo, hi = self.stepper.rows(t)
        rows = torch.arange(lo, hi + 1)
        valid = (rows[None, :] < self.stripe_rows[:, None]).reshape(-1)
        image_rows = (torch.arange(self.count)[:, None] * self.rows + rows[None, :]).reshape(-1)
        cols = (t - self.stepper.skew * rows).repeat(self.count)
        return lo, hi, valid, torch.where(valid, image_rows * self.width + cols, 0)


def _digit_frequencies(ext: Tensor, digit_bits: int) -> np.ndarray:
    """Cq at the 2^b + 1 edges of each cell's interval [N, 2^b + 1] -> frequencies g [N, 2^b] (float64 holding
    integers), sum 2^24 - 2^b per row; an interval without mass gets equal frequencies."""
    free = (1 << PRECISION) - (1 << digit_bits)
    rel = ext - ext[:, :1]
    total = rel[:, -1:]
    empty = total == 0
    j = torch.arange(ext.shape[1])
    uniform = (j * free) >> digit_bits
    scaled = torch.where(empty, uniform, torch.div(rel * free, torch.where(empty, 1, total), rounding_mode="floor"))
    return torch.diff(scaled, 1).double().numpy()


def _interior(lo: Tensor, level: int, digit_bits: int) -> Tensor:
    """Interior edges [N, 2^b - 1] of the sub-intervals of digit `level` given each cell's interval start lo [N]."""
    step = 1 << (8 - digit_bits * (level + 1))
    return lo[:, None] + step * torch.arange(1, 1 << digit_bits)


@torch.no_grad()
def encode(im: IntRIDE, pixels: np.ndarray, pad: int, stripes: int, digit_bits: int,
           progress: Progress | None = None) -> bytes:
    """The range coder's 32-bit words (little-endian bytes) of uint8 pixels [H, W]."""
    height, width = pixels.shape
    grid = _Canvases(im, height, width, pad, stripes)
    grid.fill(pixels)
    stepper = grid.stepper
    values = torch.from_numpy(pixels.astype(np.int64)).view(-1)
    encoder = constriction.stream.queue.RangeEncoder()
    levels, radix = 8 // digit_bits, 1 << digit_bits
    for t in range(stepper.num_fronts):
        front = _front(grid, t)
        if front is not None:
            mix, keep, index = front
            v = values[index[keep]]
            n = v.shape[0]
            starts = [(v >> (8 - digit_bits * level)) << (8 - digit_bits * level) for level in range(levels)]
            edges = torch.cat([_interior(s, level, digit_bits) for level, s in enumerate(starts)], 1)
            inner = stepper.cdf(mix, edges).view(n, levels, radix - 1)
            low = torch.zeros(n, 1, dtype=torch.int64)
            high = mix.total
            freqs, symbols = [], []
            for level in range(levels):
                ext = torch.cat([low, inner[:, level], high], 1)
                digit = (v >> (8 - digit_bits * (level + 1))) & (radix - 1)
                freqs.append(_digit_frequencies(ext, digit_bits))
                symbols.append(digit.numpy().astype(np.int32))
                low, high = ext.gather(1, digit[:, None]), ext.gather(1, digit[:, None] + 1)
            encoder.encode(np.concatenate(symbols), _CATEGORICAL, np.concatenate(freqs))
        if progress is not None:
            progress(t + 1, stepper.num_fronts)
    return np.ascontiguousarray(encoder.get_compressed(), dtype="<u4").tobytes()


def _front(grid: _Canvases, t: int):  # noqa: ANN202 - (mixture, kept cells [n], raster indices) or None
    """Front t's mixture for its cells inside the image (the stripes' padding cells dropped), or None when the
    front has no cell."""
    lo_row, hi_row, valid, index = grid.cells(t)
    if lo_row > hi_row:
        return None
    mix = grid.stepper.prepare(*grid.stepper.step(t))
    keep = valid.nonzero()[:, 0]
    if keep.shape[0] < valid.shape[0]:
        mix = mix.select(keep)
    return mix, keep, index


@torch.no_grad()
def decode(im: IntRIDE, payload: bytes, height: int, width: int, pad: int, stripes: int, digit_bits: int,
           progress: Progress | None = None) -> np.ndarray:
    """uint8 pixels [H, W] of a payload made by `encode` (not yet checked against the checksum)."""
    grid = _Canvases(im, height, width, pad, stripes)
    stepper = grid.stepper
    decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(payload, dtype="<u4").astype(np.uint32))
    pixels = np.zeros(height * width, dtype=np.uint8)
    flat = grid.canvas.view(grid.count, -1)
    levels = 8 // digit_bits
    for t in range(stepper.num_fronts):
        front = _front(grid, t)
        if front is not None:
            mix, keep, index = front
            n = keep.shape[0]
            v = torch.zeros(n, dtype=torch.int64)
            low = torch.zeros(n, 1, dtype=torch.int64)
            high = mix.total
            for level in range(levels):
                ext = torch.cat([low, stepper.cdf(mix, _interior(v, level, digit_bits)), high], 1)
                try:
                    digit = decoder.decode(_CATEGORICAL, _digit_frequencies(ext, digit_bits))
                except Exception as err:  # constriction reports inconsistent data in its own types
                    raise ValueError(f"corrupted ride codec stream: the range decoder failed ({err})") from err
                digit = torch.from_numpy(digit.astype(np.int64))
                v += digit << (8 - digit_bits * (level + 1))
                low, high = ext.gather(1, digit[:, None]), ext.gather(1, digit[:, None] + 1)
            pixels[index[keep].numpy()] = v.numpy().astype(np.uint8)
            codes = torch.full((index.shape[0],), 2 * pad + 1, dtype=torch.int64)  # every cell, padding too
            codes[keep] = 2 * v + 1
            flat.index_copy_(1, stepper.pixel_index(t), codes.view(grid.count, -1))
        if progress is not None:
            progress(t + 1, stepper.num_fronts)
    return pixels.reshape(height, width)
