"""The encoder's choice among several models: the one whose stream of the image is shortest.

A stream names the model that made it by fingerprint, so the choice is the encoder's alone: any model may code any
image, and the decoder needs no rule. Coding a whole image with every candidate would multiply the encoding time;
instead the candidates code the same sample of it (a few bands of rows spread over its height, at most
`SAMPLE_WIDTH` columns from its middle), and the one with the fewest bytes there codes the image. Images no larger
than the sample are coded whole by every candidate and the shortest stream is kept, so for them the choice is exact.
The sample's sizes come from the codec itself (integer arithmetic), so the choice is the same on every machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from torch import nn

from .coder import Progress, compress

#: Bands of rows in the sample, their height, and the widest sample (columns from the image's middle). Four bands of
#: 32 rows of 64 columns: 8,192 pixels per candidate, stacked into one image of four stripes (`sample_bytes`). On
#: the 100 BSDS300 test images, the 10 Wikimedia val photographs and the 7 aerials' val scans in colour (format 8)
#: it chose as two bands of 32 x 256 did (the better model on 99/100, 10/10 and 7/7) at 1.14x the time of one
#: encode of a BSDS300 image instead of 1.28x (RESULTS.md, "The encoder's choice of model").
SAMPLE_BANDS = 4
SAMPLE_ROWS = 32
SAMPLE_WIDTH = 64


@dataclass(frozen=True)
class Choice:
    """The chosen candidate's index, its stream, and every candidate's bytes on the sample (or on the whole image
    where `whole`)."""

    index: int
    data: bytes
    sample_bytes: tuple[int, ...]
    sample_pixels: int
    whole: bool


def sample_windows(height: int, width: int, bands: int = SAMPLE_BANDS, rows: int = SAMPLE_ROWS,
                   max_width: int = SAMPLE_WIDTH) -> list[tuple[slice, slice]]:
    """(rows, columns) slices of the sample of an H x W image: `bands` bands of `rows` rows centred at evenly
    spaced heights (fewer where the image is short; never overlapping), each `max_width` columns wide from the
    middle (the whole width if narrower)."""
    if height < 1 or width < 1:
        raise ValueError(f"image sides must be positive, found {height} x {width}")
    w = min(width, max_width)
    cols = slice((width - w) // 2, (width - w) // 2 + w)
    bands = max(1, min(bands, height // rows))
    h = min(rows, height)
    tops = sorted({min(height - h, max(0, round((k + 0.5) * height / bands - h / 2))) for k in range(bands)})
    return [(slice(top, top + h), cols) for top in tops]


def sample_bytes(models: Sequence[nn.Module], image: np.ndarray, windows: list[tuple[slice, slice]],
                 repeat: bool = True, maps: bool | None = None) -> tuple[int, ...]:
    """Each model's stream bytes of the image's windows, stacked into one image and coded with one stripe per
    window: each window is coded from its own top, without context from the others (as on its own), and the
    windows' fronts are stepped side by side, so a sample of short bands does not pay each band's fronts apart.

    windows: `sample_windows`' slices (all the same shape)."""
    shapes = {(r.stop - r.start, c.stop - c.start) for r, c in windows}
    if len(shapes) != 1:
        raise ValueError(f"the sample's windows must share one shape, found {sorted(shapes)}")
    stacked = np.ascontiguousarray(np.concatenate([image[r, c] for r, c in windows], axis=0))
    return tuple(len(compress(model, stacked, stripes=len(windows), repeat=repeat, maps=maps)) for model in models)


def compress_best(models: Sequence[nn.Module], image: np.ndarray, progress: Progress | None = None,
                  stripes: int | None = None, bands: int = SAMPLE_BANDS, rows: int = SAMPLE_ROWS,
                  max_width: int = SAMPLE_WIDTH, repeat: bool = True, maps: bool | None = None) -> Choice:
    """`compress(models[i], image)` for the candidate i that codes the image's sample shortest (the first of equals).

    image: uint8 [H, W] for grey models, [H, W, 3] for colour ones (every candidate must take it). `progress`,
    `stripes`, `repeat` and `maps` are those of the final `compress`; the sample's bands are coded in one stripe
    each.
    """
    if len(models) == 0:
        raise ValueError("no candidate model to code the image with")
    pixels = np.asarray(image)
    if pixels.ndim < 2:
        raise ValueError(f"image must be [H, W] or [H, W, 3], found shape {pixels.shape}")
    windows = sample_windows(pixels.shape[0], pixels.shape[1], bands, rows, max_width)
    sample_pixels = sum((r.stop - r.start) * (c.stop - c.start) for r, c in windows)
    whole = len(models) == 1 or sample_pixels >= pixels.shape[0] * pixels.shape[1]
    if whole:
        streams = [compress(model, pixels, progress=progress, stripes=stripes, repeat=repeat, maps=maps)
                   for model in models]
        sizes, sample_pixels = tuple(len(s) for s in streams), pixels.shape[0] * pixels.shape[1]
    else:
        sizes = sample_bytes(models, pixels, windows, repeat, maps)
    index = min(range(len(models)), key=sizes.__getitem__)  # the first of equals
    data = streams[index] if whole else compress(models[index], pixels, progress=progress, stripes=stripes,
                                                 repeat=repeat, maps=maps)
    return Choice(index, data, sizes, sample_pixels, whole)
