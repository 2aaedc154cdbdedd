"""The skewed-front step of RIDE with its fixed cost cut: the engine behind sampling and the lossless codec.

A front t = (right+1)*i + j of the predicted grid is one batched step (design §8). `SkewedFront` does the work that
does not depend on pixel values once per canvas size and model, so that a step is a few large tensor operations:
- the input whitening, the first layer's input projection and the preconditioner's linear prediction
  my + P x~ are folded into one matrix (one product per front instead of three);
- index tensors are per grid row, so a front's indices are a slice plus t (no per-front schedule tensors, and
  memory O(height), not O(pixels));
- the spatial LSTM states live in a ring of two grid rows per layer, [B, 2 (W+1), 2D] holding (h | c) side by
  side: one gather reads both neighbours' h and c, one scatter writes them, and memory stays O(width), which
  bounds it for large images;
- the MCGSM's shared products (features and means in one matrix, beta^2, -exp(alpha)/2) are computed once.
The plain loop in `sampling.ancestral_sample_reference` is the reference; tests hold the two equal.

Besides RIDE, the step drives any model with the same trunk (`neighbourhood`, `preconditioner`, `layers`): the
chroma model of `ColourRIDE` (inputs: the windows of all canvas channels plus the current pixel's first channels,
`current`; outputs: some of the canvas channels, `outputs`) and `LosslessColourRIDE` (one univariate MCGSM head per
channel, `heads`, instead of one `mcgsm`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .mcgsm import standard_draws

if TYPE_CHECKING:
    from .model import RIDE

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


@dataclass(frozen=True)
class Front:
    """One front t of a B-image batch: grid rows lo..hi, one cell each; rows of every [B*n, ...] tensor are ordered
    (image, cell)."""

    t: int
    lo: int
    hi: int
    pixels: Tensor  # long [n], flat canvas index (i + top) * W + j + left of the cells
    cells: Tensor  # long [n], flat grid index i * Wp + j

    @property
    def size(self) -> int:
        return self.hi - self.lo + 1


class SkewedFront:
    """Steps a RIDE along the skewed front of `canvas` [B, C, H, W] (updated in place by `write`).

    Usage: for t in range(num_fronts): front = sf.front(t); hidden, base = sf.hidden(front); ...; sf.write(front,
    values). `hidden` must be called for every front in order (it advances the LSTM states).
    The model's inputs are the causal windows of all C canvas channels (channel blocks), followed by the values of
    the first `current` channels at the pixel itself (drawn before the model's outputs); its outputs are the canvas
    channels `outputs` (default: all), which `write` and `read` address.
    """

    def __init__(self, model: RIDE, canvas: Tensor, current: int = 0, outputs: slice | None = None) -> None:
        b, ch, h, w = canvas.shape
        nb, pre = model.neighbourhood, model.preconditioner
        top, left, right = nb.rows - 1, nb.column, nb.right
        self.model, self.canvas = model, canvas
        self.outputs = outputs if outputs is not None else slice(0, ch)
        self.current = current
        self.batch, self.channels, self.width = b, len(range(ch)[self.outputs]), w
        self.inputs = ch  # canvas channels whose windows are read
        self.hp, self.wp = nb.grid_shape(h, w)
        self.skew = right + 1
        self.num_fronts = self.skew * (self.hp - 1) + self.wp
        device, dtype = canvas.device, canvas.dtype
        self.flat = canvas.view(b, ch, h * w)

        # Per grid row i, indices of the cell (i, j = t - skew*i) less t, so that a front's indices are a slice
        # plus t: flat canvas index, flat grid index, the window's canvas indices.
        i = torch.arange(self.hp, device=device)
        self._pixel_base = (i + top) * w + left - self.skew * i  # [Hp]
        self._cell_base = i * (self.wp - self.skew)
        offsets = nb.offsets().to(device)
        self._window_base = self._pixel_base[:, None] + offsets[:, 0] * w + offsets[:, 1]  # [Hp, K]
        # state slots: row i lives in ring row i % 2, column j + 1 (slot 0 of a ring row is the zero left border);
        # (up, left) neighbours side by side, so that one gather reads both
        stride = self.wp + 1
        self._here_base = (i % 2) * stride + 1 - self.skew * i
        self._past_base = torch.stack([((i + 1) % 2) * stride + 1 - self.skew * i, self._here_base - 1], 1)
        dim = model.layers[0].hidden_size if model.layers else 0
        self.states = [canvas.new_zeros(b, 2 * stride, 2 * dim) for _ in model.layers]

        # folded input map: x [N, C*K] -> [x~ | z of layer 1 | my + P x~]
        with torch.no_grad():
            wide = torch.float64
            whiten = pre.whiten_in.to(wide).T  # [CK, CK]
            shift = -pre.mean_in.to(wide) @ whiten
            blocks, biases = [whiten], [shift]
            if model.layers:
                first = model.layers[0]
                blocks.append(whiten @ first.weight_in.to(wide))
                biases.append(shift @ first.weight_in.to(wide) + first.bias.to(wide))
            predictor = pre.predictor.to(wide).T  # [CK, C]
            blocks.append(whiten @ predictor)
            biases.append(shift @ predictor + pre.mean_out.to(wide))
            self._in_weight = torch.cat(blocks, 1).to(dtype)
            self._in_bias = torch.cat(biases).to(dtype)
            self._split = (whiten.shape[1], blocks[1].shape[1] if model.layers else 0, self.channels)
            self._layers = [(layer.weight_in.detach().to(dtype), layer.bias.detach().to(dtype),
                             layer.weight_rec.detach().to(dtype), layer.cell_clip) for layer in model.layers]
            # one MCGSM (RIDE) or one univariate head per output channel (LosslessColourRIDE)
            heads = getattr(model, "heads", None)
            self.heads = [MCGSMTables(head, dtype) for head in heads] if heads is not None else None
            self.mcgsm = MCGSMTables(model.mcgsm, dtype) if heads is None else None
            self.whiten_out = pre.whiten_out.detach().to(dtype)
            self.colour_out = pre.colour_out.detach().to(dtype)
            self.log_jacobian = pre.log_jacobian.detach().to(dtype)

    def front(self, t: int) -> Front:
        """The cells of front t (0 <= t < num_fronts); empty when the grid is narrower than the skew."""
        lo = max(0, -(-(t - self.wp + 1) // self.skew))
        hi = min(self.hp - 1, t // self.skew)
        return Front(t, lo, hi, self._pixel_base[lo : hi + 1] + t, self._cell_base[lo : hi + 1] + t)

    @torch.no_grad()
    def hidden(self, front: Front) -> tuple[Tensor, Tensor]:
        """Top-layer states [B*n, D] (x~ when the model has no layers) and the linear prediction my + P x~
        [B*n, C] of the front's cells, from the canvas as it is now; advances the LSTM states."""
        b, ch, n = self.batch, self.inputs, front.size
        rows = slice(front.lo, front.hi + 1)
        index = (self._window_base[rows] + front.t).view(-1)
        x = self.flat.index_select(2, index).view(b, ch, n, -1)
        x = x.view(b * n, -1) if ch == 1 else x.permute(0, 2, 1, 3).reshape(b * n, -1)  # channel blocks
        if self.current:  # the pixel's own channels drawn before the outputs
            here = self.flat[:, : self.current].index_select(2, front.pixels)  # [B, current, n]
            x = torch.cat([x, here.permute(0, 2, 1).reshape(b * n, self.current)], 1)
        mapped = torch.addmm(self._in_bias, x, self._in_weight)
        k, dz, _ = self._split
        base = mapped[:, k + dz :]
        if not self._layers:
            return mapped[:, :k], base
        here = self._here_base[rows] + front.t
        both = (self._past_base[rows] + front.t).view(-1)  # (up, left) per cell
        hidden = mapped[:, k : k + dz]
        for layer, (w_in, bias, w_rec, clip), state in zip(range(len(self._layers)), self._layers, self.states,
                                                           strict=True):
            z = hidden if layer == 0 else torch.addmm(bias, hidden, w_in)
            hidden = self._cell(z, w_rec, state, both, here, b, n, clip)
        return hidden, base

    @staticmethod
    def _cell(z: Tensor, w_rec: Tensor, state: Tensor, both: Tensor, here: Tensor, b: int, n: int,
              clip: float) -> Tensor:
        """One spatial LSTM update of B*n cells (design §4, same gate order as `SpatialLSTM.step`; cells clipped to
        +-clip)."""
        d = w_rec.shape[0] // 2
        past = state.index_select(1, both).view(b * n, 2, 2 * d)  # [cell, (up, left), (h | c)]
        pre = torch.addmm(z, past[:, :, :d].reshape(b * n, 2 * d), w_rec)  # [h_up | h_left] @ W_rec
        pre[:, :d].tanh_()
        pre[:, d:].sigmoid_()
        cand, out_gate, in_gate, forget_up, forget_left = pre.split(d, 1)
        new = torch.empty_like(past[:, 0])  # (h | c)
        h, c = new[:, :d], new[:, d:]
        torch.mul(cand, in_gate, out=c)
        c.addcmul_(past[:, 1, d:], forget_left).addcmul_(past[:, 0, d:], forget_up).clamp_(-clip, clip)
        torch.mul(c, out_gate, out=h).tanh_()
        state.index_copy_(1, here, new.view(b, n, 2 * d))
        return h

    def write(self, front: Front, values: Tensor) -> None:
        """Store the front's pixel values [B*n, C] in the canvas."""
        b, ch, n = self.batch, self.channels, front.size
        self.flat[:, self.outputs].index_copy_(2, front.pixels, values.view(b, n, ch).permute(0, 2, 1))

    def read(self, front: Front) -> Tensor:
        """The canvas values [B*n, C] of the front's cells."""
        b, ch, n = self.batch, self.channels, front.size
        return self.flat[:, self.outputs].index_select(2, front.pixels).permute(0, 2, 1).reshape(b * n, ch)


class MCGSMTables:
    """The MCGSM's per-model products for one dtype, for the fast univariate (one-channel) paths."""

    def __init__(self, mcgsm: torch.nn.Module, dtype: torch.dtype) -> None:
        self.mcgsm = mcgsm
        self.univariate = mcgsm.dim_out == 1
        dtype = torch.promote_types(dtype, torch.float32)  # the MCGSM computes in float32 or better
        self.dtype = dtype
        d, c = mcgsm.dim_in, mcgsm.num_components
        self.num_features = mcgsm.num_features
        self.scales = mcgsm.scales.detach().to(dtype)  # alpha [C, S]
        if self.univariate:
            self.weights = torch.cat([mcgsm.features.detach(), mcgsm.predictors.detach().view(d, c)], 1).to(dtype)
            self.beta2_t = mcgsm.weights.detach().to(dtype).square().T.contiguous()  # [F, C]
            self.priors = mcgsm.priors.detach().to(dtype)  # eta [C, S]
            self.slope = self.scales.exp().mul(-0.5)  # [C, S], -exp(alpha)/2
            self.half_scales = 0.5 * self.scales

    def gate_and_means(self, hidden: Tensor) -> tuple[Tensor, Tensor]:
        """Unnormalised log gate [N, C, S] and expert means [N, C] (in y~ units) for hidden [N, D]."""
        zf = hidden.to(self.dtype) @ self.weights
        feats, means = zf[:, : self.num_features], zf[:, self.num_features :]
        energy = feats.square() @ self.beta2_t  # [N, C]
        return torch.addcmul(self.priors, energy[:, :, None], self.slope), means

    def sample(self, hidden: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """y~ [N, 1] drawn as `MCGSM.sample` draws it (same random numbers in the same order), with what
        `log_prob` needs: the gate [N, C, S], the means [N, C] and the gate's log normaliser [N]."""
        gate, means = self.gate_and_means(hidden)
        n, s = gate.shape[0], gate.shape[2]
        flat = gate.view(n, -1)
        shift = flat.amax(1, keepdim=True)
        cum = (flat - shift).exp_().cumsum_(1)
        log_norm = cum[:, -1].log().add_(shift[:, 0])
        u = standard_draws((n, 1), generator, hidden.device, self.dtype, normal=False) * cum[:, -1:]
        idx = torch.searchsorted(cum, u, right=True)[:, 0].clamp_(max=cum.shape[1] - 1)
        mean = means.gather(1, torch.div(idx, s, rounding_mode="floor")[:, None])
        eps = standard_draws((n, 1), generator, hidden.device, self.dtype, normal=True)
        std = self.scales.view(-1)[idx].mul(-0.5).exp_()
        return mean.addcmul_(std[:, None], eps), gate, means, log_norm

    def log_prob(self, gate: Tensor, means: Tensor, y_tilde: Tensor, log_norm: Tensor | None = None) -> Tensor:
        """ln p(y~ | h) [N] in nats from the gate [N, C, S], means [N, C], y~ [N, 1] and optionally the gate's
        log normaliser [N] (log sum exp of the gate)."""
        resid2 = (y_tilde - means).square_()  # [N, C]
        joint = torch.addcmul(gate, resid2[:, :, None], self.slope).add_(self.half_scales)
        n = gate.shape[0]
        if log_norm is None:
            log_norm = _logsumexp_rows(gate.view(n, -1))
        return _logsumexp_rows(joint.view(n, -1)).sub_(log_norm).sub_(_HALF_LOG_2PI)


def _logsumexp_rows(x: Tensor) -> Tensor:
    """log sum exp over dim 1 of finite x [N, J] -> [N]: torch.logsumexp's inf handling costs more than the sum."""
    shift = x.amax(1, keepdim=True)
    return (x - shift).exp_().sum(1).log_().add_(shift[:, 0])
