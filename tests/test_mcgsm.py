"""Tests for ride.mcgsm: densities against torch.distributions, normalisation, sampling, fitting, errors."""

import copy
import math

import numpy as np
import pytest
import scipy.stats
import torch
from conftest import use_path
from torch import nn
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal, Normal

import ride.mcgsm as mcgsm_module
from ride import mcgsm_kernels
from ride.mcgsm import MCGSM

F64 = torch.float64



def random_model(dim_in: int, dim_out: int = 1, num_components: int = 3, num_scales: int = 2,
                 num_features: int | None = None, seed: int = 0, dtype: torch.dtype = F64) -> MCGSM:
    """An MCGSM with random parameters of non-trivial size (eta, L_c and the gate all matter)."""
    model = MCGSM(dim_in, dim_out, num_components, num_scales, num_features).to(dtype)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            scale = {"priors": 1.0, "scales": 0.5, "weights": 1.0, "features": 1.0 / math.sqrt(dim_in),
                     "predictors": 1.0, "cholesky_log_diag": 0.3, "cholesky_lower": 0.5}[name]
            param.copy_(scale * torch.randn(param.shape, generator=gen, dtype=dtype))
    return model


def reference_cholesky(model: MCGSM) -> torch.Tensor:
    """L_c [C, M, M] built entry by entry: diagonal (1, exp(log_diag)), strictly-lower entries row-major."""
    C, M = model.num_components, model.dim_out
    chol = torch.zeros(C, M, M, dtype=model.priors.dtype)
    chol[:, 0, 0] = 1.0
    k = 0
    for i in range(M):
        if i > 0:
            chol[:, i, i] = model.cholesky_log_diag[:, i - 1].exp()
        for j in range(i):
            chol[:, i, j] = model.cholesky_lower[:, k]
            k += 1
    return chol


def reference_distribution(model: MCGSM, h: torch.Tensor) -> MixtureSameFamily:
    """p(y | h) as a torch.distributions mixture over the C*S (component, scale) pairs."""
    N, C, S, M = h.shape[0], model.num_components, model.num_scales, model.dim_out
    with torch.no_grad():
        energy = torch.einsum("cf,nf->nc", model.weights**2, (h @ model.features) ** 2)
        logits = model.priors - 0.5 * model.scales.exp() * energy[:, :, None]
        means = torch.einsum("nd,dcm->ncm", h, model.predictors)
        loc = means[:, :, None, :].expand(N, C, S, M).reshape(N, C * S, M)
        mix = Categorical(logits=logits.reshape(N, C * S))
        if M == 1:
            return MixtureSameFamily(mix, Normal(loc[..., 0], (-0.5 * model.scales).exp().reshape(C * S)))
        chol = reference_cholesky(model)
        precision = model.scales.exp()[:, :, None, None] * (chol @ chol.transpose(-1, -2))[:, None]
        components = MultivariateNormal(loc, precision_matrix=precision.reshape(C * S, M, M))
        return MixtureSameFamily(mix, components)


def nll(model: MCGSM, h: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float(-model.log_prob(h, y).mean())


# ---------------------------------------------------------------------------------------------- densities


@pytest.mark.parametrize("dim_out", [1, 2, 3])
def test_log_prob_matches_torch_distributions(dim_out: int) -> None:
    model = random_model(dim_in=4, dim_out=dim_out, num_components=3, num_scales=2, num_features=5)
    gen = torch.Generator().manual_seed(1)
    h = torch.randn(50, 4, generator=gen, dtype=F64)
    y = 2.0 * torch.randn(50, dim_out, generator=gen, dtype=F64)
    ref = reference_distribution(model, h)
    expected = ref.log_prob(y[:, 0] if dim_out == 1 else y)
    actual = model.log_prob(h, y)
    assert actual.shape == (50,) and actual.dtype == F64
    torch.testing.assert_close(actual, expected, rtol=1e-11, atol=1e-11)
    gate = model.gate_log_probs(h)
    assert gate.shape == (50, 3, 2)
    torch.testing.assert_close(gate.flatten(1), ref.mixture_distribution.logits, rtol=1e-11, atol=1e-11)


class _LogProb(nn.Module):
    """Routes forward to log_prob so that torch.func.functional_call can swap in the parameters."""

    def __init__(self, model: MCGSM) -> None:
        super().__init__()
        self.model = model

    def forward(self, h: torch.Tensor, y: torch.Tensor, upper: torch.Tensor | None = None) -> torch.Tensor:
        if upper is None:
            return self.model.log_prob(h, y)
        return self.model.log_prob_interval(h, y, upper)


@pytest.mark.parametrize("dim_out", [1, 2])
def test_gradcheck_inputs_and_parameters(dim_out: int) -> None:
    model = random_model(dim_in=3, dim_out=dim_out, num_components=2, num_scales=2, num_features=2)
    wrapped = _LogProb(model)
    names = [name for name, _ in wrapped.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in wrapped.parameters())
    gen = torch.Generator().manual_seed(2)
    h = torch.randn(4, 3, generator=gen, dtype=F64, requires_grad=True)
    y = torch.randn(4, dim_out, generator=gen, dtype=F64, requires_grad=True)

    def f(h: torch.Tensor, y: torch.Tensor, *ps: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(wrapped, dict(zip(names, ps, strict=True)), (h, y))

    assert torch.autograd.gradcheck(f, (h, y, *params))


def test_gradcheck_log_prob_interval() -> None:
    model = random_model(dim_in=3, num_components=2, num_scales=2, num_features=2)
    wrapped = _LogProb(model)
    names = [name for name, _ in wrapped.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in wrapped.parameters())
    gen = torch.Generator().manual_seed(3)
    h = torch.randn(4, 3, generator=gen, dtype=F64, requires_grad=True)
    # bounds on both sides of the means, so both branches of the stable difference are exercised
    lower = torch.tensor([[-3.0], [0.5], [-1.0], [2.0]], dtype=F64, requires_grad=True)
    upper = lower.detach() + torch.tensor([[0.5], [1.0], [3.0], [0.25]], dtype=F64)
    upper.requires_grad_()

    def f(h: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor, *ps: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(wrapped, dict(zip(names, ps, strict=True)), (h, lower, upper))

    assert torch.autograd.gradcheck(f, (h, lower, upper, *params))


def test_conditional_densities_integrate_to_one() -> None:
    model = random_model(dim_in=3, num_components=3, num_scales=3)
    h = torch.randn(3, 3, generator=torch.Generator().manual_seed(4), dtype=F64)
    grid = torch.linspace(-60.0, 60.0, 200_001, dtype=F64)
    for row in h:
        density = model.log_prob(row.expand(len(grid), 3), grid[:, None]).detach().exp()
        assert abs(float(torch.trapezoid(density, grid)) - 1.0) < 1e-8


def test_samples_follow_cdf_kolmogorov_smirnov() -> None:
    model = random_model(dim_in=3, num_components=3, num_scales=2, seed=5)
    h = torch.randn(1, 3, generator=torch.Generator().manual_seed(6), dtype=F64)
    samples = model.sample(h.expand(4000, 3), generator=torch.Generator().manual_seed(7))
    assert samples.shape == (4000, 1)

    def cdf(values: np.ndarray) -> np.ndarray:
        return model.cdf(h.expand(len(values), 3), torch.as_tensor(values)[:, None]).detach().numpy()

    assert scipy.stats.kstest(samples[:, 0].numpy(), cdf).pvalue > 0.01


def test_cdf_monotone_with_limits_and_matching_intervals() -> None:
    model = random_model(dim_in=3, num_components=3, num_scales=2, seed=8)
    h = torch.randn(1, 3, generator=torch.Generator().manual_seed(9), dtype=F64).expand(401, 3)
    grid = torch.linspace(-20.0, 20.0, 401, dtype=F64)[:, None]
    with torch.no_grad():
        values = model.cdf(h, grid)
        assert bool((values.diff() >= 0).all())
        assert float(values[0]) < 1e-6 and float(values[-1]) > 1 - 1e-6
        limits = model.cdf(h[:2], torch.tensor([[-math.inf], [math.inf]], dtype=F64))
        torch.testing.assert_close(limits, torch.tensor([0.0, 1.0], dtype=F64))
        # well-conditioned intervals: the log-probability is the difference of the CDFs
        lower, upper = grid[:-1], grid[1:]
        interval = model.log_prob_interval(h[:-1], lower, upper).exp()
        torch.testing.assert_close(interval, values[1:] - values[:-1], rtol=1e-9, atol=1e-15)
        # whole line and empty intervals
        whole = model.log_prob_interval(h[:1], torch.full((1, 1), -math.inf, dtype=F64),
                                        torch.full((1, 1), math.inf, dtype=F64))
        assert abs(float(whole)) < 1e-12
        empty = model.log_prob_interval(h[:1], grid[:1], grid[:1])
        assert float(empty) == -math.inf


def _log_integral(model: MCGSM, h: torch.Tensor, lower: float, upper: float, num: int = 100_001) -> float:
    """log of the integral of p(y | h) over [lower, upper]: trapezoid rule evaluated in the log domain."""
    grid = torch.linspace(lower, upper, num, dtype=F64)
    with torch.no_grad():
        log_density = model.log_prob(h.expand(num, -1), grid[:, None])
    log_w = torch.full_like(grid, math.log((upper - lower) / (num - 1)))
    log_w[[0, -1]] -= math.log(2.0)
    return float(torch.logsumexp(log_density + log_w, dim=0))


@torch.no_grad()
def test_log_prob_interval_accurate_in_far_tails() -> None:
    model = random_model(dim_in=3, num_components=2, num_scales=2, seed=10)
    h = torch.randn(1, 3, generator=torch.Generator().manual_seed(11), dtype=F64)
    for lower, upper in [(40.0, 40.5), (-40.5, -40.0), (120.0, 121.0), (-121.0, -120.0), (3.0, 3.01)]:
        bounds = (torch.tensor([[lower]], dtype=F64), torch.tensor([[upper]], dtype=F64))
        actual = float(model.log_prob_interval(h, *bounds))
        assert math.isfinite(actual)
        assert abs(actual - _log_integral(model, h, lower, upper)) < 1e-5
        if lower > 30:
            # the naive difference of CDFs has cancelled to nothing out here
            assert float(model.cdf(h, bounds[1]) - model.cdf(h, bounds[0])) == 0.0
        # float32 keeps a finite, accurate answer in the tails too
        model32 = random_model(dim_in=3, num_components=2, num_scales=2, seed=10, dtype=torch.float32)
        approx = float(model32.log_prob_interval(h.float(), bounds[0].float(), bounds[1].float()))
        assert abs(approx - actual) < 1e-3 * max(1.0, abs(actual))

    # one-sided tails against scipy's log survival function of each component
    log_gate = model.gate_log_probs(h)[0].numpy()  # (C, S)
    means = torch.einsum("nd,dcm->ncm", h, model.predictors)[0, :, 0].numpy()  # (C,)
    std = (-0.5 * model.scales).exp().numpy()  # (C, S)
    for a in (25.0, 80.0):
        ref = scipy.special.logsumexp(log_gate + scipy.stats.norm.logsf((a - means[:, None]) / std))
        bounds = (torch.tensor([[a]], dtype=F64), torch.tensor([[math.inf]], dtype=F64))
        actual = float(model.log_prob_interval(h, *bounds))
        assert abs(actual - ref) < 1e-9 * abs(ref)


def test_sampling_is_deterministic_given_generator() -> None:
    for dim_out in (1, 2):
        model = random_model(dim_in=3, dim_out=dim_out)
        h = torch.randn(100, 3, generator=torch.Generator().manual_seed(12), dtype=F64)
        first = model.sample(h, generator=torch.Generator().manual_seed(13))
        second = model.sample(h, generator=torch.Generator().manual_seed(13))
        other = model.sample(h, generator=torch.Generator().manual_seed(14))
        assert first.shape == (100, dim_out)
        assert torch.equal(first, second)
        assert not torch.equal(first, other)


def test_multivariate_samples_match_mixture_moments() -> None:
    model = random_model(dim_in=3, dim_out=2, num_components=2, num_scales=2, seed=15)
    h = torch.randn(1, 3, generator=torch.Generator().manual_seed(16), dtype=F64)
    n = 40_000
    samples = model.sample(h.expand(n, 3), generator=torch.Generator().manual_seed(17))
    with torch.no_grad():
        gate = model.gate_log_probs(h)[0].exp()  # (C, S)
        means = torch.einsum("d,dcm->cm", h[0], model.predictors)  # (C, M)
        chol = reference_cholesky(model)
        cov_unit = torch.linalg.inv(chol @ chol.transpose(-1, -2))  # (C, M, M)
        cov = (-model.scales).exp()[:, :, None, None] * cov_unit[:, None]  # (C, S, M, M)
        mean = torch.einsum("cs,cm->m", gate, means)
        second = torch.einsum("cs,csij->ij", gate, cov) + torch.einsum("cs,ci,cj->ij", gate, means, means)
        covariance = second - torch.outer(mean, mean)
    std_err = (covariance.diagonal() / n).sqrt()
    assert bool(((samples.mean(0) - mean).abs() < 5 * std_err).all())
    atol = 0.02 * float(covariance.max())
    torch.testing.assert_close(torch.cov(samples.T), covariance, rtol=0.08, atol=atol)


# ---------------------------------------------------------------------------------------------- fused dim_out == 1

PARAMETERS = ("priors", "scales", "weights", "features", "predictors")


def _values_and_grads(fn, model: MCGSM, h: torch.Tensor, y: torch.Tensor,
                      upstream: torch.Tensor | None) -> list[torch.Tensor]:
    """[log p, d/dh, d/dy, d/d each parameter] of sum(upstream * log p) (plain sum when upstream is None)."""
    h, y = h.detach().requires_grad_(), y.detach().requires_grad_()
    out = fn(h, y)
    loss = out.sum() if upstream is None else (out * upstream).sum()
    grads = torch.autograd.grad(loss, [h, y, *(getattr(model, name) for name in PARAMETERS)])
    return [out.detach(), *grads]


@pytest.fixture(params=["compiled", "torch"])
def tail_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The fused forward's work around the exponentials in the compiled loops (`ride.mcgsm_kernels`) or in torch's
    passes."""
    return use_path(request.param, mcgsm_kernels, monkeypatch)


@pytest.mark.parametrize("dtype", [F64, torch.float32])
@pytest.mark.parametrize("scale", [1.0, 30.0])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("block_entries", [None, 50])
def test_fused_log_prob_matches_reference(monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype, scale: float,
                                          weighted: bool, block_entries: int | None, tail_path: str) -> None:
    # weighted: a per-row upstream gradient (weights recomputed in the backward); else a plain sum (uniform).
    # block_entries=50: blocks of 4 rows (S * C = 12) and a partial last block, instead of one block
    if block_entries is not None:
        monkeypatch.setattr(mcgsm_module, "_BLOCK_ENTRIES", block_entries)
    model = random_model(dim_in=5, num_components=4, num_scales=3, num_features=6, seed=70, dtype=dtype)
    gen = torch.Generator().manual_seed(71)
    h = (scale * torch.randn(45, 5, generator=gen, dtype=F64)).to(dtype)
    y = (scale * torch.randn(45, 1, generator=gen, dtype=F64)).to(dtype)
    upstream = torch.randn(45, generator=gen, dtype=F64).to(dtype) if weighted else None
    if scale > 1:
        # far from the origin many gate (and joint) weights underflow to exactly zero
        assert bool((model.gate_log_probs(h).exp() == 0).any())
    assert "Univariate" in type(model.log_prob_unchecked(h, y.requires_grad_()).grad_fn).__name__
    expected = _values_and_grads(model._log_prob_reference, model, h, y, upstream)
    actual = _values_and_grads(model.log_prob_unchecked, model, h, y, upstream)
    tol = 1e-10 if dtype == F64 else 1e-4
    for name, a, e in zip(("log_prob", "inputs", "outputs", *PARAMETERS), actual, expected, strict=True):
        assert a.dtype == dtype and a.shape == e.shape
        torch.testing.assert_close(a, e, rtol=tol, atol=tol * float(e.abs().max()),
                                   msg=lambda m, name=name: f"{name}: {m}")


def test_fused_log_prob_float32_accuracy(tail_path: str) -> None:
    # float32 against float64 on the same (float32) parameters and data: errors stay at float32 level, also far
    # from the origin where the log-densities reach -1e5 and most weights underflow
    model32 = random_model(dim_in=5, num_components=4, num_scales=3, num_features=6, seed=73, dtype=torch.float32)
    model64 = copy.deepcopy(model32).double()
    gen = torch.Generator().manual_seed(74)
    upstream = torch.randn(200, generator=gen)
    for scale in (1.0, 10.0, 100.0):
        h, y = scale * torch.randn(200, 5, generator=gen), scale * torch.randn(200, 1, generator=gen)
        exact = _values_and_grads(model64._log_prob_reference, model64, h.double(), y.double(), upstream.double())
        fused = _values_and_grads(model32.log_prob_unchecked, model32, h, y, upstream)
        for a, e in zip(fused, exact, strict=True):
            assert float((a.double() - e).abs().max()) <= 1e-4 * float(e.abs().max())


@pytest.mark.parametrize("reduce", [False, True])
@pytest.mark.parametrize("wrt", ["all", "data", "parameters"])
def test_gradcheck_fused_log_prob(reduce: bool, wrt: str, tail_path: str) -> None:
    # reduce: check the gradient of the sum (a uniform upstream gradient); else the full Jacobian.
    # wrt: which arguments require gradients, so that each subset of the backward is exercised
    model = random_model(dim_in=3, num_components=2, num_scales=3, num_features=2, seed=75)
    gen = torch.Generator().manual_seed(76)
    h = torch.randn(6, 3, generator=gen, dtype=F64, requires_grad=wrt != "parameters")
    y = torch.randn(6, 1, generator=gen, dtype=F64, requires_grad=wrt != "parameters")
    params = tuple(getattr(model, name).detach().clone().requires_grad_(wrt != "data") for name in PARAMETERS)
    wrapped = _LogProb(model)

    def f(h: torch.Tensor, y: torch.Tensor, *ps: torch.Tensor) -> torch.Tensor:
        state = {f"model.{name}": p for name, p in zip(PARAMETERS, ps, strict=True)}
        out = torch.func.functional_call(wrapped, state, (h, y))
        return out.sum() if reduce else out

    assert torch.autograd.gradcheck(f, (h, y, *params))


def test_fused_log_prob_edge_cases(tail_path: str) -> None:
    model = random_model(dim_in=3, num_components=2, num_scales=2, seed=77)
    gen = torch.Generator().manual_seed(78)
    h, y = torch.randn(7, 3, generator=gen, dtype=F64), torch.randn(7, 1, generator=gen, dtype=F64)
    with torch.no_grad():
        plain = model.log_prob_unchecked(h, y)
    assert torch.equal(plain, model.log_prob_unchecked(h.requires_grad_(), y).detach())
    # non-contiguous inputs
    wide = torch.randn(7, 6, generator=gen, dtype=F64)
    torch.testing.assert_close(model.log_prob_unchecked(wide[:, ::2], wide[:, 1:2]),
                               model._log_prob_reference(wide[:, ::2], wide[:, 1:2]), rtol=1e-12, atol=1e-12)
    # no rows: empty result and zero gradients
    empty = model.log_prob_unchecked(h[:0].detach().requires_grad_(), y[:0])
    assert empty.shape == (0,)
    empty.sum().backward()
    assert all(p.grad is not None and not bool(p.grad.any()) for p in model.parameters())
    # an infinite squared residual gives log p = -inf, as in the reference
    huge = torch.full((1, 1), 1e200, dtype=F64)
    with torch.no_grad():
        fused, reference = model.log_prob_unchecked(h[:1], huge), model._log_prob_reference(h[:1], huge)
        assert float(fused) == float(reference) == -math.inf


# ---------------------------------------------------------------------------------------------- fitting


def synthetic(true: MCGSM, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(n, true.dim_in, generator=gen, dtype=F64)
    return h, true.sample(h, generator=gen)


def test_fit_recovers_true_model_likelihood() -> None:
    true = random_model(dim_in=4, num_components=2, num_scales=3, seed=20)
    h, y = synthetic(true, 3000, seed=21)
    val_h, val_y = synthetic(true, 1000, seed=22)
    test_h, test_y = synthetic(true, 3000, seed=23)
    model = MCGSM(4, 1, num_components=2, num_scales=3).to(F64)
    seen = []
    result = model.fit(h, y, val_h, val_y, max_iter=200, val_every=5, patience=5, callback=seen.append,
                       generator=torch.Generator().manual_seed(24))
    assert result["train_nll_nats"][-1] < result["train_nll_nats"][0] - 0.1
    assert len(result["train_nll_nats"]) == result["iterations"] + 1
    assert [m["iteration"] for m in seen] == list(range(1, result["iterations"] + 1))
    assert all("train_nll_nats" in m for m in seen)
    assert abs(nll(model, test_h, test_y) - nll(true, test_h, test_y)) < 0.05


def test_fit_restores_best_validation_parameters() -> None:
    # few training pairs for many parameters: validation NLL rises soon, so early stopping has to act
    true = random_model(dim_in=6, num_components=2, num_scales=2, seed=30)
    h, y = synthetic(true, 40, seed=31)
    val_h, val_y = synthetic(true, 500, seed=32)
    model = MCGSM(6, 1, num_components=4, num_scales=3).to(F64)
    result = model.fit(h, y, val_h, val_y, max_iter=300, val_every=1, patience=3,
                       generator=torch.Generator().manual_seed(33))
    assert result["stop_reason"] == "early_stopping"
    assert result["best_val_nll_nats"] == min(result["val_nll_nats"])
    assert result["val_nll_nats"][-1] > result["best_val_nll_nats"]
    assert abs(nll(model, val_h, val_y) - result["best_val_nll_nats"]) < 1e-10


def test_fit_multivariate_output() -> None:
    true = random_model(dim_in=3, dim_out=2, num_components=2, num_scales=2, seed=40)
    h, y = synthetic(true, 1000, seed=41)
    model = MCGSM(3, 2, num_components=2, num_scales=2).to(F64)
    result = model.fit(h, y, max_iter=40, generator=torch.Generator().manual_seed(42))
    assert result["train_nll_nats"][-1] < result["train_nll_nats"][0] - 0.1
    assert result["val_nll_nats"] == [] and result["best_val_nll_nats"] is None


def test_fit_chunked_evaluation_gives_same_objective() -> None:
    true = random_model(dim_in=3, num_components=2, num_scales=2, seed=50)
    h, y = synthetic(true, 200, seed=51)
    model = MCGSM(3, 1, num_components=2, num_scales=2).to(F64)
    model.initialize(h, y, generator=torch.Generator().manual_seed(52))
    chunked = MCGSM(3, 1, num_components=2, num_scales=2).to(F64)
    chunked.load_state_dict(model.state_dict())
    full = model.fit(h, y, max_iter=5, init=False)
    parts = chunked.fit(h, y, max_iter=5, init=False, batch_size=7)
    np.testing.assert_allclose(parts["train_nll_nats"], full["train_nll_nats"], rtol=1e-9)


def test_fit_stops_on_wall_clock() -> None:
    true = random_model(dim_in=3, num_components=2, num_scales=2, seed=55)
    h, y = synthetic(true, 200, seed=56)
    result = MCGSM(3, 1, 2, 2).to(F64).fit(h, y, max_iter=100, max_seconds=0.0)
    assert result["iterations"] == 1 and result["stop_reason"] == "max_seconds"


def test_initialize_is_unit_free() -> None:
    # after the data-dependent initialisation the model is close to the least-squares Gaussian, in any units
    gen = torch.Generator().manual_seed(60)
    h = torch.randn(2000, 5, generator=gen, dtype=F64)
    y = h @ torch.randn(5, 1, generator=gen, dtype=F64) + 0.3 * torch.randn(2000, 1, generator=gen, dtype=F64)
    for units in (1.0, 1e-3, 1e3):
        model = MCGSM(5, 1, 4, 3).to(F64)
        model.initialize(units * h, units * y, generator=torch.Generator().manual_seed(61))
        gaussian_nll = 0.5 * math.log(2 * math.pi * math.e * (0.3 * units) ** 2)
        assert abs(nll(model, units * h, units * y) - gaussian_nll) < 0.2


# ---------------------------------------------------------------------------------------------- errors, state


def test_errors_are_specific() -> None:
    model = MCGSM(3, 1, 2, 2)
    h, y = torch.randn(5, 3), torch.randn(5, 1)
    with pytest.raises(ValueError, match="rank"):
        model.log_prob(h[0], y)
    with pytest.raises(ValueError, match="rank"):
        model.log_prob(h, y[:, 0])
    with pytest.raises(ValueError, match="rows"):
        model.log_prob(h, y[:4])
    with pytest.raises(ValueError, match=r"\[N, 3\].*\(5, 4\)"):
        model.log_prob(torch.randn(5, 4), y)
    with pytest.raises(ValueError, match=r"\[N, 1\].*\(5, 2\)"):
        model.log_prob(h, torch.randn(5, 2))
    with pytest.raises(ValueError, match="NaN"):
        model.log_prob(torch.where(h > 1, math.nan, h), y)
    with pytest.raises(ValueError, match="non-finite"):
        model.sample(torch.full((5, 3), math.inf))
    with pytest.raises(ValueError, match="floating-point.*int64"):
        model.log_prob(torch.ones(5, 3, dtype=torch.int64), y)
    with pytest.raises(ValueError, match="lower must be <= upper"):
        model.log_prob_interval(h, y + 1, y)
    with pytest.raises(ValueError, match="NaN"):
        model.cdf(h, torch.full((5, 1), math.nan))
    with pytest.raises(ValueError, match="together"):
        model.fit(h, y, val_inputs=h)
    with pytest.raises(ValueError, match="val_outputs"):
        model.fit(h, y, val_inputs=h, val_outputs=y[:4])
    with pytest.raises(ValueError, match="dim_out == 1"):
        MCGSM(3, 2, 2, 2).cdf(h, torch.randn(5, 2))
    with pytest.raises(ValueError, match="at least one"):
        model.fit(h[:0], y[:0])
    with pytest.raises(ValueError, match="dim_in"):
        MCGSM(0)


def test_dtype_follows_inputs_with_float32_floor() -> None:
    model = MCGSM(3, 1, 2, 2)
    h, y = torch.randn(5, 3), torch.randn(5, 1)
    assert model.log_prob(h.bfloat16(), y.bfloat16()).dtype == torch.float32
    assert model.log_prob(h.double(), y.double()).dtype == F64
    assert model.sample(h.half(), generator=torch.Generator().manual_seed(0)).dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = model.log_prob(h, y)
    assert mixed.dtype == torch.float32 and torch.equal(mixed, model.log_prob(h, y))


@pytest.mark.parametrize("dim_out", [1, 2])
def test_parameters_and_state_dict_round_trip(dim_out: int) -> None:
    model = random_model(dim_in=4, dim_out=dim_out, dtype=torch.float32)
    expected = {"priors", "scales", "weights", "features", "predictors"}
    if dim_out > 1:
        expected |= {"cholesky_log_diag", "cholesky_lower"}
    assert {name for name, _ in model.named_parameters()} == expected
    assert all(isinstance(p, nn.Parameter) for p in model.parameters())
    assert set(model.state_dict()) == expected
    copy = MCGSM(**model.config)
    copy.load_state_dict(model.state_dict())
    h, y = torch.randn(7, 4), torch.randn(7, dim_out)
    assert torch.equal(copy.log_prob(h, y), model.log_prob(h, y))
