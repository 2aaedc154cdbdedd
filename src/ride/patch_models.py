"""The MCGSM baseline of the 63-dim patch benchmark (design §9.2): a chain of per-pixel MCGSMs.

    ln p(z) = sum_k ln p(z_k | z_0 .. z_(k-1))     (nats; z [63]: a centred 8x8 patch without its last pixel)

Conditional k is an MCGSM (design §5) on the preceding k values, behind its own conditional whitening (design §3,
its log-Jacobian added), so the chain is exactly normalised. Pixel 0 has no predecessor: its MCGSM sees the
constant input 1, which makes it a 1-D mixture of Gaussian scale mixtures, and its whitening only standardises
the output. Each conditional is fitted on its own with the MCGSM's L-BFGS and early stopping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from .mcgsm import MCGSM
from .preconditioner import Preconditioner


class PatchChainMCGSM(nn.Module):
    """A density over vectors [dim] in raster order: pixel k predicted by its own MCGSM from pixels 0..k-1.

    Conditional k has dim_in = max(k, 1), `num_components`, `num_scales` and `num_features` features (default:
    dim_in). The constructor arguments are the whole configuration (see `config`).
    """

    def __init__(self, num_components: int = 8, num_scales: int = 4, num_features: int | None = None,
                 dim: int = 63) -> None:
        super().__init__()
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
            raise ValueError(f"dim must be a positive integer, found {dim!r}")
        self.dim = dim
        self.num_components = num_components
        self.num_scales = num_scales
        self.num_features = num_features
        self.conditionals = nn.ModuleList(MCGSM(max(k, 1), 1, num_components, num_scales, num_features)
                                          for k in range(dim))
        self.preconditioners = nn.ModuleList(Preconditioner(max(k, 1), 1) for k in range(dim))

    @property
    def config(self) -> dict[str, int | None]:
        """Constructor arguments; `PatchChainMCGSM(**model.config)` rebuilds the architecture."""
        return {"num_components": self.num_components, "num_scales": self.num_scales,
                "num_features": self.num_features, "dim": self.dim}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config.items())

    # ------------------------------------------------------------------ densities

    def _check(self, x: object, name: str = "x") -> None:
        if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != self.dim:
            found = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{name} must be a tensor [N, {self.dim}], found {found}")
        if not x.is_floating_point():
            raise ValueError(f"{name} must have a floating dtype, found {x.dtype}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} contains NaN or infinite values")

    @staticmethod
    def _inputs(x: Tensor, k: int) -> Tensor:
        """The context of pixel k: x[:, :k], or the constant 1 [N, 1] for pixel 0."""
        return x[:, :k] if k > 0 else x.new_ones(x.shape[0], 1)

    def _dtype(self) -> torch.dtype:
        return torch.promote_types(self.preconditioners[0].mean_in.dtype, torch.float32)

    def log_prob_conditionals(self, x: Tensor) -> Tensor:
        """ln p(x_k | x_<k) in nats, Jacobians included: x [N, dim] -> [N, dim] (the model's dtype, >= float32)."""
        self._check(x)
        x = x.to(self._dtype())
        columns = []
        for k, (mcgsm, prec) in enumerate(zip(self.conditionals, self.preconditioners, strict=True)):
            h, y = prec(self._inputs(x, k), x[:, k:k + 1])
            columns.append(mcgsm.log_prob_unchecked(h, y) + prec.log_jacobian)
        return torch.stack(columns, 1)

    def log_prob(self, x: Tensor) -> Tensor:
        """ln p(x) in nats: x [N, dim] -> [N]."""
        return self.log_prob_conditionals(x).sum(1)

    @torch.no_grad()
    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        """Ancestral samples [num_samples, dim] (the model's dtype and device); randomness from `generator`."""
        if not isinstance(num_samples, int) or num_samples < 0:
            raise ValueError(f"num_samples must be a non-negative integer, found {num_samples!r}")
        device = self.preconditioners[0].mean_in.device
        x = torch.zeros(num_samples, self.dim, dtype=self._dtype(), device=device)
        for k, (mcgsm, prec) in enumerate(zip(self.conditionals, self.preconditioners, strict=True)):
            h = prec.whiten_inputs(self._inputs(x, k))
            x[:, k:k + 1] = prec.inverse(h, mcgsm.sample(h, generator).to(x.dtype))
        return x

    # ------------------------------------------------------------------ fitting

    @staticmethod
    @torch.no_grad()
    def _fit_standardiser(prec: Preconditioner, y: Tensor) -> None:
        """Pixel 0's whitening: the constant input passes unchanged, y~ = (y - mean) / std."""
        y = y.double()
        mean, var = y.mean(), y.var(unbiased=False).clamp_min(1e-20)
        prec.mean_out.fill_(float(mean))
        prec.whiten_out.fill_(float(var.rsqrt()))
        prec.colour_out.fill_(float(var.sqrt()))
        prec.log_jacobian.fill_(float(-0.5 * var.log()))

    def _cost(self, k: int) -> float:
        """Relative cost of one evaluation of conditional k (for splitting a time budget)."""
        m = self.conditionals[k]
        return m.dim_in * (m.num_features + m.num_components) + m.num_components * m.num_scales

    def fit(self, x_train: Tensor, x_val: Tensor | None = None, max_iter: int = 1000,
            callback: Callable[[dict[str, Any]], None] | None = None, max_seconds: float | None = None,
            precondition: bool = True, val_every: int = 5, patience: int = 5, batch_size: int | None = None,
            generator: torch.Generator | None = None) -> dict[str, Any]:
        """Fit each conditional in turn: whitening (when `precondition`), then `MCGSM.fit` (L-BFGS on the mean NLL,
        early stopping on x_val).

        x_train [N, dim], x_val [V, dim]. `max_seconds` is shared among the conditionals in proportion to their
        cost. `callback(dict)` receives the MCGSM's per-iteration metrics plus "conditional": k.
        Returns {"conditionals": [MCGSM.fit's result per conditional], "train_nll_nats": float,
        "val_nll_nats": float | None} (NLL in nats per vector after fitting, Jacobians included).
        """
        self._check(x_train, "x_train")
        if x_val is not None:
            self._check(x_val, "x_val")
        dtype = self._dtype()
        device = self.preconditioners[0].mean_in.device
        x = x_train.to(device=device, dtype=dtype)
        v = x_val.to(device=device, dtype=dtype) if x_val is not None else None
        start = time.monotonic()
        costs = [self._cost(k) for k in range(self.dim)]
        histories = []
        for k in range(self.dim):
            prec = Preconditioner(max(k, 1), 1).to(device=device, dtype=self.preconditioners[k].mean_in.dtype)
            inputs, outputs = self._inputs(x, k), x[:, k:k + 1]
            if precondition:
                if k == 0:
                    self._fit_standardiser(prec, outputs)
                else:
                    prec.fit(inputs, outputs)
            self.preconditioners[k] = prec
            with torch.no_grad():
                h, y = prec(inputs, outputs)
                val = prec(self._inputs(v, k), v[:, k:k + 1]) if v is not None else (None, None)
            seconds = None
            if max_seconds is not None:
                remaining = max(max_seconds - (time.monotonic() - start), 0.0)
                seconds = remaining * costs[k] / sum(costs[k:])

            def report(metrics: dict[str, Any], k: int = k) -> None:
                if callback is not None:
                    callback({"conditional": k, **metrics})

            histories.append(self.conditionals[k].fit(h, y, *val, max_iter=max_iter, val_every=val_every,
                                                      patience=patience, batch_size=batch_size, callback=report,
                                                      max_seconds=seconds, generator=generator))
        with torch.no_grad():
            train_nll = float(-self.log_prob(x).double().mean())
            val_nll = float(-self.log_prob(v).double().mean()) if v is not None else None
        return {"conditionals": histories, "train_nll_nats": train_nll, "val_nll_nats": val_nll}

