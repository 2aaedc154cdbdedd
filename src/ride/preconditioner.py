"""Conditional whitening of (neighbourhood, pixel) pairs with an exact log-Jacobian (design §3).

    x~ = Sxx^(-1/2) (x - mx)
    y~ = (Syy - P P^T)^(-1/2) (y - my - P x~),   P = Syx Sxx^(-1/2)

The map y -> y~ is affine given x, so a density of y~ becomes a density of y by adding
ln|det (Syy - P P^T)^(-1/2)| (nats) per predicted pixel. A fresh preconditioner is the identity.

With `fit(..., triangular=True)` the output whitening is L^(-1) instead, L the lower Cholesky factor of
Syy - P P^T: then y~_k depends on y_1..y_k only (the linear regression of y_k on x and the earlier outputs,
standardised), which is what models that code the outputs of a pixel one after another need.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _sym_power(cov: Tensor, power: float, eps: float) -> Tensor:
    """Symmetric matrix power of a covariance (eigenvalues floored at eps * largest, for rank-deficient data)."""
    evals, evecs = torch.linalg.eigh(cov)
    evals = evals.clamp_min(eps * evals.max().clamp_min(torch.finfo(cov.dtype).tiny))
    return (evecs * evals.pow(power)) @ evecs.T


class Preconditioner(nn.Module):
    """Whitens inputs [N, K] and conditionally whitens outputs [N, M]; all statistics are buffers."""

    def __init__(self, dim_in: int, dim_out: int = 1) -> None:
        super().__init__()
        self.dim_in, self.dim_out = dim_in, dim_out
        self.register_buffer("mean_in", torch.zeros(dim_in))
        self.register_buffer("mean_out", torch.zeros(dim_out))
        self.register_buffer("whiten_in", torch.eye(dim_in))  # Sxx^(-1/2)
        self.register_buffer("predictor", torch.zeros(dim_out, dim_in))  # P
        self.register_buffer("whiten_out", torch.eye(dim_out))  # (Syy - P P^T)^(-1/2)
        self.register_buffer("colour_out", torch.eye(dim_out))  # (Syy - P P^T)^(1/2), its inverse
        self.register_buffer("log_jacobian", torch.zeros(()))  # ln|det whiten_out|, nats per pixel

    @torch.no_grad()
    def fit(self, inputs: Tensor, outputs: Tensor, eps: float = 1e-10, triangular: bool = False) -> None:
        """Fit the statistics on pairs: inputs [N, K], outputs [N, M] (computed in float64).

        triangular: whiten the outputs with L^(-1) (L the lower Cholesky factor of the residual covariance)
        instead of its symmetric inverse square root, so that y~_k depends on outputs 1..k only.
        """
        if inputs.dim() != 2 or outputs.dim() != 2 or inputs.shape[0] != outputs.shape[0]:
            raise ValueError(f"expected inputs [N, K] and outputs [N, M], found {tuple(inputs.shape)} and "
                             f"{tuple(outputs.shape)}")
        if inputs.shape[1] != self.dim_in or outputs.shape[1] != self.dim_out:
            raise ValueError(f"expected K={self.dim_in}, M={self.dim_out}, found K={inputs.shape[1]}, "
                             f"M={outputs.shape[1]}")
        if inputs.shape[0] < 2:
            raise ValueError(f"need at least 2 pairs to fit, found {inputs.shape[0]}")
        x, y = inputs.double(), outputs.double()
        mx, my = x.mean(0), y.mean(0)
        x, y = x - mx, y - my
        n = x.shape[0]
        sxx, syx, syy = x.T @ x / n, y.T @ x / n, y.T @ y / n
        whiten_in = _sym_power(sxx, -0.5, eps)
        predictor = syx @ whiten_in
        residual = syy - predictor @ predictor.T
        if triangular:
            # eigenvalues floored as in the symmetric case, so that rank-deficient residuals stay factorisable
            colour_out = torch.linalg.cholesky(_sym_power(residual, 1.0, eps))
            whiten_out = torch.linalg.solve_triangular(colour_out, torch.eye(len(residual), dtype=residual.dtype),
                                                       upper=False)
        else:
            whiten_out = _sym_power(residual, -0.5, eps)
            colour_out = _sym_power(residual, 0.5, eps)
        dtype = self.whiten_in.dtype
        self.mean_in.copy_(mx.to(dtype))
        self.mean_out.copy_(my.to(dtype))
        self.whiten_in.copy_(whiten_in.to(dtype))
        self.predictor.copy_(predictor.to(dtype))
        self.whiten_out.copy_(whiten_out.to(dtype))
        self.colour_out.copy_(colour_out.to(dtype))
        self.log_jacobian.copy_(torch.linalg.slogdet(whiten_out)[1].to(dtype))

    def whiten_inputs(self, inputs: Tensor) -> Tensor:
        """x~ for inputs [..., K] -> [..., K]."""
        return (inputs - self.mean_in) @ self.whiten_in.T

    def whiten_outputs(self, whitened_inputs: Tensor, outputs: Tensor) -> Tensor:
        """y~ for x~ [..., K] and outputs [..., M] -> [..., M]."""
        return (outputs - self.mean_out - whitened_inputs @ self.predictor.T) @ self.whiten_out.T

    def forward(self, inputs: Tensor, outputs: Tensor) -> tuple[Tensor, Tensor]:
        """(x~, y~) for inputs [..., K] and outputs [..., M]."""
        x = self.whiten_inputs(inputs)
        return x, self.whiten_outputs(x, outputs)

    def inverse(self, whitened_inputs: Tensor, whitened_outputs: Tensor) -> Tensor:
        """Outputs y [..., M] from x~ [..., K] and y~ [..., M]: y = my + P x~ + (Syy - P P^T)^(1/2) y~."""
        return self.mean_out + whitened_inputs @ self.predictor.T + whitened_outputs @ self.colour_out.T
