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
    _jit_parallel,
    _prange,
    _repeat_prepare,
    _value_mass,
    maps_update,
    numba,
)

#: what the decoding kernel returns instead of 0 for a corrupted stream
CORRUPT = -1


@_jit
def _prepare(flat, stripe, position, wc, activity_edges, n):  # noqa: ANN001, ANN202
    """The n cells' candidates, activity classes and first occurrences (`repeat`)."""
    cands = np.empty((n, repeat.CANDIDATES), dtype=np.int64)
    activity = np.empty(n, dtype=np.int64)
    coded = np.empty((n, repeat.CANDIDATES), dtype=np.bool_)
    _repeat_prepare(flat, stripe, position, wc, activity_edges, cands, activity, coded)
    return cands, activity, coded


@_jit
def _flag(counts_args, rank, mass, remaining, activity, previous):  # noqa: ANN001, ANN202
    """(context, hit frequency) of a flag (`kernels._flag_context`) from `counts_arguments`' tuple."""
    channel, channels, activity_classes, buckets, hits_tab, seen_tab, thresholds, threshold_bits, free, unit = \
        counts_args
    return _flag_context(rank, channel, channels, activity_classes, buckets, hits_tab, seen_tab, thresholds,
                         threshold_bits, free, unit, mass, remaining, activity, previous)


def _encode_channel(flat, stripe, position, wc, activity_edges, count, offset, weights, step, total, phi, keep,  # noqa: ANN001, ANN202
                    counts_args, previous, values, digit_bits, refine, maps_args, state, words, events_ctx,
                    events_hit, n_events):
    """The encoder's side of `code_channel`: every cell's flags and digits modelled on its own (cells split over
    numba's threads in the parallel build: a cell reads only the front's fixed counts and maps), then coded in the
    stream's order in one serial pass."""
    free = counts_args[8]
    table, stretch, ctx0, activity_classes, ones, shares = maps_args
    n, k_count = keep.shape[0], repeat.CANDIDATES
    cands, activity, coded = _prepare(flat, stripe, position, wc, activity_edges, n)
    radix, levels = 1 << digit_bits, 8 // digit_bits
    flag_ctx = np.empty((n, k_count), dtype=np.int64)
    flag_freq = np.empty((n, k_count), dtype=np.int64)
    flagged = np.zeros((n, k_count), dtype=np.bool_)
    hit_rank = np.full(n, k_count, dtype=np.int64)  # the rank whose flag hit; k_count: none did
    freqs = np.empty((n, levels, radix), dtype=np.int64)
    nodes = (n, levels, radix - 1) if refine else (1, 1, 1)
    knot, weight = np.empty(nodes, dtype=np.int64), np.empty(nodes, dtype=np.int64)
    skip = np.full((n, k_count), -1, dtype=np.int64)
    skip_mass = np.zeros((n, k_count), dtype=np.int64)
    ext = np.empty((n, radix + 1), dtype=np.int64)
    budget = np.empty((n, radix), dtype=np.int64)
    for c in _prange(n):
        i, v = keep[c], values[c]
        remaining = total[i]
        for rank in range(k_count):
            if not coded[c, rank]:
                continue
            mass = _value_mass(count, offset, weights, step, total, phi, i, cands[c, rank], ext[c])
            flag_ctx[c, rank], flag_freq[c, rank] = _flag(counts_args, rank, mass, remaining, activity[c],
                                                          previous[c])
            flagged[c, rank] = True
            if v == cands[c, rank]:
                hit_rank[c] = rank
                break
            skip[c, rank], skip_mass[c, rank] = cands[c, rank], mass
            remaining -= mass
        if hit_rank[c] < k_count:
            continue
        low, high, start = np.int64(0), remaining, np.int64(0)
        for level in range(levels):
            width = 8 - digit_bits * (level + 1)
            _digit_edges(count, offset, weights, step, phi, i, start, width, radix, skip[c], skip_mass[c], ext[c])
            ext[c, 0], ext[c, radix] = low, high
            if refine:
                _apm_digit(table, stretch, ctx0 + activity[c] + level * digit_bits * activity_classes,
                           activity_classes, digit_bits, ext[c], freqs[c], level, budget[c], knot[c, level],
                           weight[c, level])
            else:
                _frequencies(ext[c], digit_bits, freqs[c], level)
            digit = (v >> width) & (radix - 1)
            low, high = ext[c, digit], ext[c, digit + 1]
            start += np.int64(digit) << width
    e = n_events[0]
    for rank in range(k_count):  # the stream's order: rank, then cell; then level, then cell
        for c in range(n):
            if not flagged[c, rank]:
                continue
            hit_freq = flag_freq[c, rank]
            hit = hit_rank[c] == rank
            if hit:  # frequencies g + 1: miss, then hit
                rangecoder.encode_symbol(state, words, free - hit_freq + 1, hit_freq + 1)
            else:
                rangecoder.encode_symbol(state, words, 0, free - hit_freq + 1)
            events_ctx[e], events_hit[e] = flag_ctx[c, rank], hit
            e += 1
    n_events[0] = e
    for c in range(n):
        previous[c] = 1 if hit_rank[c] < k_count else 0
    for level in range(levels):
        width = 8 - digit_bits * (level + 1)
        for c in range(n):
            if hit_rank[c] < k_count:
                continue
            digit = (values[c] >> width) & (radix - 1)
            rangecoder.encode_frequencies(state, words, digit, freqs[c, level])
            if refine:
                _apm_path(knot[c, level], weight[c, level], digit, digit_bits, ones, shares)
    return 0


def _decode_channel(flat, stripe, position, wc, activity_edges, count, offset, weights, step, total, phi, keep,  # noqa: ANN001, ANN202
                    counts_args, previous, values, digit_bits, refine, maps_args, state, words, events_ctx,
                    events_hit, n_events):
    """The decoder's side of `code_channel`: rank by rank, then digit level by level, the cells' frequencies
    (split over numba's threads in the parallel build), then their symbols from the range decoder in one serial
    pass."""
    free = counts_args[8]
    table, stretch, ctx0, activity_classes, ones, shares = maps_args
    n, k_count = keep.shape[0], repeat.CANDIDATES
    cands, activity, coded = _prepare(flat, stripe, position, wc, activity_edges, n)
    radix, levels = 1 << digit_bits, 8 // digit_bits
    open_ = np.ones(n, dtype=np.bool_)
    flagged = np.empty(n, dtype=np.bool_)
    flag_ctx = np.empty(n, dtype=np.int64)
    flag_freq = np.empty(n, dtype=np.int64)
    masses = np.empty(n, dtype=np.int64)
    remaining = np.empty(n, dtype=np.int64)
    skip = np.full((n, k_count), -1, dtype=np.int64)
    skip_mass = np.zeros((n, k_count), dtype=np.int64)
    scratch = np.empty((n, 3), dtype=np.int64)
    pair = np.empty(2, dtype=np.int64)
    for c in range(n):
        remaining[c] = total[keep[c]]
    e = n_events[0]
    for rank in range(k_count):
        for c in _prange(n):
            flagged[c] = open_[c] and coded[c, rank]
            if flagged[c]:
                masses[c] = _value_mass(count, offset, weights, step, total, phi, keep[c], cands[c, rank],
                                        scratch[c])
                flag_ctx[c], flag_freq[c] = _flag(counts_args, rank, masses[c], remaining[c], activity[c],
                                                  previous[c])
        for c in range(n):
            if not flagged[c]:
                continue
            pair[0], pair[1] = free - flag_freq[c], flag_freq[c]
            symbol = rangecoder.decode_frequencies(state, words, pair)
            if symbol < 0:
                return CORRUPT
            hit = symbol == repeat.HIT
            events_ctx[e], events_hit[e] = flag_ctx[c], hit
            e += 1
            if hit:
                values[c], open_[c] = cands[c, rank], False
            else:
                skip[c, rank], skip_mass[c, rank] = cands[c, rank], masses[c]
                remaining[c] -= masses[c]
    n_events[0] = e
    for c in range(n):
        previous[c] = 0 if open_[c] else 1
    rest = np.flatnonzero(open_)
    nr = rest.shape[0]
    low = np.zeros(nr, dtype=np.int64)
    high = remaining[rest]
    start = np.zeros(nr, dtype=np.int64)
    freqs = np.empty((nr, radix), dtype=np.int64)
    nodes = (nr, radix - 1) if refine else (1, 1)
    knot, weight = np.empty(nodes, dtype=np.int64), np.empty(nodes, dtype=np.int64)
    ext = np.empty((nr, radix + 1), dtype=np.int64)
    budget = np.empty((nr, radix), dtype=np.int64)
    for level in range(levels):
        width = 8 - digit_bits * (level + 1)
        for r in _prange(nr):
            q = rest[r]
            _digit_edges(count, offset, weights, step, phi, keep[q], start[r], width, radix, skip[q], skip_mass[q],
                         ext[r])
            ext[r, 0], ext[r, radix] = low[r], high[r]
            if refine:
                _apm_digit(table, stretch, ctx0 + activity[q] + level * digit_bits * activity_classes,
                           activity_classes, digit_bits, ext[r], freqs, r, budget[r], knot[r], weight[r])
            else:
                _frequencies(ext[r], digit_bits, freqs, r)
        for r in range(nr):
            digit = rangecoder.decode_frequencies(state, words, freqs[r])
            if digit < 0:
                return CORRUPT
            if refine:
                _apm_path(knot[r], weight[r], digit, digit_bits, ones, shares)
            low[r], high[r] = ext[r, digit], ext[r, digit + 1]
            start[r] += np.int64(digit) << width
    for r in range(nr):
        values[rest[r]] = start[r]
    return 0


# each compiled twice from one source: serial (prange runs as range) and split over numba's threads
_ENCODERS = (_jit(_encode_channel), _jit_parallel(_encode_channel))
_DECODERS = (_jit(_decode_channel), _jit_parallel(_decode_channel))


def code_channel(flat, stripe, position, wc, activity_edges, count, offset, weights, step, total, phi, keep,  # noqa: ANN001, ANN201
                 counts_args, previous, values, decode, digit_bits, refine, maps_args, state, words, events_ctx,
                 events_hit, n_events):
    """One channel of a front: its flags, then the digits (level, then cell) of the cells where none hit, coded
    from values [n] or decoded into them (`decode`). Returns 0, or CORRUPT. The mixture's totals must be below
    2^48 (`repeat.check_totals`). The cells' modelling is
    split over numba's threads when there are several (`kernels._follow_torch_threads`): each cell's integers are
    its own, and the range coder runs in the stream's order, so any split gives the same stream.

    flat [B, planes * Hc * Wc], stripe, position [n] (the cells' canvas and flat position in this channel's
    plane), wc: the canvas; count .. phi: the front's mixture of this channel; keep [n]: the kept cells' rows in it;
    counts_args: the flags' constants and counts (`counts_arguments`); previous [n]: the previous channel's hits
    (updated to this channel's); maps_args (table, stretch, first context, activity classes, ones, shares): the
    maps of format 8 with `refine`; state, words: the range coder's (`rangecoder`); events_ctx, events_hit: the
    flags' contexts and hits from n_events[0] on, for the counts' update after the front."""
    kernel = (_DECODERS if decode else _ENCODERS)[int(numba.get_num_threads() > 1)]
    return kernel(flat, stripe, position, wc, activity_edges, count, offset, weights, step, total, phi, keep,
                  counts_args, previous, values, digit_bits, refine, maps_args, state, words, events_ctx, events_hit,
                  n_events)


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
        # `code_channel`'s choice of build, once per image (asking numba costs microseconds per call)
        self.kernel = (_DECODERS if self.decode else _ENCODERS)[int(numba.get_num_threads() > 1)]

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
        repeat.check_totals(mix.total[self.keep])  # the flags' buckets are exact in int64 below 2^48
        if self.decode:
            values = np.zeros(n, dtype=np.int64)
        else:
            values = np.ascontiguousarray(values, dtype=np.int64)
            self.coder.reserve(n * (repeat.CANDIDATES + 8 // self.digit_bits))
        code = self.kernel(self.stepper.flat, self.stripe, self.position + k * self.plane, self.wc,
                           repeat.ACTIVITY_EDGES, mix.count, mix.offset, mix.weights, mix.step, mix.total,
                           self.stepper.phi, self.keep, self.counts_args[k], self.previous, values, self.digit_bits,
                           self.tables is not None, self.maps_args[k], self.coder.state, self.coder.words,
                           self.events_ctx, self.events_hit, self.n_events)
        if code == CORRUPT:
            raise ValueError("corrupted ride codec stream: the range decoder met data no encoder writes")
        return values

    def finish(self) -> None:
        """After the front: count the flags' events, then the maps' (the next front codes with both)."""
        update_counts(self.counts.hits, self.counts.seen, self.events_ctx, self.events_hit, self.n_events,
                      np.int64(repeat.UNIT), np.int64(repeat.COUNT_LIMIT))
        if self.tables is not None:
            maps_update(self.tables)
