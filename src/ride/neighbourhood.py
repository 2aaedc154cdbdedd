"""Causal neighbourhoods: input masks and vectorised extraction of (neighbourhood, pixel) pairs (design §2).

A neighbourhood is a small window whose last row holds the predicted pixel. Its input mask marks the window
positions that precede the pixel in raster order and feed the model. A pixel is predicted only where the whole
window lies inside the image (no padding), so an image of H x W has a predicted grid of
(H - rows + 1) x (W - cols + 1) pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


def causal_mask(nb_size: int) -> Tensor:
    """Default causal input mask for an odd neighbourhood size n: bool [(n+1)/2, n].

    All pixels of the upper rows plus the pixels left of the centre in the last row (n=5: 12 inputs).
    """
    if not isinstance(nb_size, int) or nb_size < 3 or nb_size % 2 == 0:
        raise ValueError(f"nb_size must be an odd integer >= 3, found {nb_size!r}")
    r = (nb_size - 1) // 2
    mask = torch.zeros(r + 1, nb_size, dtype=torch.bool)
    mask[:r] = True
    mask[r, :r] = True
    return mask


@dataclass(frozen=True)
class Neighbourhood:
    """A causal window: `input_mask` bool [rows, cols]; the predicted pixel sits at (rows - 1, `column`)."""

    input_mask: Tensor
    column: int

    def __post_init__(self) -> None:
        mask = self.input_mask
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.dim() != 2:
            raise ValueError(f"input_mask must be a 2-D bool tensor, found {mask!r}")
        rows, cols = mask.shape
        if not 0 <= self.column < cols:
            raise ValueError(f"column must lie in [0, {cols}), found {self.column}")
        # Causality: nothing at or after the predicted pixel in raster order may be an input.
        if mask[rows - 1, self.column :].any():
            raise ValueError("input_mask is not causal: it marks the predicted pixel or pixels right of it")
        if not mask.any():
            raise ValueError("input_mask marks no input pixel")

    @classmethod
    def square(cls, nb_size: int) -> Neighbourhood:
        """The default window (design §2) for odd `nb_size` (12 inputs for 5, 40 for 9)."""
        return cls(causal_mask(nb_size), (nb_size - 1) // 2)

    @property
    def rows(self) -> int:
        return self.input_mask.shape[0]

    @property
    def cols(self) -> int:
        return self.input_mask.shape[1]

    @property
    def num_inputs(self) -> int:
        """Inputs per channel."""
        return int(self.input_mask.sum())

    @property
    def right(self) -> int:
        """Columns the window reaches right of the predicted pixel."""
        return self.cols - 1 - self.column

    def grid_shape(self, height: int, width: int) -> tuple[int, int]:
        """Shape (Hp, Wp) of the predicted grid of an H x W image."""
        return height - self.rows + 1, width - self.cols + 1

    def offsets(self) -> Tensor:
        """Input positions relative to the predicted pixel, raster order: long [K, 2] of (drow <= 0, dcol)."""
        pos = self.input_mask.nonzero()
        return pos - torch.tensor([self.rows - 1, self.column])


def extract_pairs(images: Tensor, nb: Neighbourhood) -> tuple[Tensor, Tensor]:
    """Neighbourhood vectors and pixels of every predicted position, without a loop over pixels.

    images: [B, C, H, W]. Returns inputs [B, Hp, Wp, C*K] (channel blocks concatenated, each block the masked
    window in row-major order) and outputs [B, Hp, Wp, C], with (Hp, Wp) = nb.grid_shape(H, W).
    """
    b, c, h, w = images.shape
    hp, wp = nb.grid_shape(h, w)
    cols = F.unfold(images, (nb.rows, nb.cols))  # (B, C*rows*cols, Hp*Wp), channel-major
    cols = cols.view(b, c, nb.rows * nb.cols, hp, wp)
    idx = nb.input_mask.flatten().nonzero().squeeze(1).to(images.device)
    inputs = cols.index_select(2, idx).permute(0, 3, 4, 1, 2).reshape(b, hp, wp, c * idx.numel())
    top, left = nb.rows - 1, nb.column
    outputs = images[:, :, top : top + hp, left : left + wp].permute(0, 2, 3, 1)
    return inputs, outputs
