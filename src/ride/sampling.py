"""Ancestral sampling of RIDE along a skewed front (design §8).

The window reaches `right` columns to the right in the rows above, so plain anti-diagonals are not causal; the
skewed front t = (right+1)*i + j is: every input of pixel (i, j) and both of its spatial LSTM neighbours have a
smaller t. All pixels with equal t (and all images) are drawn in one batched step, (right+1)*(Hp-1) + Wp steps
for a predicted grid of Hp x Wp. The front step runs on `front.SkewedFront` (indices once per canvas size, folded
weights, a two-row ring of LSTM states); the plain front loop (`order="front_reference"`, the speed baseline) and the
raster order (one pixel per step) are kept as references.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .front import SkewedFront

if TYPE_CHECKING:
    from .model import RIDE


def front_schedule(height: int, width: int, right: int, device: torch.device) -> list[tuple[Tensor, Tensor]]:
    """Grid positions (rows, cols) of each step t = (right+1)*i + j of an height x width grid, in order."""
    rows = torch.arange(height, device=device)
    steps = []
    for t in range((right + 1) * (height - 1) + width):
        cols = t - (right + 1) * rows
        valid = (cols >= 0) & (cols < width)
        if valid.any():  # grids narrower than the skew have empty fronts
            steps.append((rows[valid], cols[valid]))
    return steps


def raster_schedule(height: int, width: int, device: torch.device) -> list[tuple[Tensor, Tensor]]:
    """One pixel per step in raster order (the reference sampler)."""
    return [(torch.tensor([i], device=device), torch.tensor([j], device=device))
            for i in range(height) for j in range(width)]


def _grid_mask(mask: Tensor | None, images: Tensor, model: RIDE) -> Tensor:
    """The sampling mask cropped to the predicted grid: bool [B, Hp, Wp]."""
    b, _, h, w = images.shape
    nb = model.neighbourhood
    top, left = nb.rows - 1, nb.column
    hp, wp = nb.grid_shape(h, w)
    if mask is None:
        return torch.ones(b, hp, wp, dtype=torch.bool, device=images.device)
    if not isinstance(mask, Tensor) or mask.shape not in ((h, w), (b, h, w)):
        found = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(f"mask must be a tensor of shape ({h}, {w}) or ({b}, {h}, {w}), found {found}")
    mask = mask.to(device=images.device, dtype=torch.bool).expand(b, h, w)
    return mask[:, top : top + hp, left : left + wp]


def ancestral_sample(model: RIDE, images: Tensor, mask: Tensor | None = None,
                     generator: torch.Generator | None = None, order: str = "front",
                     progress: Callable[[int, int], None] | None = None) -> tuple[Tensor, Tensor]:
    """Draw the masked predicted pixels of images [B, C, H, W] given all preceding pixels.

    Returns (samples [B, C, H, W], log_probs [B, Hp, Wp]), log_probs being ln p(x_ij | x_<ij) in nats of the
    returned pixels (drawn or kept), Jacobian included. order: "front" (fast), "front_reference" (the plain front
    loop, same draws up to rounding) or "raster". `progress(done_steps, total_steps)` is called after every step.
    """
    grid_mask = None if mask is None else _grid_mask(mask, images, model)
    return sample_outputs(model, images, grid_mask, generator, order, progress)


def sample_outputs(model: RIDE, canvas: Tensor, grid_mask: Tensor | None = None,
                   generator: torch.Generator | None = None, order: str = "front",
                   progress: Callable[[int, int], None] | None = None, current: int = 0,
                   outputs: slice | None = None) -> tuple[Tensor, Tensor]:
    """`ancestral_sample` for models whose inputs are the windows of all canvas channels plus the pixel's first
    `current` channels and whose outputs are the canvas channels `outputs` (see `front.SkewedFront`; the
    chroma model of `ColourRIDE`: current 1, outputs slice(1, 3)).

    canvas [B, C, H, W]; grid_mask bool [B, Hp, Wp] (None: every predicted pixel). Returns (a copy of the canvas
    with the drawn outputs, ln p [B, Hp, Wp] of the returned outputs, Jacobian included).
    """
    if order == "front":
        return _sample_front(model, canvas, grid_mask, generator, progress, current, outputs)
    if order not in ("front_reference", "raster"):
        raise ValueError(f"order must be 'front', 'front_reference' or 'raster', found {order!r}")
    if grid_mask is None:
        grid_mask = _grid_mask(None, canvas, model)
    return _sample_reference(model, canvas, grid_mask, generator, order, progress, current, outputs)


@torch.no_grad()
def _sample_front(model: RIDE, images: Tensor, grid_mask: Tensor | None, generator: torch.Generator | None,
                  progress: Callable[[int, int], None] | None, current: int = 0,
                  outputs: slice | None = None) -> tuple[Tensor, Tensor]:
    """The skewed-front sampler on `SkewedFront`: the same draws as the reference loop, up to rounding."""
    b = images.shape[0]
    hp, wp = model.neighbourhood.grid_shape(*images.shape[2:])
    grid_mask = None if grid_mask is None else grid_mask.reshape(b, hp * wp)
    out = images.clone()
    sf = SkewedFront(model, out, current, outputs)
    tables, mcgsm = sf.mcgsm, model.mcgsm
    log_probs = images.new_zeros(b, hp * wp)
    for t in range(sf.num_fronts):
        front = sf.front(t)
        if front.size:
            hidden, base = sf.hidden(front)
            if tables.univariate:
                y_tilde, gate, means, log_norm = tables.sample(hidden, generator)
                drawn = torch.addcmul(base, y_tilde.to(base.dtype), sf.colour_out)  # the preconditioner's inverse
            else:
                y_tilde = mcgsm.sample(hidden, generator=generator)
                drawn = base + y_tilde.to(base.dtype) @ sf.colour_out.T
            if grid_mask is None:
                value, y = drawn, y_tilde  # y~ of the drawn value is the drawn y~ (up to rounding)
            else:
                value = torch.where(grid_mask[:, front.cells].reshape(-1, 1), drawn, sf.read(front))
                y = (value - base) @ sf.whiten_out.T
            sf.write(front, value)
            if tables.univariate:
                lp = tables.log_prob(gate, means, y.to(gate.dtype), log_norm)
            else:
                lp = mcgsm.log_prob_unchecked(hidden, y)
            log_probs.index_copy_(1, front.cells, lp.to(log_probs.dtype).view(b, -1) + sf.log_jacobian)
        if progress is not None:
            progress(t + 1, sf.num_fronts)
    return out, log_probs.view(b, hp, wp)


def ancestral_sample_reference(model: RIDE, images: Tensor, mask: Tensor | None = None,
                               generator: torch.Generator | None = None, order: str = "front_reference",
                               progress: Callable[[int, int], None] | None = None) -> tuple[Tensor, Tensor]:
    """The plain loops: order "front_reference" (one batched step per front, the baseline of the fast front
    sampler) or "raster" (one pixel per step). Same arguments and results as `ancestral_sample`."""
    if order not in ("front_reference", "raster"):
        raise ValueError(f"order must be 'front', 'front_reference' or 'raster', found {order!r}")
    return _sample_reference(model, images, _grid_mask(mask, images, model), generator, order, progress)


@torch.no_grad()
def _sample_reference(model: RIDE, images: Tensor, grid_mask: Tensor, generator: torch.Generator | None,
                      order: str, progress: Callable[[int, int], None] | None, current: int = 0,
                      outputs: slice | None = None) -> tuple[Tensor, Tensor]:
    """The plain loops behind `ancestral_sample_reference` and `sample_outputs` (arguments as there)."""
    b, ch, h, w = images.shape
    nb, pre, mcgsm = model.neighbourhood, model.preconditioner, model.mcgsm
    top, left, right = nb.rows - 1, nb.column, nb.right
    hp, wp = nb.grid_shape(h, w)
    device = images.device
    outputs = outputs if outputs is not None else slice(0, ch)
    m = pre.dim_out
    if order == "front_reference":
        schedule = front_schedule(hp, wp, right, device)
    else:
        schedule = raster_schedule(hp, wp, device)

    out = images.clone()
    flat = out.view(b, ch, h * w)
    offsets = nb.offsets().to(device)  # (K, 2)
    log_probs = images.new_zeros(b, hp, wp)
    # States on a grid padded by one zero row on top and one zero column on the left (the boundary states).
    dim = model.layers[0].hidden_size if model.layers else 0
    stride = wp + 1
    hs = [images.new_zeros(b, (hp + 1) * stride, dim) for _ in model.layers]
    cs = [images.new_zeros(b, (hp + 1) * stride, dim) for _ in model.layers]
    for step, (rows, cols) in enumerate(schedule):
        n = rows.numel()
        pixel = (rows + top) * w + cols + left
        # Neighbourhoods of the front, gathered from the image as it is now: (B, n, C*K), channel blocks, then
        # the pixel's first `current` channels.
        pix = (rows + top)[:, None] + offsets[:, 0], (cols + left)[:, None] + offsets[:, 1]
        x = flat[:, :, pix[0] * w + pix[1]].permute(0, 2, 1, 3).reshape(b, n, -1)
        if current:
            x = torch.cat([x, flat[:, :current, pixel].permute(0, 2, 1)], -1)
        x = pre.whiten_inputs(x)
        hidden = x
        here, up, lft = (rows + 1) * stride + cols + 1, rows * stride + cols + 1, (rows + 1) * stride + cols
        for layer, h_grid, c_grid in zip(model.layers, hs, cs, strict=True):
            z = hidden @ layer.weight_in + layer.bias
            hidden, c_new = layer.step(z, h_grid[:, up], h_grid[:, lft], c_grid[:, up], c_grid[:, lft])
            h_grid[:, here] = hidden
            c_grid[:, here] = c_new
        hidden = hidden.reshape(b * n, -1)
        y_tilde = mcgsm.sample(hidden, generator=generator).to(x.dtype).view(b, n, m)
        drawn = pre.inverse(x, y_tilde)  # (B, n, M)
        kept = flat[:, outputs, pixel].permute(0, 2, 1)  # (B, n, M)
        value = torch.where(grid_mask[:, rows, cols, None], drawn, kept)
        flat[:, outputs, pixel] = value.permute(0, 2, 1)
        y = pre.whiten_outputs(x, value).reshape(b * n, m)
        lp = mcgsm.log_prob_unchecked(hidden, y).view(b, n)
        log_probs[:, rows, cols] = lp.to(log_probs.dtype) + pre.log_jacobian
        if progress is not None:
            progress(step + 1, len(schedule))
    return out, log_probs
