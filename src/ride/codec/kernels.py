"""Compiled (numba) kernels of the integer RIDE: one front's element-wise work and the digits' frequencies, fused.

The torch `fixedpoint.FrontStepper` spends its time in ~450 small tensor operations per front (index selects, int64
element-wise passes, table gathers), not in its GEMMs. `KernelStepper` computes the same integers with the same
float GEMMs on integers (exact whatever the BLAS, design §13) and a few compiled loops per front: the LSTM cell
update, the mixture's weights and offsets, and the CDF at each digit's edges together with the digit frequencies.
Everything in the loops is int64 (round-half-even shifts of the GEMM results done on integers, which is what
float `round(x 2^-s)` gives exactly), so a thread count or a CPU cannot change a symbol. Tests hold it equal to
`FrontStepper` and to the NumPy reference `fixedpoint_ref`, and the golden streams decode through it.

numba compiles the kernels on first use and caches them beside this file (`cache=True`); `available()` is False
when numba is missing, and the codec then uses the torch stepper (same streams, slower).
"""

from __future__ import annotations

import numpy as np
import torch

from . import apm, repeat
from .colour_fixedpoint import R_CLIP
from .fixedpoint import (
    FEAT_CLIP,
    LOG_BITS,
    MAX_SHIFT,
    MEAN_CLIP,
    PHI_ONE,
    PRE_BITS,
    PRE_RANGE,
    Q_BITS,
    R_SHIFT,
    UNIT_BITS,
    Z0_CLIP,
    Z_BITS,
    Z_RANGE,
    FrontGeometry,
    IntRIDE,
)

try:
    import numba
except ImportError:  # the torch stepper codes the same streams
    numba = None


def available() -> bool:
    """Whether the compiled kernels can be used (numba importable)."""
    return numba is not None


def _jit(fn):  # noqa: ANN001, ANN202
    return numba.njit(cache=True, nogil=True, boundscheck=False)(fn) if numba is not None else fn


def _jit_parallel(fn):  # noqa: ANN001, ANN202
    """Cells split over numba's threads (`prange`): each cell's integers are its own, so any split gives the same."""
    return numba.njit(cache=True, nogil=True, boundscheck=False, parallel=True)(fn) if numba is not None else fn


_prange = numba.prange if numba is not None else range


@_jit
def _shift_even(x, s):  # noqa: ANN001, ANN202 - int64 scalars
    """x 2^-s rounded half to even (s >= 0), without branches on x: adding 2^(s-1) - 1 plus the parity of
    floor(x 2^-s) carries exactly when the remainder is above half, or at half with an odd quotient."""
    if s == 0:  # the same for every cell of a column: predictable
        return x
    return (x + ((np.int64(1) << (s - 1)) - 1) + ((x >> s) & 1)) >> s


@_jit
def _gather_codes(flat, window, out):  # noqa: ANN001, ANN202
    """out[b n + r, k] = flat[b, window[r, k]]: the causal windows of the front's cells, float64 for the GEMM."""
    batch, n, k_count = flat.shape[0], window.shape[0], window.shape[1]
    for b in range(batch):
        for r in range(n):
            for k in range(k_count):
                out[b * n + r, k] = flat[b, window[r, k]]


@_jit
def _input_map(mapped, shift, d5, z0_out, base_out):  # noqa: ANN001, ANN202
    """The input map's exact sums [N, 5D + channels] -> layer 1's gate inputs z0 [N, 5D] (int32) and the
    prediction bases [N, channels]."""
    for i in range(mapped.shape[0]):
        for j in range(d5):
            v = _shift_even(np.int64(mapped[i, j]), shift[j])
            z0_out[i, j] = min(max(v, -Z0_CLIP), Z0_CLIP)
        for j in range(base_out.shape[1]):
            base_out[i, j] = _shift_even(np.int64(mapped[i, d5 + j]), shift[d5 + j])


@_jit
def _gather_hidden(h_buf, past, below, out):  # noqa: ANN001, ANN202
    """The layer's GEMM input [N, (2 or 3) D]: [h_below,] h_up, h_left from the state buffer [B, 2 stride, D]."""
    batch, n, d = h_buf.shape[0], past.shape[0], h_buf.shape[2]
    first = below.shape[1]  # 0 for layer 1
    for b in range(batch):
        for r in range(n):
            i = b * n + r
            for u in range(first):
                out[i, u] = below[i, u]
            up, left = past[r, 0], past[r, 1]
            for u in range(d):
                out[i, first + u] = h_buf[b, up, u]
                out[i, first + d + u] = h_buf[b, left, u]


@_jit_parallel
def _lstm_cells(pre, shift, half, odd, add, add_rows, gate_tanh, gate_sigmoid, tanh_h, c_buf, h_buf, past, here,  # noqa: ANN001, ANN202
                below, cell_clip):
    """Gates, cells and hidden states of one layer from its exact GEMM sums pre [N, 5D] (design §13 step 2);
    writes the states at `here` and the hidden states [N, D] (float32 holding integers) into `below`.

    The gate inputs are int32 (|sums| < 2^24, shifts <= 31): round half to even of x 2^-s is
    (x + half + (floor(x 2^-s) & odd)) >> s with half = 2^(s-1) - 1 and odd = 1 for s > 0, 0 and 0 for s = 0,
    so the column loop has no branch and vectorises; the tables are int32 (values below 2^16)."""
    batch, n, d = c_buf.shape[0], past.shape[0], c_buf.shape[2]
    d5 = 5 * d
    r_max = np.int32(PRE_RANGE << PRE_BITS)
    shift_h = 2 * UNIT_BITS - PRE_BITS
    for cell_index in _prange(batch * n):
        i = np.int64(cell_index)  # prange's index may be unsigned: keep index arithmetic int64
        b, r = i // n, i % n
        gates = np.empty(d5, dtype=np.int64)
        index = np.empty(d5, dtype=np.int32)
        a = i if add_rows else np.int64(0)
        up, left, at = past[r, 0], past[r, 1], here[r]
        for col in range(d5):
            x = np.int32(pre[i, col])
            x = ((x + half[col] + ((x >> shift[col]) & odd[col])) >> shift[col]) + add[a, col]
            index[col] = min(max(x, -r_max), r_max) + r_max
        for col in range(d):
            gates[col] = gate_tanh[index[col]]
        for col in range(d, d5):
            gates[col] = gate_sigmoid[index[col]]
        for u in range(d):
            cell = (gates[u] * gates[2 * d + u] + c_buf[b, left, u] * gates[4 * d + u]
                    + c_buf[b, up, u] * gates[3 * d + u])
            cell = (cell + (np.int64(1) << (UNIT_BITS - 1))) >> UNIT_BITS
            cell = min(max(cell, -cell_clip), cell_clip)
            c_buf[b, at, u] = cell
            x = (cell * gates[d + u] + (np.int64(1) << (shift_h - 1))) >> shift_h
            index[u] = min(max(x, -r_max), r_max) + r_max
        for u in range(d):
            h = np.float32(tanh_h[index[u]])
            h_buf[b, at, u] = h
            below[i, u] = h


@_jit
def _features(acc, out_shift, base, num_features, feat2_out, means_out):  # noqa: ANN001, ANN202
    """The MCGSM GEMM's exact sums acc [N, F + C] -> squared features [N, F] (float64 holding integers < 2^30,
    for the energy GEMM) and component means [N, C] at 2^-Q_BITS."""
    n, f_count = acc.shape[0], num_features
    for i in range(n):
        for f in range(f_count):
            v = _shift_even(np.int64(acc[i, f]), out_shift[f])
            v = min(max(v, -FEAT_CLIP), FEAT_CLIP)
            feat2_out[i, f] = np.float64(v * v)
        for c in range(acc.shape[1] - f_count):
            m = _shift_even(np.int64(acc[i, f_count + c]), out_shift[f_count + c]) + base[i]
            means_out[i, c] = min(max(m, -MEAN_CLIP), MEAN_CLIP)


@_jit_parallel
def _mixture(energy, means, num_scales, energy_shift, energy_clip, eta, slope, exp2, precision, step,  # noqa: ANN001, ANN202
             offset_base, count_out, offset_out, weights_out, step_out, total_out):
    """Design §13 step 3 from the energies [N, C] (exact float64 sums) and means [N, C]: per cell the components
    with non-zero weight, compacted (count [N]; offset [N, C S]: z index of edge k = (offset + k step) >> R_SHIFT
    before the clamp; weights [N, C S]; step [N, C S]) and Cq(256) [N]. Components of zero weight add nothing to
    any Cq, so leaving them out changes no integer."""
    n, c_count, s_count = energy.shape[0], energy.shape[1], num_scales
    for i in _prange(n):
        logits = np.empty(c_count * s_count, dtype=np.int64)
        top = np.int64(-(1 << 62))
        for c in range(c_count):
            e = min(_shift_even(np.int64(energy[i, c]), energy_shift), energy_clip)
            for s in range(s_count):
                lg = eta[c, s] - ((e * slope[c, s] + (np.int64(1) << (LOG_BITS - 1))) >> LOG_BITS)
                logits[c * s_count + s] = lg
                top = max(top, lg)
        total = np.int64(0)
        kept = 0
        for c in range(c_count):
            for s in range(s_count):
                k = c * s_count + s
                gap = top - logits[k]
                w = exp2[gap & ((1 << LOG_BITS) - 1)] >> min(gap >> LOG_BITS, MAX_SHIFT)
                if w != 0:
                    weights_out[i, kept] = w
                    offset_out[i, kept] = offset_base - means[i, c] * precision[c, s]
                    step_out[i, kept] = step[k]
                    kept += 1
                    total += w
        count_out[i] = kept
        total_out[i] = total * PHI_ONE


@_jit
def _cdf_edges(mix_count, offset, weights, step, phi, i, start, width, radix, ext):  # noqa: ANN001, ANN202
    """Cq of cell i at the interior edges start + j 2^width, j = 1 .. radix - 1, into ext[1 : radix] (design §13
    step 4)."""
    z_max = 2 * (Z_RANGE << Z_BITS)
    for j in range(1, radix):
        edge = start + (np.int64(j) << width)
        acc = np.int64(0)
        for k in range(mix_count[i]):  # independent iterations: vectorised
            z = (offset[i, k] + edge * step[i, k]) >> R_SHIFT
            acc += weights[i, k] * phi[min(max(z, 0), z_max)]
        ext[j] = acc


@_jit
def _digit_edges(count, offset, weights, step, phi, i, start, width, radix, skip, skip_mass, ext):  # noqa: ANN001, ANN202
    """Cq of cell i at the interior edges start + j 2^width (j = 1 .. radix - 1) into ext[1 : radix], without the
    values skip [K] (masses skip_mass [K]); the caller sets the interval's ends ext[0] and ext[radix]."""
    _cdf_edges(count, offset, weights, step, phi, i, start, width, radix, ext)
    _exclude(ext, start, width, radix, skip, skip_mass)


@_jit
def _frequencies(ext, digit_bits, out, row):  # noqa: ANN001, ANN202
    """Frequencies g [2^b] (sum 2^24 - 2^b) of a digit from Cq at its interval's 2^b + 1 edges ext; into out[row]."""
    radix = 1 << digit_bits
    free = (np.int64(1) << 24) - radix
    total = ext[radix] - ext[0]
    previous = np.int64(0)
    for j in range(1, radix + 1):
        if total == 0:
            cum = (j * free) >> digit_bits
        else:
            cum = ((ext[j] - ext[0]) * free) // total
        out[row, j - 1] = cum - previous
        previous = cum


@_jit
def _exclude(ext, start, width, radix, skip, skip_mass):  # noqa: ANN001, ANN202
    """Remove the masses skip_mass [K] of values skip [K] from Cq at the interior edges start + j 2^width in
    ext[1 : radix]: Cq(e) counts the values below e, so every edge above a value loses its mass (the repeat flags'
    misses; a mass of 0 changes nothing)."""
    for m in range(skip.shape[0]):
        if skip_mass[m] != 0:
            for j in range(1, radix):
                if start + (np.int64(j) << width) > skip[m]:
                    ext[j] -= skip_mass[m]


@_jit_parallel
def _encode_cells(count, offset, weights, step, total, phi, keep, values, digit_bits, skip, skip_mass, refine,  # noqa: ANN001, ANN202
                  table, stretch, ctx_base, activity_classes, symbols, freqs, knot, weight):
    """Every digit of the kept cells (values [n]): symbols [levels, n] and frequencies [levels n, 2^b] in the
    stream's order (level, then cell). Cell q's distribution is the mixture's without the values skip[q] [K],
    whose masses skip_mass[q] [K] it takes out (all 0: the whole mixture). With `refine` (format 8) the digits'
    decisions are refined by the maps `table` (`_apm_digit`; ctx_base [n]: each cell's context of its most
    significant bit), and each level's nodes' knots and weights go into knot, weight [n, levels, 2^b - 1] (for
    `_apm_gather`); without it those four arguments are not read."""
    radix, levels = 1 << digit_bits, 8 // digit_bits
    n = keep.shape[0]
    for q in _prange(n):
        ext = np.empty(radix + 1, dtype=np.int64)
        budget = np.empty(radix if refine else 1, dtype=np.int64)
        i, v = keep[q], values[q]
        low, high, start = np.int64(0), total[i] - skip_mass[q].sum(), np.int64(0)
        for level in range(levels):
            width = 8 - digit_bits * (level + 1)
            _digit_edges(count, offset, weights, step, phi, i, start, width, radix, skip[q], skip_mass[q], ext)
            ext[0], ext[radix] = low, high
            digit = (v >> width) & (radix - 1)
            if refine:
                _apm_digit(table, stretch, ctx_base[q] + level * digit_bits * activity_classes, activity_classes,
                           digit_bits, ext, freqs, level * n + q, budget, knot[q, level], weight[q, level])
            else:
                _frequencies(ext, digit_bits, freqs, level * n + q)
            symbols[level, q] = digit
            low, high = ext[digit], ext[digit + 1]
            start += np.int64(digit) << width


@_jit_parallel
def _decode_level(count, offset, weights, step, phi, keep, level, digit_bits, skip, skip_mass, start, ext, refine,  # noqa: ANN001, ANN202
                  table, stretch, ctx_base, activity_classes, freqs, knot, weight):
    """Digit `level` of the kept cells: Cq at the interior edges of each cell's interval (start [n]; ext [n, 2^b
    + 1] holds low and high in its first and last column), without the values skip[q] [K] (masses skip_mass[q]),
    and the digit frequencies [n, 2^b]; with `refine` (format 8) from the maps as in `_encode_cells`, each cell's
    nodes' knots and weights into knot, weight [n, 2^b - 1] (for `_decode_advance_apm`)."""
    radix = 1 << digit_bits
    width = 8 - digit_bits * (level + 1)
    for q in _prange(keep.shape[0]):
        _digit_edges(count, offset, weights, step, phi, keep[q], start[q], width, radix, skip[q], skip_mass[q], ext[q])
        if refine:
            _apm_digit(table, stretch, ctx_base[q] + level * digit_bits * activity_classes, activity_classes,
                       digit_bits, ext[q], freqs, q, np.empty(radix, dtype=np.int64), knot[q], weight[q])
        else:
            _frequencies(ext[q], digit_bits, freqs, q)


@_jit
def _apm_digit(table, stretch, ctx_base, activity_classes, digit_bits, ext, freqs, row, budget, knot, weight):  # noqa: ANN001, ANN202
    """`apm.digit_frequencies` compiled: frequencies [2^b] (sum 2^24 - 2^b) into freqs[row] of a digit whose
    interval's edges have Cq ext [2^b + 1], from its binary tree's decisions refined by the maps `table` [contexts,
    KNOTS] (contexts ctx_base + depth * activity_classes); each node's knot index (context * KNOTS + knot) and
    weight into knot, weight [2^b - 1] (node 2^depth - 1 + index, breadth first). budget [2^b]: scratch."""
    radix = 1 << digit_bits
    knots = table.shape[1]
    budget[0] = (np.int64(1) << 24) - radix
    for depth in range(digit_bits):
        size = radix >> depth
        ctx = ctx_base + depth * activity_classes
        for index in range((1 << depth) - 1, -1, -1):  # children 2i, 2i + 1 overwrite parents already split
            a = index * size
            low, mid, high = ext[a], ext[a + size // 2], ext[a + size]
            if high == low:
                p = np.int64(1) << 15
            else:
                p = min(max(2 * (((high - mid) << 15) // (high - low)), np.int64(1)), np.int64(65535))
            s = stretch[p >> 4] + 2048
            j, w = s >> 7, s & 127
            learnt = (table[ctx, j] * (128 - w) + table[ctx, j + 1] * w) >> 7
            q = min(max((learnt + p + 1) >> 1, np.int64(1)), np.int64(65535))
            whole = budget[index]
            upper = (whole * q) >> 16
            node = (1 << depth) - 1 + index
            knot[node], weight[node] = ctx * knots + j, w
            budget[2 * index], budget[2 * index + 1] = whole - upper, upper
    for d in range(radix):
        freqs[row, d] = budget[d]


@_jit
def _apm_path(knot, weight, digit, digit_bits, ones, shares):  # noqa: ANN001, ANN202
    """Gather the events of a digit's decisions along its path (`apm.Tables.add`) into ones, shares (flat
    [contexts KNOTS]) from its nodes' knot, weight [2^b - 1]."""
    for depth in range(digit_bits):
        node = (1 << depth) - 1 + (digit >> (digit_bits - depth))
        bit = (digit >> (digit_bits - depth - 1)) & 1
        k, w = knot[node], weight[node]
        shares[k] += 128 - w
        ones[k] += (128 - w) * bit
        shares[k + 1] += w
        ones[k + 1] += w * bit


@_jit
def _apm_gather(symbols, digit_bits, knot, weight, ones, shares):  # noqa: ANN001, ANN202
    """The events of the encoder's digits (symbols [levels, n]) into ones, shares (sums: any order)."""
    for level in range(symbols.shape[0]):
        for q in range(symbols.shape[1]):
            _apm_path(knot[q, level], weight[q, level], symbols[level, q], digit_bits, ones, shares)


@_jit
def _decode_advance_apm(digits, level, digit_bits, start, ext, knot, weight, ones, shares):  # noqa: ANN001, ANN202
    """`_decode_advance` and the events of the digits' decisions."""
    _decode_advance(digits, level, digit_bits, start, ext)
    for q in range(digits.shape[0]):
        _apm_path(knot[q], weight[q], np.int64(digits[q]), digit_bits, ones, shares)


@_jit
def _apm_update(table, seen, ones, shares, memory):  # noqa: ANN001, ANN202
    """`apm.update` compiled (flat arrays)."""
    for k in range(table.shape[0]):
        if shares[k] > 0:
            past = seen[k]
            table[k] = (table[k] * past + (ones[k] << 16)) // (past + shares[k])
            seen[k] = min(past + shares[k], memory)
            ones[k] = 0
            shares[k] = 0


@_jit
def _value_mass(count, offset, weights, step, total, phi, i, v, ext):  # noqa: ANN001, ANN202
    """The integer mass Cq(v + 1) - Cq(v) of value v (0..255) in cell i (ext [3]: scratch)."""
    low, high = np.int64(0), total[i]
    if 0 < v < 255:  # both edges in one pass over the components: Cq(v), Cq(v + 1)
        _cdf_edges(count, offset, weights, step, phi, i, v - 1, 0, 3, ext)
        low, high = ext[1], ext[2]
    elif v > 0:
        _cdf_edges(count, offset, weights, step, phi, i, v - 1, 0, 2, ext)
        low = ext[1]
    else:
        _cdf_edges(count, offset, weights, step, phi, i, v, 0, 2, ext)
        high = ext[1]
    return high - low


@_jit_parallel
def _value_masses(count, offset, weights, step, total, phi, keep, values, wanted, out):  # noqa: ANN001, ANN202
    """The integer masses Cq(v + 1) - Cq(v) of the values values[q] [K] (0..255) in kept cell keep[q], into
    out [n, K], where wanted [n, K] (elsewhere 0)."""
    for q in _prange(keep.shape[0]):
        ext = np.empty(3, dtype=np.int64)
        for m in range(values.shape[1]):
            out[q, m] = _value_mass(count, offset, weights, step, total, phi, keep[q], values[q, m], ext) \
                if wanted[q, m] else 0


@_jit
def _decode_advance(digits, level, digit_bits, start, ext):  # noqa: ANN001, ANN202
    """After a level's digits: the values' next interval (start, and low / high into ext's end columns)."""
    radix = 1 << digit_bits
    width = 8 - digit_bits * (level + 1)
    for q in range(digits.shape[0]):
        d = digits[q]
        start[q] += np.int64(d) << width
        low, high = ext[q, d], ext[q, d + 1]
        ext[q, 0], ext[q, radix] = low, high


@_jit
def _flag_context(rank, channel, channels, activity_classes, buckets, hits_tab, seen_tab, thresholds,  # noqa: ANN001, ANN202
                  threshold_bits, free, unit, mass, remaining, activity, previous):
    """(context index, hit frequency) of one flag: `repeat.RepeatCounts.contexts` and `.frequencies` for one cell."""
    rest = remaining << threshold_bits
    b = 0
    for t in range(thresholds.shape[0]):
        if mass * thresholds[t] <= rest:
            b += 1
    index = ((((rank * channels + channel) * activity_classes + activity) * 2 + previous) * buckets) + b
    return index, ((2 * hits_tab[index] + unit) * free) // (2 * seen_tab[index] + 2 * unit)


@_jit
def _rank_step(rank, channel, channels, activity_classes, buckets, hits_tab, seen_tab, thresholds, threshold_bits,  # noqa: ANN001, ANN202
               free, unit, open_, coded, cands, masses, remaining, activity, previous, cells, contexts, freqs,
               count, offset, weights, step, total, phi, keep):
    """`repeat.FlagState.step` compiled: the cells that code a flag of `rank` into cells[:m], their contexts and
    frequencies; returns m. The candidates' masses are computed here, only for the cells that code the flag (a
    cell whose flag hit needs no later candidate's), into masses[c, rank]."""
    m = 0
    ext = np.empty(3, dtype=np.int64)
    for c in range(open_.shape[0]):
        if not (open_[c] and coded[c, rank]):
            continue
        masses[c, rank] = _value_mass(count, offset, weights, step, total, phi, keep[c], cands[c, rank], ext)
        index, hit = _flag_context(rank, channel, channels, activity_classes, buckets, hits_tab, seen_tab,
                                   thresholds, threshold_bits, free, unit, masses[c, rank], remaining[c],
                                   activity[c], previous[c])
        cells[m], contexts[m] = c, index
        freqs[m, 0], freqs[m, 1] = free - hit, hit
        m += 1
    return m


@_jit
def _repeat_prepare(flat, stripe, position, wc, activity_edges, cands, activity, coded):  # noqa: ANN001, ANN202
    """`repeat.candidates`, `repeat.activity` and `repeat.first_occurrence` of the cells at flat canvas positions
    position [n] of canvases stripe [n] (their neighbours W, N, NW, NE read from the canvas), in one loop."""
    for q in range(position.shape[0]):
        row, p = flat[stripe[q]], position[q]
        west, north = np.int64(row[p - 1]) >> 1, np.int64(row[p - wc]) >> 1
        north_west, north_east = np.int64(row[p - wc - 1]) >> 1, np.int64(row[p - wc + 1]) >> 1
        gradient = min(max(west + north - north_west, 0), 255)
        cands[q, 0], cands[q, 1], cands[q, 2], cands[q, 3], cands[q, 4] = (west, north, north_east, north_west,
                                                                          gradient)
        spread = max(abs(west - north), abs(west - north_west), abs(west - north_east))
        a = 0
        for e in range(activity_edges.shape[0]):
            if spread >= activity_edges[e]:
                a += 1
        activity[q] = a
        for j in range(cands.shape[1]):
            first = True
            for i in range(j):
                if cands[q, i] == cands[q, j]:
                    first = False
            coded[q, j] = first


def repeat_prepare(flat: np.ndarray, stripe: np.ndarray, position: np.ndarray,
                   wc: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(candidates [n, CANDIDATES], activity [n], coded [n, CANDIDATES]) as `repeat` computes them from the
    neighbours' codes, compiled."""
    n = position.shape[0]
    cands = np.empty((n, repeat.CANDIDATES), dtype=np.int64)
    activity = np.empty(n, dtype=np.int64)
    coded = np.empty((n, repeat.CANDIDATES), dtype=np.bool_)
    _repeat_prepare(flat, stripe, position, wc, repeat.ACTIVITY_EDGES, cands, activity, coded)
    return cands, activity, coded


@_jit
def _rank_apply(rank, cells, hits, cands, masses, open_, remaining, skip, skip_mass, values):  # noqa: ANN001, ANN202
    """`repeat.FlagState.apply` compiled."""
    for q in range(cells.shape[0]):
        c = cells[q]
        if hits[q]:
            values[c] = cands[c, rank]
            open_[c] = False
        else:
            skip[c, rank] = cands[c, rank]
            skip_mass[c, rank] = masses[c, rank]
            remaining[c] -= masses[c, rank]


class FlagState(repeat.FlagState):
    """`repeat.FlagState` with the compiled step and apply (the same integers, no per-rank allocations), from the
    cells' mixture: a candidate's mass is computed when its flag is coded (masses [n, K] hold those, 0 elsewhere),
    so a cell whose flag hit costs no later candidate's CDF."""

    def __init__(self, channel: int, counts, coded: np.ndarray, cands: np.ndarray, mix: KernelMixture,  # noqa: ANN001
                 keep: np.ndarray, phi: np.ndarray, activity: np.ndarray, previous: np.ndarray) -> None:
        remaining = mix.total[keep]
        repeat.check_totals(remaining)
        super().__init__(channel, counts, coded, cands, np.zeros(cands.shape, dtype=np.int64), remaining, activity,
                         previous)
        self.mix, self.keep, self.phi = mix, np.ascontiguousarray(keep, dtype=np.int64), phi

    def source(self) -> tuple[np.ndarray, ...]:
        """The kernels' arguments for the masses: the mixture's arrays, the table phi and the cells' rows."""
        mix = self.mix
        return mix.count, mix.offset, mix.weights, mix.step, mix.total, self.phi, self.keep

    def step(self, rank: int) -> int:
        counts = self.counts
        return _rank_step(rank, self.channel, counts.channels, repeat.ACTIVITY, repeat.BUCKETS, counts.hits,
                          counts.seen, repeat._THRESHOLDS, repeat._THRESHOLD_BITS, repeat._FREE, repeat.UNIT,
                          self.open_, self.coded, self.cands, self.masses, self.remaining, self.activity,
                          self.previous, self.cells, self.contexts, self.freqs, *self.source())

    def apply(self, rank: int, m: int, hits: np.ndarray) -> None:
        _rank_apply(rank, self.cells[:m], hits, self.cands, self.masses, self.open_, self.remaining, self.skip,
                    self.skip_mass, self.values)


@_jit_parallel
def _touch(out):  # noqa: ANN001, ANN202
    for i in _prange(out.shape[0]):
        out[i] = i


_LAUNCHED = False


def _follow_torch_threads() -> None:
    """numba's threads follow torch's setting (the GEMMs'); any number gives the same integers. numba's OpenMP
    layer resets the process's OpenMP thread count when it starts, which is torch's setting too: start it once
    here and put torch's back."""
    global _LAUNCHED
    threads = torch.get_num_threads()
    if not _LAUNCHED:
        _touch(np.empty(2, dtype=np.int64))
        _LAUNCHED = True
        torch.set_num_threads(threads)
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))


def _mm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b with torch's GEMM (its thread setting; NumPy's BLAS would start its own threads)."""
    return torch.mm(torch.from_numpy(a), torch.from_numpy(b)).numpy()


class MapsOfChannel:
    """The maps (`apm.Tables`) as one channel's digits use them: each kept cell's context of its most significant
    bit (ctx_base [n], from the channel and the cells' activity classes [n])."""

    def __init__(self, tables: apm.Tables, channel: int, activity: np.ndarray) -> None:
        self.tables = tables
        self.ctx_base = apm.context(channel, 0, 0) + np.ascontiguousarray(activity, dtype=np.int64)


#: (table, ctx_base) that the digit kernels take, and do not read, without maps
_NO_MAPS = (np.zeros((1, apm.KNOTS), dtype=np.int64), np.zeros(1, dtype=np.int64))


def maps_update(tables: apm.Tables) -> None:
    """`apm.Tables.update` compiled (after each front)."""
    _apm_update(tables.table.reshape(-1), tables.seen.reshape(-1), tables.ones.reshape(-1),
                tables.shares.reshape(-1), np.int64(apm.MEMORY))


class KernelMixture:
    """A front's mixture constants for all its cells, the components of non-zero weight first: count [N],
    offsets, weights and edge steps [N, C S], totals Cq(256) [N]."""

    def __init__(self, n: int, cs: int) -> None:
        self.count = np.empty(n, dtype=np.int64)
        self.offset = np.empty((n, cs), dtype=np.int64)
        self.weights = np.empty((n, cs), dtype=np.int64)
        self.step = np.empty((n, cs), dtype=np.int64)
        self.total = np.empty(n, dtype=np.int64)


def _rounding(shift: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """int32 (shift, half, odd) per column for `_lstm_cells`' branchless round-half-even."""
    s = shift.astype(np.int64)
    if s.min() < 0 or s.max() > 31:
        raise ValueError("gate shifts outside 0..31: not an integer model of this codec")
    half = np.where(s > 0, (np.int64(1) << np.maximum(s - 1, 0)) - 1, 0)
    return s.astype(np.int32), half.astype(np.int32), (s > 0).astype(np.int32)


class _KernelHead:
    """One MCGSM head's constants for the kernels (an `IntRIDE`'s, or an `IntColourRIDE` head's); its GEMM runs in
    `dtype` (float32 for the grey head, whose sums stay below 2^24; float64 for colour heads)."""

    def __init__(self, head, dtype: type, dims: tuple[int, int, int, int, int]) -> None:  # noqa: ANN001
        _, _, c, s, f = dims
        self.head, self.num_features, self.num_components, self.num_scales = head, f, c, s
        self.out_weight = head.out_weight.astype(dtype)
        self.beta2 = head.beta2.astype(np.float64)  # exact: squared features < 2^30, column sums < 2^53 (tested)
        self.step_cs = (head.precision.astype(np.int64) << (Q_BITS - 8)).reshape(-1)
        self.offset_base = (1 << (R_SHIFT - 1)) + ((Z_RANGE << Z_BITS) << R_SHIFT)

    def mixture(self, inputs: np.ndarray, base: np.ndarray, exp2: np.ndarray) -> KernelMixture:
        """The mixture constants of N cells from the head's GEMM inputs [N, D (+ k)] and predictions base [N]."""
        head, n = self.head, inputs.shape[0]
        acc = _mm(inputs, self.out_weight)  # exact (see the integer models)
        feat2 = np.empty((n, self.num_features), dtype=np.float64)
        means = np.empty((n, self.num_components), dtype=np.int64)
        _features(acc, head.out_shift, base, self.num_features, feat2, means)
        energy = _mm(feat2, self.beta2)  # exact: < 2^53
        mix = KernelMixture(n, self.num_components * self.num_scales)
        _mixture(energy, means, self.num_scales, head.energy_shift, head.energy_clip, head.eta, head.slope, exp2,
                 head.precision, self.step_cs, self.offset_base, mix.count, mix.offset, mix.weights, mix.step,
                 mix.total)
        return mix


class KernelStepper(FrontGeometry):
    """`fixedpoint.FrontStepper`'s integers from compiled kernels: steps the integer model along the skewed front
    of B framed canvases of pixel codes (int32 [B, Hc, Wc], NumPy, updated by the caller between fronts)."""

    channels = 1

    def __init__(self, im: IntRIDE, canvas: np.ndarray) -> None:
        if not available():
            raise RuntimeError("the compiled codec kernels need numba (pip install numba)")
        b, hc, wc = canvas.shape[0], canvas.shape[-2], canvas.shape[-1]
        super().__init__(im, (b, hc, wc))
        _follow_torch_threads()
        d = im.dims[0]
        self.canvas = canvas
        self.flat = canvas.reshape(b, -1)
        # the windows of every channel, channel blocks in order (the model's input order)
        self.windows = np.concatenate([self.window_start + ch * hc * wc for ch in range(self.channels)], 1)
        stride = self.wp + 1
        self.h = [np.zeros((b, 2 * stride, d), dtype=np.float32) for _ in range(im.dims[1])]
        # cell states fit int32: |c| <= im.cell_clip <= CELL_CLIP_INT < 2^31 (halves the buffers of wide images)
        self.c = [np.zeros((b, 2 * stride, d), dtype=np.int32) for _ in range(im.dims[1])]
        self.in_weight = im.in_weight.astype(np.float64)
        self.in_bias = im.in_bias.astype(np.float64)
        self.layers = [(w.astype(np.float32), *_rounding(sh), bias.astype(np.int32)[None, :])
                       for w, sh, bias in zip(im.layer_weights, im.layer_shifts, im.layer_biases, strict=True)]
        self.gate_tanh, self.gate_sigmoid = im.tanh.astype(np.int32), im.sigmoid.astype(np.int32)
        self.tanh_h, self.phi = im.tanh_h.astype(np.int32), im.phi.astype(np.int64)
        self.heads = self._heads()

    def _heads(self) -> list[_KernelHead]:
        return [_KernelHead(self.im, np.float32, self.im.dims)]

    def trunk(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Top hidden states [N, D] (float32 holding integers) and linear predictions [N, channels] (2^-Q_BITS) of
        front t's cells (ordered canvas, grid row) from the canvas as it is now; advances the LSTM states."""
        im = self.im
        lo, hi = self.rows(t)
        b, n = self.batch, hi - lo + 1
        d = self.d
        window = self.windows[lo : hi + 1] + t
        codes = np.empty((b * n, window.shape[1]), dtype=np.float64)
        _gather_codes(self.flat, window, codes)
        mapped = _mm(codes, self.in_weight)
        mapped += self.in_bias  # exact: every sum < 2^53
        z0 = np.empty((b * n, 5 * d), dtype=np.int32)
        base = np.empty((b * n, self.channels), dtype=np.int64)
        _input_map(mapped, im.in_shift, 5 * d, z0, base)
        here = self.here_start[lo : hi + 1] + t
        past = self.past_start[lo : hi + 1] + t
        below = np.empty((b * n, 0), dtype=np.float32)
        for k, (w, shift, half, odd, bias) in enumerate(self.layers):
            gemm_in = np.empty((b * n, w.shape[0]), dtype=np.float32)
            _gather_hidden(self.h[k], past, below, gemm_in)
            pre = _mm(gemm_in, w)  # exact: products and sums < 2^24
            below = np.empty((b * n, d), dtype=np.float32)
            _lstm_cells(pre, shift, half, odd, z0 if k == 0 else bias, k == 0, self.gate_tanh, self.gate_sigmoid,
                        self.tanh_h, self.c[k], self.h[k], past, here, below, np.int64(self.im.cell_clip))
        return below, base

    def step(self, t: int) -> KernelMixture:
        """The mixture constants of front t's cells (ordered canvas, grid row) from the canvas as it is now;
        advances the LSTM states."""
        below, base = self.trunk(t)
        return self.heads[0].mixture(below, np.ascontiguousarray(base[:, 0]), self.im.exp2)

    front = step

    def write(self, t: int, codes: np.ndarray) -> None:
        """Store front t's pixel codes [B * n] (cell order) in the canvases."""
        lo, hi = self.rows(t)
        self.flat[:, self.pixel_start[lo : hi + 1] + t] = codes.reshape(self.batch, -1)

    def cdf(self, mix: KernelMixture, edges: np.ndarray) -> np.ndarray:
        """Cq at bin edges [N, E] (1..255, or 256 for the total) -> int64 [N, E] (for tests; the coder uses
        `encode_digits` and `decoder`)."""
        out = np.empty(edges.shape, dtype=np.int64)
        ext = np.zeros(2, dtype=np.int64)
        for i in range(edges.shape[0]):
            for e in range(edges.shape[1]):
                k = int(edges[i, e])
                if k >= 256:
                    out[i, e] = mix.total[i]
                else:  # one interior edge: start k - 1, width 0, radix 2
                    _cdf_edges(mix.count, mix.offset, mix.weights, mix.step, self.phi, i, k - 1, 0, 2, ext)
                    out[i, e] = ext[1]
        return out

    def encode_digits(self, mix: KernelMixture, keep: np.ndarray, values: np.ndarray, digit_bits: int,
                      skip: np.ndarray | None = None, skip_mass: np.ndarray | None = None,
                      maps: MapsOfChannel | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Symbols [levels n] (int32) and frequencies [levels n, 2^b] (float64 holding integers) of the kept
        cells' values [n], in the stream's order; with `skip` [n, K] (values) and `skip_mass` [n, K] (their masses,
        `value_masses`; 0 for none), each cell's distribution without those values (the repeat flags' misses);
        with `maps` (format 8), the digits' decisions refined by the maps, whose events are gathered."""
        n, levels, radix = keep.shape[0], 8 // digit_bits, 1 << digit_bits
        skip, skip_mass = _skips(n, skip, skip_mass)
        symbols = np.empty((levels, n), dtype=np.int32)
        freqs = np.empty((levels * n, radix), dtype=np.float64)
        refine = maps is not None
        shape = (n, levels, radix - 1) if refine else (1, 1, 1)
        knot, weight = np.empty(shape, dtype=np.int64), np.empty(shape, dtype=np.int64)
        table, ctx_base = (maps.tables.table, maps.ctx_base) if refine else _NO_MAPS
        _encode_cells(mix.count, mix.offset, mix.weights, mix.step, mix.total, self.phi, keep, values, digit_bits,
                      skip, skip_mass, refine, table, apm.STRETCH, ctx_base, repeat.ACTIVITY, symbols, freqs, knot,
                      weight)
        if refine:
            _apm_gather(symbols, digit_bits, knot, weight, maps.tables.ones.reshape(-1),
                        maps.tables.shares.reshape(-1))
        return symbols.reshape(-1), freqs

    def decoder(self, mix: KernelMixture, keep: np.ndarray, digit_bits: int, skip: np.ndarray | None = None,
                skip_mass: np.ndarray | None = None, maps: MapsOfChannel | None = None) -> KernelDigits:
        return KernelDigits(self, mix, keep, digit_bits, skip, skip_mass, maps)

    def value_masses(self, mix: KernelMixture, keep: np.ndarray, values: np.ndarray,
                     wanted: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """int64 ([n, K], [n]): the integer masses Cq(v + 1) - Cq(v) of each kept cell's values v (values [n, K],
        0..255; only where `wanted` [n, K], else 0), and the cell's total Cq(256)."""
        out = np.empty(values.shape, dtype=np.int64)
        wanted = np.ones(values.shape, dtype=np.bool_) if wanted is None else wanted
        _value_masses(mix.count, mix.offset, mix.weights, mix.step, mix.total, self.phi, keep,
                      np.ascontiguousarray(values, dtype=np.int64), wanted, out)
        return out, mix.total[keep]


@_jit
def _head_inputs(hidden, codes, base, k, out):  # noqa: ANN001, ANN202
    """Head k's GEMM input [N, D + k]: the hidden states [N, D], then r_j = code_j 2^(Q_BITS - 9) - base_j of the
    channels j < k at 2^-Q_BITS (exact int64, clipped to +-R_CLIP so that the head's float64 GEMM stays exact)."""
    n, d = hidden.shape
    for i in range(n):
        for u in range(d):
            out[i, u] = hidden[i, u]
        for j in range(k):
            r = (np.int64(codes[i, j]) << (Q_BITS - 9)) - base[i, j]
            out[i, d + j] = min(max(r, -R_CLIP), R_CLIP)


class ColourKernelStepper(KernelStepper):
    """The colour integer model (`colour_fixedpoint.IntColourRIDE`) on the compiled kernels: canvases int32
    [B, 3, Hc, Wc] of the coded channels' pixel codes. Per front: `trunk(t)`, then `head(k, ...)` for k = 0, 1, 2,
    each given the codes of the channels coded before it, then `write(t, codes)`."""

    channels = 3

    def _heads(self) -> list[_KernelHead]:
        return [_KernelHead(head, np.float64, self.im.dims) for head in self.im.heads]

    def head(self, k: int, hidden: np.ndarray, base: np.ndarray, codes: np.ndarray) -> KernelMixture:
        """Channel k's mixture constants of the front's cells from `trunk`'s hidden [N, D] and base [N, 3] and
        the pixel codes [N, 3] of the channels before k (columns >= k unused)."""
        inputs = np.empty((hidden.shape[0], hidden.shape[1] + k), dtype=np.float64)
        _head_inputs(hidden, codes, base, k, inputs)
        return self.heads[k].mixture(inputs, np.ascontiguousarray(base[:, k]), self.im.exp2)

    def step(self, t: int) -> KernelMixture:
        raise TypeError("a colour stepper codes each front with trunk() and head(k, ...)")

    front = step

    def write(self, t: int, codes: np.ndarray) -> None:
        """Store front t's pixel codes [B * n, 3] (cell order) in the canvases."""
        lo, hi = self.rows(t)
        b, plane = self.batch, self.canvas.shape[-2] * self.canvas.shape[-1]
        index = self.pixel_start[lo : hi + 1] + t
        for ch in range(3):
            self.flat[:, index + ch * plane] = codes[:, ch].reshape(b, -1)


def _skips(n: int, skip: np.ndarray | None, skip_mass: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """int64 (values left out, their masses) [n, K]; none: nothing left out ([n, 1] of -1 and 0)."""
    if skip is None:
        return np.full((n, 1), -1, dtype=np.int64), np.zeros((n, 1), dtype=np.int64)
    return np.ascontiguousarray(skip, dtype=np.int64), np.ascontiguousarray(skip_mass, dtype=np.int64)


class KernelDigits:
    """The decoder's state for one front: each kept cell's interval, digit by digit."""

    def __init__(self, stepper: KernelStepper, mix: KernelMixture, keep: np.ndarray, digit_bits: int,
                 skip: np.ndarray | None = None, skip_mass: np.ndarray | None = None,
                 maps: MapsOfChannel | None = None) -> None:
        n, radix = keep.shape[0], 1 << digit_bits
        self.stepper, self.mix, self.keep, self.digit_bits, self.maps = stepper, mix, keep, digit_bits, maps
        shape = (n, radix - 1) if maps is not None else (1, 1)
        self.knot, self.weight = np.empty(shape, dtype=np.int64), np.empty(shape, dtype=np.int64)
        self.skip, self.skip_mass = _skips(n, skip, skip_mass)
        self.start = np.zeros(n, dtype=np.int64)
        self.ext = np.empty((n, radix + 1), dtype=np.int64)
        self.ext[:, 0] = 0
        self.ext[:, radix] = mix.total[keep] - self.skip_mass.sum(1)
        self.freqs = np.empty((n, radix), dtype=np.float64)

    def frequencies(self, level: int) -> np.ndarray:
        """float64 [n, 2^b]: the frequencies of digit `level` of every kept cell."""
        mix, maps = self.mix, self.maps
        table, ctx_base = (maps.tables.table, maps.ctx_base) if maps is not None else _NO_MAPS
        _decode_level(mix.count, mix.offset, mix.weights, mix.step, self.stepper.phi, self.keep, level,
                      self.digit_bits, self.skip, self.skip_mass, self.start, self.ext, maps is not None, table,
                      apm.STRETCH, ctx_base, repeat.ACTIVITY, self.freqs, self.knot, self.weight)
        return self.freqs

    def advance(self, digits: np.ndarray, level: int) -> None:
        if self.maps is None:
            _decode_advance(digits, level, self.digit_bits, self.start, self.ext)
        else:
            t = self.maps.tables
            _decode_advance_apm(digits, level, self.digit_bits, self.start, self.ext, self.knot, self.weight,
                                t.ones.reshape(-1), t.shares.reshape(-1))

    @property
    def values(self) -> np.ndarray:
        """int64 [n]: the decoded values once every level is done."""
        return self.start
