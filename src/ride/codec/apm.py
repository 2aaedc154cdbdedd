"""Adaptive probability maps of colour format 8: the digits' binary decisions refined by tables learnt on the
image as it is coded (secondary estimation; docs/codec_format.md).

Why: on never-JPEG photographs the colour heads' densities are miscalibrated in ways that change from image to
image (a per-image precision factor wanted sharper densities on 8 of the 10 Wikimedia validation photographs and
broader ones on the night photograph 028). The repeat flags correct the mass of the neighbours' values; the APM
corrects the rest of the distribution. Each value that the flags do not code is a path of 8 binary decisions, most
significant bit first (a digit of b bits is b of them); decision d's model probability p of its upper half
(from the integer CDF without the candidates, as the digits use it) is located on 33 knots of stretch(p) =
ln(p / (1 - p)) in [-8, 8], the knots' learnt probabilities are interpolated, and the coded probability is the mean
of that and p. The context is the channel, the bit's position (0..7) and the repeat flags' activity class. The
digit's frequencies are the products of its decisions' probabilities, in integers, with the digits' budget
2^24 - 2^b. (Probe before it was built, `experiments/sse_probe.py`, ideal code length on whole Wikimedia val
photographs with the flags: -0.2% to -1.5% per photograph, -3.8% on 028.)

Everything is integer: stretch by a table built from an integer squash (itself the linear interpolation of
`SQUASH_KNOTS`, 12-bit values of 4096 / (1 + e^(-x)) at x = -8, -7.5, ..., 8), probabilities in 2^-16, each
front's events gathered per knot (sums: any order gives the same table) and applied after the front as a running
mean whose past weighs at most `MEMORY` events.
"""

from __future__ import annotations

import numpy as np

from .repeat import ACTIVITY

BITS = 8  # binary decisions per value
KNOTS = 33  # over stretch(p) in [-8, 8] nats, half a nat apart
WEIGHT_BITS = 7  # the knots are 2^7 stretch units apart (stretch in 1/256 nat)
P_BITS = 16  # probabilities in 2^-16
MEMORY = 1024 << WEIGHT_BITS  # a knot's past weighs at most 1024 events (shares in 2^-7 events)
START_SEEN = 3 << (WEIGHT_BITS - 1)  # a knot's starting value weighs 1.5 events
#: 12-bit 4096 / (1 + e^(-x)) at x = -8, -7.5, ..., 8 (rounded, clamped to 1..4095): the integer squash's knots
SQUASH_KNOTS = np.array([1, 2, 4, 6, 10, 17, 27, 45, 74, 120, 194, 311, 488, 747, 1102, 1546, 2048, 2550, 2994,
                         3349, 3608, 3785, 3902, 3976, 4022, 4051, 4069, 4079, 4086, 4090, 4092, 4094, 4095],
                        dtype=np.int64)
#: 16-bit 65536 / (1 + e^(-x)) at the same x (rounded): each knot's starting probability (the identity map)
START = np.array([22, 36, 60, 98, 162, 267, 439, 720, 1179, 1921, 3108, 4971, 7812, 11955, 17625, 24743, 32768,
                  40793, 47911, 53581, 57724, 60565, 62428, 63615, 64357, 64816, 65097, 65269, 65374, 65438, 65476,
                  65500, 65514], dtype=np.int64)


def squash(x: np.ndarray) -> np.ndarray:
    """12-bit probability [..] of stretch values x in 1/256 nat, |x| <= 2047: `SQUASH_KNOTS` interpolated."""
    s = np.asarray(x, np.int64) + 2048
    j, w = s >> WEIGHT_BITS, s & ((1 << WEIGHT_BITS) - 1)
    return (SQUASH_KNOTS[j] * ((1 << WEIGHT_BITS) - w) + SQUASH_KNOTS[j + 1] * w + 64) >> WEIGHT_BITS


def _stretch_table() -> np.ndarray:
    """int64 [4096]: stretch of the 12-bit probability p, the smallest x in -2047..2047 with squash(x) >= p, 2047
    where there is none (the inverse of the monotone integer squash)."""
    values = squash(np.arange(-2047, 2048))
    return np.minimum(np.searchsorted(values, np.arange(4096), side="left"), 4094) - 2047


STRETCH = _stretch_table()


def contexts(channels: int) -> int:
    """Number of contexts: channel x bit position x activity class."""
    return channels * BITS * ACTIVITY


def context(channel: int, position: int, activity: int) -> int:
    """Context index of a decision: its value's channel, its bit position (0: the most significant) and the cell's
    activity class (`repeat.activity`)."""
    return (channel * BITS + position) * ACTIVITY + activity


def node_probability(low: int, mid: int, high: int) -> int:
    """The model's probability in 2^-16 (1 .. 2^16 - 1) that a value lies in the upper half of an interval whose
    Cq at its low edge, middle and high edge are low <= mid <= high (< 2^48); an empty interval: one half."""
    if high == low:
        return 1 << (P_BITS - 1)
    p15 = ((high - mid) << 15) // (high - low)
    return min(max(2 * p15, 1), (1 << P_BITS) - 1)


def locate(p: int) -> tuple[int, int]:
    """(knot j, weight w of knot j + 1 in 2^-7) of a probability p in 2^-16."""
    s = int(STRETCH[p >> 4]) + 2048
    return s >> WEIGHT_BITS, s & ((1 << WEIGHT_BITS) - 1)


def refine(table: np.ndarray, ctx: int, p: int) -> tuple[int, int, int]:
    """(coded probability in 2^-16, knot, weight) of a decision of model probability p in context ctx: the mean of
    p and the knots' interpolation."""
    j, w = locate(p)
    row = table[ctx]
    learnt = (int(row[j]) * ((1 << WEIGHT_BITS) - w) + int(row[j + 1]) * w) >> WEIGHT_BITS
    return min(max((learnt + p + 1) >> 1, 1), (1 << P_BITS) - 1), j, w


def digit_frequencies(table: np.ndarray, channel: int, activity: int, level: int, digit_bits: int,
                      ext: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """Frequencies g [2^b] (sum 2^24 - 2^b) of digit `level` of a cell from Cq at its interval's 2^b + 1 edges ext
    (the candidates' masses already taken out), and for each of the 2^b - 1 decisions of the digit's binary tree
    (node (depth, index) in breadth-first order) its (context, knot, weight, node offset): the plain reference of
    the compiled kernels."""
    radix = 1 << digit_bits
    free = (1 << 24) - radix
    budget = {(0, 0): free}
    nodes = []
    g = np.zeros(radix, dtype=np.int64)
    for depth in range(digit_bits):
        size = radix >> depth
        for index in range(1 << depth):
            a = index * size
            p = node_probability(int(ext[a]), int(ext[a + size // 2]), int(ext[a + size]))
            ctx = context(channel, level * digit_bits + depth, activity)
            q, j, w = refine(table, ctx, p)
            whole = budget.pop((depth, index))
            upper = (whole * q) >> P_BITS
            nodes.append((ctx, j, w, a))
            if depth + 1 == digit_bits:
                g[a], g[a + 1] = whole - upper, upper
            else:
                budget[(depth + 1, 2 * index)], budget[(depth + 1, 2 * index + 1)] = whole - upper, upper
    return g, nodes


class Tables:
    """One image's maps (learnt probabilities [contexts, KNOTS] in 2^-16 and their weights of past events in
    2^-7) and one front's gathered events (`ones`, `shares` [contexts, KNOTS]). Plain NumPy; the kernels share the
    arrays."""

    def __init__(self, channels: int) -> None:
        n = contexts(channels)
        self.table = np.tile(START, (n, 1))
        self.seen = np.full((n, KNOTS), START_SEEN, dtype=np.int64)
        self.ones = np.zeros((n, KNOTS), dtype=np.int64)
        self.shares = np.zeros((n, KNOTS), dtype=np.int64)

    def add(self, ctx: int, j: int, w: int, bit: int) -> None:
        """Gather one decision's event: knot j gets a share 2^7 - w of it, knot j + 1 a share w."""
        for k, share in ((j, (1 << WEIGHT_BITS) - w), (j + 1, w)):
            self.shares[ctx, k] += share
            self.ones[ctx, k] += share * bit

    def update(self) -> None:
        """After a front: each knot's probability becomes the weighted mean of its past (at most MEMORY) and the
        front's events; the gathered events are cleared."""
        update(self.table, self.seen, self.ones, self.shares)


def update(table: np.ndarray, seen: np.ndarray, ones: np.ndarray, shares: np.ndarray) -> None:
    """`Tables.update` on the arrays (in place; also the kernels')."""
    touched = shares > 0
    past = seen[touched]
    table[touched] = (table[touched] * past + (ones[touched] << P_BITS)) // (past + shares[touched])
    seen[touched] = np.minimum(past + shares[touched], MEMORY)
    ones[touched] = 0
    shares[touched] = 0
