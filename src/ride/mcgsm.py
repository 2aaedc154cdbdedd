"""Factorized mixture of conditional Gaussian scale mixtures (MCGSM), design §5.

For a context h (dimension D) and an output y (dimension M), with C components, S scales and F features:

    gate:    p(c, s | h) ∝ exp(eta_cs - 0.5 * exp(alpha_cs) * sum_n beta_cn^2 (b_n^T h)^2)
    expert:  p(y | h, c, s) = N(y; A_c^T h, (exp(alpha_cs) L_c L_c^T)^-1)
    p(y | h) = sum_cs p(c, s | h) p(y | h, c, s)

For M = 1, L_c = 1 (the expert's variance is exp(-alpha_cs), design §5). For M > 1, L_c is a
lower-triangular Cholesky factor of the component's precision with diagonal exp(log-diagonal); its first
diagonal entry is fixed to 1 because alpha already carries the overall scale. The features b are shared by all
components (the factorisation).

All densities are in nats. Likelihood computations run in float32 or better, whatever the input dtype.
"""

import contextlib
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from . import mcgsm_kernels

_LOG_2PI = math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)


def standard_draws(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device,
                   dtype: torch.dtype, normal: bool) -> Tensor:
    """Standard normal (`normal`) or uniform [0, 1) draws of `shape` on `device`, taken from `generator`.

    Draws happen on the generator's own device, then move, so a CPU generator also drives GPU sampling. Every sampler
    of an MCGSM (`MCGSM.sample`, the skewed front's `MCGSMTables.sample`) draws through this function, so that the
    same generator gives the same numbers in the same order.
    """
    gen_device = generator.device if generator is not None else device
    fn = torch.randn if normal else torch.rand
    return fn(shape, generator=generator, device=gen_device, dtype=dtype).to(device)


def _log1mexp(x: Tensor) -> Tensor:
    """log(1 - exp(x)) for x <= 0, accurate at both ends (Maechler's switch at -ln 2)."""
    return torch.where(x > -_LOG_2, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def _log_ndtr_diff(a: Tensor, b: Tensor) -> Tensor:
    """log(Phi(b) - Phi(a)) for a <= b elementwise, without cancellation in either tail.

    For a > 0 both bounds lie in the upper tail, where Phi is close to 1; use
    Phi(b) - Phi(a) = Phi(-a) - Phi(-b) so both terms are small and log_ndtr keeps their relative precision.
    """
    flip = a > 0
    lo = torch.where(flip, -b, a)
    hi = torch.where(flip, -a, b)
    # hi = -inf means an empty interval at -inf; keep the arithmetic finite there and mask the result
    empty = hi == -math.inf
    hi = torch.where(empty, torch.zeros_like(hi), hi)
    lo = torch.where(empty, torch.zeros_like(lo), lo)
    log_hi = torch.special.log_ndtr(hi)
    result = log_hi + _log1mexp(torch.special.log_ndtr(lo) - log_hi)
    return result.masked_fill(empty, -math.inf)


def _spread(num: int, half_width: float, device: torch.device, dtype: torch.dtype) -> Tensor:
    """num evenly spaced offsets over [-half_width, half_width] ([0] when num == 1), [num]."""
    if num == 1:
        return torch.zeros(1, device=device, dtype=dtype)
    return torch.linspace(-half_width, half_width, num, device=device, dtype=dtype)


def _autocast_off(device: torch.device) -> contextlib.AbstractContextManager:
    """Disable autocast on `device`, so reductions stay in float32 or better under mixed precision."""
    if torch.is_autocast_enabled(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


# ---------------------------------------------------------------------------------------------- fused dim_out == 1
#
# For dim_out == 1, with gate energy E_nc = sum_f beta_cf^2 (b_f^T h_n)^2, residual r_nc = y_n - a_c^T h_n and
# k_cs = -exp(alpha_cs) / 2, the gate's and the joint's log-weights are
#     G_ncs = eta_cs + k_cs E_nc,    J_ncs = eta_cs + alpha_cs / 2 + k_cs (E_nc + r_nc^2),
# and log p(y_n | h_n) = LSE_cs(J_n) - LSE_cs(G_n) - ln(2 pi) / 2. The reference builds both [N, C, S] tensors and
# lets autograd differentiate them; the fused path below walks the rows in blocks small enough to stay in cache,
# never stores an [N, C, S] tensor, and differentiates by hand: with softmax weights w_G, w_J and incoming
# gradient g,
#     dE_nc = g_n sum_s k_cs (w_J - w_G)_ncs,    d(r^2)_nc = g_n sum_s k_cs w_J,ncs,
#     d eta_cs = sum_n g_n (w_J - w_G)_ncs,
#     d alpha_cs = sum_n g_n w_J,ncs / 2 + k_cs sum_n g_n ((E + r^2)_nc w_J,ncs - E_nc w_G,ncs),
# then the chain rule through E and r to h, y, beta, b and A. The per-row contractions over s do not depend on g
# and are kept from the forward ([N, C] each); the sums over n are computed in the forward for g = 1, which
# serves any uniform g (a sum or mean of log p, as in training), and are recomputed block by block otherwise.
# The log-weights are held in log2 units (exp2 is several times faster than exp on CPU) and scale-major
# [rows, S, C], so that the elementwise passes vectorise over the component axis.

_LOG2_E = 1.0 / _LOG_2
# rows per block: this many (scale, component) entries per row block of each of the gate and the joint; on CPU
# small enough that a block's passes run in cache, elsewhere large, since there every pass costs a kernel launch
_BLOCK_ENTRIES = 1 << 20
_BLOCK_ENTRIES_ACCELERATOR = 1 << 24


class _UnivariateParams:
    """Per-call constants of the fused path, from eta, alpha [C, S], beta [C, F], b [D, F], A [D, C].

    The log-weights of a block of rows are held together as [rows, 2, S, C]: index 0 the gate, 1 the joint.
    """

    def __init__(self, eta: Tensor, alpha: Tensor, beta: Tensor, features: Tensor, predictors: Tensor) -> None:
        self.C, self.S = eta.shape
        self.F = features.shape[1]
        eta_t, alpha_t = eta.T, alpha.T
        self.k = alpha_t.exp().mul_(-0.5).contiguous()  # [S, C], k_cs in nats
        self.slope = self.k * _LOG2_E  # [S, C], k_cs in log2 units
        self.bias = torch.stack([eta_t, eta_t + 0.5 * alpha_t]).mul_(_LOG2_E)  # [2, S, C], log2 units
        self.weights = torch.cat([features, predictors], 1)  # [D, F + C]: features, then means
        self.beta2_t = beta.square().T.contiguous()  # [F, C]
        entries = _BLOCK_ENTRIES if eta.device.type == "cpu" else _BLOCK_ENTRIES_ACCELERATOR
        self.rows = max(1, entries // (self.S * self.C))


class _Block:
    """Reusable buffers for a block of at most `rows` rows."""

    def __init__(self, like: Tensor, rows: int, prm: _UnivariateParams, totals: bool) -> None:
        C, S, F = prm.C, prm.S, prm.F
        self.z = like.new_empty(rows, F + C)
        self.p2 = like.new_empty(rows, F)
        self.resid = like.new_empty(rows, C)
        self.values = like.new_empty(rows, 2, C)
        self.logw = like.new_empty(rows, 2, S, C)
        self.scratch = like.new_empty(rows, 2, S, C) if totals else self.logw

    def values_of(self, prm: _UnivariateParams, features: Tensor, resid: Tensor) -> Tensor:
        """[n, 2, C]: the gate energy E = (P^2) beta^2 and E + r^2, from the features P [n, F] and r [n, C]."""
        n = features.shape[0]
        values = self.values[:n]
        p2 = torch.mul(features, features, out=self.p2[:n])
        energy = torch.mm(p2, prm.beta2_t, out=values[:, 0])
        torch.addcmul(energy, resid, resid, out=values[:, 1])
        return values

    def log_weights(self, prm: _UnivariateParams, values: Tensor) -> Tensor:
        """[n, 2, S, C]: log2 of the unnormalised gate and joint weights (the latter less 0.5 ln 2pi)."""
        return torch.addcmul(prm.bias, values[:, :, None, :], prm.slope, out=self.logw[:values.shape[0]])


def _accumulate_totals(totals: Tensor, weights: Tensor, values: Tensor, row_scale: Tensor | None,
                       scratch: Tensor) -> None:
    """totals[0] += sum_n g_n weights_ntsc; totals[1] += sum_n g_n values_ntc weights_ntsc (g = row_scale or 1)."""
    n = weights.shape[0]
    if row_scale is None:
        totals[0].add_(weights.sum(0))
    else:
        totals[0].view(-1).addmv_(weights.view(n, -1).T, row_scale)
        values = values * row_scale[:, None, None]
    totals[1].add_(torch.mul(weights, values[:, :, None, :], out=scratch).sum(0))


def _univariate_forward(h: Tensor, y: Tensor, eta: Tensor, alpha: Tensor, beta: Tensor, features: Tensor,
                        predictors: Tensor, need_backward: bool = False,
                        need_totals: bool = False) -> tuple[Tensor, dict[str, Tensor]]:
    """log p(y | h) [N] for dim_out == 1 (predictors is A as [D, C]), and what the backward needs.

    With need_backward, the second result holds P = h b [N, F], r [N, C], lse2 [N, 2] (log2 of the gate's and
    the joint's normalisers), joint_k = sum_s k w_J and diff_k = sum_s k (w_J - w_G) ([N, C] each); with
    need_totals also totals [2, 2, S, C]: sum_n w and sum_n V w for the gate (V = E) and the joint (V = E + r^2).
    """
    prm = _UnivariateParams(eta, alpha, beta, features, predictors)
    N, C, S, F = h.shape[0], prm.C, prm.S, prm.F
    lse2 = h.new_empty(N, 2)
    saved: dict[str, Tensor] = {}
    if need_backward:
        saved.update(features=h.new_empty(N, F), resid=h.new_empty(N, C), lse2=lse2,
                     joint_k=h.new_empty(N, C), diff_k=h.new_empty(N, C))
        if need_totals:
            saved["totals"] = h.new_zeros(2, 2, S, C)
    fused = mcgsm_kernels.usable(h)  # before and after the exponentials: compiled loops
    # the torch passes' scratch and contraction buffers: the compiled loops need neither
    blk = _Block(h, min(prm.rows, N), prm, need_totals and not fused)
    contraction = h.new_empty(min(prm.rows, N), 2, C) if need_backward and not fused else None
    lowest = torch.finfo(h.dtype).min
    if fused:
        acc = mcgsm_kernels.totals_buffer(S, C)
        one = np.ones((), dtype=torch.empty((), dtype=h.dtype).numpy().dtype)[()]
        unused = np.empty((0, 0), dtype=one.dtype)
        shift_buf = h.new_empty(min(prm.rows, N), 2)
        bias_np, slope_np, k_np = (t.detach().numpy() for t in (prm.bias, prm.slope, prm.k))
        lowest_np = one.dtype.type(lowest)
    for start in range(0, N, prm.rows):
        stop = min(N, start + prm.rows)
        n = stop - start
        rows = slice(start, stop)
        z = torch.mm(h[rows], prm.weights, out=blk.z[:n])
        feats = saved["features"][rows].copy_(z[:, :F]) if need_backward else z[:, :F]
        resid = torch.sub(y[rows], z[:, F:], out=saved["resid"][rows] if need_backward else blk.resid[:n])
        values = blk.values_of(prm, feats, resid)
        if fused:
            logw, shift = blk.logw[:n], shift_buf[:n]
            mcgsm_kernels.log_weights(values.numpy(), bias_np, slope_np, logw.numpy(), shift.numpy(), lowest_np,
                                      False)
            logw.exp2_()  # unnormalised weights
            mcgsm_kernels.after_exp2(
                logw.numpy(), shift.numpy(), k_np, values.numpy(), lse2[rows].numpy(),
                saved["joint_k"][rows].numpy() if need_backward else unused,
                saved["diff_k"][rows].numpy() if need_backward else unused, acc, need_backward, need_totals, one)
            continue
        logw = blk.log_weights(prm, values)
        flat = logw.view(n, 2, S * C)
        # a row of -inf only (infinite energy) keeps a finite shift, so its normaliser is 0, not NaN
        shift = flat.amax(2).clamp_(min=lowest)
        logw.sub_(shift[:, :, None, None]).exp2_()  # unnormalised weights
        total = flat.sum(2)
        torch.log2(total, out=lse2[rows]).add_(shift)
        if not need_backward:
            continue
        logw.mul_(total.reciprocal_()[:, :, None, None])  # the softmax weights
        contracted = contraction[:n]
        torch.mul(logw[:, :, 0], prm.k[0], out=contracted)
        for s in range(1, S):
            contracted.addcmul_(logw[:, :, s], prm.k[s])
        saved["joint_k"][rows].copy_(contracted[:, 1])
        torch.sub(contracted[:, 1], contracted[:, 0], out=saved["diff_k"][rows])
        if need_totals:
            _accumulate_totals(saved["totals"], logw, values, None, blk.scratch[:n])
    if fused and need_backward and need_totals:
        saved["totals"].add_(torch.from_numpy(acc).to(h.dtype))
    log_prob = (lse2[:, 1] - lse2[:, 0]).mul_(_LOG_2).sub_(0.5 * _LOG_2PI)
    return log_prob, saved


class _UnivariateLogProb(torch.autograd.Function):
    """The fused log p(y | h) for dim_out == 1 with its hand-written backward (see the notes above)."""

    _SAVED = ("features", "resid", "lse2", "joint_k", "diff_k", "totals")

    @staticmethod
    def forward(ctx: Any, h: Tensor, y: Tensor, eta: Tensor, alpha: Tensor, beta: Tensor, features: Tensor,
                predictors: Tensor) -> Tensor:
        need_totals = ctx.needs_input_grad[2] or ctx.needs_input_grad[3]
        log_prob, saved = _univariate_forward(h, y, eta, alpha, beta, features, predictors, need_backward=True,
                                              need_totals=need_totals)
        ctx.save_for_backward(h, eta, alpha, beta, features, predictors,
                              *(saved.get(name) for name in _UnivariateLogProb._SAVED))
        return log_prob

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        h, eta, alpha, beta, features, predictors, *rest = ctx.saved_tensors
        saved = dict(zip(_UnivariateLogProb._SAVED, rest, strict=True))
        need_h, need_y, need_eta, need_alpha, need_beta, need_b, need_a = ctx.needs_input_grad
        prm = _UnivariateParams(eta, alpha, beta, features, predictors)
        N, D, C, F = h.shape[0], h.shape[1], prm.C, prm.F
        need_totals = need_eta or need_alpha
        uniform = N == 0 or bool((grad == grad[0]).all())
        recompute = need_totals and not uniform
        grad = grad if uniform else grad.contiguous()
        need_chain = need_h or need_y or need_beta or need_b or need_a
        d_h = h.new_empty(N, D) if need_h else None
        d_y = h.new_empty(N, 1) if need_y else None
        d_beta2 = h.new_zeros(C, F)
        d_w = h.new_zeros(D, F + C)
        totals = h.new_zeros(2, 2, prm.S, C) if recompute else None
        beta2_x2 = 2.0 * prm.beta2_t.T  # [C, F]
        blk = _Block(h, min(prm.rows, N), prm, recompute)
        d_energy_buf = h.new_empty(min(prm.rows, N), C)
        for start in range(0, N if need_chain or recompute else 0, prm.rows):
            stop = min(N, start + prm.rows)
            n = stop - start
            rows = slice(start, stop)
            feats, resid = saved["features"][rows], saved["resid"][rows]
            g = grad[:1].sum() if uniform else grad[rows, None]
            if need_chain:
                d_energy = torch.mul(saved["diff_k"][rows], g, out=d_energy_buf[:n])
                d_z = blk.z[:n]
                d_means = torch.mul(saved["joint_k"][rows], resid, out=d_z[:, F:]).mul_(-2.0 * g)
                if need_y:
                    torch.sum(d_means, 1, keepdim=True, out=d_y[rows]).neg_()
                if need_beta:
                    d_beta2.addmm_(d_energy.T, torch.mul(feats, feats, out=blk.p2[:n]))
                if need_h or need_b or need_a:
                    torch.mul(torch.mm(d_energy, beta2_x2, out=blk.p2[:n]), feats, out=d_z[:, :F])
                    if need_h:
                        torch.mm(d_z, prm.weights.T, out=d_h[rows])
                    if need_b or need_a:
                        d_w.addmm_(h[rows].T, d_z)
            if recompute:
                values = blk.values_of(prm, feats, resid)
                if mcgsm_kernels.usable(h):  # the weights as the forward's compiled loop rounded them
                    logw = blk.logw[:n]
                    lse2 = saved["lse2"][rows].numpy()
                    mcgsm_kernels.log_weights(values.numpy(), prm.bias.numpy(), prm.slope.numpy(), logw.numpy(),
                                              lse2, lse2.dtype.type(0), True)
                    logw.exp2_()  # the softmax weights
                else:
                    logw = blk.log_weights(prm, values)
                    logw.sub_(saved["lse2"][rows, :, None, None]).exp2_()  # the softmax weights
                _accumulate_totals(totals, logw, values, grad[rows], blk.scratch[:n])
        d_eta = d_alpha = None
        if need_totals:
            if not recompute:
                totals = saved["totals"] * grad[:1].sum()
            (gate_sum, joint_sum), (gate_energy, joint_sq) = totals
            d_eta = (joint_sum - gate_sum).T
            d_alpha = (0.5 * joint_sum + prm.k * (joint_sq - gate_energy)).T
        d_beta = d_beta2.mul_(beta).mul_(2.0) if need_beta else None
        return d_h, d_y, d_eta, d_alpha, d_beta, d_w[:, :F] if need_b else None, d_w[:, F:] if need_a else None


class MCGSM(nn.Module):
    """Factorized mixture of conditional Gaussian scale mixtures p(y | h).

    Parameters (D = dim_in, M = dim_out, C = num_components, S = num_scales, F = num_features):
        priors      eta    [C, S]   unnormalised log gate weights
        scales      alpha  [C, S]   log precision scale of each expert
        weights     beta   [C, F]   per-component weights of the shared features
        features    b      [D, F]   shared gate features
        predictors  A      [D, C, M] expert means A_c^T h
        cholesky_log_diag  [C, M-1] (M > 1 only) log of diagonal entries 2..M of L_c
        cholesky_lower     [C, M(M-1)/2] (M > 1 only) strictly-lower entries of L_c, row-major
    The constructor arguments are the whole configuration (see `config`).
    """

    def __init__(self, dim_in: int, dim_out: int = 1, num_components: int = 8, num_scales: int = 4,
                 num_features: int | None = None) -> None:
        super().__init__()
        if num_features is None:
            num_features = dim_in
        for name, value in (("dim_in", dim_in), ("dim_out", dim_out), ("num_components", num_components),
                            ("num_scales", num_scales), ("num_features", num_features)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, found {value!r}")
        self.dim_in = dim_in
        self.dim_out = dim_out
        self.num_components = num_components
        self.num_scales = num_scales
        self.num_features = num_features
        C, S, F, D, M = num_components, num_scales, num_features, dim_in, dim_out
        self.priors = nn.Parameter(torch.empty(C, S))
        self.scales = nn.Parameter(torch.empty(C, S))
        self.weights = nn.Parameter(torch.empty(C, F))
        self.features = nn.Parameter(torch.empty(D, F))
        self.predictors = nn.Parameter(torch.empty(D, C, M))
        if M > 1:
            self.cholesky_log_diag = nn.Parameter(torch.empty(C, M - 1))
            self.cholesky_lower = nn.Parameter(torch.empty(C, M * (M - 1) // 2))
        self.reset_parameters()

    @property
    def config(self) -> dict[str, int]:
        """Constructor arguments; `MCGSM(**model.config)` rebuilds the architecture."""
        return {"dim_in": self.dim_in, "dim_out": self.dim_out, "num_components": self.num_components,
                "num_scales": self.num_scales, "num_features": self.num_features}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config.items())

    # ------------------------------------------------------------------ initialisation

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Data-independent initialisation, sized for inputs and outputs of roughly unit scale (as in RIDE).

        eta = 0; alpha = linspace(-1, 1) over scales (+ 0.1 noise); beta ~ 0.5 N(0, 1/F); b ~ N(0, 1/D);
        A ~ 0.01 N(0, 1/D); L_c = identity. Draws from `generator` (torch's default RNG when None).
        """
        C, S, F, D, M = self.num_components, self.num_scales, self.num_features, self.dim_in, self.dim_out
        device, dtype = self.priors.device, self.priors.dtype

        def randn(*shape: int) -> Tensor:
            return standard_draws(shape, generator, device, dtype, normal=True)

        offsets = _spread(S, 1.0, device, dtype)
        self.priors.zero_()
        self.scales.copy_(offsets + 0.1 * randn(C, S))
        self.weights.copy_(0.5 * randn(C, F) / math.sqrt(F))
        self.features.copy_(randn(D, F) / math.sqrt(D))
        self.predictors.copy_(0.01 * randn(D, C, M) / math.sqrt(D))
        if M > 1:
            self.cholesky_log_diag.zero_()
            self.cholesky_lower.zero_()

    @torch.no_grad()
    def initialize(self, inputs: Tensor, outputs: Tensor, generator: torch.Generator | None = None) -> None:
        """Data-dependent initialisation from the least-squares linear predictor.

        inputs [N, dim_in], outputs [N, dim_out]. Every component starts at the (lightly ridged) least-squares
        predictor plus a perturbation worth ~0.1 residual std; alpha spreads 3 nats around the log residual
        precision; L_c is the normalised Cholesky factor of the residual precision; eta = 0; features and
        weights are random, scaled so that the gate's energy terms start at O(0.1) in any units.
        """
        self._check(inputs, "inputs", self.dim_in)
        self._check(outputs, "outputs", self.dim_out, num_rows=inputs.shape[0])
        C, S, F, D, M = self.num_components, self.num_scales, self.num_features, self.dim_in, self.dim_out
        device = self.priors.device
        # the normal equations of raw-pixel neighbourhoods are badly conditioned: solve them in float64
        ls_dtype = torch.float64 if device.type != "mps" else torch.float32
        h = inputs.to(device=device, dtype=ls_dtype)
        y = outputs.to(device=device, dtype=ls_dtype)
        N = h.shape[0]
        eye_d = torch.eye(D, device=device, dtype=ls_dtype)
        eye_m = torch.eye(M, device=device, dtype=ls_dtype)
        eps = torch.finfo(ls_dtype).eps
        gram = h.T @ h / N
        ridge = 1e-6 * gram.diagonal().mean() + eps
        lin = torch.linalg.solve(gram + ridge * eye_d, h.T @ y / N)  # [D, M]
        resid = y - h @ lin
        cov = resid.T @ resid / N
        cov = cov + (1e-6 * cov.diagonal().mean() + eps) * eye_m  # a perfect linear fit must not give inf
        chol = torch.linalg.cholesky(torch.linalg.inv(cov))  # precision = chol chol^T
        alpha0 = 2.0 * torch.log(chol[0, 0])
        resid_std = torch.exp(-0.5 * alpha0)
        h_rms = h.square().mean().sqrt().clamp_min(eps)

        def randn(*shape: int) -> Tensor:
            return standard_draws(shape, generator, device, ls_dtype, normal=True)

        offsets = _spread(S, 1.5, device, ls_dtype)
        perturb = 0.1 * cov.diagonal().sqrt() / (math.sqrt(D) * h_rms)  # [M]
        self.predictors.copy_(lin[:, None, :] + perturb * randn(D, C, M))
        self.scales.copy_(alpha0 + offsets + 0.1 * randn(C, S))
        self.priors.zero_()
        self.features.copy_(randn(D, F) / (math.sqrt(D) * h_rms))
        self.weights.copy_(0.5 * resid_std * randn(C, F) / math.sqrt(F))
        if M > 1:
            unit = chol / chol[0, 0]
            rows, cols = torch.tril_indices(M, M, offset=-1, device=device)
            self.cholesky_log_diag.copy_(unit.diagonal()[1:].log().expand(C, M - 1))
            self.cholesky_lower.copy_(unit[rows, cols].expand(C, M * (M - 1) // 2))

    # ------------------------------------------------------------------ checks

    def _check(self, x: Any, name: str, width: int, num_rows: int | None = None,
               allow_inf: bool = False) -> None:
        """Raise ValueError unless x is a finite floating tensor of shape [num_rows, width]."""
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, found {type(x).__name__}")
        if not x.is_floating_point():
            raise ValueError(f"{name} must have a floating-point dtype, found {x.dtype}")
        if x.ndim != 2:
            raise ValueError(f"{name} must have rank 2, shape [N, {width}]; found shape {tuple(x.shape)}")
        if x.shape[1] != width:
            raise ValueError(f"{name} must have shape [N, {width}], found shape {tuple(x.shape)}")
        if num_rows is not None and x.shape[0] != num_rows:
            raise ValueError(f"{name} has {x.shape[0]} rows but inputs has {num_rows}")
        bad = torch.isnan(x) if allow_inf else ~torch.isfinite(x)
        if bool(bad.any()):
            kind = "NaN" if allow_inf else "non-finite (NaN or inf)"
            raise ValueError(f"{name} contains {int(bad.sum())} {kind} values")

    def _check_univariate(self, method: str) -> None:
        if self.dim_out != 1:
            raise ValueError(f"{method} needs dim_out == 1, found dim_out == {self.dim_out}")

    # ------------------------------------------------------------------ computation (no checks)

    def _compute_dtype(self, x: Tensor) -> torch.dtype:
        """float32 or better: the promotion of the parameters', the input's and float32's dtypes."""
        return torch.promote_types(torch.promote_types(self.priors.dtype, x.dtype), torch.float32)

    def _cholesky(self, dtype: torch.dtype) -> Tensor:
        """L_c, [C, M, M] lower triangular with L_c[0, 0] = 1 (only for M > 1)."""
        C, M = self.num_components, self.dim_out
        log_diag = torch.cat([self.cholesky_log_diag.new_zeros(C, 1), self.cholesky_log_diag], dim=1)
        chol = torch.diag_embed(log_diag.to(dtype).exp())
        rows, cols = torch.tril_indices(M, M, offset=-1, device=chol.device)
        chol[:, rows, cols] = self.cholesky_lower.to(dtype)
        return chol

    def _gate_logits(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """Unnormalised log gate [N, C, S] and the feature energy sum_n beta_cn^2 (b_n^T h)^2, [N, C]."""
        dtype = h.dtype
        energy = (h @ self.features.to(dtype)).square() @ self.weights.to(dtype).square().T  # (N, C)
        logits = self.priors.to(dtype) - 0.5 * self.scales.to(dtype).exp() * energy[:, :, None]
        return logits, energy

    def _gate_log_probs(self, h: Tensor) -> Tensor:
        logits, _ = self._gate_logits(h)
        return logits - torch.logsumexp(logits.flatten(1), dim=1)[:, None, None]

    def _means(self, h: Tensor) -> Tensor:
        """Expert means A_c^T h, [N, C, M]."""
        D, C, M = self.dim_in, self.num_components, self.dim_out
        return (h @ self.predictors.to(h.dtype).reshape(D, C * M)).view(-1, C, M)

    def log_prob_unchecked(self, inputs: Tensor, outputs: Tensor) -> Tensor:
        """`log_prob` without the argument checks, for callers that built inputs [N, dim_in] and outputs
        [N, dim_out] themselves (the models' likelihood and sampling loops): log p(y | h) [N] in nats, the fused
        path for dim_out == 1, the reference otherwise."""
        if self.dim_out != 1:
            return self._log_prob_reference(inputs, outputs)
        dtype = self._compute_dtype(inputs)
        with _autocast_off(inputs.device):
            D, C = self.dim_in, self.num_components
            args = (inputs.to(dtype), outputs.to(dtype), self.priors.to(dtype), self.scales.to(dtype),
                    self.weights.to(dtype), self.features.to(dtype), self.predictors.to(dtype).view(D, C))
            if torch.is_grad_enabled() and any(a.requires_grad for a in args):
                return _UnivariateLogProb.apply(*args)
            return _univariate_forward(*args)[0]

    def _log_prob_reference(self, inputs: Tensor, outputs: Tensor) -> Tensor:
        """log p(y | h) [N] by plain autograd over [N, C, S] tensors, for any dim_out (the reference)."""
        dtype = self._compute_dtype(inputs)
        with _autocast_off(inputs.device):
            h, y = inputs.to(dtype), outputs.to(dtype)
            M = self.dim_out
            alpha = self.scales.to(dtype)
            logits, energy = self._gate_logits(h)
            resid = y[:, None, :] - self._means(h)  # (N, C, M)
            if M == 1:
                sq = resid[..., 0].square()  # (N, C)
                log_det = torch.zeros_like(alpha[:, :1])
            else:
                # ||L_c^T r||^2 is the Mahalanobis term of the precision L_c L_c^T (before exp(alpha))
                sq = torch.einsum("nci,cij->ncj", resid, self._cholesky(dtype)).square().sum(-1)
                log_det = self.cholesky_log_diag.to(dtype).sum(-1, keepdim=True)  # (C, 1), log|L_c|
            # log gate + log expert share the exp(alpha) factor: gate energy acts like extra squared residual
            joint = (self.priors.to(dtype) + 0.5 * M * alpha + log_det
                     - 0.5 * alpha.exp() * (energy + sq)[:, :, None])  # (N, C, S)
            return (torch.logsumexp(joint.flatten(1), dim=1) - torch.logsumexp(logits.flatten(1), dim=1)
                    - 0.5 * M * _LOG_2PI)

    def _standardize(self, h: Tensor, y: Tensor) -> Tensor:
        """(y - mean_c) * exp(alpha_cs / 2), [N, C, S], for dim_out == 1; y is [N, 1]."""
        return (y - self._means(h)[..., 0])[:, :, None] * (0.5 * self.scales.to(h.dtype)).exp()

    # ------------------------------------------------------------------ public densities

    def log_prob(self, inputs: Tensor, outputs: Tensor) -> Tensor:
        """log p(y | h) in nats. inputs [N, dim_in], outputs [N, dim_out] -> [N] (float32 or better)."""
        self._check(inputs, "inputs", self.dim_in)
        self._check(outputs, "outputs", self.dim_out, num_rows=inputs.shape[0])
        return self.log_prob_unchecked(inputs, outputs)

    def gate_log_probs(self, inputs: Tensor) -> Tensor:
        """log p(c, s | h). inputs [N, dim_in] -> [N, C, S]."""
        self._check(inputs, "inputs", self.dim_in)
        dtype = self._compute_dtype(inputs)
        with _autocast_off(inputs.device):
            return self._gate_log_probs(inputs.to(dtype))

    def cdf(self, inputs: Tensor, outputs: Tensor) -> Tensor:
        """P(Y <= y | h) for dim_out == 1. inputs [N, dim_in], outputs [N, 1] (may be +-inf) -> [N]."""
        self._check_univariate("cdf")
        self._check(inputs, "inputs", self.dim_in)
        self._check(outputs, "outputs", 1, num_rows=inputs.shape[0], allow_inf=True)
        dtype = self._compute_dtype(inputs)
        with _autocast_off(inputs.device):
            h, y = inputs.to(dtype), outputs.to(dtype)
            log_terms = self._gate_log_probs(h) + torch.special.log_ndtr(self._standardize(h, y))
            return torch.logsumexp(log_terms.flatten(1), dim=1).exp()

    def log_prob_interval(self, inputs: Tensor, lower: Tensor, upper: Tensor) -> Tensor:
        """ln P(lower < Y <= upper | h) for dim_out == 1, accurate far in either tail.

        inputs [N, dim_in], lower and upper [N, 1] (may be +-inf, lower <= upper) -> [N] nats.
        """
        self._check_univariate("log_prob_interval")
        self._check(inputs, "inputs", self.dim_in)
        self._check(lower, "lower", 1, num_rows=inputs.shape[0], allow_inf=True)
        self._check(upper, "upper", 1, num_rows=inputs.shape[0], allow_inf=True)
        if bool((lower > upper).any()):
            num_bad = int((lower > upper).sum())
            raise ValueError(f"lower must be <= upper, found lower > upper in {num_bad} rows")
        dtype = self._compute_dtype(inputs)
        with _autocast_off(inputs.device):
            h = inputs.to(dtype)
            a = self._standardize(h, lower.to(dtype))
            b = self._standardize(h, upper.to(dtype))
            log_terms = self._gate_log_probs(h) + _log_ndtr_diff(a, b)
            return torch.logsumexp(log_terms.flatten(1), dim=1)

    @torch.no_grad()
    def sample(self, inputs: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Draw y ~ p(y | h). inputs [N, dim_in] -> [N, dim_out] (float32 or better).

        (c, s) comes from the gate by inverse-CDF sampling with one uniform per row, then
        y = A_c^T h + exp(-alpha_cs / 2) L_c^-T eps with eps ~ N(0, I); all randomness from `generator`.
        """
        self._check(inputs, "inputs", self.dim_in)
        dtype = self._compute_dtype(inputs)
        with _autocast_off(inputs.device):
            h = inputs.to(dtype)
            N, S, M, device = h.shape[0], self.num_scales, self.dim_out, h.device
            log_gate = self._gate_log_probs(h).flatten(1)  # (N, C*S)
            cum = (log_gate - log_gate.amax(1, keepdim=True)).exp().cumsum(1)
            u = standard_draws((N, 1), generator, device, dtype, normal=False) * cum[:, -1:]
            idx = torch.searchsorted(cum, u, right=True)[:, 0].clamp_(max=cum.shape[1] - 1)  # (N,)
            comp = torch.div(idx, S, rounding_mode="floor")
            mean = self._means(h)[torch.arange(N, device=device), comp]  # (N, M)
            eps = standard_draws((N, M), generator, device, dtype, normal=True)
            if M > 1:
                chol_t = self._cholesky(dtype)[comp].transpose(-1, -2)  # (N, M, M), upper
                eps = torch.linalg.solve_triangular(chol_t, eps[:, :, None], upper=True)[:, :, 0]
            std = (-0.5 * self.scales.to(dtype).flatten()[idx]).exp()
            return mean + std[:, None] * eps

    # ------------------------------------------------------------------ fitting

    def _mean_nll(self, h: Tensor, y: Tensor, batch_size: int | None, backward: bool) -> float:
        """Mean NLL (nats) over all rows, in chunks of batch_size; with backward, accumulates its gradient."""
        N = h.shape[0]
        step = batch_size or N
        total = torch.zeros((), dtype=torch.float64, device=h.device)
        for start in range(0, N, step):
            with torch.set_grad_enabled(backward):
                nll = -self.log_prob_unchecked(h[start:start + step], y[start:start + step]).sum() / N
                if backward:
                    nll.backward()
            total = total + nll.detach().double()
        return float(total)

    def fit(self, inputs: Tensor, outputs: Tensor, val_inputs: Tensor | None = None,
            val_outputs: Tensor | None = None, max_iter: int = 1000, val_every: int = 5, patience: int = 5,
            batch_size: int | None = None, callback: Callable[[dict[str, Any]], None] | None = None,
            init: bool = True, max_seconds: float | None = None,
            generator: torch.Generator | None = None) -> dict[str, Any]:
        """Full-batch L-BFGS on the mean NLL (nats) with early stopping on validation data.

        inputs [N, dim_in], outputs [N, dim_out]; optional val_inputs [V, dim_in], val_outputs [V, dim_out].
        With `init`, calls `initialize` first (random parts drawn from `generator`). The validation NLL is
        measured before the first iteration, every `val_every` iterations and after the last; training
        stops after `patience` evaluations without improvement, and the best validated parameters return.
        `batch_size` only chunks the evaluation to bound memory; the objective stays full-batch.
        `callback(dict)` runs after every iteration with "iteration", "train_nll_nats", "elapsed_s" and, when
        measured, "val_nll_nats".

        Returns {"train_nll_nats": [value at iteration 0, 1, ...], "val_nll_nats": [...],
        "val_iterations": [...], "iterations": int, "best_val_nll_nats": float | None,
        "best_iteration": int | None, "stop_reason": str}.
        """
        self._check(inputs, "inputs", self.dim_in)
        self._check(outputs, "outputs", self.dim_out, num_rows=inputs.shape[0])
        if inputs.shape[0] == 0:
            raise ValueError("fit needs at least one training pair, found inputs of shape "
                             f"{tuple(inputs.shape)}")
        if (val_inputs is None) != (val_outputs is None):
            raise ValueError("val_inputs and val_outputs must be given together")
        has_val = val_inputs is not None
        if has_val:
            self._check(val_inputs, "val_inputs", self.dim_in)
            self._check(val_outputs, "val_outputs", self.dim_out, num_rows=val_inputs.shape[0])
        for name, value, minimum in (("max_iter", max_iter, 0), ("val_every", val_every, 1),
                                     ("patience", patience, 1)):
            if not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, found {value!r}")
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size must be None or a positive integer, found {batch_size!r}")

        if init:
            self.initialize(inputs, outputs, generator=generator)
        dtype = self._compute_dtype(inputs)
        device = self.priors.device
        h, y = inputs.to(device=device, dtype=dtype), outputs.to(device=device, dtype=dtype)
        if has_val:
            val_h = val_inputs.to(device=device, dtype=dtype)
            val_y = val_outputs.to(device=device, dtype=dtype)
        params = [p for p in self.parameters() if p.requires_grad]
        # one L-BFGS iteration per step() so that validation, callbacks and timing run between iterations;
        # torch caps the line search at max_eval - 1 evaluations, and the default max_eval for max_iter=1 is 1
        optimizer = torch.optim.LBFGS(params, lr=1.0, max_iter=1, max_eval=1 + 25,
                                      line_search_fn="strong_wolfe")

        # L-BFGS re-evaluates the loss where its line search just ended; caching the last evaluation by
        # parameter value saves that repeat (about half of all evaluations).
        cache: dict[str, Any] = {}

        def evaluate() -> float:
            x = torch.cat([p.detach().reshape(-1) for p in params])
            if cache and torch.equal(cache["x"], x):
                for p, g in zip(params, cache["grads"], strict=True):
                    p.grad = g.clone()
                return cache["loss"]
            for p in params:
                p.grad = None
            loss = self._mean_nll(h, y, batch_size, backward=True)
            grads = [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for p in params]
            cache.update(x=x, loss=loss, grads=grads)
            return loss

        def closure() -> Tensor:
            loss = evaluate()
            if not math.isfinite(loss):
                # torch's strong-Wolfe search extrapolates on NaN; a huge finite loss makes it backtrack
                for p in params:
                    p.grad = torch.zeros_like(p)
                loss = 1e30
            return torch.tensor(loss, dtype=torch.float64)

        def snapshot() -> dict[str, Tensor]:
            return {k: v.detach().clone() for k, v in self.state_dict().items()}

        start_time = time.monotonic()
        train_nll = [evaluate()]
        val_nll: list[float] = []
        val_iterations: list[int] = []
        best: dict[str, Any] = {"nll": None, "iteration": None, "state": None, "bad": 0}

        def validate(iteration: int) -> float:
            value = self._mean_nll(val_h, val_y, batch_size, backward=False)
            val_nll.append(value)
            val_iterations.append(iteration)
            if best["nll"] is None or value < best["nll"]:
                best.update(nll=value, iteration=iteration, state=snapshot(), bad=0)
            else:
                best["bad"] += 1
            return value

        if has_val:
            validate(0)
        last_good = snapshot()
        iterations, stop_reason = 0, "max_iter"
        if not math.isfinite(train_nll[0]):
            stop_reason = "non_finite"
            max_iter = 0
        for it in range(1, max_iter + 1):
            state = optimizer.state[params[0]]
            n_before = state.get("n_iter", 0)
            optimizer.step(closure)
            loss = evaluate()
            if not math.isfinite(loss):
                self.load_state_dict(last_good)
                stop_reason = "non_finite"
                break
            iterations = it
            last_good = snapshot()
            progress = train_nll[-1] - loss
            train_nll.append(loss)
            metrics: dict[str, Any] = {"iteration": it, "train_nll_nats": loss,
                                       "elapsed_s": time.monotonic() - start_time}
            if has_val and it % val_every == 0:
                metrics["val_nll_nats"] = validate(it)
            if callback is not None:
                callback(metrics)
            if has_val and best["bad"] >= patience:
                stop_reason = "early_stopping"
                break
            # L-BFGS skips an iteration when the gradient is below its tolerance; a zero change means a stall
            if optimizer.state[params[0]].get("n_iter", 0) == n_before or abs(progress) < 1e-9:
                stop_reason = "converged"
                break
            if max_seconds is not None and time.monotonic() - start_time >= max_seconds:
                stop_reason = "max_seconds"
                break
        if has_val:
            if not val_iterations or val_iterations[-1] != iterations:
                validate(iterations)
            self.load_state_dict(best["state"])
        for p in params:
            p.grad = None
        return {"train_nll_nats": train_nll, "val_nll_nats": val_nll, "val_iterations": val_iterations,
                "iterations": iterations, "best_val_nll_nats": best["nll"],
                "best_iteration": best["iteration"], "stop_reason": stop_reason}

