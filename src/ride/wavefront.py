"""Fast spatial LSTM sweep over anti-diagonals with a hand-written backward pass (design §4).

h_ij depends on (i, j-1) and (i-1, j), which lie on the previous anti-diagonal d = i + j - 1, so a whole
anti-diagonal is one batched step: H + W - 1 sequential steps instead of H * W.

Layout ("packed"): the cells of diagonal d = i + j are stored contiguously, ordered by row i, with one zero
pad slot before and after each diagonal, and a leading empty diagonal (two pad slots) standing for d = -1.
Tensors are [L, B, ...] with L = H*W + 2*(H+W), so every step reads its neighbours as two overlapping
contiguous slices of the previous diagonal: no per-diagonal gather or scatter, forward or backward. The pads
are the zero states outside the grid.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

#: Memory cells are clipped to [-CELL_CLIP, CELL_CLIP]. With forget gates f_r + f_c > 1 (e.g. an untrained layer)
#: the recurrence c_ij = g*i + c_left*f_c + c_up*f_r grows geometrically along the diagonals and overflows on large
#: grids (inf - inf = NaN). The clip acts only far beyond where h = tanh(c*o) saturates, so it changes no finite
#: result in practice; the density stays exactly normalised (h is still a function of the causal past).
CELL_CLIP = 1e4


def _tanh_(x: Tensor) -> Tensor:
    """tanh in place as 2 sigmoid(2x) - 1: PyTorch's CPU sigmoid is several times faster than its tanh."""
    return x.mul_(2).sigmoid_().mul_(2).sub_(1)


def _tanh_backward(grad: Tensor, out: Tensor) -> Tensor:
    """grad * (1 - out^2) in one pass (out = tanh(x))."""
    return torch.ops.aten.tanh_backward(grad, out)


def _tanh_backward_(grad: Tensor, out: Tensor) -> None:
    torch.ops.aten.tanh_backward.grad_input(grad, out, grad_input=grad)


def _sigmoid_backward_(grad: Tensor, out: Tensor) -> None:
    """grad *= out * (1 - out) in place, in one pass (out = sigmoid(x))."""
    torch.ops.aten.sigmoid_backward.grad_input(grad, out, grad_input=grad)


class DiagonalLayout:
    """Index bookkeeping of the packed layout of an H x W grid (see module docstring)."""

    def __init__(self, height: int, width: int) -> None:
        self.height, self.width = height, width
        self.num_diagonals = height + width - 1
        # Per diagonal: (first row, cell count, first cell slot, first slot of the step's neighbour slice).
        self.steps: list[tuple[int, int, int]] = []
        cell_index = torch.empty(height, width, dtype=torch.long)
        prev_start, prev_lo, start = 0, 0, 2  # diagonal -1: two pad slots at 0 and 1
        for d in range(self.num_diagonals):
            lo, hi = max(0, d - width + 1), min(height - 1, d)
            n = hi - lo + 1
            rows = torch.arange(lo, hi + 1)
            cell_index[rows, d - rows] = start + 1 + torch.arange(n)
            # Slot of the "up" neighbour (i-1, j) of the first cell; the "left" ones start one slot later.
            self.steps.append((start + 1, n, prev_start + lo - prev_lo))
            prev_start, prev_lo, start = start, lo, start + n + 2
        self.length = start
        self._cell_index = cell_index.flatten()
        is_pad = torch.ones(start, dtype=torch.bool)
        is_pad[self._cell_index] = False
        self._pad_index = is_pad.nonzero().squeeze(1)
        self._device_index: dict[tuple[str, torch.device], Tensor] = {}

    @staticmethod
    @lru_cache(maxsize=64)
    def get(height: int, width: int) -> DiagonalLayout:
        return DiagonalLayout(height, width)

    def _on(self, name: str, device: torch.device) -> Tensor:
        key = (name, device)
        if key not in self._device_index:
            self._device_index[key] = getattr(self, name).to(device)
        return self._device_index[key]

    def cell_index(self, device: torch.device) -> Tensor:
        """Slot of every cell in raster order: long [H*W]."""
        return self._on("_cell_index", device)

    def empty_with_zero_pads(self, like: Tensor, *shape: int) -> Tensor:
        """An uninitialised [L, *shape] tensor whose pad slots are zero (cheaper than zeroing everything)."""
        out = like.new_empty(self.length, *shape)
        return out.index_fill_(0, self._on("_pad_index", like.device), 0)

    def pack(self, grid: Tensor) -> Tensor:
        """[B, H, W, K] -> packed [L, B, K] (zero pads)."""
        b, h, w, k = grid.shape
        cells = grid.permute(1, 2, 0, 3).reshape(h * w, b, k)
        return grid.new_zeros(self.length, b, k).index_copy(0, self.cell_index(grid.device), cells)

    def unpack(self, packed: Tensor) -> Tensor:
        """Packed [L, B, K] -> [B, H, W, K]."""
        cells = packed.index_select(0, self.cell_index(packed.device))
        return cells.view(self.height, self.width, *packed.shape[1:]).permute(2, 0, 1, 3)


def _sweep(z: Tensor, weight_rec: Tensor, layout: DiagonalLayout, gates: Tensor | None) -> tuple[Tensor, Tensor]:
    """The forward sweep: (c, h) [L, B, D]. Writes the activated gates into `gates` [L, B, 5D] when given;
    without it (inference) one diagonal's gates live in a small reused buffer that stays in cache."""
    length, batch, five_d = z.shape
    dim = five_d // 5
    z = z.contiguous()
    w_up, w_left = weight_rec[:dim], weight_rec[dim:]
    scratch = None if gates is not None else z.new_empty(max(n for _, n, _ in layout.steps), batch, five_d)
    # Every slot of c and h that is not written below is a pad: the zero state outside the grid.
    c = layout.empty_with_zero_pads(z, batch, dim)
    h = layout.empty_with_zero_pads(z, batch, dim)
    for cur, n, up in layout.steps:
        rows = n * batch
        g = gates[cur : cur + n] if scratch is None else scratch[:n]
        flat = g.view(rows, five_d)
        # Pre-activations: z + h_up W_up + h_left W_left, accumulated in place by two products.
        torch.addmm(z[cur : cur + n].view(rows, five_d), h[up : up + n].view(rows, dim), w_up, out=flat)
        flat.addmm_(h[up + 1 : up + n + 1].view(rows, dim), w_left)
        g[..., :dim].mul_(2)  # candidate: tanh(a) = 2 sigmoid(2a) - 1, with one sigmoid over all five gates
        g.sigmoid_()
        g[..., :dim].mul_(2).sub_(1)
        cand, out_gate, in_gate, forget_up, forget_left = g.split(dim, dim=-1)
        cc = c[cur : cur + n]
        torch.mul(cand, in_gate, out=cc)
        cc.addcmul_(c[up : up + n], forget_up)
        cc.addcmul_(c[up + 1 : up + n + 1], forget_left)
        cc.clamp_(-CELL_CLIP, CELL_CLIP)
        hh = h[cur : cur + n]
        _tanh_(torch.mul(cc, out_gate, out=hh))
    return c, h


def diagonal_sweep(z: Tensor, weight_rec: Tensor, layout: DiagonalLayout) -> Tensor:
    """h [L, B, D] from z [L, B, 5D] (see `DiagonalSweep`); skips the autograd bookkeeping when no gradient is
    needed."""
    if torch.is_grad_enabled() and (z.requires_grad or weight_rec.requires_grad):
        return DiagonalSweep.apply(z, weight_rec, layout)
    return _sweep(z, weight_rec, layout, None)[1]


class DiagonalSweep(torch.autograd.Function):
    """h = SLSTM(z) on the packed layout: z [L, B, 5D] gate pre-activations from the inputs (bias included),
    weight_rec [2D, 5D] (rows: h_up then h_left). Returns h [L, B, D] with zero pads.

    Gate order along the 5D axis: g (tanh), o, i, f_r, f_c (sigmoid). (Projecting the inputs per diagonal
    inside the sweep was measured slower: K-by-5D products with K = 12 are memory-bound.)
    """

    @staticmethod
    def forward(ctx, z: Tensor, weight_rec: Tensor, layout: DiagonalLayout) -> Tensor:
        gates = z.new_empty(z.shape)  # activated gates of every cell, kept for the backward pass
        c, h = _sweep(z, weight_rec, layout, gates)
        ctx.layout = layout
        ctx.clipped = bool((c.abs() >= CELL_CLIP).any())  # the clip's gradient mask is needed only then
        ctx.save_for_backward(weight_rec, gates, c, h)
        return h

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_h: Tensor) -> tuple[Tensor, Tensor, None]:
        weight_rec, gates, c, h = ctx.saved_tensors
        clipped = ctx.clipped
        dim = h.shape[-1]
        batch = h.shape[1]
        w_up_t, w_left_t = weight_rec[:dim].T, weight_rec[dim:].T  # (5D, D) each
        dh = grad_h.contiguous().clone()  # collects the recurrent contributions in place
        dc = torch.zeros_like(c)
        dz = ctx.layout.empty_with_zero_pads(gates, *gates.shape[1:])  # zero pads: bias gradient sums all slots
        dw_up = weight_rec.new_zeros(dim, 5 * dim)
        dw_left = weight_rec.new_zeros(dim, 5 * dim)
        for cur, n, up in reversed(ctx.layout.steps):
            g = gates[cur : cur + n]
            cand, out_gate, in_gate, forget_up, forget_left = g.split(dim, dim=-1)
            hh, cc = h[cur : cur + n], c[cur : cur + n]
            dco = _tanh_backward(dh[cur : cur + n], hh)  # through h = tanh(c * o)
            dcc = torch.addcmul(dc[cur : cur + n], dco, out_gate)
            if clipped:
                dcc.masked_fill_(cc.abs() >= CELL_CLIP, 0)
            dg = dz[cur : cur + n]
            d_cand, d_out, d_in, d_up, d_left = dg.split(dim, dim=-1)
            torch.mul(dco, cc, out=d_out)
            torch.mul(dcc, in_gate, out=d_cand)
            _tanh_backward_(d_cand, cand)
            torch.mul(dcc, cand, out=d_in)
            torch.mul(dcc, c[up : up + n], out=d_up)
            torch.mul(dcc, c[up + 1 : up + n + 1], out=d_left)
            _sigmoid_backward_(dg[..., dim:], g[..., dim:])
            # Contributions to the previous diagonal (pads absorb those of cells outside the grid).
            flat_dg = dg.view(n * batch, 5 * dim)
            dh[up : up + n].view(n * batch, dim).addmm_(flat_dg, w_up_t)
            dh[up + 1 : up + n + 1].view(n * batch, dim).addmm_(flat_dg, w_left_t)
            dc[up : up + n].addcmul_(dcc, forget_up)
            dc[up + 1 : up + n + 1].addcmul_(dcc, forget_left)
            dw_up.addmm_(h[up : up + n].view(n * batch, dim).T, flat_dg)
            dw_left.addmm_(h[up + 1 : up + n + 1].view(n * batch, dim).T, flat_dg)
        return dz, torch.cat([dw_up, dw_left], dim=0), None
