"""The plain reference of `fixedpoint`: the integer RIDE in NumPy int64, one pixel at a time in raster order.

No floating point and no batching: integer dot products (`np.dot` on int64 arrays), the LSTM states in full
[H, W, D] arrays with explicit zero borders, the window read pixel by pixel from the canvas. Slow (for tests on
small images); `fixedpoint.FrontStepper` must give identical integers.
"""

from __future__ import annotations

import numpy as np

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


def _raster_trunk(im, canvas: np.ndarray):  # noqa: ANN001, ANN202 - an IntRIDE or IntColourRIDE -> generator
    """(i, j, top hidden state h [D], linear predictions [channels] at 2^-Q_BITS) of every predicted cell in raster
    order: canvas int64 [channels, Hc, Wc] of pixel codes 2v + 1 (the windows' channel blocks in order)."""
    _, hc, wc = canvas.shape
    top, left, right = im.margin
    hp, wp = hc - top, wc - left - right
    d, num_layers = im.dims[:2]
    h = [np.zeros((hp + 1, wp + 1, d), dtype=np.int64) for _ in range(num_layers)]  # [i + 1, j + 1]
    cell = [np.zeros((hp + 1, wp + 1, d), dtype=np.int64) for _ in range(num_layers)]
    for i in range(hp):
        for j in range(wp):
            ci, cj = i + top, j + left
            codes = np.array([canvas[ch, ci + dy, cj + dx] for ch in range(canvas.shape[0]) for dy, dx in im.offsets],
                             dtype=np.int64)
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
                new_c = np.clip(_rshift(new_c, UNIT_BITS), -im.cell_clip, im.cell_clip)
                new_h = _lookup(im.tanh_h, _rshift(new_c * out_g, 2 * UNIT_BITS - PRE_BITS))
                cell[k][i + 1, j + 1], h[k][i + 1, j + 1] = new_c, new_h
                below = new_h
            yield i, j, below, mapped[5 * d :]


def reference_cdf_tables(im: IntRIDE, canvas: np.ndarray) -> np.ndarray:
    """Cq at all 257 bin edges of every predicted cell: canvas int64 [B, Hc, Wc] of pixel codes 2v + 1 ->
    int64 [B, Hp, Wp, 257]."""
    b_count, hc, wc = canvas.shape
    top, left, right = im.margin
    out = np.zeros((b_count, hc - top, wc - left - right, 257), dtype=np.int64)
    for b in range(b_count):
        for i, j, h, base in _raster_trunk(im, canvas[b][None]):
            out[b, i, j] = _cdf_table(im, im, h, base[0])
    return out


def reference_colour_cdf_tables(im, canvas: np.ndarray) -> np.ndarray:  # noqa: ANN001 - an IntColourRIDE
    """Cq at all 257 bin edges of each coded channel of every predicted cell, given the pixel's channels coded
    before it: canvas int64 [B, 3, Hc, Wc] of codes 2v + 1 (coded channel order) -> int64 [B, Hp, Wp, 3, 257]."""
    from .colour_fixedpoint import R_CLIP

    b_count, _, hc, wc = canvas.shape
    top, left, right = im.margin
    out = np.zeros((b_count, hc - top, wc - left - right, 3, 257), dtype=np.int64)
    for b in range(b_count):
        for i, j, h, base in _raster_trunk(im, canvas[b]):
            codes = canvas[b, :, i + top, j + left].astype(np.int64)
            r = np.clip((codes << (Q_BITS - 9)) - base, -R_CLIP, R_CLIP)
            for k, head in enumerate(im.heads):
                out[b, i, j, k] = _cdf_table(head, im, np.concatenate([h, r[:k]]), base[k])
    return out


def _cdf_table(head, im, u: np.ndarray, base: int) -> np.ndarray:  # noqa: ANN001 - IntRIDE / IntHead, and tables
    """Cq(0..256) [257] of one cell from the head's GEMM input u (the top hidden state h [D], then a colour head's
    residuals) and the linear prediction base (2^-Q_BITS); the look-up tables come from `im`."""
    _, _, c, s, f = im.dims
    acc = _rshift_even(np.dot(u, head.out_weight), head.out_shift)
    feat = np.clip(acc[:f], -FEAT_CLIP, FEAT_CLIP)
    means = np.clip(acc[f:] + base, -MEAN_CLIP, MEAN_CLIP)
    energy = np.minimum(_rshift_even(np.dot(feat * feat, head.beta2), head.energy_shift), head.energy_clip)
    logits = head.eta - _rshift(energy[:, None] * head.slope, LOG_BITS)  # [C, S]
    gap = logits.max() - logits
    weights = im.exp2[gap & ((1 << LOG_BITS) - 1)] >> np.minimum(gap >> LOG_BITS, MAX_SHIFT)
    table = np.zeros(257, dtype=np.int64)
    zr = Z_RANGE << Z_BITS
    for k in range(1, 256):
        dist = (k << (Q_BITS - 8)) - means  # [C]
        z = np.clip(_rshift(dist[:, None] * head.precision, R_SHIFT), -zr, zr) + zr
        table[k] = int((im.phi[z] * weights).sum())
    table[256] = int(weights.sum()) * PHI_ONE
    return table
