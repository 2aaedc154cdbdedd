"""Inpainting with RIDE (design §8): Metropolis-within-Gibbs over small blocks, MAP by gradient ascent, baselines.

Target: p(x_hole | x_observed), proportional to the model's density p(x) of the whole image.

Metropolis-within-Gibbs (`inpaint_mcmc`): the hole is initialised by ancestral sampling (best of `num_candidates`
by ln p(x)). One sweep visits block x block squares on a stride grid over the hole (5 and 3 by default). For each
block, the proposal x' draws the block's hole pixels by ancestral sampling given their causal context inside the
window x window crop around the block (19 x 19 by default, evaluated as an image of its own), and is accepted with
probability min(1, exp(ln p(x') - ln p(x) - ln q(x') + ln q(x))), ln p the crop's log-likelihood.

Why the acceptance ratio is a sum over the pixels after the block: within the crop, the proposal density is
q(x'_B) = prod_{ij in B} p(x'_ij | x'_<ij), the model's own conditionals of the drawn pixels B, and the reverse move
has q(x_B) = prod_{ij in B} p(x_ij | x_<ij) (the context outside B is the same in x and x'). So the ratio is
prod over predicted crop pixels outside B of p(x'_ij | x'_<ij) / p(x_ij | x_<ij): how well the pixels after the
block fit the proposal. Pixels whose conditional cannot depend on B cancel exactly and are left out (less rounding
noise): with spatial LSTM layers, pixel (i, j) depends on every pixel in rows <= i up to column j + right (its
hidden state summarises that quarter-plane), so the pixels at rows >= the top drawn row and columns >= the
leftmost drawn column - right may depend on B; with num_layers=0 (a finite window) only rows top..bottom + (rows-1)
and columns left - right..right + column of the drawn pixels do. Every one of those must be a predicted pixel of the
crop, with its whole window inside the crop: the crop reaches at least 2r beyond the block on each side, or to the
image's edge (r = (nb_size-1)/2; `window` >= block + 4r, the default 19 for nb_size <= 7), so for num_layers=0 the
crop ratio equals the whole-image ratio and the chain samples p(x_hole | x_observed) exactly. With LSTM layers the
crop restarts the hidden states at its edge (zero states), and pixels right of or below the crop (and in its
unpredicted right columns) are not counted: each block update is then exact for the crop's density, a local
approximation of the whole image's (as in the original); a window as large as the image makes it exact for any
model.

Blocks whose crops do not reach each other's drawn pixels are updated in one batched step (the same as updating
them one after the other), so a sweep is a few batched calls rather than one per block. Several images [B, ...]
share the hole and run as independent chains.

Flips (`flips=True`): before each sweep the image is flipped up-down and/or left-right at random and the sweep runs
on the flipped image. The model is not flip-invariant, so a flipped sweep leaves a different distribution
invariant (that of the flipped model); mixing the kernels helps the chain move (the original recipe) but the chain
no longer has p(x_hole | x_observed) as its exact stationary distribution. Off by default. Hole pixels that fall in
the flipped image's unpredicted border are kept during that sweep.

Library code: no I/O, no progress bars; `callback(SweepStats)` after each sweep, `progress(phase, done, total)` to
drive a progress bar ("init": fronts of the initial ancestral fill, "sweep": sweeps), randomness from `generator`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .model import RIDE
from .sampling import ancestral_sample
from .units import ONE_BELOW

# progress(phase, done, total): phase "init" counts the fronts of the initial ancestral fill, "sweep" the sweeps
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class SweepStats:
    """Statistics of one Metropolis-within-Gibbs sweep (after the sweep)."""

    sweep: int  # 1-based
    acceptance_rate: float  # accepted / proposed block updates in this sweep, all chains together
    num_proposals: int
    log_prob_nats: Tensor  # [B] ln p(x) of the whole image: the target density up to a constant
    hole_log_prob_nats: Tensor  # [B] sum over the (predicted) hole pixels of ln p(x_ij | x_<ij), whole image
    flip: tuple[bool, bool]  # (up-down, left-right) flip of this sweep


# ---------------------------------------------------------------------------------------------- checks

def _predicted_region(model: RIDE, height: int, width: int, device: torch.device) -> Tensor:
    """bool [H, W]: the pixels the model predicts (not in the top/left/right border)."""
    top, left, right = model.margin
    region = torch.zeros(height, width, dtype=torch.bool, device=device)
    region[top:, left : width - right] = True
    return region


def check_mask(model: RIDE, images: Tensor, mask: object, predicted_only: bool = True) -> Tensor:
    """The hole as bool [H, W] on the images' device; ValueError for a wrong shape, an empty hole, or (with
    `predicted_only`) hole pixels in the border the model never predicts."""
    model.check_images(images)
    h, w = images.shape[-2:]
    if not isinstance(mask, Tensor) or mask.shape != (h, w):
        found = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(f"mask must be a tensor of shape ({h}, {w}) like the images, found {found}")
    mask = mask.to(device=images.device, dtype=torch.bool)
    if not bool(mask.any()):
        raise ValueError("mask marks no pixel to fill")
    if predicted_only:
        outside = mask & ~_predicted_region(model, h, w, images.device)
        if bool(outside.any()):
            top, left, right = model.margin
            raise ValueError(f"mask marks {int(outside.sum())} pixel(s) in the image border the model never predicts "
                             f"(top {top} rows, left {left} and right {right} columns for this neighbourhood); "
                             "the model has no density there")
    return mask


def _uniform(shape: tuple[int, ...], generator: torch.Generator | None, like: Tensor) -> Tensor:
    """U[0,1) draws on the generator's device, moved to `like`'s device and dtype."""
    device = generator.device if generator is not None else like.device
    return torch.rand(shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


# ---------------------------------------------------------------------------------------------- densities

@torch.no_grad()
def region_log_probs(model: RIDE, images: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """(ln p(x) [B], sum over the masked predicted pixels of ln p(x_ij | x_<ij) [B]) in nats, whole images."""
    lp = model.log_prob_pixels(images)  # (B, Hp, Wp)
    top, left, _ = model.margin
    hp, wp = lp.shape[-2:]
    in_grid = mask[top : top + hp, left : left + wp]
    return lp.flatten(1).sum(1), torch.where(in_grid, lp, 0).flatten(1).sum(1)


def log_acceptance(log_p_new: Tensor, log_p_old: Tensor, log_q_new: Tensor, log_q_old: Tensor) -> Tensor:
    """ln of the Metropolis-Hastings acceptance ratio, ln p(x') - ln p(x) - ln q(x') + ln q(x) (accept when
    ln u < this, u ~ U[0,1)); all arguments in nats, same shape."""
    return (log_p_new - log_p_old) - (log_q_new - log_q_old)


# ---------------------------------------------------------------------------------------------- initialisation

@torch.no_grad()
def initialize(model: RIDE, images: Tensor, mask: Tensor, num_candidates: int = 5,
               generator: torch.Generator | None = None,
               progress: Callable[[int, int], None] | None = None) -> Tensor:
    """Fill the hole by ancestral sampling given the causal past: images [B, C, H, W], mask bool [H, W].

    Draws `num_candidates` fills per image and keeps the one with the highest ln p(x) of the whole image (the target
    density, so the pixels after the hole count too). Returns [B, C, H, W] in the images' dtype.
    `progress(done_fronts, total_fronts)` after every batched sampling step (all candidates at once).
    """
    mask = check_mask(model, images, mask)
    if not isinstance(num_candidates, int) or num_candidates < 1:
        raise ValueError(f"num_candidates must be a positive integer, found {num_candidates!r}")
    b = images.shape[0]
    repeated = images.repeat(num_candidates, 1, 1, 1)  # candidate k of image i at k * B + i
    dtype = model.preconditioner.mean_in.dtype
    samples, log_probs = ancestral_sample(model, repeated.to(dtype), mask, generator, progress=progress)
    samples = samples.to(images.dtype)
    score = log_probs.flatten(1).sum(1).view(num_candidates, b)
    best = score.argmax(0)  # (B,)
    return samples.view(num_candidates, b, *images.shape[1:])[best, torch.arange(b, device=images.device)]


# ---------------------------------------------------------------------------------------------- the sweep plan

@dataclass(frozen=True)
class _Group:
    """Blocks updated in one batched step (no block's crop reaches another block of the group)."""

    crop_rows: list[int]  # crop origins, one per block
    crop_cols: list[int]
    sample_shape: tuple[int, int]  # the top-left part of the crops that holds the drawn pixels' causal past
    drawn: Tensor  # bool [n, wh, ww]: the pixels each block draws, crop coordinates
    drawn_grid: Tensor  # bool [n, hp, wp]: the same on the crop's predicted grid
    dependent: Tensor  # bool [n, hp, wp]: predicted crop pixels whose conditional may depend on the drawn ones
    block_id: Tensor  # long [D]: for each drawn pixel, its block
    src: Tensor  # long [D]: its flat index in the crop
    dst: Tensor  # long [D]: its flat index in the image


@dataclass(frozen=True)
class _Plan:
    crop_shape: tuple[int, int]
    groups: list[_Group]


def _starts(lo: int, hi: int, size: int, stride: int, length: int) -> list[int]:
    """Origins of blocks of `size` on a `stride` grid covering [lo, hi], the last one ending at hi, all inside
    [0, length) where possible."""
    last = max(min(hi - size + 1, length - size), 0)
    first = min(lo, last)
    starts = list(range(first, last + 1, stride))
    if starts[-1] != last:
        starts.append(last)
    return starts


def _overlap(r0: Tensor, r1: Tensor, c0: Tensor, c1: Tensor, s0: Tensor, s1: Tensor, d0: Tensor, d1: Tensor) -> Tensor:
    """bool [n, n]: rectangle k of the first set ([r0, r1) x [c0, c1)) meets rectangle l of the second."""
    return ((r0[:, None] < s1[None]) & (s0[None] < r1[:, None]) & (c0[:, None] < d1[None]) & (d0[None] < c1[:, None]))


def _make_plan(model: RIDE, hole: Tensor, block_size: int, stride: int, window: int) -> _Plan:
    """Blocks over the hole (bool [H, W], predicted pixels only), their crops and their batched groups."""
    h, w = hole.shape
    device = hole.device
    nb = model.neighbourhood
    top, left, right = model.margin
    wh, ww = min(window, h), min(window, w)
    hp, wp = nb.grid_shape(wh, ww)
    reach = (window - block_size) // 2  # crop pixels on each side of a block away from the image's edges
    rows = hole.any(1).nonzero()[:, 0].tolist()
    cols = hole.any(0).nonzero()[:, 0].tolist()
    blocks = []  # (a0, a1, b0, b1, crop row, crop col)
    for a in _starts(rows[0], rows[-1], block_size, stride, h):
        for b in _starts(cols[0], cols[-1], block_size, stride, w):
            a1, b1 = min(a + block_size, h), min(b + block_size, w)
            if bool(hole[a:a1, b:b1].any()):
                blocks.append((a, a1, b, b1, min(max(a - reach, 0), h - wh), min(max(b - reach, 0), w - ww)))
    if not blocks:
        return _Plan((wh, ww), [])

    # Greedy colouring: a block joins the first group where it neither writes into another block's crop nor reads
    # (through its crop) another block's pixels; such blocks give the same result updated at once or in turn.
    t = torch.tensor(blocks)
    a0, a1, b0, b1, cr, cc = t.unbind(1)
    writes_into = _overlap(a0, a1, b0, b1, cr, cr + wh, cc, cc + ww)  # block k meets crop l
    conflict = writes_into | writes_into.T
    group_of = torch.full((len(blocks),), -1, dtype=torch.long)
    for k in range(len(blocks)):
        taken = set(group_of[:k][conflict[k, :k]].tolist())
        group_of[k] = next(g for g in range(len(blocks)) if g not in taken)

    dep_lstm = len(model.layers) > 0
    row_grid = torch.arange(hp, device=device)[:, None] + top  # crop row of each grid pixel
    col_grid = torch.arange(wp, device=device)[None] + left
    groups = []
    for g in range(int(group_of.max()) + 1):
        members = (group_of == g).nonzero()[:, 0].tolist()
        drawn = torch.zeros(len(members), wh, ww, dtype=torch.bool, device=device)
        dependent = torch.zeros(len(members), hp, wp, dtype=torch.bool, device=device)
        for m, k in enumerate(members):
            ra0, ra1, rb0, rb1, o_r, o_c = blocks[k]
            drawn[m, ra0 - o_r : ra1 - o_r, rb0 - o_c : rb1 - o_c] = hole[ra0:ra1, rb0:rb1]
            pos = drawn[m].nonzero()
            k0, k1 = int(pos[:, 0].min()), int(pos[:, 0].max())
            l0, l1 = int(pos[:, 1].min()), int(pos[:, 1].max())
            # which predicted pixels can depend on the drawn ones (see the module docstring)
            dep = (row_grid >= k0) & (col_grid >= l0 - right)
            if not dep_lstm:
                dep &= (row_grid <= k1 + top) & (col_grid <= l1 + left)
            dependent[m] = dep
        # drawn pixels depend only on rows up to theirs and columns up to `right` past theirs: sampling that
        # top-left part of the crops gives the same proposal with fewer sequential steps
        pos = drawn.nonzero()
        sample_shape = (int(pos[:, 1].max()) + 1, min(int(pos[:, 2].max()) + 1 + right, ww))
        drawn_grid = drawn[:, top : top + hp, left : left + wp]
        # every drawn pixel is predicted inside its crop (the crop reaches >= r past the block, or the image edge)
        assert int(drawn_grid.sum()) == int(drawn.sum())
        block_id, pr, pc = drawn.nonzero().unbind(1)
        crop_rows = [blocks[k][4] for k in members]
        crop_cols = [blocks[k][5] for k in members]
        o_r, o_c = torch.tensor(crop_rows, device=device), torch.tensor(crop_cols, device=device)
        dst = (pr + o_r[block_id]) * w + pc + o_c[block_id]
        groups.append(_Group(crop_rows, crop_cols, sample_shape, drawn, drawn_grid, dependent, block_id,
                             pr * ww + pc, dst))
    return _Plan((wh, ww), groups)


def _log_ratio(model: RIDE, crops: Tensor, proposal: Tensor, group: _Group) -> Tensor:
    """ln of the acceptance ratio of each block: crops and proposals [B * n, C, wh, ww] (block k of chain i at
    i * n + k) -> [B * n]."""
    # both states through the same code path, so pixels that cannot change give identical values
    lp = model.log_prob_pixels(torch.cat([crops, proposal]))
    lp = lp.view(2, -1, *group.dependent.shape)  # (2, B, n, hp, wp): old, new
    log_p = torch.where(group.dependent, lp, 0).sum((-2, -1))  # (2, B, n)
    log_q = torch.where(group.drawn_grid, lp, 0).sum((-2, -1))
    return log_acceptance(log_p[1], log_p[0], log_q[1], log_q[0]).flatten()


@torch.no_grad()
def _sweep(model: RIDE, images: Tensor, plan: _Plan, generator: torch.Generator | None) -> tuple[int, int]:
    """One Metropolis-within-Gibbs sweep in place on contiguous images [B, C, H, W]; returns (accepted, proposed)."""
    b, ch, h, w = images.shape
    wh, ww = plan.crop_shape
    flat = images.view(b, ch, h * w)
    accepted = proposed = 0
    for g in plan.groups:
        n = len(g.crop_rows)
        crops = torch.stack([images[:, :, r : r + wh, c : c + ww] for r, c in zip(g.crop_rows, g.crop_cols,
                                                                                  strict=True)], 1)
        crops = crops.reshape(b * n, ch, wh, ww)  # block k of chain i at i * n + k
        sh, sw = g.sample_shape
        proposal = crops.clone()
        proposal[..., :sh, :sw] = model.sample(crops[..., :sh, :sw].contiguous(),
                                               mask=g.drawn[:, :sh, :sw].repeat(b, 1, 1), generator=generator)
        log_alpha = _log_ratio(model, crops, proposal, g).view(b, n)
        accept = _uniform((b, n), generator, log_alpha).log() < log_alpha
        values = proposal.view(b, n, ch, wh * ww).permute(0, 2, 1, 3)[:, :, g.block_id, g.src]  # (B, C, D)
        keep = accept[:, g.block_id][:, None, :]
        flat[:, :, g.dst] = torch.where(keep, values.to(images.dtype), flat[:, :, g.dst])
        accepted += int(accept.sum())
        proposed += accept.numel()
    return accepted, proposed


# ---------------------------------------------------------------------------------------------- samplers

def inpaint_mcmc(model: RIDE, images: Tensor, mask: Tensor, num_sweeps: int = 10,
                 generator: torch.Generator | None = None, *, block_size: int = 5, stride: int = 3,
                 window: int | None = None, num_candidates: int = 5, flips: bool = False, init: Tensor | None = None,
                 callback: Callable[[SweepStats], None] | None = None,
                 progress: Progress | None = None) -> tuple[Tensor, list[SweepStats]]:
    """Sample the hole of images [B, C, H, W] (mask bool [H, W], True = fill) by Metropolis-within-Gibbs.

    Each image is an independent chain. `init` [B, C, H, W] starts the chains there (its observed pixels are replaced
    by those of `images`); otherwise `initialize` fills the hole (best of `num_candidates` ancestral fills).
    `window` defaults to max(19, block_size + 4r) and must be at least block_size + 4r (r = (nb_size-1)/2).
    Returns (images [B, C, H, W] in the model's dtype, one SweepStats per sweep). Observed pixels never change.
    `callback(SweepStats)` after each sweep; `progress(phase, done, total)` after each front of the initial fill
    (phase "init") and after each sweep ("sweep", with a first call at done = 0 when the sweeps start).
    """
    mask = check_mask(model, images, mask)
    for name, value in (("num_sweeps", num_sweeps), ("block_size", block_size), ("stride", stride)):
        if not isinstance(value, int) or value < (0 if name == "num_sweeps" else 1):
            raise ValueError(f"{name} must be a {'non-negative' if name == 'num_sweeps' else 'positive'} integer, "
                             f"found {value!r}")
    top, left, right = model.margin
    min_window = block_size + 2 * max(top, left + right)
    window = max(19, min_window) if window is None else window
    if not isinstance(window, int) or window < min_window:
        raise ValueError(f"window must be an integer >= block_size + 4r = {min_window} for this neighbourhood, "
                         f"found {window!r}")
    dtype = model.preconditioner.mean_in.dtype
    images = images.to(dtype)
    if init is None:
        init_progress = None if progress is None else lambda done, total: progress("init", done, total)
        state = initialize(model, images, mask, num_candidates, generator, init_progress)
    else:
        if not isinstance(init, Tensor) or init.shape != images.shape:
            found = tuple(init.shape) if isinstance(init, Tensor) else type(init).__name__
            raise ValueError(f"init must have the images' shape {tuple(images.shape)}, found {found}")
        state = torch.where(mask, init.to(dtype), images)
    state = state.contiguous().clone()

    plans: dict[tuple[bool, bool], _Plan] = {}
    predicted = {}
    stats = []
    if progress is not None:
        progress("sweep", 0, num_sweeps)
    for sweep in range(1, num_sweeps + 1):
        flip = (False, False)
        if flips:
            coin = _uniform((2,), generator, state) < 0.5
            flip = (bool(coin[0]), bool(coin[1]))
        dims = [d for d, f in zip((-2, -1), flip, strict=True) if f]
        if flip not in plans:
            m = mask.flip(dims) if dims else mask
            if flip not in predicted:
                predicted[flip] = _predicted_region(model, *m.shape, m.device)
            plans[flip] = _make_plan(model, m & predicted[flip], block_size, stride, window)
        work = state.flip(dims).contiguous() if dims else state
        accepted, proposed = _sweep(model, work, plans[flip], generator)
        if dims:
            state = work.flip(dims).contiguous()
        log_prob, hole_log_prob = region_log_probs(model, state, mask)
        stats.append(SweepStats(sweep, accepted / max(proposed, 1), proposed, log_prob, hole_log_prob, flip))
        if callback is not None:
            callback(stats[-1])
        if progress is not None:
            progress("sweep", sweep, num_sweeps)
    return state, stats


def inpaint_map(model: RIDE, images: Tensor, mask: Tensor, num_steps: int = 300, lr: float = 0.01,
                init: Tensor | None = None, callback: Callable[[int, Tensor], None] | None = None
                ) -> tuple[Tensor, Tensor]:
    """MAP fill: Adam ascent of ln p(x) over the hole pixels only, kept in [0,1) after every step.

    images [B, C, H, W], mask bool [H, W]; starts from `init` (default: `harmonic_fill`). Hole pixels in the border
    the model never predicts are allowed (they enter as context). Returns (images [B, C, H, W] in the model's dtype,
    ln p(x) in nats [num_steps + 1, B] before each step and at the end). `callback(step, log_prob [B])` after each
    step, with ln p(x) after that step.
    """
    mask = check_mask(model, images, mask, predicted_only=False)
    if not isinstance(num_steps, int) or num_steps < 0:
        raise ValueError(f"num_steps must be a non-negative integer, found {num_steps!r}")
    dtype = model.preconditioner.mean_in.dtype
    images = images.to(dtype)
    start = harmonic_fill(images, mask) if init is None else torch.where(mask, init.to(dtype), images)
    base = torch.where(mask, 0, images)
    values = start[..., mask].clamp(0, ONE_BELOW).detach().requires_grad_()  # (B, C, n)
    optimizer = torch.optim.Adam([values], lr=lr)
    num_pixels = images[0, 0].numel()

    def filled() -> Tensor:
        x = base.clone()
        x[..., mask] = values
        return x

    history = []
    for step in range(num_steps + 1):
        with torch.enable_grad():  # the whole objective, so that a caller's torch.no_grad() does not cut the graph
            log_prob = model.log_prob(filled())  # (B,)
            # mean per pixel: a step size that does not depend on the image size
            objective = -log_prob.sum() / num_pixels
        history.append(log_prob.detach())
        if step > 0 and callback is not None:
            callback(step, history[-1])
        if step == num_steps:
            break
        (grad,) = torch.autograd.grad(objective, [values])
        values.grad = grad
        optimizer.step()
        with torch.no_grad():
            values.clamp_(0, ONE_BELOW)
    with torch.no_grad():
        return filled(), torch.stack(history)


# ---------------------------------------------------------------------------------------------- baselines

def mean_fill(images: Tensor, mask: Tensor) -> Tensor:
    """Fill the hole (bool [H, W]) of images [B, C, H, W] with the mean of each image's observed pixels, per
    channel."""
    _check_baseline(images, mask)
    mask = mask.to(images.device)
    observed = ~mask
    mean = images[..., observed].mean(-1)  # (B, C)
    return torch.where(mask, mean[..., None, None], images)


def harmonic_fill(images: Tensor, mask: Tensor, tol: float = 1e-7, max_iter: int | None = None) -> Tensor:
    """Diffusion inpainting: the hole (bool [H, W]) solves Laplace's equation with the observed pixels as boundary.

    Discrete 4-neighbour Laplacian, zero flux across the image edges: each hole pixel equals the mean of its
    in-image neighbours. Solved by Jacobi-preconditioned conjugate gradients (float64), batched over images and
    channels, to a relative residual of `tol`. images [B, C, H, W] -> [B, C, H, W].
    """
    _check_baseline(images, mask)
    mask = mask.to(images.device)
    if bool(mask.all()):
        raise ValueError("harmonic_fill needs at least one observed pixel (the mask covers the whole image)")
    x = images.double()
    hole = mask.double()
    ones = torch.ones_like(hole)
    shifts = ((1, -2), (-1, -2), (1, -1), (-1, -1))

    def neighbour_sum(v: Tensor) -> Tensor:
        """Sum of the 4 in-image neighbours (zero outside the image)."""
        total = torch.zeros_like(v)
        for shift, dim in shifts:
            rolled = v.roll(shift, dim)
            # roll wraps around: blank the wrapped row/column
            index = 0 if shift == 1 else v.shape[dim] - 1
            rolled.select(dim, index).zero_()
            total = total + rolled
        return total

    degree = neighbour_sum(ones)  # (H, W): 2, 3 or 4

    def apply(v: Tensor) -> Tensor:  # A v on the hole, v zero outside it
        return (degree * v - neighbour_sum(v)) * hole

    b = neighbour_sum(x * (1 - hole)) * hole  # observed neighbours move to the right-hand side
    v = torch.zeros_like(x)
    r = b.clone()
    z = r / degree
    p = z.clone()
    rz = (r * z).sum((-2, -1), keepdim=True)
    b_norm = b.square().sum((-2, -1), keepdim=True).sqrt().clamp_min(1e-300)
    for _ in range(max_iter or 10 * int(mask.sum()) + 10):
        if bool(((r.square().sum((-2, -1), keepdim=True).sqrt() / b_norm) <= tol).all()):
            break
        ap = apply(p)
        alpha = rz / (p * ap).sum((-2, -1), keepdim=True).clamp_min(1e-300)
        v = v + alpha * p
        r = r - alpha * ap
        z = r / degree
        rz_new = (r * z).sum((-2, -1), keepdim=True)
        p = z + (rz_new / rz.clamp_min(1e-300)) * p
        rz = rz_new
    return torch.where(mask, v, x).to(images.dtype)


def _check_baseline(images: object, mask: object) -> None:
    if not isinstance(images, Tensor) or images.dim() != 4 or not images.is_floating_point():
        found = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a float tensor [B, C, H, W], found {found}")
    if not isinstance(mask, Tensor) or mask.shape != images.shape[-2:] or mask.dtype != torch.bool:
        found = (tuple(mask.shape), mask.dtype) if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(f"mask must be a bool tensor of shape {tuple(images.shape[-2:])}, found {found}")
    if not bool(mask.any()):
        raise ValueError("mask marks no pixel to fill")
