"""One channel of one front coded in one compiled call (formats 6, 7 and 8 on the compiled kernels): the repeat
flags' candidates, the flags rank by rank, the digits of the cells where none hit (refined by the maps in format
8), and the range coder (`rangecoder`), all inside the loop.

Why: a BSDS300-sized image has ~1,300 fronts of ~150 cells; coding a front's channel through the Python layers
(candidates, flag state, flags, digits, two calls of the range coder, and the decoder's rank by rank and level by
level calls) cost about a third of the codec's time. The integers are those of `engine._RepeatFlags` with
`kernels.FlagState` and the digit kernels, in the same coding order (rank, cell; then level, cell), so the streams
are the same: the golden streams decode through it, and tests hold its words equal to the Python layers'.
"""

from __future__ import annotations

import numpy as np

from . import apm, rangecoder, repeat
from .kernels import (
    _apm_digit,
    _apm_path,
    _digit_edges,
    _flag_context,
    _frequencies,
    _jit,
    _repeat_prepare,
    _value_mass,
    maps_update,
)

#: what the kernels return besides a count: totals of 2^48 or more (not a codec's model), a corrupted stream
TOO_LARGE, CORRUPT = -2, -1
_TOTAL_LIMIT = np.int64(1) << 48  # `repeat.check_totals`


@_jit
def _flag_coding(flat, stripe, position, wc, activity_edges, count, offset, weights, step, total, phi, keep,
                 counts_args, previous, values, decode, state, words, events_ctx, events_hit, n_events):  # noqa: ANN001, ANN202
    """The flags of one channel rank by rank (`repeat.FlagState` step and apply, compiled): coded from `values`,
    or decoded into them (`decode`). Returns (open [n], skip, skip_mass [n, K], activity [n]) or, through the
    first, a negative code in position 0 of an empty array (TOO_LARGE, CORRUPT)."""
    channel, channels, activity_classes, buckets, hits_tab, seen_tab, thresholds, threshold_bits, free, unit = \
        counts_args
    n = keep.shape[0]
    k_count = repeat.CANDIDATES
    cands = np.empty((n, k_count), dtype=np.int64)
    activity = np.empty(n, dtype=np.int64)
    coded = np.empty((n, k_count), dtype=np.bool_)
    _repeat_prepare(flat, stripe, position, wc, activity_edges, cands, activity, coded)
    open_ = np.ones(n, dtype=np.bool_)
    skip = np.full((n, k_count), -1, dtype=np.int64)
    skip_mass = np.zeros((n, k_count), dtype=np.int64)
    remaining = np.empty(n, dtype=np.int64)
    for c in range(n):
        remaining[c] = total[keep[c]]
        if remaining[c] >= _TOTAL_LIMIT:
            return np.full(1, TOO_LARGE, dtype=np.int64), open_, skip, skip_mass, activity
    ext = np.empty(3, dtype=np.int64)
    pair = np.empty(2, dtype=np.int64)
    e = n_events[0]
    for rank in range(k_count):
        for c in range(n):
            if not (open_[c] and coded[c, rank]):
                continue
            mass = _value_mass(count, offset, weights, step, total, phi, keep[c], cands[c, rank], ext)
            index, hit_freq = _flag_context(rank, channel, channels, activity_classes, buckets, hits_tab, seen_tab,
                                            thresholds, threshold_bits, free, unit, mass, remaining[c], activity[c],
                                            previous[c])
            miss_freq = free - hit_freq  # the symbols' frequencies g + 1: miss, then hit
            if decode:
                pair[0], pair[1] = miss_freq, hit_freq
                symbol = rangecoder.decode_frequencies(state, words, pair)
                if symbol < 0:
                    return np.full(1, CORRUPT, dtype=np.int64), open_, skip, skip_mass, activity
                hit = symbol == repeat.HIT
                if hit:
                    values[c] = cands[c, rank]
            else:
                hit = values[c] == cands[c, rank]
                if hit:
                    rangecoder.encode_symbol(state, words, miss_freq + 1, hit_freq + 1)
                else:
                    rangecoder.encode_symbol(state, words, 0, miss_freq + 1)
            events_ctx[e], events_hit[e] = index, hit
            e += 1
            if hit:  # a cell's state is its own: applying now is applying after the rank
                open_[c] = False
            else:
                skip[c, rank] = cands[c, rank]
                skip_mass[c, rank] = mass
                remaining[c] -= mass
    n_events[0] = e
    for c in range(n):
        previous[c] = 0 if open_[c] else 1
    return np.zeros(1, dtype=np.int64), open_, skip, skip_mass, activity


@_jit
def code_channel(flat, stripe, position, wc, activity_edges, count, offset, weights, step, total, phi, keep,  # noqa: ANN001, ANN201
                 counts_args, previous, values, decode, digit_bits, refine, maps_args, state, words, events_ctx,
                 events_hit, n_events):
    """One channel of a front: its flags, then the digits (level, then cell) of the cells where none hit, coded
    from values [n] or decoded into them (`decode`). Returns 0, or TOO_LARGE / CORRUPT.

    flat [B, planes * Hc * Wc], stripe, position [n] (the cells' canvas and flat position in this channel's
    plane), wc: the canvas; count .. phi: the front's mixture of this channel; keep [n]: the kept cells' rows in it;
    counts_args: the flags' constants and counts (`counts_arguments`); previous [n]: the previous channel's hits
    (updated to this channel's); maps_args (table, stretch, first context, activity classes, ones, shares): the
    maps of format 8 with `refine`; state, words: the range coder's (`rangecoder`); events_ctx, events_hit: the
    flags' contexts and hits from n_events[0] on, for the counts' update after the front."""
    code, open_, skip, skip_mass, activity = _flag_coding(
        flat, stripe, position, wc, activity_edges, count, offset, weights, step, total, phi, keep, counts_args,
        previous, values, decode, state, words, events_ctx, events_hit, n_events)
    if code[0] != 0:
        return code[0]
    table, stretch, ctx0, activity_classes, ones, shares = maps_args
    radix, levels = 1 << digit_bits, 8 // digit_bits
    rest = np.flatnonzero(open_)
    nr = rest.shape[0]
    low = np.zeros(nr, dtype=np.int64)
    high = np.empty(nr, dtype=np.int64)
    start = np.zeros(nr, dtype=np.int64)
    for r in range(nr):
        q = rest[r]
        high[r] = total[keep[q]] - skip_mass[q].sum()
    ext = np.empty(radix + 1, dtype=np.int64)
    budget = np.empty(radix, dtype=np.int64)
    freqs = np.empty((nr, radix), dtype=np.int64)
    knot = np.empty((nr, radix - 1), dtype=np.int64)
    weight = np.empty((nr, radix - 1), dtype=np.int64)
    lows = np.empty((nr, radix + 1), dtype=np.int64)
    for level in range(levels):
        width = 8 - digit_bits * (level + 1)
        for r in range(nr):  # the level's frequencies of every cell first: the encoder's order, level then cell
            q = rest[r]
            _digit_edges(count, offset, weights, step, phi, keep[q], start[r], width, radix, skip[q], skip_mass[q],
                         ext)
            ext[0], ext[radix] = low[r], high[r]
            if refine:
                _apm_digit(table, stretch, ctx0 + activity[q] + level * digit_bits * activity_classes,
                           activity_classes, digit_bits, ext, freqs, r, budget, knot[r], weight[r])
            else:
                _frequencies(ext, digit_bits, freqs, r)
            lows[r] = ext
        for r in range(nr):
            q = rest[r]
            if decode:
                digit = rangecoder.decode_frequencies(state, words, freqs[r])
                if digit < 0:
                    return CORRUPT
            else:
                digit = (values[q] >> width) & (radix - 1)
                rangecoder.encode_frequencies(state, words, digit, freqs[r])
            if refine:
                _apm_path(knot[r], weight[r], digit, digit_bits, ones, shares)
            low[r], high[r] = lows[r, digit], lows[r, digit + 1]
            start[r] += np.int64(digit) << width
    if decode:
        for r in range(nr):
            values[rest[r]] = start[r]
    return 0


@_jit
def update_counts(hits_tab, seen_tab, events_ctx, events_hit, n_events, unit, limit):  # noqa: ANN001, ANN201
    """`repeat.RepeatCounts.update` of the front's events [n_events[0]], compiled; resets n_events."""
    for e in range(n_events[0]):
        seen_tab[events_ctx[e]] += unit
        if events_hit[e]:
            hits_tab[events_ctx[e]] += unit
    n_events[0] = 0
    for k in range(seen_tab.shape[0]):
        if seen_tab[k] >= unit * limit:
            seen_tab[k] = (seen_tab[k] + 1) >> 1
            hits_tab[k] = (hits_tab[k] + 1) >> 1


def counts_arguments(counts: repeat.RepeatCounts, channel: int) -> tuple:
    """The flags' constants and counts as `code_channel` takes them."""
    return (np.int64(channel), np.int64(counts.channels), np.int64(repeat.ACTIVITY), np.int64(repeat.BUCKETS),
            counts.hits, counts.seen, repeat._THRESHOLDS, np.int64(repeat._THRESHOLD_BITS), np.int64(repeat._FREE),
            np.int64(repeat.UNIT))


def maps_arguments(tables: apm.Tables | None, channel: int) -> tuple:
    """The maps as `code_channel` takes them (dummies without maps: not read)."""
    if tables is None:
        dummy = np.zeros(1, dtype=np.int64)
        return (np.zeros((1, apm.KNOTS), dtype=np.int64), apm.STRETCH, np.int64(0), np.int64(repeat.ACTIVITY),
                dummy, dummy)
    return (tables.table, apm.STRETCH, np.int64(apm.context(channel, 0, 0)), np.int64(repeat.ACTIVITY),
            tables.ones.reshape(-1), tables.shares.reshape(-1))


class FrontCoder:
    """The repeat flags' counts, the maps (format 8, or None) and the range coder of one image, coding it front by
    front and channel by channel through `code_channel`: `start(t, keep)`, `channel(k, mix, values)` for each
    channel in order, `finish()` (the counts' and maps' updates after the front)."""

    def __init__(self, stepper, counts: repeat.RepeatCounts, tables: apm.Tables | None, digit_bits: int,  # noqa: ANN001
                 coder: rangecoder.RangeEncoder | rangecoder.RangeDecoder) -> None:
        self.stepper, self.counts, self.tables, self.digit_bits, self.coder = stepper, counts, tables, digit_bits, coder
        self.decode = isinstance(coder, rangecoder.RangeDecoder)
        self.wc = stepper.canvas.shape[-1]
        self.plane = stepper.canvas.shape[-2] * self.wc
        self.counts_args = [counts_arguments(counts, k) for k in range(counts.channels)]
        self.maps_args = [maps_arguments(tables, k) for k in range(counts.channels)]
        self.n_events = np.zeros(1, dtype=np.int64)

    def start(self, t: int, keep: np.ndarray) -> None:
        """Front t's kept cells (indices into its B * n cells)."""
        lo, hi = self.stepper.rows(t)
        n = hi - lo + 1
        self.keep = np.ascontiguousarray(keep, dtype=np.int64)
        self.stripe = self.keep // n
        self.position = (self.stepper.pixel_start[lo : hi + 1] + t)[self.keep % n]
        self.previous = np.zeros(self.keep.shape[0], dtype=np.int64)
        size = self.counts.channels * repeat.CANDIDATES * self.keep.shape[0]
        self.events_ctx = np.empty(size, dtype=np.int64)
        self.events_hit = np.empty(size, dtype=np.bool_)

    def channel(self, k: int, mix, values: np.ndarray | None = None) -> np.ndarray:  # noqa: ANN001 - KernelMixture
        """Channel k's values [n] of the kept cells: coded from `values` (encoder), or decoded (decoder)."""
        n = self.keep.shape[0]
        if self.decode:
            values = np.zeros(n, dtype=np.int64)
        else:
            values = np.ascontiguousarray(values, dtype=np.int64)
            self.coder.reserve(n * (repeat.CANDIDATES + 8 // self.digit_bits))
        code = code_channel(self.stepper.flat, self.stripe, self.position + k * self.plane, self.wc,
                            repeat.ACTIVITY_EDGES, mix.count, mix.offset, mix.weights, mix.step, mix.total,
                            self.stepper.phi, self.keep, self.counts_args[k], self.previous, values, self.decode,
                            self.digit_bits, self.tables is not None, self.maps_args[k], self.coder.state,
                            self.coder.words, self.events_ctx, self.events_hit, self.n_events)
        if code == TOO_LARGE:
            raise ValueError("mixture totals of 2^48 or more: not an integer model of this codec")
        if code == CORRUPT:
            raise ValueError("corrupted ride codec stream: the range decoder met data no encoder writes")
        return values

    def finish(self) -> None:
        """After the front: count the flags' events, then the maps' (the next front codes with both)."""
        update_counts(self.counts.hits, self.counts.seen, self.events_ctx, self.events_hit, self.n_events,
                      np.int64(repeat.UNIT), np.int64(repeat.COUNT_LIMIT))
        if self.tables is not None:
            maps_update(self.tables)
