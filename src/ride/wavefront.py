"""Fast spatial LSTM sweep over anti-diagonals with a hand-written backward pass (spec §4).

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
        self._device_index: dict[torch.device, Tensor] = {}

    @staticmethod
    @lru_cache(maxsize=64)
    def get(height: int, width: int) -> DiagonalLayout:
        return DiagonalLayout(height, width)

    def cell_index(self, device: torch.device) -> Tensor:
        """Slot of every cell in raster order: long [H*W]."""
        if device not in self._device_index:
            self._device_index[device] = self._cell_index.to(device)
        return self._device_index[device]

    def pack(self, grid: Tensor) -> Tensor:
        """[B, H, W, K] -> packed [L, B, K] (zero pads)."""
        b, h, w, k = grid.shape
        cells = grid.permute(1, 2, 0, 3).reshape(h * w, b, k)
        return grid.new_zeros(self.length, b, k).index_copy(0, self.cell_index(grid.device), cells)

    def unpack(self, packed: Tensor) -> Tensor:
        """Packed [L, B, K] -> [B, H, W, K]."""
        cells = packed.index_select(0, self.cell_index(packed.device))
        return cells.view(self.height, self.width, *packed.shape[1:]).permute(2, 0, 1, 3)


class DiagonalSweep(torch.autograd.Function):
    """h = SLSTM(z) on the packed layout: z [L, B, 5D] gate pre-activations from the inputs (bias included),
    weight_rec [2D, 5D] (rows: h_up then h_left). Returns h [L, B, D] with zero pads.

    Gate order along the last axis of z: g (tanh), o, i, f_r, f_c (sigmoid).
    """

    @staticmethod
    def forward(ctx, z: Tensor, weight_rec: Tensor, layout: DiagonalLayout) -> Tensor:
        length, batch, five_d = z.shape
        dim = five_d // 5
        z = z.contiguous()
        w_up, w_left = weight_rec[:dim], weight_rec[dim:]
        # Every slot of c and h that is not written below is a pad: the zero state outside the grid.
        gates = torch.empty_like(z)  # activated gates, kept for the backward pass
        c = z.new_zeros(length, batch, dim)
        h = z.new_zeros(length, batch, dim)
        for cur, n, up in layout.steps:
            rows = n * batch
            g = gates[cur : cur + n]
            # Pre-activations: z + h_up W_up + h_left W_left, accumulated in place by two products.
            torch.addmm(z[cur : cur + n].view(rows, five_d), h[up : up + n].view(rows, dim), w_up,
                        out=g.view(rows, five_d))
            g.view(rows, five_d).addmm_(h[up + 1 : up + n + 1].view(rows, dim), w_left)
            g[..., :dim].tanh_()
            g[..., dim:].sigmoid_()
            cand, out_gate, in_gate, forget_up, forget_left = g.split(dim, dim=-1)
            cc = c[cur : cur + n]
            torch.mul(cand, in_gate, out=cc)
            cc.addcmul_(c[up : up + n], forget_up)
            cc.addcmul_(c[up + 1 : up + n + 1], forget_left)
            hh = h[cur : cur + n]
            torch.mul(cc, out_gate, out=hh)
            hh.tanh_()
        ctx.layout = layout
        ctx.save_for_backward(weight_rec, gates, c, h)
        return h

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_h: Tensor) -> tuple[Tensor, Tensor, None]:
        weight_rec, gates, c, h = ctx.saved_tensors
        dim = h.shape[-1]
        batch = h.shape[1]
        w_up_t, w_left_t = weight_rec[:dim].T, weight_rec[dim:].T  # (5D, D) each
        dh = grad_h.contiguous().clone()  # collects the recurrent contributions in place
        dc = torch.zeros_like(c)
        dz = torch.zeros_like(gates)
        dw_up = weight_rec.new_zeros(dim, 5 * dim)
        dw_left = weight_rec.new_zeros(dim, 5 * dim)
        for cur, n, up in reversed(ctx.layout.steps):
            g = gates[cur : cur + n]
            cand, out_gate, in_gate, forget_up, forget_left = g.split(dim, dim=-1)
            hh, cc = h[cur : cur + n], c[cur : cur + n]
            dco = dh[cur : cur + n] * (1 - hh * hh)  # through h = tanh(c * o)
            dcc = torch.addcmul(dc[cur : cur + n], dco, out_gate)
            dg = dz[cur : cur + n]
            d_cand, d_out, d_in, d_up, d_left = dg.split(dim, dim=-1)
            torch.mul(dco, cc, out=d_out)
            torch.mul(dcc, in_gate, out=d_cand)
            d_cand.mul_(1 - cand * cand)
            torch.mul(dcc, cand, out=d_in)
            torch.mul(dcc, c[up : up + n], out=d_up)
            torch.mul(dcc, c[up + 1 : up + n + 1], out=d_left)
            sig = g[..., dim:]
            dg[..., dim:].mul_(sig * (1 - sig))
            # Contributions to the previous diagonal (pads absorb those of cells outside the grid).
            flat_dg = dg.view(n * batch, 5 * dim)
            dh[up : up + n].view(n * batch, dim).addmm_(flat_dg, w_up_t)
            dh[up + 1 : up + n + 1].view(n * batch, dim).addmm_(flat_dg, w_left_t)
            dc[up : up + n].addcmul_(dcc, forget_up)
            dc[up + 1 : up + n + 1].addcmul_(dcc, forget_left)
            dw_up.addmm_(h[up : up + n].view(n * batch, dim).T, flat_dg)
            dw_left.addmm_(h[up + 1 : up + n + 1].view(n * batch, dim).T, flat_dg)
        return dz, torch.cat([dw_up, dw_left], dim=0), None
