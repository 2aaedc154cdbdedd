"""Compiled (numba) passes of the fused univariate MCGSM (`ride.mcgsm`, dim_out == 1) around the exponentials.

For a block of rows the fused forward holds the mixture's weights as [n, 2, S, C] (0: the gate, 1: the joint).
Around the exponentials (torch's exp2, vectorised: numba without SVML calls scalar libm, several times slower) are
a dozen element-wise trips through a block that does not fit in cache: the log-weights and their row maxima
(`log_weights`), then the normalisers, the normalised weights, their contraction with k over the scales and the
totals that the gradients of eta and alpha need (`after_exp2`). Here each side is one loop per row. Tests hold the
result to the plain MCGSM (`MCGSM._log_prob_reference`), values and gradients, in float32 and float64.
"""

from __future__ import annotations

import math

import numpy as np
import torch

try:
    import numba
except ImportError:  # the torch passes compute the same
    numba = None


def usable(t: torch.Tensor) -> bool:
    """Whether the kernels can run on tensors like `t`: numba importable, CPU float32/float64, one torch thread
    (the loop is single-threaded; with more threads torch's parallel passes are the better choice)."""
    return (numba is not None and t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64)
            and torch.get_num_threads() == 1)


def _jit(fn):  # noqa: ANN001, ANN202
    # error_model="numpy": 1 / 0 gives inf (a row of infinite energy), as in torch, instead of raising
    return (numba.njit(cache=True, nogil=True, boundscheck=False, error_model="numpy")(fn) if numba is not None
            else fn)


@_jit
def log_weights(values, bias, slope, logw, shift, lowest, subtract):  # noqa: ANN001, ANN201
    """logw [n, 2, S, C] = bias + values * slope less a per-row shift [n, 2]: with `subtract` false, the row maxima
    (at least `lowest`, so that a row of -inf keeps a finite shift), written into shift; with it true, the given
    shift (the backward's log2 normalisers). values [n, 2, C], bias [2, S, C], slope [S, C]. The forward and the
    backward's recomputation both come here, so the weights they see are rounded alike (numba contracts no
    multiply-add without fastmath)."""
    n, _, num_s, num_c = logw.shape
    # the row maximum as C partial maxima along s, then one over c: a maximum is exact in any order, and the
    # forward's loop takes half the time of one running maximum over all of s and c (2.4 vs 5.1 ms per 18,000
    # rows, 2026-12-07)
    part = np.empty(num_c, dtype=logw.dtype)
    for r in range(n):
        for t in range(2):
            m = shift[r, t]
            if not subtract:
                for c in range(num_c):
                    part[c] = lowest
                for s in range(num_s):
                    for c in range(num_c):
                        x = bias[t, s, c] + values[r, t, c] * slope[s, c]
                        logw[r, t, s, c] = x
                        part[c] = max(part[c], x)
                m = part[0]
                for c in range(1, num_c):
                    m = max(m, part[c])
                shift[r, t] = m
                for s in range(num_s):
                    for c in range(num_c):
                        logw[r, t, s, c] -= m
            else:
                for s in range(num_s):
                    for c in range(num_c):
                        logw[r, t, s, c] = (bias[t, s, c] + values[r, t, c] * slope[s, c]) - m


@_jit
def after_exp2(w, shift, k, values, lse2, joint_k, diff_k, totals, need_backward, need_totals, one):  # noqa: ANN001, ANN201
    """w [n, 2, S, C]: exp2 of the log-weights less their row maximum shift [n, 2]. Writes lse2 [n, 2] = log2 of the
    normalisers (log2(sum w) + shift). With need_backward also: w normalised in place (w / sum w), joint_k [n, C] =
    sum_s k_sc w_J and diff_k = sum_s k_sc (w_J - w_G) (k [S, C]); with need_totals adds sum_n w and
    sum_n V w (V = values [n, 2, C]: the gate energy E, and E + r^2) into totals [2, 2, S, C] (float64). `one`: 1 as
    a NumPy scalar of w's dtype (a Python 1 would promote float32 arithmetic to float64)."""
    n, _, num_s, num_c = w.shape
    part = np.empty(num_c, dtype=w.dtype)
    # Loops run along c (contiguous) with s outside, so that each one vectorises without reordering float sums
    # across c: a sum over s and c is the sum of C partial sums over s.
    for r in range(n):
        for t in range(2):
            for c in range(num_c):
                part[c] = w[r, t, 0, c]
            for s in range(1, num_s):
                for c in range(num_c):
                    part[c] += w[r, t, s, c]
            total = part[0]
            for c in range(1, num_c):
                total += part[c]
            lse2[r, t] = math.log2(total) + shift[r, t]
            if need_backward:
                inv = one / total
                for s in range(num_s):
                    for c in range(num_c):
                        w[r, t, s, c] *= inv
        if not need_backward:
            continue
        jk, gk = joint_k[r], diff_k[r]  # gk is sum_s k w_G until the last loop makes it the difference
        for c in range(num_c):
            jk[c] = w[r, 1, 0, c] * k[0, c]
            gk[c] = w[r, 0, 0, c] * k[0, c]
        for s in range(1, num_s):
            for c in range(num_c):
                jk[c] += w[r, 1, s, c] * k[s, c]
                gk[c] += w[r, 0, s, c] * k[s, c]
        for c in range(num_c):
            gk[c] = jk[c] - gk[c]
        if need_totals:
            for t in range(2):
                for s in range(num_s):
                    for c in range(num_c):
                        x = w[r, t, s, c]
                        totals[0, t, s, c] += x
                        totals[1, t, s, c] += x * values[r, t, c]


def totals_buffer(num_s: int, num_c: int) -> np.ndarray:
    """A zero float64 accumulator [2, 2, S, C] for `after_exp2`'s totals (n rows summed in float64)."""
    return np.zeros((2, 2, num_s, num_c))
