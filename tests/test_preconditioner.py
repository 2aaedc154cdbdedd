"""Tests for ride.preconditioner: identity when fresh, whitening statistics, inverse and the exact log-Jacobian."""

from __future__ import annotations

import math

import pytest
import torch

from ride.preconditioner import Preconditioner

F64 = torch.float64


def correlated_pairs(num: int, dim_in: int, dim_out: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs with correlated inputs, outputs linearly dependent on them and a correlated residual."""
    gen = torch.Generator().manual_seed(seed)
    mix_in = torch.randn(dim_in, dim_in, generator=gen, dtype=F64)
    x = torch.randn(num, dim_in, generator=gen, dtype=F64) @ mix_in + torch.linspace(-1, 2, dim_in, dtype=F64)
    weights = torch.randn(dim_in, dim_out, generator=gen, dtype=F64)
    mix_out = 0.3 * torch.randn(dim_out, dim_out, generator=gen, dtype=F64) + 0.2 * torch.eye(dim_out, dtype=F64)
    y = x @ weights + torch.randn(num, dim_out, generator=gen, dtype=F64) @ mix_out + 0.5
    return x, y


def covariance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - a.mean(0)).T @ (b - b.mean(0)) / a.shape[0]


def test_fresh_preconditioner_is_identity() -> None:
    pre = Preconditioner(5, 2).to(F64)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(7, 5, generator=gen, dtype=F64)
    y = torch.randn(7, 2, generator=gen, dtype=F64)
    xt, yt = pre(x, y)
    assert torch.equal(xt, x) and torch.equal(yt, y)
    assert float(pre.log_jacobian) == 0.0
    assert torch.equal(pre.inverse(xt, yt), y)


@pytest.mark.parametrize("dim_out", [1, 3])
def test_fit_whitens(dim_out: int) -> None:
    x, y = correlated_pairs(4000, 6, dim_out, seed=dim_out)
    pre = Preconditioner(6, dim_out).to(F64)
    pre.fit(x, y)
    xt, yt = pre(x, y)
    eye_in, eye_out = torch.eye(6, dtype=F64), torch.eye(dim_out, dtype=F64)
    # statistics of the fitting data itself: exact up to round-off
    torch.testing.assert_close(xt.mean(0), torch.zeros(6, dtype=F64), atol=1e-10, rtol=0)
    torch.testing.assert_close(covariance(xt, xt), eye_in, atol=1e-9, rtol=0)
    torch.testing.assert_close(yt.mean(0), torch.zeros(dim_out, dtype=F64), atol=1e-10, rtol=0)
    torch.testing.assert_close(covariance(yt, yt), eye_out, atol=1e-9, rtol=0)
    torch.testing.assert_close(covariance(xt, yt), torch.zeros(6, dim_out, dtype=F64), atol=1e-9, rtol=0)
    # the whitening is symmetric (Sxx^(-1/2)), not just any whitening matrix
    torch.testing.assert_close(pre.whiten_in, pre.whiten_in.T, atol=1e-10, rtol=0)
    torch.testing.assert_close(pre.whiten_out @ pre.colour_out, eye_out, atol=1e-9, rtol=0)
    # the data were far from white, so the fit did something
    assert (covariance(x, x) - eye_in).abs().max() > 0.5


@pytest.mark.parametrize("dim_out", [1, 3])
def test_inverse_recovers_outputs(dim_out: int) -> None:
    x, y = correlated_pairs(500, 4, dim_out, seed=10 + dim_out)
    pre = Preconditioner(4, dim_out).to(F64)
    pre.fit(x, y)
    xt, yt = pre(x[:50], y[:50])
    torch.testing.assert_close(pre.inverse(xt, yt), y[:50], atol=1e-10, rtol=1e-10)
    # batched leading dimensions work too
    xt3, yt3 = pre(x[:48].view(4, 12, 4), y[:48].view(4, 12, dim_out))
    torch.testing.assert_close(yt3.reshape(48, dim_out), yt[:48], atol=1e-12, rtol=0)
    torch.testing.assert_close(pre.inverse(xt3, yt3).reshape(48, dim_out), y[:48], atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("dim_out", [1, 3])
def test_log_jacobian_is_log_det_of_dy_tilde_dy(dim_out: int) -> None:
    x, y = correlated_pairs(800, 5, dim_out, seed=20 + dim_out)
    pre = Preconditioner(5, dim_out).to(F64)
    pre.fit(x, y)
    xt = pre.whiten_inputs(x[3])
    jac = torch.autograd.functional.jacobian(lambda out: pre.whiten_outputs(xt, out), y[3])  # (M, M)
    expected = torch.linalg.slogdet(jac)[1]
    assert abs(float(pre.log_jacobian) - float(expected)) < 1e-10
    # and it is far from zero: the residual scale of these data is not 1
    assert abs(float(pre.log_jacobian)) > 0.1


def test_log_jacobian_of_known_residual_scale() -> None:
    # y = 2 x + 0.1 * noise: the residual std is about 0.1, so ln|dy~/dy| is about ln 10
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(20000, 1, generator=gen, dtype=F64)
    y = 2 * x + 0.1 * torch.randn(20000, 1, generator=gen, dtype=F64)
    pre = Preconditioner(1, 1).to(F64)
    pre.fit(x, y)
    assert abs(float(pre.log_jacobian) - math.log(10)) < 0.02
    # the linear skip connection: P x~ = Syx Sxx^-1 (x - mx) carries the slope
    assert abs(float(pre.predictor[0, 0] * pre.whiten_in[0, 0]) - 2.0) < 0.01


def test_float32_buffers_follow_module_dtype() -> None:
    x, y = correlated_pairs(300, 3, 1, seed=5)
    pre = Preconditioner(3, 1)
    pre.fit(x.float(), y.float())
    assert pre.whiten_in.dtype == torch.float32
    pre64 = Preconditioner(3, 1).to(F64)
    pre64.fit(x, y)
    torch.testing.assert_close(pre.whiten_in.double(), pre64.whiten_in, rtol=1e-4, atol=1e-5)


def test_fit_rejects_bad_shapes() -> None:
    pre = Preconditioner(3, 1)
    with pytest.raises(ValueError, match=r"found \(10,\)"):
        pre.fit(torch.zeros(10), torch.zeros(10, 1))
    with pytest.raises(ValueError, match="K=4"):
        pre.fit(torch.zeros(10, 4), torch.zeros(10, 1))
    with pytest.raises(ValueError, match="M=2"):
        pre.fit(torch.zeros(10, 3), torch.zeros(10, 2))
    with pytest.raises(ValueError, match="found 1"):
        pre.fit(torch.zeros(1, 3), torch.zeros(1, 1))
