"""RIDE on the 63-dim patch benchmark (design §9.2): a density over centred 8x8 patches without their last pixel.

    ln p(z) = sum_(k < 63) ln p(z_k | z_<k)     (nats; z [63] = centred patch in raster order, last pixel dropped)

The centred patch (its 64th value is -sum z) is zero-padded by the model's margin (r rows on top, r columns left
and right), so that every one of the 64 pixels is predicted by the causal window and the spatial LSTM; the pads
are constants, not data, so each conditional is a normalised density given z_<k. The bottom-right pixel is a
function of the others and is left out of the sum, which makes this a density over R^63.
"""

from __future__ import annotations

from dataclasses import asdict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .model import RIDE, RIDEConfig
from .neighbourhood import extract_pairs


class PatchRIDE(nn.Module):
    """A RIDE over zero-padded patch_size x patch_size centred patches: z [N, patch_size**2 - 1] -> ln p [N]."""

    def __init__(self, patch_size: int = 8, **ride_config: int) -> None:
        super().__init__()
        if not isinstance(patch_size, int) or isinstance(patch_size, bool) or patch_size < 2:
            raise ValueError(f"patch_size must be an integer >= 2, found {patch_size!r}")
        cfg = RIDEConfig(**ride_config)
        if cfg.num_channels != 1:
            raise ValueError(f"PatchRIDE models grey patches (num_channels 1), found {cfg.num_channels}")
        self.patch_size = patch_size
        self.dim = patch_size**2 - 1
        self.ride = RIDE(**asdict(cfg))

    @property
    def config(self) -> dict[str, int]:
        """Constructor arguments; `PatchRIDE(**model.config)` rebuilds the architecture."""
        return {"patch_size": self.patch_size, **asdict(self.ride.config)}

    def _check(self, z: object) -> None:
        if not isinstance(z, Tensor) or z.dim() != 2 or z.shape[1] != self.dim:
            found = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
            raise ValueError(f"z must be a tensor [N, {self.dim}] (centred patches without their last pixel), "
                             f"found {found}")
        if not z.is_floating_point() or not torch.isfinite(z).all():
            raise ValueError("z must be a finite floating-point tensor")

    def padded(self, z: Tensor) -> Tensor:
        """Centred patches z [N, P*P-1] -> zero-padded images [N, 1, P + top, P + left + right]."""
        p = self.patch_size
        full = torch.cat([z, -z.sum(1, keepdim=True)], 1).view(-1, 1, p, p)
        top, left, right = self.ride.margin
        return F.pad(full, (left, right, top, 0))

    def log_prob_pixels(self, z: Tensor) -> Tensor:
        """ln p(z_k | z_<k) in nats (Jacobian of the whitening included): z [N, P*P-1] -> [N, P*P-1]."""
        self._check(z)
        images = self.padded(z.to(self.ride.preconditioner.mean_in.dtype))
        return self.ride._log_prob_pixels(images).flatten(1)[:, : self.dim]

    def log_prob(self, z: Tensor) -> Tensor:
        """ln p(z) in nats per patch: z [N, P*P-1] -> [N]."""
        return self.log_prob_pixels(z).sum(1)

    def pairs(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Raw (neighbourhood, value) pairs of the predicted values: z [N, P*P-1] -> ([N*(P*P-1), K], [.., 1])."""
        self._check(z)
        inputs, outputs = extract_pairs(self.padded(z.to(self.ride.preconditioner.mean_in.dtype)),
                                        self.ride.neighbourhood)
        keep = slice(0, self.dim)
        inputs = inputs.flatten(1, 2)[:, keep].reshape(-1, inputs.shape[-1])
        return inputs, outputs.flatten(1, 2)[:, keep].reshape(-1, outputs.shape[-1])

    @torch.no_grad()
    def hidden_pairs(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Top hidden states and whitened values of the predicted values: ([N*(P*P-1), D], [N*(P*P-1), 1])."""
        self._check(z)
        inputs, outputs = extract_pairs(self.padded(z.to(self.ride.preconditioner.mean_in.dtype)),
                                        self.ride.neighbourhood)
        x, y = self.ride.preconditioner(inputs, outputs)
        hidden = self.ride.hidden_states(x)
        keep = slice(0, self.dim)
        return (hidden.flatten(1, 2)[:, keep].reshape(-1, hidden.shape[-1]),
                y.flatten(1, 2)[:, keep].reshape(-1, y.shape[-1]))
