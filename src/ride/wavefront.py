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

from . import sweep_kernels

#: The default cell clip: memory cells are clipped to [-clip, clip]. With forget gates f_r + f_c > 1 (e.g. an
#: untrained layer) the recurrence c_ij = g*i + c_left*f_c + c_up*f_r grows geometrically along the diagonals and
#: overflows on large grids (inf - inf = NaN). This default acts only far beyond where h = tanh(c*o) saturates; a
#: model can set a smaller one (`RIDEConfig.cell_clip`, design §4) to keep its state bounded on images far larger
#: than its training patches. Either way the density stays exactly normalised (h is a function of the causal past).
CELL_CLIP = 1e4


def _tanh_backward_(grad: Tensor, out: Tensor) -> None:
    """grad *= 1 - out^2 in place, in one pass (out = tanh(x))."""
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
        """Packed [L, B, K] -> [B, H, W, K] (contiguous)."""
        if torch.is_grad_enabled() and packed.requires_grad:
            return _Unpack.apply(packed, self)
        return self._gather(packed)

    def _gather(self, packed: Tensor) -> Tensor:
        _, b, k = packed.shape
        cells = packed.permute(1, 0, 2).index_select(1, self.cell_index(packed.device))  # (B, H*W, K), one pass
        return cells.view(b, self.height, self.width, k)


class _Unpack(torch.autograd.Function):
    """`DiagonalLayout.unpack` with a backward that copies the gradient into place (index_select's own backward
    is a scatter-add, several times slower, since it cannot know that the cells are distinct)."""

    @staticmethod
    def forward(ctx, packed: Tensor, layout: DiagonalLayout) -> Tensor:
        ctx.layout = layout
        return layout._gather(packed)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        layout = ctx.layout
        b, _, _, k = grad.shape
        out = layout.empty_with_zero_pads(grad, b, k)
        out.permute(1, 0, 2).index_copy_(1, layout.cell_index(grad.device), grad.reshape(b, -1, k))
        return out, None


def fused_weight(weight_in: Tensor, bias: Tensor, weight_rec: Tensor) -> Tensor:
    """The sweep's one weight matrix [2D + K + 1, 5D]: rows h_up, h_left (weight_rec), x (weight_in), then the bias
    (the operand's constant column). The candidate gate's columns are doubled, for tanh(a) = 2 sigmoid(2a) - 1:
    scaling by 2 is exact, so the products give 2a bit for bit."""
    dim = weight_rec.shape[0] // 2
    weight = torch.cat([weight_rec, weight_in, bias[None]])
    weight[:, :dim].mul_(2)
    return weight


def with_ones(inputs: Tensor) -> Tensor:
    """Packed inputs [L, B, K] with a constant column of ones appended, [L, B, K + 1] (the bias's input)."""
    return torch.cat([inputs, inputs.new_ones(*inputs.shape[:2], 1)], dim=2)


def _sweep(x1: Tensor, weight: Tensor, layout: DiagonalLayout, gates: Tensor | None,
           clip: float) -> tuple[Tensor, Tensor]:
    """The forward sweep over inputs x1 [L, B, K + 1] (see `with_ones`) with `fused_weight`: (c, h) [L, B, D].
    Writes the activated gates into `gates` [L, B, 5D] when given; without it (inference) one diagonal's gates live
    in a small reused buffer that stays in cache."""
    batch = x1.shape[1]
    width, five_d = weight.shape
    dim = five_d // 5
    most = max(n for _, n, _ in layout.steps)
    scratch = None if gates is not None else x1.new_empty(most, batch, five_d)
    # One diagonal's left operand of the product, rows [h_up, h_left, x, 1]: gathered into a small buffer that stays
    # in cache (measured faster than three products reading h and x in place, or than one stored operand of all
    # slots, whose rows are cold when written).
    operand = x1.new_empty(most, batch, width)
    # Every slot of c and h that is not written below is a pad: the zero state outside the grid.
    c = layout.empty_with_zero_pads(x1, batch, dim)
    h = layout.empty_with_zero_pads(x1, batch, dim)
    minus_one, zero = x1.new_full((), -1.0), x1.new_zeros(())
    fused = sweep_kernels.usable(x1)  # the cell update in one compiled loop instead of seven passes
    if fused:
        consts = sweep_kernels.constants(x1.dtype, clip)
        c_np, h_np = c.numpy(), h.numpy()
    for cur, n, up in layout.steps:
        rows = n * batch
        qq = operand[:n]
        qq[..., :dim] = h[up : up + n]
        qq[..., dim : 2 * dim] = h[up + 1 : up + n + 1]
        qq[..., 2 * dim :] = x1[cur : cur + n]
        g = gates[cur : cur + n] if scratch is None else scratch[:n]
        torch.mm(qq.view(rows, width), weight, out=g.view(rows, five_d))
        g.sigmoid_()  # one sigmoid over all five gates; the candidate's columns hold 2a
        if fused:
            sweep_kernels.forward_cells(g.numpy(), c_np[up : up + n + 1], c_np[cur : cur + n], h_np[cur : cur + n],
                                        consts)
            hh = h[cur : cur + n].sigmoid_()  # h = tanh(c o) = 2 sigmoid(2 c o) - 1; the kernel wrote 2 c o
            torch.add(minus_one, hh, alpha=2, out=hh)
            continue
        cand, out_gate, in_gate, forget_up, forget_left = g.split(dim, dim=-1)
        torch.add(minus_one, cand, alpha=2, out=cand)  # tanh(a) = 2 sigmoid(2a) - 1, in one pass
        cc = c[cur : cur + n]
        torch.mul(cand, in_gate, out=cc)
        cc.addcmul_(c[up : up + n], forget_up)
        cc.addcmul_(c[up + 1 : up + n + 1], forget_left)
        cc.clamp_(-clip, clip)
        hh = h[cur : cur + n]
        torch.addcmul(zero, cc, out_gate, value=2, out=hh).sigmoid_()  # h = tanh(c o) = 2 sigmoid(2 c o) - 1
        torch.add(minus_one, hh, alpha=2, out=hh)
    return c, h


def diagonal_sweep(inputs: Tensor, weight_in: Tensor, bias: Tensor, weight_rec: Tensor,
                   layout: DiagonalLayout, clip: float = CELL_CLIP) -> Tensor:
    """h [L, B, D] from packed inputs [L, B, K] (see `DiagonalSweep`; cells clipped to +-clip); skips the autograd
    bookkeeping when no gradient is needed."""
    params = (inputs, weight_in, bias, weight_rec)
    if torch.is_grad_enabled() and any(t.requires_grad for t in params):
        return DiagonalSweep.apply(*params, layout, clip)
    return _sweep(with_ones(inputs), fused_weight(weight_in, bias, weight_rec), layout, None, clip)[1]


class DiagonalSweep(torch.autograd.Function):
    """h = SLSTM(x) on the packed layout: inputs x [L, B, K], weight_in [K, 5D], bias [5D], weight_rec [2D, 5D]
    (rows: h_up then h_left); cells clipped to +-clip. Returns h [L, B, D] with zero pads.

    Gate order along the 5D axis: g (tanh), o, i, f_r, f_c (sigmoid). Each diagonal's pre-activations are one
    product [n B, 2D + K + 1] @ [2D + K + 1, 5D] of the rows [h_up, h_left, x, 1] (see `_sweep`): one well-shaped
    product instead of a K-wide input projection of all pixels (memory-bound with K = 12: it wrote and read a
    [L, B, 5D] tensor) plus two D-wide recurrent ones. The backward accumulates the weight gradients diagonal by
    diagonal, while that diagonal's gate gradients are in cache.
    """

    @staticmethod
    def forward(ctx, inputs: Tensor, weight_in: Tensor, bias: Tensor, weight_rec: Tensor,
                layout: DiagonalLayout, clip: float) -> Tensor:
        x1 = with_ones(inputs)
        gates = x1.new_empty(*x1.shape[:2], weight_rec.shape[1])  # activated gates of every cell, for the backward
        c, h = _sweep(x1, fused_weight(weight_in, bias, weight_rec), layout, gates, clip)
        ctx.layout, ctx.clip = layout, clip
        low, high = torch.aminmax(c)  # the clip's gradient mask is needed only when it was hit
        ctx.clipped = bool(high >= clip) or bool(low <= -clip)
        ctx.save_for_backward(x1, weight_in, weight_rec, gates, c, h)
        return h

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_h: Tensor) -> tuple[Tensor | None, Tensor, Tensor, Tensor, None, None]:
        x1, weight_in, weight_rec, gates, c, h = ctx.saved_tensors
        clipped = ctx.clipped
        _, batch, dim = h.shape
        k1 = x1.shape[2]
        w_t = weight_rec.T, weight_in.T  # (5D, 2D): h_up's then h_left's columns; (5D, K)
        dh = grad_h.contiguous().clone()  # collects the recurrent contributions in place
        dc = torch.zeros_like(c)
        dw = h.new_zeros(2 * dim + k1, 5 * dim)  # rows as in `fused_weight`: weight_rec, weight_in, bias
        dx = ctx.layout.empty_with_zero_pads(h, batch, weight_in.shape[0]) if ctx.needs_input_grad[0] else None
        dg_buf = gates.new_empty(max(n for _, n, _ in ctx.layout.steps), batch, 5 * dim)
        fused = sweep_kernels.usable(h)
        if fused:
            consts = sweep_kernels.constants(h.dtype, ctx.clip)
            g_np, c_np, h_np, dh_np, dc_np, dg_np = (t.numpy() for t in (gates, c, h, dh, dc, dg_buf))
        for cur, n, up in reversed(ctx.layout.steps):
            rows = n * batch
            if fused:  # dg and the forget gates' part of dc in one compiled loop
                now, prev = slice(cur, cur + n), slice(up, up + n + 1)
                sweep_kernels.backward_cells(g_np[now], c_np[prev], c_np[now], h_np[now], dh_np[now], dc_np[now],
                                             dg_np[:n], dc_np[prev], clipped, consts)
                _backward_products(dg_buf[:n].view(rows, 5 * dim), w_t, dh, dw, dx, x1, h, cur, up, n)
                continue
            g = gates[cur : cur + n]
            cand, out_gate, in_gate, forget_up, forget_left = g.split(dim, dim=-1)
            hh, cc = h[cur : cur + n], c[cur : cur + n]
            dco = dh[cur : cur + n]
            _tanh_backward_(dco, hh)  # through h = tanh(c * o), in place: this diagonal's dh is not read again
            dcc = dc[cur : cur + n].addcmul_(dco, out_gate)
            if clipped:
                dcc.masked_fill_(cc.abs() >= ctx.clip, 0)
            dg = dg_buf[:n]
            d_cand, d_out, d_in, d_up, d_left = dg.split(dim, dim=-1)
            torch.mul(dco, cc, out=d_out)
            torch.mul(dcc, in_gate, out=d_cand)
            _tanh_backward_(d_cand, cand)
            torch.mul(dcc, cand, out=d_in)
            torch.mul(dcc, c[up : up + n], out=d_up)
            torch.mul(dcc, c[up + 1 : up + n + 1], out=d_left)
            _sigmoid_backward_(dg[..., dim:], g[..., dim:])
            dc[up : up + n].addcmul_(dcc, forget_up)
            dc[up + 1 : up + n + 1].addcmul_(dcc, forget_left)
            _backward_products(dg.view(rows, 5 * dim), w_t, dh, dw, dx, x1, h, cur, up, n)
        return dx, dw[2 * dim : -1], dw[-1], dw[: 2 * dim], None, None


def _backward_products(flat_dg: Tensor, w_t: tuple[Tensor, Tensor], dh: Tensor, dw: Tensor, dx: Tensor | None,
                       x1: Tensor, h: Tensor, cur: int, up: int, n: int) -> None:
    """One diagonal's products in the backward: its gates' gradients flat_dg [n B, 5D] into dh of the previous
    diagonal (pads absorb those of cells outside the grid), into the weight gradient dw (rows as in `fused_weight`)
    and into dx of its cells. w_t: the transposed weights (weight_rec.T, weight_in.T)."""
    rows, dim = flat_dg.shape[0], h.shape[2]
    w_rec_t, w_in_t = w_t
    dh[up : up + n].view(rows, dim).addmm_(flat_dg, w_rec_t[:, :dim])
    dh[up + 1 : up + n + 1].view(rows, dim).addmm_(flat_dg, w_rec_t[:, dim:])
    dw[:dim].addmm_(h[up : up + n].view(rows, dim).T, flat_dg)
    dw[dim : 2 * dim].addmm_(h[up + 1 : up + n + 1].view(rows, dim).T, flat_dg)
    dw[2 * dim :].addmm_(x1[cur : cur + n].view(rows, -1).T, flat_dg)  # weight_in and the bias (the ones column)
    if dx is not None:
        torch.mm(flat_dg, w_in_t, out=dx[cur : cur + n].view(rows, -1))
