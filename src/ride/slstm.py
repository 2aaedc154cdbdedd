"""Spatial LSTM layer (design §4): a 2-D LSTM whose state at (i, j) depends on the states left and above.

    z = [x_ij, h_(i-1,j), h_(i,j-1)];  g = tanh(.), o, i, f_r, f_c = sigmoid(.)  (affine maps of z)
    c_ij = g * i + c_(i,j-1) * f_c + c_(i-1,j) * f_r
    h_ij = tanh(c_ij * o)

c_ij is clipped to +-cell_clip (default `wavefront.CELL_CLIP`) so that untrained layers cannot overflow on large
grids; a smaller clip keeps a trained layer's state bounded on images far larger than its training patches.
Two implementations of the same function: `raster` (plain loop over pixels with autograd, the reference) and
`sweep` (anti-diagonal wavefront with a hand-written backward, see `wavefront.py`). Tests hold them equal.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .wavefront import CELL_CLIP, DiagonalLayout, diagonal_sweep


class SpatialLSTM(nn.Module):
    """One spatial LSTM layer: inputs [B, H, W, K] -> hidden states [B, H, W, D]."""

    def __init__(self, input_size: int, hidden_size: int = 64, init_scale: float = 0.08,
                 cell_clip: float = CELL_CLIP) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.cell_clip = float(cell_clip)  # part of the model's definition: kept in the owner's config
        d = hidden_size
        # Gate order along the 5D axis: g, o, i, f_r, f_c. Rows of weight_rec: h_up (D) then h_left (D).
        self.weight_in = nn.Parameter(torch.empty(input_size, 5 * d).uniform_(-init_scale, init_scale))
        self.weight_rec = nn.Parameter(torch.empty(2 * d, 5 * d).uniform_(-init_scale, init_scale))
        self.bias = nn.Parameter(torch.zeros(5 * d))

    def forward(self, inputs: Tensor, impl: str = "sweep") -> Tensor:
        """Hidden states [B, H, W, D] for inputs [B, H, W, K]; impl is "sweep" (fast) or "raster" (reference)."""
        if impl == "raster":
            return self._raster(inputs)
        if impl != "sweep":
            raise ValueError(f"impl must be 'sweep' or 'raster', found {impl!r}")
        layout = DiagonalLayout.get(inputs.shape[1], inputs.shape[2])
        return layout.unpack(self.forward_packed(layout.pack(inputs), layout))

    def forward_packed(self, packed: Tensor, layout: DiagonalLayout) -> Tensor:
        """The sweep on the packed layout: [L, B, K] -> [L, B, D] (stacked layers stay packed)."""
        return diagonal_sweep(packed, self.weight_in, self.bias, self.weight_rec, layout, self.cell_clip)

    def step(self, z: Tensor, h_up: Tensor, h_left: Tensor, c_up: Tensor, c_left: Tensor) -> tuple[Tensor, Tensor]:
        """One cell update for N cells: z [N, 5D] input projection (bias included), states [N, D] -> (h, c)."""
        d = self.hidden_size
        pre = z + torch.cat([h_up, h_left], dim=-1) @ self.weight_rec
        cand = torch.tanh(pre[..., :d])
        out_gate, in_gate, forget_up, forget_left = torch.sigmoid(pre[..., d:]).split(d, dim=-1)
        c = (cand * in_gate + c_left * forget_left + c_up * forget_up).clamp(-self.cell_clip, self.cell_clip)
        return torch.tanh(c * out_gate), c

    def _raster(self, inputs: Tensor) -> Tensor:
        """Reference: one pixel at a time in raster order, batched over images, differentiated by autograd."""
        b, height, width, _ = inputs.shape
        z = torch.matmul(inputs, self.weight_in) + self.bias  # (B, H, W, 5D)
        # Unbind once: indexing z per pixel would make autograd scatter into a full-size tensor per pixel.
        z_cells = [row.unbind(1) for row in z.unbind(1)]
        zero = inputs.new_zeros(b, self.hidden_size)
        h_rows: list[list[Tensor]] = []
        c_rows: list[list[Tensor]] = []
        for i in range(height):
            h_row: list[Tensor] = []
            c_row: list[Tensor] = []
            for j in range(width):
                h_up = h_rows[i - 1][j] if i > 0 else zero
                c_up = c_rows[i - 1][j] if i > 0 else zero
                h_left = h_row[j - 1] if j > 0 else zero
                c_left = c_row[j - 1] if j > 0 else zero
                h, c = self.step(z_cells[i][j], h_up, h_left, c_up, c_left)
                h_row.append(h)
                c_row.append(c)
            h_rows.append(h_row)
            c_rows.append(c_row)
        return torch.stack([torch.stack(row, dim=1) for row in h_rows], dim=1)


def run_layers(layers: nn.ModuleList, inputs: Tensor, impl: str = "sweep") -> Tensor:
    """Stacked layers: inputs [B, H, W, K] -> top hidden states [B, H, W, D]; packs the grid once."""
    if impl != "sweep":
        for layer in layers:
            inputs = layer(inputs, impl=impl)
        return inputs
    layout = DiagonalLayout.get(inputs.shape[1], inputs.shape[2])
    packed = layout.pack(inputs)
    for layer in layers:
        packed = layer.forward_packed(packed, layout)
    return layout.unpack(packed)
