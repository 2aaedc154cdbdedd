"""The plain reference of `fixedpoint`: the integer RIDE in NumPy int64, one pixel at a time in raster order.

No floating point and no batching: integer dot products (`np.dot` on int64 arrays), the LSTM states in full
[H, W, D] arrays with explicit zero borders, the window read pixel by pixel from the canvas. Slow (for tests on
small images); `fixedpoint.FrontStepper` must give identical integers.
"""

from __future__ import annotations

import numpy as np

from .fixedpoint import (
    CELL_CLIP_INT,
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
    IntRIDE,
)


def _rshift(x, s):  # noqa: ANN001, ANN202 - int or int64 array
    """Round-half-up arithmetic right shift (per element when s is an array)."""
    s = np.asarray(s, dtype=np.int64)
    return (np.asarray(x, dtype=np.int64) + ((np.int64(1) << s) >> 1)) >> s


def _rshift_even(x, s):  # noqa: ANN001, ANN202 - int64 arrays
    """Right shift by s >= 0 rounding half to even, in integers (what round(x 2^-s) gives in exact float)."""
    x = np.asarray(x, dtype=np.int64)
    s = np.broadcast_to(np.asarray(s, dtype=np.int64), x.shape)
    q = x >> s
    rem = x - (q << s)
    half = (np.int64(1) << s) >> 1
    up = (s > 0) & ((rem > half) | ((rem == half) & (q & 1 == 1)))
    return q + up


def _lookup(table: np.ndarray, x: np.ndarray) -> np.ndarray:
    r = PRE_RANGE << PRE_BITS
    return table[np.clip(x, -r, r) + r]


def reference_cdf_tables(im: IntRIDE, canvas: np.ndarray) -> np.ndarray:
    """Cq at all 257 bin edges of every predicted cell: canvas int64 [B, Hc, Wc] of pixel codes 2v + 1 ->
    int64 [B, Hp, Wp, 257]."""
    b_count, hc, wc = canvas.shape
    top, left, right = im.margin
    hp, wp = hc - top, wc - left - right
    d, num_layers, c, s, f = im.dims
    out = np.zeros((b_count, hp, wp, 257), dtype=np.int64)
    for b in range(b_count):
        h = [np.zeros((hp + 1, wp + 1, d), dtype=np.int64) for _ in range(num_layers)]  # [i + 1, j + 1]
        cell = [np.zeros((hp + 1, wp + 1, d), dtype=np.int64) for _ in range(num_layers)]
        for i in range(hp):
            for j in range(wp):
                ci, cj = i + top, j + left
                codes = np.array([canvas[b, ci + dy, cj + dx] for dy, dx in im.offsets], dtype=np.int64)
                acc = np.dot(codes, im.in_weight) + im.in_bias
                mapped = _rshift_even(acc, im.in_shift)
                z0 = np.clip(mapped[: 5 * d], -Z0_CLIP, Z0_CLIP)
                below = None
                for k in range(num_layers):
                    past = np.concatenate([h[k][i, j + 1], h[k][i + 1, j]])  # h_up, h_left
                    x = past if k == 0 else np.concatenate([below, past])
                    pre = _rshift_even(np.dot(x, im.layer_weights[k]), im.layer_shifts[k])
                    pre = pre + (z0 if k == 0 else im.layer_biases[k])
                    cand = _lookup(im.tanh, pre[:d])
                    out_g, in_g, f_up, f_left = (_lookup(im.sigmoid, pre[d * (g + 1) : d * (g + 2)]) for g in range(4))
                    new_c = cand * in_g + cell[k][i + 1, j] * f_left + cell[k][i, j + 1] * f_up
                    new_c = np.clip(_rshift(new_c, UNIT_BITS), -CELL_CLIP_INT, CELL_CLIP_INT)
                    new_h = _lookup(im.tanh_h, _rshift(new_c * out_g, 2 * UNIT_BITS - PRE_BITS))
                    cell[k][i + 1, j + 1], h[k][i + 1, j + 1] = new_c, new_h
                    below = new_h
                out[b, i, j] = _cdf_table(im, below, mapped[5 * d])
    return out


def _cdf_table(im: IntRIDE, h: np.ndarray, base: int) -> np.ndarray:
    """Cq(0..256) [257] of one cell from its top hidden state h [D] and linear prediction base (2^-Q_BITS)."""
    _, _, c, s, f = im.dims
    acc = _rshift_even(np.dot(h, im.out_weight), im.out_shift)
    feat = np.clip(acc[:f], -FEAT_CLIP, FEAT_CLIP)
    means = np.clip(acc[f:] + base, -MEAN_CLIP, MEAN_CLIP)
    energy = np.minimum(_rshift_even(np.dot(feat * feat, im.beta2), im.energy_shift), im.energy_clip)
    logits = im.eta - _rshift(energy[:, None] * im.slope, LOG_BITS)  # [C, S]
    gap = logits.max() - logits
    weights = im.exp2[gap & ((1 << LOG_BITS) - 1)] >> np.minimum(gap >> LOG_BITS, MAX_SHIFT)
    table = np.zeros(257, dtype=np.int64)
    zr = Z_RANGE << Z_BITS
    for k in range(1, 256):
        dist = (k << (Q_BITS - 8)) - means  # [C]
        z = np.clip(_rshift(dist[:, None] * im.precision, R_SHIFT), -zr, zr) + zr
        table[k] = int((im.phi[z] * weights).sum())
    table[256] = int(weights.sum()) * PHI_ONE
    return table
