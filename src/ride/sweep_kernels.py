"""Compiled (numba) cell updates of the anti-diagonal sweep (`ride.wavefront`), forward and backward.

Per diagonal the sweep does one matrix product and then a dozen small element-wise passes over [n, B, D] blocks (the
cell state, the gates, their gradients): at the trainer's sizes these passes and their Python dispatch cost about as
much as the products (RESULTS.md, "The trainer's step against the GEMM rate"). Here each becomes one loop over the
diagonal's cells. What needs exp stays in torch (its vectorised sigmoid over the whole block): numba without SVML
calls scalar libm, several times slower. The loops do the same operations in the same order as the torch passes
(float rounding may differ in the last bit where the compiler contracts a multiply-add); tests hold both paths equal
to the raster reference, values and gradients.

Arguments are one diagonal's slices of the sweep's packed tensors as NumPy views (no copies), each a different
piece of memory: numba lets LLVM assume that array arguments do not overlap, and vectorises the loops on that
(measured: the forward update ~2x faster than torch's passes; with whole tensors and offsets instead, a store into
the array that the loop reads kept it scalar and slower than torch). Gates in the order g, o, i, f_r, f_c.
`consts` = [1, 2, CELL_CLIP, 0] in the arrays' dtype (`constants`): Python numbers would promote float32 arithmetic
to float64.
"""

from __future__ import annotations

import numpy as np
import torch

try:
    import numba
except ImportError:  # the torch passes compute the same
    numba = None


def usable(t: torch.Tensor) -> bool:
    """Whether the kernels can run on the sweep's tensors like `t`: numba importable, CPU float32/float64, and one
    torch thread (the loops are single-threaded; with more threads torch's parallel passes are the better choice)."""
    return (numba is not None and t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64)
            and torch.get_num_threads() == 1)


def constants(dtype: torch.dtype, clip: float) -> np.ndarray:
    """The kernels' `consts` argument: [1, 2, clip, 0] in the NumPy dtype of `dtype`."""
    return np.array([1, 2, clip, 0], dtype=torch.empty((), dtype=dtype).numpy().dtype)


def _jit(fn):  # noqa: ANN001, ANN202
    return numba.njit(cache=True, nogil=True, boundscheck=False, fastmath=False)(fn) if numba is not None else fn


@_jit
def forward_cells(g, c_prev, c, h, consts):  # noqa: ANN001, ANN201
    """After g = sigmoid(pre-activations) [n, B, 5D], the candidate's columns at 2a: c = clip(tanh(a) i + c_up f_r +
    c_left f_c) and h = 2 c o [n, B, D] (the caller then takes 2 sigmoid(h) - 1 = tanh(c o)); then the candidate's
    columns become tanh(a) = 2 g - 1 (for the backward). c_prev [n + 1, B, D]: c of the previous diagonal from the
    first cell's upper neighbour (row r is cell r's upper neighbour, row r + 1 its left one)."""
    one, two, clip = consts[0], consts[1], consts[2]
    n, batch, dim = c.shape
    for r in range(n):
        for b in range(batch):
            for k in range(dim):  # reads g, writes c and h: no store into an array it reads, so it vectorises
                v = (two * g[r, b, k] - one) * g[r, b, 2 * dim + k]
                v = v + c_prev[r, b, k] * g[r, b, 3 * dim + k]
                v = v + c_prev[r + 1, b, k] * g[r, b, 4 * dim + k]
                v = min(max(v, -clip), clip)
                c[r, b, k] = v
                h[r, b, k] = two * (v * g[r, b, dim + k])
            for k in range(dim):
                g[r, b, k] = two * g[r, b, k] - one


@_jit
def backward_cells(g, c_prev, c, h, dh, dc, dg, dc_prev, clipped, consts):  # noqa: ANN001, ANN201
    """The gradients of the diagonal's pre-activations dg [n, B, 5D] from dh and dc of its cells [n, B, D], and
    their contributions through the forget gates added into dc_prev [n + 1, B, D] (rows as c_prev in
    `forward_cells`; the recurrent ones through the weights are the caller's products). g: the activated gates
    [n, B, 5D] (tanh(a) in the candidate's columns)."""
    one, clip, zero = consts[0], consts[2], consts[3]
    n, batch, dim = c.shape
    dcc = np.empty(dim, dtype=c.dtype)  # one cell row's gradient of c
    for r in range(n):
        for b in range(batch):
            for k in range(dim):
                x = h[r, b, k]
                dco = dh[r, b, k] * (one - x * x)  # through h = tanh(c o)
                out, v = g[r, b, dim + k], c[r, b, k]
                d = dc[r, b, k] + dco * out
                if clipped and abs(v) >= clip:
                    d = zero
                dcc[k] = d
                cand, inp = g[r, b, k], g[r, b, 2 * dim + k]
                fu, fl = g[r, b, 3 * dim + k], g[r, b, 4 * dim + k]
                dg[r, b, k] = (d * inp) * (one - cand * cand)
                dg[r, b, dim + k] = (dco * v) * (out * (one - out))
                dg[r, b, 2 * dim + k] = (d * cand) * (inp * (one - inp))
                dg[r, b, 3 * dim + k] = (d * c_prev[r, b, k]) * (fu * (one - fu))
                dg[r, b, 4 * dim + k] = (d * c_prev[r + 1, b, k]) * (fl * (one - fl))
            # rows r and r + 1 of dc_prev: one loop each (each reads and writes only its own row)
            for k in range(dim):
                dc_prev[r, b, k] += dcc[k] * g[r, b, 3 * dim + k]
            for k in range(dim):
                dc_prev[r + 1, b, k] += dcc[k] * g[r, b, 4 * dim + k]
