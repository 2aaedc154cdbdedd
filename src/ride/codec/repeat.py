"""The repeat flag of formats 6 (colour) and 7 (grey): a binary event "this value equals the same channel's left
neighbour", coded before the value with a probability counted on the image as it is coded (docs/codec_format.md).

Why: the model is never sure enough of a repeated value. A flat area (a clear sky, a saturated highlight, a
graphic) costs it 0.1-0.2 bits per value where PNG pays almost nothing, and on never-JPEG photographs it is less
sharp than their smooth areas allow (a precision oracle wanted sharper densities on 8 of 10). Secondary estimation
fixes both: before each value x, the flag [x == v] (v: the left neighbour W of the same channel) is coded with the
hit rate seen so far in its context, and on a miss x is coded with the model's distribution with v removed
(renormalised), so no mass is spent twice. The context is the channel, the local flatness ([W == N] + [W == NW] +
[W == NE]), whether the channel coded before at the same pixel hit, and the model's own probability of v in
half-bit buckets of -log2 P(v): the counts learn how far to trust the model where it says v is likely or not. (A probe before it was built,
`experiments/repeat_flag_probe.py`: -0.68% on the Wikimedia val photographs in colour, -17% on BSDS300 3096.)

Everything is integer: the masses Cq(v + 1) - Cq(v) of the integer model (`fixedpoint`), the buckets by exact
integer comparison, counts updated after each front (so encoder and decoder see the same counts), halved when a
context has seen `COUNT_LIMIT` events, and frequencies with sum 2^24 - 2 as the digits' (`engine`), which
`constriction`'s leaky quantiser takes exactly.
"""

from __future__ import annotations

import numpy as np

BUCKETS = 16  # half-bit buckets of -log2 P(v): 0 .. 7.5 bits and more
FLATNESS = 4  # [W == N] + [W == NW] + [W == NE]
COUNT_LIMIT = 4096  # a context's counts are halved when it has seen this many events (adapts within an image)
_THRESHOLD_BITS = 14
# bucket b >= 1 holds P(v) <= 2^(-b / 2): mass * round(2^(b / 2) 2^14) <= total 2^14, exact in int64 while
# total < 2^48 (the integer model's Cq(256) < 2^38)
_THRESHOLDS = np.array([round(2 ** (b / 2) * (1 << _THRESHOLD_BITS)) for b in range(1, BUCKETS)], dtype=np.int64)
_FREE = (1 << 24) - 2  # the digits' budget at radix 2 (engine.PRECISION = 24)
MISS, HIT = 0, 1


def buckets(mass: np.ndarray, total: np.ndarray) -> np.ndarray:
    """Bucket of -log2 P(v) [n] (0 .. BUCKETS - 1) from the integer masses of v and the totals Cq(256) [n]."""
    mass, total = np.asarray(mass, np.int64), np.asarray(total, np.int64)
    if total.size and int(total.max()) >= 1 << 48:
        raise ValueError("mixture totals of 2^48 or more: not an integer model of this codec")
    return (mass[:, None] * _THRESHOLDS[None, :] <= (total << _THRESHOLD_BITS)[:, None]).sum(1)


class RepeatCounts:
    """Hit counts of the flag's contexts for one image (channels x FLATNESS x 2 x BUCKETS), int64."""

    def __init__(self, channels: int) -> None:
        self.channels = channels
        size = channels * FLATNESS * 2 * BUCKETS
        self.hits = np.zeros(size, dtype=np.int64)
        self.seen = np.zeros(size, dtype=np.int64)

    def contexts(self, channel: int, neighbours: tuple[np.ndarray, ...], previous_hit: np.ndarray,
                 mass: np.ndarray, total: np.ndarray) -> np.ndarray:
        """Context index [n] of n cells of `channel` from the pixel codes (W, N, NW, NE) [n] each, the previous
        channel's flags at the same pixels [n] (zeros for the first channel) and the masses of W's value."""
        west, north, north_west, north_east = neighbours
        flat = (west == north).astype(np.int64) + (west == north_west) + (west == north_east)
        index = (channel * FLATNESS + flat) * 2 + previous_hit.astype(np.int64)
        return index * BUCKETS + buckets(mass, total)

    def frequencies(self, contexts: np.ndarray) -> np.ndarray:
        """float64 [n, 2] holding integers (miss, hit), sum 2^24 - 2: the Krichevsky-Trofimov estimate of each
        context's hit rate, (2 hits + 1) / (2 seen + 2)."""
        hit = ((2 * self.hits[contexts] + 1) * _FREE) // (2 * self.seen[contexts] + 2)
        return np.stack([_FREE - hit, hit], 1).astype(np.float64)

    def update(self, contexts: np.ndarray, hits: np.ndarray) -> None:
        """Count one front's events (all its channels, in any order: sums), then halve the full contexts."""
        np.add.at(self.seen, contexts, 1)
        np.add.at(self.hits, contexts, hits.astype(np.int64))
        full = self.seen >= COUNT_LIMIT
        if full.any():
            self.seen[full] = (self.seen[full] + 1) >> 1
            self.hits[full] = (self.hits[full] + 1) >> 1
