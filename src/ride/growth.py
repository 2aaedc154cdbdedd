"""Growing a trained RIDE without changing its density: more hidden units per spatial LSTM layer.

`widen(model, num_hiddens)` returns a model with `num_hiddens` units in every layer that computes exactly the same
log-density as `model` (Net2Net-style, function-preserving): the old units keep their weights, the new units get
fresh random incoming weights, and every weight *from* a new unit (into an old unit's gates, into the next layer's
old units, into the MCGSM's features and predictors) starts at zero. The new units therefore start as unused
capacity: the gradient of the loss reaches their outgoing weights at once (their states are non-zero), and their
incoming weights once those have moved.
"""

from __future__ import annotations

from dataclasses import asdict

import torch
from torch import nn

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
def _widen_mcgsm(old: MCGSM, new: MCGSM) -> None:
    """The MCGSM of `old` on the leading inputs of the wider `new`; the new inputs get zero features/predictors."""
    state = old.state_dict()
    for name, value in new.state_dict().items():
        if name in ("features", "predictors"):  # [D, F] and [D, C, M]: rows are inputs
            value.zero_()
            value[: old.dim_in] = state[name]
        else:
            value.copy_(state[name])


def widen(model: nn.Module, num_hiddens: int) -> nn.Module:
    """A copy of `model` (RIDE or PatchRIDE with >= 1 layer) with `num_hiddens` units in every spatial LSTM layer
    and the same log-density; the new units' incoming weights are drawn from torch's global RNG."""
    inner = model.ride if isinstance(model, PatchRIDE) else model
    if not isinstance(inner, RIDE) or not inner.layers:
        raise ValueError(f"widen needs a RIDE with at least one spatial LSTM layer, found {type(model).__name__}")
    if not isinstance(num_hiddens, int) or num_hiddens <= inner.config.num_hiddens:
        raise ValueError(f"widen: num_hiddens must be an integer above the model's {inner.config.num_hiddens}, "
                         f"found {num_hiddens!r}")
    cfg = asdict(inner.config)
    cfg["num_hiddens"] = num_hiddens
    param = next(inner.parameters())
    wider = PatchRIDE(model.patch_size, **cfg) if isinstance(model, PatchRIDE) else RIDE(**cfg)
    wider = wider.to(param.device, param.dtype)
    target = wider.ride if isinstance(wider, PatchRIDE) else wider
    target.preconditioner.load_state_dict(inner.preconditioner.state_dict())
    for old, new in zip(inner.layers, target.layers, strict=True):
        _widen_layer(old, new)
    _widen_mcgsm(inner.mcgsm, target.mcgsm)
    return wider
