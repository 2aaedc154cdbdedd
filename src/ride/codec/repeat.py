"""The repeat flags of formats 6 (colour) and 7 (grey): before each value, binary events "this value equals
candidate j" for the values of its causal neighbours, coded with probabilities counted on the image as it is coded
(docs/codec_format.md).

Why: the model is never sure enough of a value its neighbours already show. A flat area (a clear sky, a saturated
highlight, a graphic) costs it 0.1-0.2 bits per value where PNG pays almost nothing, and on never-JPEG photographs
its densities are broader than their smooth areas allow (a precision oracle wanted sharper densities on 8 of 10).
Secondary estimation fixes both: before each value x, the flags [x == v_j] for the candidates v_j (W, N, NE, NW and
the gradient predictor W + N - NW, each once: a candidate equal to an earlier one is skipped) are coded in turn
until one hits, each with the hit rate seen so far in its context; if none hits, x is coded with the model's
distribution without the candidates (renormalised), so no mass is spent twice. The context is the candidate's
rank, the channel, the local activity (max |W - N|, |W - NW|, |W - NE| in five classes), whether the channel coded
before at the same pixel hit one of its candidates, and the model's own probability of v_j among the values not yet
excluded, in half-bit buckets of -log2: the counts learn how far to trust the model where it says v_j is likely or
not. (Probe before it was built, `experiments/repeat_flag_probe.py`, ideal code length of the first three Wikimedia
val photographs in colour: one candidate -1.2%, two -1.9%, these five -2.75%, seven -2.9%.)

Everything is integer: the masses Cq(v + 1) - Cq(v) of the integer model (`fixedpoint`), the buckets by exact
integer comparison, counts updated after each front (so encoder and decoder see the same counts), halved when a
context has seen `COUNT_LIMIT` events, and frequencies with sum 2^24 - 2 as the digits' (`engine`), which
`constriction`'s leaky quantiser takes exactly.
"""

from __future__ import annotations

import numpy as np

CANDIDATES = 5  # W, N, NE, NW, clamp(W + N - NW)
BUCKETS = 16  # half-bit buckets of -log2 P(v): 0 .. 7.5 bits and more
ACTIVITY_EDGES = np.array([1, 2, 4, 8])  # activity classes: 0, 1, 2-3, 4-7, 8 and more
ACTIVITY = len(ACTIVITY_EDGES) + 1
COUNT_LIMIT = 4096  # a context's counts are halved when it has seen this many events (adapts within an image)
UNIT = 16  # counts are kept in 1/16 of an event, so that the prior below can be fractional
PRIOR_EVENTS = 4  # each context starts as if it had seen 4 events at the model's own rate (its bucket's middle)
_THRESHOLD_BITS = 14
# bucket b >= 1 holds P(v) <= 2^(-b / 2): mass * round(2^(b / 2) 2^14) <= total 2^14, exact in int64 while
# total < 2^48 (the integer model's Cq(256) < 2^38)
_THRESHOLDS = np.array([round(2 ** (b / 2) * (1 << _THRESHOLD_BITS)) for b in range(1, BUCKETS)], dtype=np.int64)
_FREE = (1 << 24) - 2  # the digits' budget at radix 2 (engine.PRECISION = 24)
# the prior's hits of a context of bucket b: PRIOR_EVENTS 2^(-(b + 1/2) / 2) in 1/16 events, so that an unseen
# context codes its flag at about the model's probability (no learning cost on small images)
_PRIOR_HITS = np.array([round(UNIT * PRIOR_EVENTS * 2 ** (-(b + 0.5) / 2)) for b in range(BUCKETS)], dtype=np.int64)
MISS, HIT = 0, 1


def buckets(mass: np.ndarray, total: np.ndarray) -> np.ndarray:
    """Bucket of -log2 (mass / total) [n] (0 .. BUCKETS - 1) from integer masses and totals [n] (mass <= total;
    mass 0, or total 0: the last bucket)."""
    mass, total = np.asarray(mass, np.int64), np.asarray(total, np.int64)
    check_totals(total)
    return (mass[:, None] * _THRESHOLDS[None, :] <= (total << _THRESHOLD_BITS)[:, None]).sum(1)


def check_totals(total: np.ndarray) -> None:
    """ValueError unless every total is below 2^48 (where the buckets' products stay exact in int64)."""
    if total.size and int(total.max()) >= 1 << 48:
        raise ValueError("mixture totals of 2^48 or more: not an integer model of this codec")


def candidates(neighbours: tuple[np.ndarray, ...]) -> np.ndarray:
    """int64 [n, CANDIDATES]: the candidate values (W, N, NE, NW, clamp(W + N - NW, 0, 255)) from the pixel
    codes 2v + 1 of (W, N, NW, NE) [n] each."""
    west, north, north_west, north_east = (np.asarray(c, np.int64) >> 1 for c in neighbours)
    gradient = np.clip(west + north - north_west, 0, 255)
    return np.stack([west, north, north_east, north_west, gradient], 1)


def activity(neighbours: tuple[np.ndarray, ...]) -> np.ndarray:
    """int64 [n]: the activity class of max(|W - N|, |W - NW|, |W - NE|) from the codes of (W, N, NW, NE)."""
    west, north, north_west, north_east = (np.asarray(c, np.int64) >> 1 for c in neighbours)
    spread = np.maximum(np.maximum(np.abs(west - north), np.abs(west - north_west)), np.abs(west - north_east))
    return np.searchsorted(ACTIVITY_EDGES, spread, side="right")


def first_occurrence(values: np.ndarray) -> np.ndarray:
    """bool [n, K]: whether each candidate differs from every candidate before it in its row (the flags coded)."""
    out = np.ones(values.shape, dtype=bool)
    for j in range(1, values.shape[1]):
        out[:, j] = (values[:, j, None] != values[:, :j]).all(1)
    return out


class FlagState:
    """One channel's flags of one front, rank by rank: `step(rank)` finds the cells that code a flag of that rank
    (still open, the candidate not a repeat of an earlier one) with their contexts and frequencies in
    cells[:m], contexts[:m], freqs[:m]; `apply(rank, m, hits)` closes a hit cell with the candidate's value and
    leaves a missed candidate out of its cell's distribution (skip, skip_mass, remaining). Plain NumPy (the torch
    backend's); `kernels.FlagState` computes the same integers compiled.

    cands, masses, coded [n, K] (`candidates`, their masses, `first_occurrence`); remaining [n]: the mass not yet
    left out (the totals at first); activity, previous [n] (the previous channel's hits, zeros for the first)."""

    def __init__(self, channel: int, counts: RepeatCounts, coded: np.ndarray, cands: np.ndarray, masses: np.ndarray,
                 remaining: np.ndarray, activity: np.ndarray, previous: np.ndarray) -> None:
        n = cands.shape[0]
        self.channel, self.counts, self.coded, self.cands, self.masses = channel, counts, coded, cands, masses
        self.remaining, self.activity, self.previous = remaining, activity, previous
        self.open_ = np.ones(n, dtype=bool)  # no flag of the cell has hit yet
        self.skip = np.full(cands.shape, -1, dtype=np.int64)
        self.skip_mass = np.zeros(cands.shape, dtype=np.int64)
        self.values = np.zeros(n, dtype=np.int64)
        self.cells = np.empty(n, dtype=np.int64)
        self.contexts = np.empty(n, dtype=np.int64)
        self.freqs = np.empty((n, 2), dtype=np.float64)

    def step(self, rank: int) -> int:
        cells = np.flatnonzero(self.open_ & self.coded[:, rank])
        m = cells.size
        contexts = self.counts.contexts(rank, self.channel, self.activity[cells], self.previous[cells],
                                        self.masses[cells, rank], self.remaining[cells])
        self.cells[:m], self.contexts[:m], self.freqs[:m] = cells, contexts, self.counts.frequencies(contexts)
        return m

    def apply(self, rank: int, m: int, hits: np.ndarray) -> None:
        cells = self.cells[:m]
        hit, missed = cells[hits], cells[~hits]
        self.values[hit] = self.cands[hit, rank]
        self.open_[hit] = False
        self.skip[missed, rank] = self.cands[missed, rank]
        self.skip_mass[missed, rank] = self.masses[missed, rank]
        self.remaining[missed] -= self.masses[missed, rank]


class RepeatCounts:
    """Hit counts of the flags' contexts for one image (CANDIDATES x channels x ACTIVITY x 2 x BUCKETS), int64."""

    def __init__(self, channels: int) -> None:
        self.channels = channels
        size = CANDIDATES * channels * ACTIVITY * 2 * BUCKETS
        self.hits = np.tile(_PRIOR_HITS, size // BUCKETS)  # the bucket is the context index's last digit
        self.seen = np.full(size, UNIT * PRIOR_EVENTS, dtype=np.int64)

    def contexts(self, rank: int, channel: int, activity: np.ndarray, previous_hit: np.ndarray, mass: np.ndarray,
                 remaining: np.ndarray) -> np.ndarray:
        """Context index [n] of the flags of candidate `rank` of n cells of `channel`: their activity classes,
        the previous channel's hits at the same pixels (zeros for the first channel), the candidates' masses and
        the mass not yet excluded (the total minus the candidates that missed before)."""
        index = ((rank * self.channels + channel) * ACTIVITY + activity) * 2 + previous_hit.astype(np.int64)
        return index * BUCKETS + buckets(mass, remaining)

    def frequencies(self, contexts: np.ndarray) -> np.ndarray:
        """float64 [n, 2] holding integers (miss, hit), sum 2^24 - 2: the Krichevsky-Trofimov estimate of each
        context's hit rate, (hits + 1/2) / (seen + 1) in events, i.e. (2 hits + 16) / (2 seen + 32) in counts."""
        hit = ((2 * self.hits[contexts] + UNIT) * _FREE) // (2 * self.seen[contexts] + 2 * UNIT)
        return np.stack([_FREE - hit, hit], 1).astype(np.float64)

    def update(self, contexts: np.ndarray, hits: np.ndarray) -> None:
        """Count one front's events (all its channels and ranks, in any order: sums), then halve the full
        contexts."""
        np.add.at(self.seen, contexts, UNIT)
        np.add.at(self.hits, contexts, UNIT * hits.astype(np.int64))
        full = self.seen >= UNIT * COUNT_LIMIT
        if full.any():
            self.seen[full] = (self.seen[full] + 1) >> 1
            self.hits[full] = (self.hits[full] + 1) >> 1
