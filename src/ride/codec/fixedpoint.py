"""RIDE in exact integer arithmetic: the model behind portable codec streams (format v2, docs/codec_format.md).

Every number that decides a symbol's frequency is an integer computed identically on every machine:
- `quantise(model)` turns a one-channel RIDE into an `IntRIDE`: integer weight matrices with a power-of-two scale
  per output column, integer lookup tables for sigmoid, tanh, 2^-x and the Gaussian CDF, and integer scalars. It
  is derived from the float weights with IEEE-754 basic operations in a fixed order and scalar libm calls; its
  `fingerprint` (SHA-256 of every integer array) goes into each stream, so a machine that would derive other
  tables refuses a stream instead of decoding it wrongly.
- The products are done by float GEMMs on integers small enough to make them exact: every product and every
  partial sum of a float32 GEMM is an integer below 2^24 (float64: 2^53), so any summation order, SIMD width, FMA
  or BLAS gives the same exact result. `quantise` chooses each column's scale so that
  (largest activation) x (L1 norm of the column) < 2^24 (2^53) and asserts it; everything else is int64
  (shifts with rounding, element-wise products, table look-ups).
- `FrontStepper` (torch, fast) steps the integer model along the skewed front (spec §8) of a batch of framed
  canvases (the codec's stripes); `cdf_at` gives the integer mixture CDF Cq at any bin edges. The plain NumPy
  implementation in `fixedpoint_ref` (raster order, integer dot products, no floats) is the reference; tests hold
  the two identical.

Fixed-point conventions (shifts of GEMM results round half to even, as float round() of x 2^-s does exactly; the
int64 shifts of the cell update and the gate logits round half up: rshift(x, s) = (x + 2^(s-1)) >> s):
- pixel codes p = 2v + 1 in [1, 511] (the context value (v + 1/2)/256 = p/512);
- gate pre-activations at 2^-PRE_BITS, gates and cells at 2^-15, hidden states h as integers in [-A, A]
  (A = `hidden_levels`, h = h_int / A);
- the MCGSM: features at 2^-FEAT_BITS, component means M_c on the [0,1) pixel scale at 2^-Q_BITS (the
  preconditioner's un-whitening y = my + P x~ + sigma y~ is folded into the means and precisions), gate logits in
  log2 units at 2^-12, gate weights w_cs in [0, 2^15];
- the CDF at bin edge k/256: Cq(k) = sum_cs w_cs PHI[z_cs(k)], z the standardised edge at 2^-Z_BITS, PHI in
  [0, 2^16]; Cq(0) = 0 and Cq(256) = 2^16 sum w (the first and last bins reach -inf and +inf).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field, fields, is_dataclass

import numpy as np
import torch
from torch import Tensor

PRE_BITS = 10  # gate pre-activations and nonlinearity table inputs at 2^-10
PRE_RANGE = 16  # tables cover pre-activations in [-16, 16]
UNIT_BITS = 15  # gates, cell states: 2^-15
FEAT_BITS = 8  # MCGSM features at 2^-8
FEAT_CLIP = (1 << 15) - 1  # |feature| < 128
Q_BITS = 20  # component means on the [0,1) scale at 2^-20 (a bin is 2^12 units)
LOG_BITS = 12  # gate logits in log2 units at 2^-12
ENERGY_CLIP = 1 << 40
Z0_CLIP = 1 << 22  # layer 1's input projection at 2^-PRE_BITS, so that float32 sums with it stay exact
MEAN_CLIP = 1 << 29  # |M_c| < 512 on the [0,1) scale, so that |d r_cs| < 2^62
Z_BITS = 10  # standardised edges at 2^-10
Z_RANGE = 8  # PHI covers z in [-8, 8]
PHI_ONE = 1 << 16
WEIGHT_ONE = 1 << 15
R_SHIFT = 24  # z index = rshift(d * r_cs, R_SHIFT)
CELL_CLIP_INT = 10_000 << UNIT_BITS  # wavefront.CELL_CLIP at 2^-15: format 2's clip (format 4 states its own)
F32_EXACT = 1 << 24
F64_EXACT = 1 << 53
MAX_SHIFT = 62


def rshift(x: Tensor, s: Tensor | int, half: Tensor | None = None) -> Tensor:
    """Round-half-up arithmetic right shift of int64 x by s >= 0 (per column when s is a tensor; `half`, if
    given, is (1 << s) >> 1 precomputed)."""
    if isinstance(s, int):
        return (x + ((1 << s) >> 1)) >> s
    if half is None:
        half = (torch.ones_like(s) << s) >> 1
    return (x + half) >> s


class _Shift:
    """A per-column right shift with its rounding constant."""

    def __init__(self, s: np.ndarray) -> None:
        self.s = torch.from_numpy(np.asarray(s, dtype=np.int64))
        self.half = (torch.ones_like(self.s) << self.s) >> 1

    def __call__(self, x: Tensor) -> Tensor:
        """rshift of a fresh int64 tensor x (modified in place)."""
        return x.add_(self.half).bitwise_right_shift_(self.s)


@dataclass
class Mixture:
    """Per-cell constants of the CDF: offset [N, C*S] (z index of edge k = (k R + offset) >> R_SHIFT before the
    clamp), weights [N, C*S, 1] as float64, total mass Cq(256) [N, 1]."""

    offset: Tensor
    weights: Tensor
    total: Tensor

    def select(self, rows: Tensor) -> Mixture:
        return Mixture(self.offset[rows], self.weights[rows], self.total[rows])


# ---------------------------------------------------------------------------------------------- quantisation

def _fold_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a [I, J] @ b [J, K] in float64 with a fixed order of IEEE operations (no BLAS): the same on every machine."""
    out = np.zeros((a.shape[0], b.shape[1]), dtype=np.float64)
    for j in range(a.shape[1]):
        out = out + a[:, j : j + 1] * b[j : j + 1, :]
    return out


def _fits(column: np.ndarray, s: int, budget: int) -> bool:
    """sum |round(w 2^s)| <= budget, decided on exact integers."""
    return int(np.abs(np.rint(column * 2.0**s)).astype(np.int64).sum()) <= budget


def _column_scales(weights: np.ndarray, budget: int, limit: int = 40) -> np.ndarray:
    """Per column the largest power-of-two exponent s <= limit with sum |round(w 2^s)| <= budget, [K_out].

    The guess from float sums only starts the search; the answer is decided on exact integer sums, so that it is
    the same on every machine."""
    l1 = np.abs(weights).sum(0)
    s = np.floor(np.log2(budget / np.maximum(l1 + 0.5 * weights.shape[0], 1e-30))).astype(np.int64)
    s = np.minimum(s, limit)
    for col in range(weights.shape[1]):
        while s[col] < limit and _fits(weights[:, col], int(s[col]) + 1, budget):
            s[col] += 1
        while not _fits(weights[:, col], int(s[col]), budget):
            s[col] -= 1
    return s


def _quantise_columns(weights: np.ndarray, budget: int, out_bits: int, limit: int = 40,
                      min_shift: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Integer weights [K, N] (column n at scale 2^s_n) and the right shifts s_n - out_bits that bring the exact
    product sums to 2^-out_bits; the L1 budget makes the GEMM exact."""
    s = _column_scales(weights, budget, limit)
    if (s < out_bits + min_shift).any():
        raise ValueError(f"weights too large for exact integer GEMMs: a column needs scale 2^{int(s.min())} < "
                         f"2^{out_bits}")
    w_int = np.rint(weights * np.exp2(s.astype(np.float64))).astype(np.int64)
    assert (np.abs(w_int).sum(0) <= budget).all()
    return w_int, s - out_bits


def _table(fn, lo: int, hi: int, step_bits: int, one: int) -> np.ndarray:
    """int64 [hi - lo + 1]: round(one * fn(i / 2^step_bits)) for i in lo..hi, scalar libm in float64."""
    return np.array([int(round(one * fn(i / (1 << step_bits)))) for i in range(lo, hi + 1)], dtype=np.int64)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _phi(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


@dataclass(eq=False)
class IntRIDE:
    """A one-channel RIDE as integers (see the module docstring); numpy int64 arrays, torch-free."""

    offsets: np.ndarray  # [K, 2] (dy, dx) of the causal window, spec §2
    margin: tuple[int, int, int]  # (top, left, right)
    hidden_levels: int  # A
    # input map from pixel codes (float64 GEMM): [K, 5D + 1] weights, [5D + 1] bias, right shifts
    in_weight: np.ndarray
    in_bias: np.ndarray
    in_shift: np.ndarray
    # per layer: float32 GEMM weights [K_l, 5D] (layer 0: [h_up, h_left]; others: [h_below, h_up, h_left]),
    # right shifts [5D], bias at 2^-PRE_BITS [5D] (zero for layer 0: its bias is in the input map)
    layer_weights: list[np.ndarray]
    layer_shifts: list[np.ndarray]
    layer_biases: list[np.ndarray]
    # MCGSM: float32 GEMM [D, F + C] (features, then means), shifts [F + C]
    out_weight: np.ndarray
    out_shift: np.ndarray
    beta2: np.ndarray  # [F, C] at 2^-beta_bits (float64 GEMM on squared features)
    energy_shift: int
    energy_clip: int
    eta: np.ndarray  # [C, S] log2 units at 2^-LOG_BITS
    slope: np.ndarray  # [C, S] exp(alpha)/2 log2(e) at 2^-LOG_BITS
    precision: np.ndarray  # [C, S] r_cs: z index = rshift(d r_cs, R_SHIFT)
    sigmoid: np.ndarray  # tables over pre-activations -R..R at 2^-PRE_BITS
    tanh: np.ndarray
    tanh_h: np.ndarray  # round(A tanh)
    exp2: np.ndarray  # [2^LOG_BITS] round(2^15 2^(-j/2^LOG_BITS))
    phi: np.ndarray  # [2 Z_RANGE 2^Z_BITS + 1] round(2^16 Phi(z))
    dims: tuple[int, int, int, int, int] = field(default=(0, 0, 0, 0, 0))  # D, layers, C, S, F
    # cells are clipped to +-cell_clip (at 2^-15): CELL_CLIP_INT, or the float model's smaller `cell_clip`. Not in
    # the fingerprint: a stream's header states the clip it was coded with (format 4; format 2 means CELL_CLIP_INT)
    cell_clip: int = CELL_CLIP_INT

    @property
    def fingerprint(self) -> bytes:
        """8 bytes: SHA-256 over every integer array and scalar of the integer model (not the float weights), the
        cell clip excepted (the stream states it)."""
        digest = hashlib.sha256(b"ride-intmodel-v2")
        digest_fields(self, digest)
        return digest.digest()[:8]


UNDIGESTED = ("cell_clip",)  # fields a stream states in its header


def cell_clip_int(clip: float) -> int:
    """A float model's cell clip (> 0, as RIDEConfig checks) at 2^-15 (round half up), at most the format's
    CELL_CLIP_INT and at least 1."""
    if clip >= CELL_CLIP_INT / (1 << UNIT_BITS):
        return CELL_CLIP_INT
    return max(1, math.floor(clip * (1 << UNIT_BITS) + 0.5))


def digest_fields(obj: object, digest) -> None:  # noqa: ANN001 - a hashlib object
    """Feed every field of an integer-model dataclass to `digest`: name and item count, then each array's shape and
    little-endian int64 bytes, nested dataclasses field by field, other values by repr."""
    for f in fields(obj):
        if f.name in UNDIGESTED:
            continue
        value = getattr(obj, f.name)
        items = value if isinstance(value, list) else [value]
        digest.update(f"{f.name}|{len(items)}".encode())
        for item in items:
            if isinstance(item, np.ndarray):
                arr = np.ascontiguousarray(item, dtype="<i8")
                digest.update(f"{arr.shape}".encode() + arr.tobytes())
            elif is_dataclass(item):
                digest_fields(item, digest)
            else:
                digest.update(repr(item).encode())


def _arr(t: Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def quantise_trunk(model, a_levels: int) -> dict:  # noqa: ANN001 - a ride.RIDE or LosslessColourRIDE
    """The integer input map and spatial LSTM layers of a model with a preconditioner and >= 1 layer (the fields
    in_weight, in_bias, in_shift, layer_weights, layer_shifts, layer_biases of `IntRIDE`). The input map's outputs
    are layer 1's 5D gate inputs and one linear prediction per modelled channel (preconditioner.predictor's rows)."""
    pre = model.preconditioner
    d = model.config.num_hiddens
    # folded input map on x = p / 512: x~ = (x - mx) Wh^T; layer-1 z = x~ W_in + b; y_base = my + x~ P^T
    whiten = _arr(pre.whiten_in).T  # [K, K]
    w_in0, b0 = _arr(model.layers[0].weight_in), _arr(model.layers[0].bias)
    pred = _arr(pre.predictor).T  # [K, channels]
    shift_x = -_fold_rows(_arr(pre.mean_in)[None, :], whiten)  # [1, K]
    lin = np.concatenate([_fold_rows(whiten, w_in0), _fold_rows(whiten, pred)], 1) / 512.0  # per pixel code
    lin_bias = np.concatenate([_fold_rows(shift_x, w_in0)[0] + b0,
                               _fold_rows(shift_x, pred)[0] + _arr(pre.mean_out)])
    out_bits = np.concatenate([np.full(5 * d, PRE_BITS), np.full(pred.shape[1], Q_BITS)])
    # float64 GEMM on pixel codes <= 511: scale each column so that 511 * L1 + |bias| < 2^53
    budget64 = (F64_EXACT // 2) // 511
    s_in = _column_scales(lin, budget64)
    bias_ok = np.abs(lin_bias) * np.exp2(s_in.astype(np.float64)) < F64_EXACT // 4
    s_in = np.where(bias_ok, s_in, s_in - 40)  # pathological biases only
    if (s_in < out_bits).any():
        raise ValueError("input map too large for an exact float64 GEMM")
    in_weight = np.rint(lin * np.exp2(s_in.astype(np.float64))).astype(np.int64)
    in_bias = np.rint(lin_bias * np.exp2(s_in.astype(np.float64))).astype(np.int64)
    assert (511 * np.abs(in_weight).sum(0) + np.abs(in_bias) < F64_EXACT).all()

    budget32 = (F32_EXACT - 1) // a_levels
    layer_weights, layer_shifts, layer_biases = [], [], []
    for k, layer in enumerate(model.layers):
        rec = _arr(layer.weight_rec) / a_levels  # rows: h_up (D), h_left (D)
        w = rec if k == 0 else np.concatenate([_arr(layer.weight_in) / a_levels, rec], 0)
        # shifts >= 2: the rounded sums stay below 2^22, so adding the input projection keeps float32 exact
        w_int, shift = _quantise_columns(w, budget32, PRE_BITS, min_shift=2)
        layer_weights.append(w_int)
        layer_shifts.append(shift)
        bias = np.zeros(5 * d) if k == 0 else _arr(layer.bias)
        layer_biases.append(np.rint(bias * (1 << PRE_BITS)).astype(np.int64))
    return dict(in_weight=in_weight, in_bias=in_bias, in_shift=s_in - out_bits, layer_weights=layer_weights,
                layer_shifts=layer_shifts, layer_biases=layer_biases)


def quantise_gate(mc, whiten_out: float) -> dict:  # noqa: ANN001 - a ride.mcgsm.MCGSM
    """An MCGSM's gate and precisions as integers (the fields beta2, energy_shift, energy_clip, eta, slope,
    precision of `IntRIDE`); `whiten_out` (> 0) scales the pixel to the MCGSM's output (y~ = whiten_out x + ...)."""
    if not whiten_out > 0:
        raise ValueError(f"the preconditioner's output whitening must be positive, found {whiten_out}")
    c, s = mc.num_components, mc.num_scales
    beta2 = _arr(mc.weights) ** 2  # [C, F]
    # energy GEMM (float64) on squared features <= FEAT_CLIP^2 < 2^30: L1 of each beta2 row < 2^22
    beta_bits = int(_column_scales(beta2.T, 1 << 22, limit=30).min())
    beta2_int = np.rint(beta2 * 2.0**beta_bits).astype(np.int64)
    assert (beta2_int.sum(1) * FEAT_CLIP**2 < F64_EXACT).all()
    energy_shift = 2 * FEAT_BITS + beta_bits - LOG_BITS
    if energy_shift < 0:
        raise ValueError("MCGSM weights beta too large for the integer energy")
    log2e = 1.0 / math.log(2.0)
    alpha, eta_f = _arr(mc.scales), _arr(mc.priors)
    eta = np.rint(eta_f * log2e * (1 << LOG_BITS)).astype(np.int64)
    slope = np.array([[int(round(0.5 * math.exp(alpha[i, j]) * log2e * (1 << LOG_BITS))) for j in range(s)]
                      for i in range(c)], dtype=np.int64)
    precision = np.array([[int(round(whiten_out * math.exp(0.5 * alpha[i, j])
                                     * 2.0 ** (Z_BITS - Q_BITS + R_SHIFT))) for j in range(s)] for i in range(c)],
                         dtype=np.int64)
    if not ((precision < (1 << 32)).all() and (precision > 0).all()):
        raise ValueError("MCGSM precisions outside the integer model's range")
    energy_clip = min(ENERGY_CLIP, (1 << 62) // int(slope.max() + 1))
    return dict(beta2=beta2_int.T.copy(), energy_shift=energy_shift, energy_clip=energy_clip, eta=eta, slope=slope,
                precision=precision)


def tables(a_levels: int) -> dict:
    """The integer look-up tables of `IntRIDE` (sigmoid, tanh, tanh_h, exp2, phi)."""
    r = PRE_RANGE << PRE_BITS
    return dict(
        sigmoid=_table(_sigmoid, -r, r, PRE_BITS, 1 << UNIT_BITS),
        tanh=_table(math.tanh, -r, r, PRE_BITS, 1 << UNIT_BITS),
        tanh_h=_table(math.tanh, -r, r, PRE_BITS, a_levels),
        exp2=np.array([int(round(WEIGHT_ONE * 2.0 ** (-j / (1 << LOG_BITS)))) for j in range(1 << LOG_BITS)],
                      dtype=np.int64),
        phi=_table(_phi, -(Z_RANGE << Z_BITS), Z_RANGE << Z_BITS, Z_BITS, PHI_ONE))


def quantise(model, hidden_levels: int = 255) -> IntRIDE:  # noqa: ANN001 - a ride.RIDE
    """The integer model of a one-channel RIDE (float32 or float64 weights); deterministic on every machine."""
    if model.config.num_channels != 1:
        raise ValueError(f"the integer model needs a one-channel RIDE, found {model.config.num_channels} channels")
    if not model.layers:
        raise ValueError("the integer model needs a RIDE with at least one spatial LSTM layer")
    pre, nb = model.preconditioner, model.neighbourhood
    d, a_levels = model.config.num_hiddens, hidden_levels
    mc = model.mcgsm
    c, s, f = mc.num_components, mc.num_scales, mc.num_features
    trunk = quantise_trunk(model, a_levels)
    whiten_out = float(_arr(pre.whiten_out)[0, 0])
    gate = quantise_gate(mc, whiten_out)
    budget32 = (F32_EXACT - 1) // a_levels
    feats = _arr(mc.features) / a_levels  # [D, F]
    means = _arr(mc.predictors).reshape(-1, c) / (a_levels * whiten_out)  # mu_c / whiten on the [0,1) scale
    w_feat, sh_feat = _quantise_columns(feats, budget32, FEAT_BITS)
    w_mean, sh_mean = _quantise_columns(means, budget32, Q_BITS)
    return IntRIDE(
        offsets=nb.offsets().numpy().astype(np.int64), margin=tuple(int(m) for m in model.margin),
        hidden_levels=a_levels, **trunk,
        out_weight=np.concatenate([w_feat, w_mean], 1), out_shift=np.concatenate([sh_feat, sh_mean]),
        **gate, **tables(a_levels), dims=(d, len(model.layers), c, s, f),
        cell_clip=cell_clip_int(model.config.cell_clip))


# ---------------------------------------------------------------------------------------------- fast path (torch)

class FrontGeometry:
    """Where the cells of front t = (right+1) i + j of B framed canvases [B, Hc, Wc] are (design §8), as NumPy
    index arrays shared by the torch and the compiled steppers: grid rows, causal windows, and the LSTM states'
    two-row ring buffers [B, 2 (Wp + 1), D] (a zero column first, so that the left state of column 0 is zero)."""

    def __init__(self, im: IntRIDE, shape: tuple[int, int, int]) -> None:
        self.im = im
        b, hc, wc = shape
        top, left, right = im.margin
        self.batch, self.canvas_width = b, wc
        self.hp, self.wp = hc - top, wc - left - right
        self.skew = right + 1
        self.num_fronts = self.skew * (self.hp - 1) + self.wp
        d, layers, c, s, f = im.dims
        self.d, self.num_components, self.num_scales, self.num_features = d, c, s, f
        # each at front 0; front t's cells add t
        i = np.arange(self.hp, dtype=np.int64)
        self.pixel_start = (i + top) * wc + left - self.skew * i
        self.window_start = self.pixel_start[:, None] + (im.offsets[:, 0] * wc + im.offsets[:, 1])[None, :]
        stride = self.wp + 1
        self.here_start = (i % 2) * stride + 1 - self.skew * i
        self.past_start = np.stack([((i + 1) % 2) * stride + 1 - self.skew * i, self.here_start - 1], 1)

    def rows(self, t: int) -> tuple[int, int]:
        """Grid rows lo..hi (inclusive) of front t; lo > hi when empty."""
        lo = max(0, -(-(t - self.wp + 1) // self.skew))
        hi = min(self.hp - 1, t // self.skew)
        return lo, hi


class FrontStepper(FrontGeometry):
    """Steps an `IntRIDE` along the skewed front t = (right+1) i + j of B framed canvases of pixel codes.

    canvas: int64 [B, Hc, Wc] of pixel codes p = 2v + 1 (updated by the caller between fronts, e.g. the decoder).
    For t in range(num_fronts): rows = stepper.rows(t); params = stepper.step(t) gives each cell's mixture
    parameters (component means [N, C] at 2^-Q_BITS, weights [N, C, S]) with cells ordered (canvas, grid row).
    """

    def __init__(self, im: IntRIDE, canvas: Tensor) -> None:
        super().__init__(im, tuple(canvas.shape))
        b, hc, wc = canvas.shape
        d, layers = im.dims[:2]
        self.canvas = canvas
        self.flat = canvas.view(b, hc * wc)
        self._window_base = torch.from_numpy(self.window_start)
        self.pixel_base = torch.from_numpy(self.pixel_start)
        self._here_base = torch.from_numpy(self.here_start)
        self._past_base = torch.from_numpy(self.past_start)
        stride = self.wp + 1
        self.h = [torch.zeros(b, 2 * stride, d, dtype=torch.float32) for _ in range(layers)]
        self.c = [torch.zeros(b, 2 * stride, d, dtype=torch.int64) for _ in range(layers)]
        t64 = torch.from_numpy
        self.in_weight = t64(im.in_weight).double()
        self.in_bias = t64(im.in_bias).double()
        r = PRE_RANGE << PRE_BITS

        def scale(shift: np.ndarray, dtype: torch.dtype) -> Tensor:  # 2^-s, exact in float
            return torch.from_numpy(np.ldexp(1.0, -np.asarray(shift))).to(dtype)

        self.in_scale = scale(im.in_shift, torch.float64)
        # one table for the gates: tanh for the first D columns, sigmoid (at offset 2R + 1) for the others; the
        # offset and +R ride on the bias (z0 for layer 0), the clamp keeps each column in its own table
        d = im.dims[0]
        gate_offset = torch.cat([torch.zeros(d), torch.full((4 * d,), 2.0 * r + 1)])
        self.gate_lo, self.gate_hi = gate_offset, gate_offset + 2 * r
        self.gate_shift = gate_offset + r
        self.layers = [(t64(w).float(), scale(sh, torch.float32), t64(bias).float() + self.gate_shift)
                       for w, sh, bias in zip(im.layer_weights, im.layer_shifts, im.layer_biases, strict=True)]
        self.out_weight = t64(im.out_weight).float()
        self.out_scale = scale(im.out_shift, torch.float32)
        self.energy_scale = float(np.ldexp(1.0, -im.energy_shift))
        self.gate_table = torch.cat([t64(im.tanh), t64(im.sigmoid)])
        self.tanh_h32 = t64(im.tanh_h).float()
        zr = Z_RANGE << Z_BITS
        self.edge_step = (t64(im.precision) << (Q_BITS - 8)).view(1, 1, -1)  # [1, 1, C*S]
        self.offset_base = (1 << (R_SHIFT - 1)) + (zr << R_SHIFT)
        self.phi64 = t64(im.phi).double()
        self.beta2 = t64(im.beta2).double()
        self.eta, self.slope = t64(im.eta), t64(im.slope)
        self.precision = t64(im.precision)
        self.sigmoid, self.tanh, self.tanh_h = t64(im.sigmoid), t64(im.tanh), t64(im.tanh_h)
        self.exp2, self.phi = t64(im.exp2), t64(im.phi)

    def pixel_index(self, t: int) -> Tensor:
        """Flat canvas index [n] of front t's cells (same for every canvas)."""
        lo, hi = self.rows(t)
        return self.pixel_base[lo : hi + 1] + t

    @torch.no_grad()
    def step(self, t: int) -> tuple[Tensor, Tensor]:
        """Mixture parameters of front t's cells from the canvas as it is now: component means M [N, C]
        (2^-Q_BITS, [0,1) scale) and gate weights w [N, C, S] in [0, 2^15]; advances the LSTM states."""
        lo, hi = self.rows(t)
        b, n, d = self.batch, hi - lo + 1, self.d
        r = PRE_RANGE << PRE_BITS
        window = (self._window_base[lo : hi + 1] + t).view(-1)
        codes = self.flat.index_select(1, window).view(b * n, -1).double()
        mapped = torch.addmm(self.in_bias, codes, self.in_weight).mul_(self.in_scale).round_()  # exact: < 2^53
        z0 = mapped[:, : 5 * d].clamp(-Z0_CLIP, Z0_CLIP).float().add_(self.gate_shift)
        base = mapped[:, 5 * d :].long()
        here = self._here_base[lo : hi + 1] + t
        both = (self._past_base[lo : hi + 1] + t).view(-1)
        below = None
        for k, (w, scale, bias) in enumerate(self.layers):
            hs, cs = self.h[k], self.c[k]
            h_past = hs.index_select(1, both).view(b * n, 2 * d)  # [h_up | h_left]
            c_past = cs.index_select(1, both).view(b * n, 2, d)
            gemm_in = h_past if k == 0 else torch.cat([below, h_past], 1)
            pre = torch.mm(gemm_in, w).mul_(scale).round_()  # exact: products and sums < 2^24, shifts by 2^-s
            idx = torch.clamp(pre.add_(z0 if k == 0 else bias), self.gate_lo, self.gate_hi).int()  # exact: < 2^24
            gates = self.gate_table.index_select(0, idx.view(-1)).view(b * n, 5 * d)
            cand, out_g, in_g, f_up, f_left = gates.split(d, 1)
            cell = cand * in_g
            cell.addcmul_(c_past[:, 1], f_left).addcmul_(c_past[:, 0], f_up)
            cell = rshift(cell, UNIT_BITS).clamp_(-self.im.cell_clip, self.im.cell_clip)
            x = rshift(cell * out_g, 2 * UNIT_BITS - PRE_BITS).clamp_(-r, r).add_(r)
            below = self.tanh_h32.index_select(0, x.view(-1)).view(b * n, d)
            hs.index_copy_(1, here, below.view(b, n, d))
            cs.index_copy_(1, here, cell.view(b, n, d))
        return self.mixture(below, base)

    def mixture(self, h: Tensor, base: Tensor) -> tuple[Tensor, Tensor]:
        """Component means M [N, C] and gate weights [N, C, S] from top hidden states h [N, D] (float32 holding
        integers) and the linear prediction base [N, 1] at 2^-Q_BITS."""
        f = self.num_features
        acc = torch.mm(h, self.out_weight).mul_(self.out_scale).round_()  # exact: < 2^24
        feat = acc[:, :f].clamp(-FEAT_CLIP, FEAT_CLIP).double()
        means = (acc[:, f:].long() + base).clamp_(-MEAN_CLIP, MEAN_CLIP)
        energy = torch.mm(feat.square_(), self.beta2).mul_(self.energy_scale).round_()  # exact: < 2^53
        energy = energy.clamp_(max=self.im.energy_clip).long()
        logits = self.eta - rshift(energy[:, :, None] * self.slope, LOG_BITS)  # [N, C, S]
        n = logits.shape[0]
        gap = logits.view(n, -1).amax(1).view(n, 1, 1) - logits
        frac = self.exp2.index_select(0, (gap & ((1 << LOG_BITS) - 1)).view(-1)).view(gap.shape)
        weights = frac >> (gap >> LOG_BITS).clamp_(max=MAX_SHIFT)
        return means, weights

    def prepare(self, means: Tensor, weights: Tensor) -> Mixture:
        """The per-cell constants of `cdf` from means [N, C] and weights [N, C, S]."""
        n = means.shape[0]
        offset = self.offset_base - (means[:, :, None] * self.precision).view(n, -1)
        return Mixture(offset, weights.view(n, -1, 1).double(), weights.view(n, -1).sum(1, keepdim=True) * PHI_ONE)

    def cdf(self, mix: Mixture, edges: Tensor) -> Tensor:
        """Cq at bin edges [N, E] (1..255, or 256 for the total) -> int64 [N, E]; equals `cdf_at`."""
        z = torch.addcmul(mix.offset[:, None, :], edges[:, :, None], self.edge_step)  # [N, E, C*S]
        z = z.bitwise_right_shift_(R_SHIFT).clamp_(0, 2 * (Z_RANGE << Z_BITS))
        gathered = self.phi64.index_select(0, z.view(-1)).view(z.shape)
        cq = torch.bmm(gathered, mix.weights)[:, :, 0].long()  # exact: < 2^53
        return torch.where(edges >= 256, mix.total, cq)

    def cdf_at(self, means: Tensor, weights: Tensor, edges: Tensor) -> Tensor:
        """Cq at bin edges: means [N, C], weights [N, C, S], edges int64 [N, E] in 0..256 -> int64 [N, E]."""
        return cdf_at(means, weights, edges, self.precision, self.phi)


def cdf_at(means: Tensor, weights: Tensor, edges: Tensor, precision: Tensor, phi: Tensor) -> Tensor:
    """The integer mixture CDF Cq(k) = sum_cs w_cs PHI[z_cs(k)] at edges k [N, E] (Cq(0) = 0, Cq(256) = 2^16 sum w)."""
    n, c = means.shape
    zr = Z_RANGE << Z_BITS
    dist = (edges[:, :, None] << (Q_BITS - 8)) - means[:, None, :]  # [N, E, C]
    z = rshift(dist[:, :, :, None] * precision, R_SHIFT).clamp_(-zr, zr).add_(zr)  # [N, E, C, S]
    cq = (phi[z] * weights[:, None]).view(n, edges.shape[1], -1).sum(2)
    total = weights.view(n, -1).sum(1, keepdim=True) * PHI_ONE
    cq = torch.where(edges <= 0, 0, cq)
    return torch.where(edges >= 256, total, cq)
