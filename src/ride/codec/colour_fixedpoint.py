"""The lossless colour RIDE in exact integer arithmetic: the model behind colour codec streams (format version 3,
or 5 with a tighter cell clip).

`quantise_colour(model)` turns a `LosslessColourRIDE` (channels coded one after another, design §11) into an
`IntColourRIDE` with the conventions of `fixedpoint` (docs/codec_format.md): the same integer input map and spatial
LSTM layers, fed with the 3K pixel codes of the three channels' causal windows and giving three linear predictions
(base_k at 2^-Q_BITS), and three integer MCGSM heads. Head k models channel k given the top hidden state h and the
channels already coded at the same pixel; in the float model it sees [h, y~_0 .. y~_(k-1)] with the whitened
residuals y~_j = sum_(i<=j) L_ji r_i, r_i = x_i - base_i. Both are linear in v = [h_int, r_0 .. r_(k-1)], so the
integer head is one exact float64 GEMM on v (r_i as integers at 2^-Q_BITS, clipped to +-R_CLIP, h_int in [-A, A]):
features at 2^-FEAT_BITS and component means of channel k on its [0,1) pixel scale,

    M_c = base_k + (mu_c(h, y~_<k) - sum_(i<k) L_ki r_i) / L_kk,

then the grey model's energies, gate weights and CDF with the precisions L_kk exp(alpha_cs / 2). Every GEMM is
exact: |v| <= 2^22 and each weight column's L1 norm <= (2^53 - 1) / 2^22. Only the 8-bit channel orders (rgb,
grb) are codable; the 9-bit chroma transforms are not.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from .fixedpoint import (
    CELL_CLIP_INT,
    F64_EXACT,
    FEAT_BITS,
    Q_BITS,
    _arr,
    _fold_rows,
    _quantise_columns,
    cell_clip_int,
    digest_fields,
    quantise_gate,
    quantise_trunk,
    tables,
)

R_CLIP = (1 << 22) - 1  # |r_i| on the [0,1) scale < 4, at 2^-Q_BITS
CODABLE_TRANSFORMS = ("rgb", "grb")  # 8-bit channels


@dataclass(eq=False)
class IntHead:
    """One channel's integer MCGSM head (field meanings as in `fixedpoint.IntRIDE`)."""

    out_weight: np.ndarray  # [D + k, F + C]: float64 GEMM on [h_int, r_0 .. r_(k-1)]: features, then means
    out_shift: np.ndarray  # [F + C]
    beta2: np.ndarray  # [F, C]
    energy_shift: int
    energy_clip: int
    eta: np.ndarray  # [C, S]
    slope: np.ndarray  # [C, S]
    precision: np.ndarray  # [C, S]


@dataclass(eq=False)
class IntColourRIDE:
    """A `LosslessColourRIDE` as integers (module notes); numpy int64 arrays, torch-free. The trunk's fields mean
    what they mean in `fixedpoint.IntRIDE`; in_weight has 3K rows (channel blocks) and 5D + 3 columns."""

    transform: str  # coded channel order: "rgb" or "grb"
    offsets: np.ndarray  # [K, 2]
    margin: tuple[int, int, int]
    hidden_levels: int
    in_weight: np.ndarray
    in_bias: np.ndarray
    in_shift: np.ndarray
    layer_weights: list[np.ndarray]
    layer_shifts: list[np.ndarray]
    layer_biases: list[np.ndarray]
    heads: list[IntHead]
    sigmoid: np.ndarray
    tanh: np.ndarray
    tanh_h: np.ndarray
    exp2: np.ndarray
    phi: np.ndarray
    dims: tuple[int, int, int, int, int]  # D, layers, C, S, F
    cell_clip: int = CELL_CLIP_INT  # as in IntRIDE: the float model's cell_clip; not in the fingerprint

    @property
    def fingerprint(self) -> bytes:
        """8 bytes: SHA-256 over every integer array and scalar (heads included, in order)."""
        digest = hashlib.sha256(b"ride-intmodel-colour-v3")
        digest_fields(self, digest)
        return digest.digest()[:8]


def _head(head, whiten: np.ndarray, k: int, a_levels: int) -> IntHead:  # noqa: ANN001 - a ride.mcgsm.MCGSM
    """Head k's integer form; whiten is the preconditioner's lower-triangular output whitening L [3, 3]."""
    c = head.num_components
    d = head.features.shape[0] - k
    lkk = float(whiten[k, k])
    gate = quantise_gate(head, lkk)  # checks L_kk > 0
    feats, preds = _arr(head.features), _arr(head.predictors).reshape(-1, c)  # [D + k, F], [D + k, C]
    # u = [h_int / A, y~_<k] = blocks (I / A, L_<k,<k 2^-Q) of v = [h_int, r_<k (2^-Q units)]
    lsub = whiten[:k, :k] * 2.0**-Q_BITS
    feat_v = np.concatenate([feats[:d] / a_levels, _fold_rows(lsub.T, feats[d:])], 0)
    mean_v = np.concatenate([preds[:d] / a_levels, _fold_rows(lsub.T, preds[d:])
                             - whiten[k, :k, None] * 2.0**-Q_BITS], 0) / lkk
    budget = (F64_EXACT - 1) // (R_CLIP + 1)
    w_feat, sh_feat = _quantise_columns(feat_v, budget, FEAT_BITS)
    w_mean, sh_mean = _quantise_columns(mean_v, budget, Q_BITS)
    return IntHead(out_weight=np.concatenate([w_feat, w_mean], 1), out_shift=np.concatenate([sh_feat, sh_mean]),
                   **gate)


def quantise_colour(model, hidden_levels: int = 255) -> IntColourRIDE:  # noqa: ANN001 - a LosslessColourRIDE
    """The integer model of a `LosslessColourRIDE` with an 8-bit channel order and >= 1 layer; deterministic on
    every machine."""
    transform = model.config.transform
    if transform not in CODABLE_TRANSFORMS:
        raise ValueError(f"the colour codec codes 8-bit channels ({', '.join(CODABLE_TRANSFORMS)}), not the "
                         f"{transform!r} transform")
    if not model.layers:
        raise ValueError("the integer model needs a model with at least one spatial LSTM layer")
    whiten = _arr(model.preconditioner.whiten_out)
    if np.triu(whiten, 1).any():
        raise ValueError("the colour model's output whitening must be lower triangular (fit_preconditioner)")
    heads = [_head(head, whiten, k, hidden_levels) for k, head in enumerate(model.heads)]
    h0 = model.heads[0]
    return IntColourRIDE(
        transform=transform, offsets=model.neighbourhood.offsets().numpy().astype(np.int64),
        margin=tuple(int(m) for m in model.margin), hidden_levels=hidden_levels,
        **quantise_trunk(model, hidden_levels), heads=heads, **tables(hidden_levels),
        dims=(model.config.num_hiddens, len(model.layers), h0.num_components, h0.num_scales, h0.num_features),
        cell_clip=cell_clip_int(model.config.cell_clip))
