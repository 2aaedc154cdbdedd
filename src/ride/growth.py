"""Growing a trained RIDE: one more spatial LSTM layer on top, or more hidden units per layer.

`add_layer(model)` copies everything and puts a fresh layer on top (design §6 "add layer"; the MCGSM then reads the
new layer's states, so the density changes). `widen(model, num_hiddens)` returns a model (RIDE, PatchRIDE or the
lossless colour model) with `num_hiddens` units in every layer that computes exactly the same log-density as `model`
(Net2Net-style, function-preserving): the old units keep their weights, the new units get fresh random incoming
weights, and every weight *from* a new unit (into an old unit's gates, into the next layer's old units, into the
MCGSM's features and predictors) starts at zero. The new units therefore start as unused capacity: the gradient of the
loss reaches their outgoing weights at once (their states are non-zero), and their incoming weights once those have
moved. `with_cell_clip(model, clip)` copies a RIDE or a lossless colour model with another cell clip (`cell_clip` of its
config).
"""

from __future__ import annotations

from dataclasses import asdict

import torch
from torch import nn

from .colour_lossless import LosslessColourRIDE
from .mcgsm import MCGSM
from .model import RIDE
from .patch_ride import PatchRIDE
from .slstm import SpatialLSTM

NUM_GATES = 5  # g, o, i, f_r, f_c along the 5D axis of SpatialLSTM's weights


def _gate_columns(old: int, new: int) -> torch.Tensor:
    """Indices [5 * old] of the old units' gate columns inside a 5 * new axis (gates stay in blocks of `new`)."""
    return torch.cat([torch.arange(old) + k * new for k in range(NUM_GATES)])


@torch.no_grad()
def _widen_layer(old: SpatialLSTM, new: SpatialLSTM) -> None:
    """Copy `old` into the leading units of the wider `new`; zero every weight from a new unit into an old one.

    `new` keeps its own random initial weights for the new units' gates (their columns). Shapes: weight_in
    [K, 5D], weight_rec [2D, 5D] (rows h_up then h_left), bias [5D]."""
    d, d2 = old.hidden_size, new.hidden_size
    k = old.input_size  # the new layer's inputs beyond k come from new units of the layer below
    cols = _gate_columns(d, d2)
    new.weight_in[:, cols] = 0.0
    new.weight_in[:k, cols] = old.weight_in
    rows = torch.cat([torch.arange(d), torch.arange(d) + d2])  # h_up and h_left of the old units
    new.weight_rec[:, cols] = 0.0
    new.weight_rec[rows[:, None], cols[None, :]] = old.weight_rec
    new.bias[cols] = old.bias


@torch.no_grad()
def _widen_mcgsm(old: MCGSM, new: MCGSM, rows: torch.Tensor | None = None) -> None:
    """The MCGSM of `old` inside the wider `new`: old input k is new input rows[k] (default: the leading inputs);
    the new inputs get zero features and predictors."""
    rows = torch.arange(old.dim_in) if rows is None else rows
    state = old.state_dict()
    for name, value in new.state_dict().items():
        if name in ("features", "predictors"):  # [D, F] and [D, C, M]: rows are inputs
            value.zero_()
            value[rows] = state[name]
        else:
            value.copy_(state[name])


def _widen_colour(model: LosslessColourRIDE, num_hiddens: int) -> LosslessColourRIDE:
    """`widen` for the lossless colour model: its layers as RIDE's; head k reads [h, y~_0 .. y~_(k-1)], so the new
    units' inputs go between the old units' and the channels'."""
    wider = _colour_like(model, num_hiddens=num_hiddens)
    wider.preconditioner.load_state_dict(model.preconditioner.state_dict())
    for old, new in zip(model.layers, wider.layers, strict=True):
        _widen_layer(old, new)
    d = model.config.num_hiddens
    for k, (old, new) in enumerate(zip(model.heads, wider.heads, strict=True)):
        rows = torch.cat([torch.arange(d), torch.arange(k) + num_hiddens])  # h's old units, then the channels
        _widen_mcgsm(old, new, rows)
    return wider


def _colour_like(model: LosslessColourRIDE, **changes: float) -> LosslessColourRIDE:
    """A fresh lossless colour model with `model`'s config changed by `changes`, on its device and dtype."""
    param = next(model.parameters())
    return LosslessColourRIDE(**{**asdict(model.config), **changes}).to(param.device, param.dtype)


def _inner(model: nn.Module, what: str) -> RIDE:
    """The RIDE inside `model` (itself, or a PatchRIDE's), which must have a spatial LSTM layer to grow."""
    inner = model.ride if isinstance(model, PatchRIDE) else model
    if not isinstance(inner, RIDE) or not inner.layers:
        raise ValueError(f"{what} needs a RIDE with at least one spatial LSTM layer, found {type(model).__name__}")
    return inner


def _rebuilt(model: nn.Module, inner: RIDE, **changes: float) -> tuple[nn.Module, RIDE]:
    """(bigger, target): a fresh model of `model`'s type (RIDE or PatchRIDE) with the config of its RIDE `inner`
    changed by `changes`, on `inner`'s device and dtype, the whitening copied; `target` is the RIDE inside it."""
    param = next(inner.parameters())
    cfg = {**asdict(inner.config), **changes}
    bigger = PatchRIDE(model.patch_size, **cfg) if isinstance(model, PatchRIDE) else RIDE(**cfg)
    bigger = bigger.to(param.device, param.dtype)
    target = bigger.ride if isinstance(bigger, PatchRIDE) else bigger
    target.preconditioner.load_state_dict(inner.preconditioner.state_dict())
    return bigger, target


def with_cell_clip(model: nn.Module, cell_clip: float) -> nn.Module:
    """A copy of `model` (RIDE, PatchRIDE or LosslessColourRIDE) whose spatial LSTM clips its cells to +-cell_clip
    (`RIDEConfig`, `LosslessColourConfig`); all weights copied. The density changes only where a cell goes beyond the
    new clip."""
    if isinstance(model, LosslessColourRIDE):
        clipped = _colour_like(model, cell_clip=cell_clip)
        clipped.load_state_dict(model.state_dict())
        return clipped
    inner = model.ride if isinstance(model, PatchRIDE) else model
    if not isinstance(inner, RIDE):
        raise ValueError(f"with_cell_clip needs a RIDE, PatchRIDE or LosslessColourRIDE, found {type(model).__name__}")
    clipped, target = _rebuilt(model, inner, cell_clip=cell_clip)
    target.load_state_dict(inner.state_dict())
    return clipped


def add_layer(model: nn.Module) -> nn.Module:
    """A copy of `model` (RIDE or PatchRIDE) with one more spatial LSTM layer on top; all else copied."""
    inner = _inner(model, "add_layer")
    bigger, target = _rebuilt(model, inner, num_layers=inner.config.num_layers + 1)
    for old, new in zip(inner.layers, target.layers, strict=False):
        new.load_state_dict(old.state_dict())
    target.mcgsm.load_state_dict(inner.mcgsm.state_dict())
    return bigger


def widen(model: nn.Module, num_hiddens: int) -> nn.Module:
    """A copy of `model` (RIDE, PatchRIDE or LosslessColourRIDE with >= 1 layer) with `num_hiddens` units in every
    spatial LSTM layer and the same log-density; the new units' incoming weights are drawn from torch's global RNG."""
    colour = isinstance(model, LosslessColourRIDE) and len(model.layers) > 0
    inner = model if colour else _inner(model, "widen")
    if not isinstance(num_hiddens, int) or num_hiddens <= inner.config.num_hiddens:
        raise ValueError(f"widen: num_hiddens must be an integer above the model's {inner.config.num_hiddens}, "
                         f"found {num_hiddens!r}")
    if colour:
        return _widen_colour(model, num_hiddens)
    wider, target = _rebuilt(model, inner, num_hiddens=num_hiddens)
    for old, new in zip(inner.layers, target.layers, strict=True):
        _widen_layer(old, new)
    _widen_mcgsm(inner.mcgsm, target.mcgsm)
    return wider
