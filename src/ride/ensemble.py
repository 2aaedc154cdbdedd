"""Ensembles over the 8 dihedral transformations of an image (design §7).

    q(x) = (1/K) sum_k p(T_k x) |det T_k|,   |det T_k| = 1 (every T_k permutes pixels)

A model predicts only the pixels away from its border (`model.margin` = (top, left, right)), and which pixels
those are depends on the transform, so the ensemble sums each ln p(T_k x) over the same set of original pixels:
those predicted under every transform (the *common pixel set*; for nb_size 5 on a 64x64 tile the central 60x60).
Per image, in nats:

    ln q(x) = logsumexp_k( sum_{(i,j) in common set} ln p(T_k x)_{T_k(i,j)} ) - ln K

A transform acts on the last two axes of a tensor [..., H, W]; transposes and quarter turns swap H and W.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Transform:
    """A pixel permutation of [..., H, W] tensors and its inverse (both may swap H and W)."""

    name: str
    forward: Callable[[Tensor], Tensor]
    inverse: Callable[[Tensor], Tensor]

    def __call__(self, x: Tensor) -> Tensor:
        return self.forward(x)

    def __repr__(self) -> str:
        return f"Transform({self.name!r})"


def _hflip(x: Tensor) -> Tensor:
    return x.flip(-1)


def _vflip(x: Tensor) -> Tensor:
    return x.flip(-2)


def _rot180(x: Tensor) -> Tensor:
    return x.flip(-2, -1)


def _transpose(x: Tensor) -> Tensor:
    return x.transpose(-2, -1)


def _antitranspose(x: Tensor) -> Tensor:
    return x.transpose(-2, -1).flip(-2, -1)


def _rot90(x: Tensor) -> Tensor:  # counter-clockwise quarter turn
    return torch.rot90(x, 1, (-2, -1))


def _rot270(x: Tensor) -> Tensor:  # clockwise quarter turn
    return torch.rot90(x, -1, (-2, -1))


def _identity(x: Tensor) -> Tensor:
    return x


IDENTITY = Transform("identity", _identity, _identity)
# the dihedral group of the square: identity first; the involutions are their own inverses
TRANSFORMS: tuple[Transform, ...] = (
    IDENTITY,
    Transform("hflip", _hflip, _hflip),
    Transform("vflip", _vflip, _vflip),
    Transform("rot180", _rot180, _rot180),
    Transform("transpose", _transpose, _transpose),
    Transform("antitranspose", _antitranspose, _antitranspose),
    Transform("rot90", _rot90, _rot270),
    Transform("rot270", _rot270, _rot90),
)


def _transformed_shape(transform: Transform, height: int, width: int) -> tuple[int, int]:
    shape = transform(torch.empty(0, height, width)).shape
    return shape[-2], shape[-1]


def predicted_mask(model_margin: Sequence[int], height: int, width: int) -> Tensor:
    """Pixels a model with border `model_margin` = (top, left, right) predicts in an H x W image: bool [H, W]."""
    top, left, right = (int(m) for m in model_margin)
    mask = torch.zeros(height, width, dtype=torch.bool)
    if height > top and width > left + right:
        mask[top:, left:width - right] = True
    return mask


def common_pixel_mask(model_margin: Sequence[int], height: int, width: int,
                      transforms: Sequence[Transform] = TRANSFORMS) -> Tensor:
    """Pixels of an H x W image predicted under every transform, in original coordinates: bool [H, W].

    For margin (r, r, r) and the 8 dihedral transforms: rows and columns r .. size-1-r (64x64, r=2: 60x60).
    """
    _check_margin(model_margin)
    common = torch.ones(height, width, dtype=torch.bool)
    for t in transforms:
        h, w = _transformed_shape(t, height, width)
        common &= t.inverse(predicted_mask(model_margin, h, w))
    return common


def _check_margin(model_margin: Sequence[int]) -> None:
    if len(model_margin) != 3 or any(int(m) != m or m < 0 for m in model_margin):
        raise ValueError(f"model_margin must be three non-negative integers (top, left, right), found "
                         f"{tuple(model_margin)!r}")


def aligned_log_prob_pixels(model: torch.nn.Module, images: Tensor, transform: Transform) -> Tensor:
    """ln p(T x)_{T(i,j)} in nats at every original pixel (i, j): images [B, C, H, W] -> [B, H, W].

    Pixels the model does not predict in the transformed image are NaN. `model` needs `log_prob_pixels`
    ([B, C, H', W'] -> [B, H'-top, W'-left-right]) and `margin` (top, left, right).
    """
    top, left, right = model.margin
    transformed = transform(images)
    lp = model.log_prob_pixels(transformed)  # (B, H'-top, W'-left-right)
    b, _, h, w = transformed.shape
    full = lp.new_full((b, h, w), math.nan)
    full[:, top:, left:w - right] = lp
    return transform.inverse(full)


def ensemble_log_prob(model: torch.nn.Module, images: Tensor, transforms: Sequence[Transform] = TRANSFORMS,
                      mask: Tensor | None = None) -> Tensor:
    """ln q(x) in nats over the common pixel set: images [B, C, H, W] -> [B] (float64).

    q is the uniform mixture of p(T_k x) over `transforms` (default: all 8 dihedral transforms). `mask`
    (bool [H, W]) overrides the pixel set; it must lie inside the common pixel set of `transforms`.
    """
    if not isinstance(images, Tensor) or images.dim() != 4:
        found = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a tensor [B, C, H, W], found {found}")
    if len(transforms) == 0:
        raise ValueError("ensemble_log_prob needs at least one transform")
    height, width = images.shape[-2:]
    common = common_pixel_mask(model.margin, height, width, transforms)
    if mask is None:
        mask = common
    elif mask.shape != (height, width) or bool((mask & ~common).any()):
        raise ValueError(f"mask must be bool [{height}, {width}] inside the common pixel set of the transforms")
    if not bool(mask.any()):
        raise ValueError(f"no pixel of a {height}x{width} image is predicted under every transform "
                         f"(model margin {tuple(model.margin)})")
    mask = mask.to(images.device)
    totals = torch.stack([aligned_log_prob_pixels(model, images, t)[:, mask].double().sum(1) for t in transforms])
    return torch.logsumexp(totals, 0) - math.log(len(transforms))
