"""Seeded dead-leaves images (design §9.3).

Disks fall on the image one after another; the first disk drawn lies in front, and each later disk only shows
where nothing drawn before it covers the pixel. Drawing stops once every pixel is covered.

- Centres are uniform on the canvas padded by `r_max` on every side, so every pixel, border pixels included,
  sees the same stationary process (a disk can reach the image from anywhere within `r_max` of it).
- Radii have density proportional to r^-3 on [r_min, r_max] (sampled by inverse CDF). The visible disk at a
  point then has radius density proportional to 1/r: every octave of scale covers the same share of the image,
  which is what makes dead leaves approximately scale invariant.
- Grey levels are i.i.d. uniform on [0, 1), quantised to 8 bits as floor(256 u), i.e. uniform on {0..255}.

Pixel (i, j) is the point (i + 0.5, j + 0.5) of the continuous plane; a disk covers it when that point lies
within distance r of the disk's centre. The authors' generator parameters are unpublished; the defaults here,
r_min = 1 (pixel scale) and r_max = 64 (a quarter of the 256-pixel side, so the largest disks span half the
image), give six octaves of scale-invariant structure on 256 x 256 images. Compare curves across models, not
absolute rates with the paper (design §9.3).

The data set of design §9.3 (900 training and 100 test images of 256 x 256) is::

    train = dead_leaves_images(DEAD_LEAVES_NUM_TRAIN, DEAD_LEAVES_SIZE, seed=DEAD_LEAVES_TRAIN_SEED)
    test = dead_leaves_images(DEAD_LEAVES_NUM_TEST, DEAD_LEAVES_SIZE, seed=DEAD_LEAVES_TEST_SEED)
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Iterator

import numpy as np

#: Root seed of the 900 training images (image k comes from SeedSequence(seed).spawn(...)[k]).
DEAD_LEAVES_TRAIN_SEED = 20150611
#: Root seed of the 100 test images; distinct from the training seed, so the two sets are independent.
DEAD_LEAVES_TEST_SEED = 20151207
DEAD_LEAVES_NUM_TRAIN = 900
DEAD_LEAVES_NUM_TEST = 100
DEAD_LEAVES_SIZE = 256

# Disks drawn per batch by the painter. Only speed depends on it: the disk sequence and the image do not.
_BATCH_SIZE = 4096


def _check_size(size: int | tuple[int, int]) -> tuple[int, int]:
    """(height, width) from an int or a pair of ints; ValueError if not positive integers."""
    pair = (size, size) if isinstance(size, numbers.Integral) else size
    try:
        height, width = pair  # type: ignore[misc]
    except (TypeError, ValueError):
        raise ValueError(f"size must be a positive int or a pair (height, width), found {size!r}") from None
    for n in (height, width):
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n <= 0:
            raise ValueError(f"size must be a positive int or a pair of positive ints, found {size!r}")
    return int(height), int(width)


def _check_radii(r_min: float, r_max: float) -> tuple[float, float]:
    """Validated (r_min, r_max) as floats: 0 < r_min <= r_max < inf."""
    r_min, r_max = float(r_min), float(r_max)
    if not (math.isfinite(r_min) and r_min > 0):
        raise ValueError(f"r_min must be a finite number > 0, found {r_min!r}")
    if not (math.isfinite(r_max) and r_max >= r_min):
        raise ValueError(f"r_max must be finite and >= r_min = {r_min!r}, found {r_max!r}")
    return r_min, r_max


def _radii_from_uniform(u: np.ndarray, r_min: float, r_max: float) -> np.ndarray:
    """Inverse CDF of the density proportional to r^-3 on [r_min, r_max]: u float [N] in [0, 1) -> radii [N].

    F(r) = (r_min^-2 - r^-2) / (r_min^-2 - r_max^-2), so r = (r_min^-2 - u (r_min^-2 - r_max^-2))^(-1/2).
    """
    a, b = r_min**-2, r_max**-2
    return (a - u * (a - b)) ** -0.5


def _radius_cdf(r: np.ndarray, r_min: float, r_max: float) -> np.ndarray:
    """Analytic CDF of the radius distribution (for tests): float [N] -> [N] in [0, 1]."""
    a, b = r_min**-2, r_max**-2
    r = np.clip(r, r_min, r_max)
    return (a - r**-2) / (a - b)


def _draw_disks(
    rng: np.random.Generator, n: int, height: int, width: int, r_min: float, r_max: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The next n disks of the stream: centre rows, columns, radii (float [n]) and grey levels (uint8 [n]).

    Disk i uses the 4 uniforms 4i..4i+3 of the stream, so drawing 2n disks at once gives the same disks as
    drawing n twice: the image does not depend on how the painter batches its draws.
    """
    u = rng.random((n, 4))  # (n, 4): centre row, centre column, radius, grey level
    cy = -r_max + u[:, 0] * (height + 2.0 * r_max)
    cx = -r_max + u[:, 1] * (width + 2.0 * r_max)
    r = _radii_from_uniform(u[:, 2], r_min, r_max)
    grey = np.floor(u[:, 3] * 256.0).astype(np.uint8)  # u < 1, so at most 255
    return cy, cx, r, grey


def _bboxes(
    cy: np.ndarray, cx: np.ndarray, r: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Inclusive pixel bounding boxes of disks, clipped to the image: y0, y1, x0, x1 int64 [N].

    Empty (y1 < y0 or x1 < x0) for disks that reach no pixel centre row or column of the image.
    """
    y0 = np.maximum(np.ceil(cy - r - 0.5), 0).astype(np.int64)
    y1 = np.minimum(np.floor(cy + r - 0.5), height - 1).astype(np.int64)
    x0 = np.maximum(np.ceil(cx - r - 0.5), 0).astype(np.int64)
    x1 = np.minimum(np.floor(cx + r - 0.5), width - 1).astype(np.int64)
    return y0, y1, x0, x1


def _paint(
    batches: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]], height: int, width: int
) -> np.ndarray:
    """Front-to-back painter: index of the visible disk at each pixel, int64 [H, W]; -1 where none covers it.

    `batches` yields (cy, cx, r), float [n] each, in drawing order; disk indices count across batches. The
    first disk covering a pixel owns it. Stops as soon as every pixel is owned, so `batches` may be endless.
    Gives exactly what `_paint_reference` gives for the same disks.
    """
    labels = np.full(height * width, -1, dtype=np.int64)
    remaining = height * width
    start = 0
    for cy, cx, r in batches:
        if remaining == 0:
            break
        n = len(cy)
        y0, y1, x0, x1 = _bboxes(cy, cx, r, height, width)
        # Skip disks whose box holds no unpainted pixel: late in the process nearly all of them, and a
        # summed-area table of the unpainted mask tells this in O(1) per disk.
        free = np.zeros((height + 1, width + 1), dtype=np.int64)
        free[1:, 1:] = (labels < 0).reshape(height, width).cumsum(0).cumsum(1)
        live = np.flatnonzero((y1 >= y0) & (x1 >= x0))  # boxes inside the image only: in range for `free`
        a, b, c, e = y0[live], y1[live] + 1, x0[live], x1[live] + 1
        live = live[free[b, e] - free[a, e] - free[b, c] + free[a, c] > 0]
        if live.size:
            # Enumerate (disk, pixel) pairs of all live boxes at once, in disk order.
            nh, nw = y1[live] - y0[live] + 1, x1[live] - x0[live] + 1
            counts = nh * nw
            d = np.repeat(np.arange(live.size), counts)  # (P,) position of the pair's disk in `live`
            off = np.arange(d.size) - np.repeat(np.cumsum(counts) - counts, counts)
            w = nw[d]
            rows = y0[live][d] + off // w
            cols = x0[live][d] + off % w
            disk = live[d]
            dy = rows + 0.5 - cy[disk]
            dx = cols + 0.5 - cx[disk]
            flat = rows * width + cols
            hit = (dy * dy + dx * dx <= r[disk] ** 2) & (labels[flat] < 0)
            flat, disk = flat[hit], disk[hit]
            # Pairs are in disk order, so a pixel's first occurrence is its front-most disk in this batch.
            pixels, first = np.unique(flat, return_index=True)
            labels[pixels] = start + disk[first]
            remaining -= pixels.size
        start += n
    return labels.reshape(height, width)


def _paint_reference(cy: np.ndarray, cx: np.ndarray, r: np.ndarray, height: int, width: int) -> np.ndarray:
    """Plain disk-by-disk version of `_paint` for a finite list of disks (float [N] each): int64 [H, W]."""
    labels = np.full((height, width), -1, dtype=np.int64)
    y0, y1, x0, x1 = _bboxes(cy, cx, r, height, width)
    for k in range(len(cy)):
        if y1[k] < y0[k] or x1[k] < x0[k]:
            continue  # misses the image (and negative slice ends would wrap around)
        rows = np.arange(y0[k], y1[k] + 1)[:, None]
        cols = np.arange(x0[k], x1[k] + 1)[None, :]
        dy, dx = rows + 0.5 - cy[k], cols + 0.5 - cx[k]
        inside = dy * dy + dx * dx <= r[k] ** 2  # same float expression as `_paint`, so ties agree
        box = labels[y0[k] : y1[k] + 1, x0[k] : x1[k] + 1]  # a view: painting it paints `labels`
        box[inside & (box < 0)] = k
    return labels


def _dead_leaves_labels(
    height: int,
    width: int,
    r_min: float,
    r_max: float,
    rng: np.random.Generator,
    batch_size: int = _BATCH_SIZE,
) -> tuple[np.ndarray, np.ndarray]:
    """Visible-disk index map int64 [H, W] (every pixel covered) and the drawn disks' greys uint8 [M]."""
    greys: list[np.ndarray] = []

    def batches() -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        while True:
            cy, cx, r, grey = _draw_disks(rng, batch_size, height, width, r_min, r_max)
            greys.append(grey)
            yield cy, cx, r

    labels = _paint(batches(), height, width)
    return labels, np.concatenate(greys)


def dead_leaves(
    size: int | tuple[int, int] = 256,
    *,
    r_min: float = 1.0,
    r_max: float = 64.0,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """One dead-leaves image, uint8 [H, W] with values in 0..255.

    `size` is an int (square) or (height, width); radii lie in [r_min, r_max] pixels with density
    proportional to r^-3. `rng` is a numpy Generator (advanced in place), a seed, or None for fresh entropy.
    Small r_min makes generation slow: the number of disks needed grows like 1 / r_min^2.
    """
    height, width = _check_size(size)
    r_min, r_max = _check_radii(r_min, r_max)
    labels, greys = _dead_leaves_labels(height, width, r_min, r_max, np.random.default_rng(rng))
    return greys[labels]


def dead_leaves_images(
    num_images: int,
    size: int | tuple[int, int] = 256,
    *,
    seed: int = 0,
    r_min: float = 1.0,
    r_max: float = 64.0,
) -> np.ndarray:
    """`num_images` dead-leaves images, uint8 [N, H, W].

    Image k is drawn from its own stream, numpy.random.SeedSequence(seed).spawn(k + 1)[k], so it does not
    depend on `num_images`: the first n images of a larger set are the set of n images.
    """
    if isinstance(num_images, bool) or not isinstance(num_images, numbers.Integral) or num_images < 0:
        raise ValueError(f"num_images must be an integer >= 0, found {num_images!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, found {seed!r}")
    height, width = _check_size(size)
    r_min, r_max = _check_radii(r_min, r_max)
    images = np.empty((int(num_images), height, width), dtype=np.uint8)
    for k in range(int(num_images)):
        # Same stream as the k-th child of SeedSequence(seed).spawn(...), without spawning the others.
        rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(k,)))
        labels, greys = _dead_leaves_labels(height, width, r_min, r_max, rng)
        images[k] = greys[labels]
    return images
