"""Likelihood maps: each pixel's code length -log2 P(v_ij | v_<ij) in bits, the picture of what a model finds hard
(grey: one value per pixel; colour: the three sub-pixels of an RGB pixel together, or each coded channel
apart)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .colour_lossless import LosslessColourRIDE
from .model import RIDE


@torch.no_grad()
def colour_channel_code_length_maps(model: LosslessColourRIDE, values: Tensor) -> Tensor:
    """-log2 P(c_k,ij | c_<k,ij, rgb_<ij) in bits of each coded channel of each 8-bit RGB pixel: values uint8
    [3, H, W] -> float64 [3, H, W] (index k: the model's k-th coded channel, `channel_names`; NaN at the border the
    model does not predict).

    P is the model's exact discrete probability (`LosslessColourRIDE.log_prob_discrete_pixels`); the sum over the
    first axis is `colour_code_length_map`, and the mean of map k over its finite entries is channel k's code
    length in bits per sub-pixel.
    """
    if not isinstance(model, LosslessColourRIDE):
        raise ValueError(f"a colour code-length map needs a LosslessColourRIDE, found {type(model).__name__}")
    if not isinstance(values, Tensor) or values.dtype != torch.uint8 or values.dim() != 3 or values.shape[0] != 3:
        found = f"{values.dtype} {tuple(values.shape)}" if isinstance(values, Tensor) else type(values).__name__
        raise ValueError(f"values must be a uint8 tensor [3, H, W] of an RGB image, found {found}")
    device = next(model.parameters()).device
    log_p = model.log_prob_discrete_pixels(values[None].to(device))[0].double().cpu()  # [Hp, Wp, 3] nats
    top, left, _ = model.margin
    out = torch.full((3, *values.shape[-2:]), math.nan, dtype=torch.float64)
    out[:, top: top + log_p.shape[0], left: left + log_p.shape[1]] = -log_p.permute(2, 0, 1) / math.log(2)
    return out


@torch.no_grad()
def colour_code_length_map(model: LosslessColourRIDE, values: Tensor) -> Tensor:
    """-log2 P(rgb_ij | rgb_<ij) in bits of each 8-bit RGB pixel, summed over its three coded channels:
    values uint8 [3, H, W] -> float64 [H, W] (NaN at the border the model does not predict).

    P is the model's exact discrete probability (`LosslessColourRIDE.log_prob_discrete_pixels`); the mean over the
    finite entries divided by 3 is the image's code length in bits per sub-pixel.
    """
    return colour_channel_code_length_maps(model, values).sum(0)


@torch.no_grad()
def code_length_map(model: RIDE, values: Tensor) -> Tensor:
    """-log2 P(v_ij | v_<ij) in bits of each 8-bit pixel: values uint8 [H, W] or [1, H, W] -> float64 [H, W].

    P is the model's discrete probability of the pixel's value (`RIDE.log_prob_discrete_pixels`: the density
    integrated over the value's bin). Border pixels the model does not predict (the top r rows, the left and right
    r columns) are NaN. The mean over the finite entries is the image's code length in bit/px (8 - the rate of the
    continuous density is its upper bound).
    """
    if not isinstance(model, RIDE):
        raise ValueError(f"a likelihood map needs a grey RIDE model (num_layers=0: the MCGSM), found "
                         f"{type(model).__name__}")
    if not isinstance(values, Tensor) or values.dtype != torch.uint8 or values.dim() not in (2, 3) or (
            values.dim() == 3 and values.shape[0] != 1):
        found = f"{values.dtype} {tuple(values.shape)}" if isinstance(values, Tensor) else type(values).__name__
        raise ValueError(f"values must be a uint8 tensor [H, W] or [1, H, W] of a grey image, found {found}")
    grid = values.reshape(1, 1, *values.shape[-2:])
    device = next(model.parameters()).device
    log_p = model.log_prob_discrete_pixels(grid.to(device))[0].double().cpu()  # [Hp, Wp] nats
    top, left, _ = model.margin
    out = torch.full(values.shape[-2:], math.nan, dtype=torch.float64)
    out[top: top + log_p.shape[0], left: left + log_p.shape[1]] = -log_p / math.log(2)
    return out
