"""RIDE: spatial LSTM layers over whitened causal neighbourhoods, an MCGSM on top (design §2-5).

    ln p(x_ij | x_<ij) = ln p_MCGSM(y~_ij | h_ij) + ln|det (Syy - P P^T)^(-1/2)|   (nats, [0,1) pixel scale)

With `num_layers=0` the MCGSM sees the whitened neighbourhood x~ directly: the MCGSM baseline, with the same
pixel set, sampler, checkpoints and evaluation as RIDE.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from .mcgsm import MCGSM
from .neighbourhood import Neighbourhood, extract_pairs
from .preconditioner import Preconditioner
from .slstm import SpatialLSTM, run_layers
from .wavefront import CELL_CLIP


@dataclass(frozen=True)
class RIDEConfig:
    """Constructor arguments of `RIDE`; the defaults are the paper's."""

    num_channels: int = 1
    num_hiddens: int = 64
    num_layers: int = 1
    num_components: int = 32
    num_scales: int = 4
    num_features: int = 32
    nb_size: int = 5
    # The spatial LSTM's cells are clipped to +-cell_clip (design §4): the default acts only on runaway cells; a
    # small clip keeps the state of a model trained on small patches bounded on whole photographs.
    cell_clip: float = CELL_CLIP

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if name == "cell_clip":
                continue
            minimum = 0 if name == "num_layers" else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, found {value!r}")
        if self.nb_size < 3 or self.nb_size % 2 == 0:
            raise ValueError(f"nb_size must be odd and >= 3, found {self.nb_size}")
        clip = self.cell_clip
        if not isinstance(clip, (int, float)) or isinstance(clip, bool) or not clip > 0:
            raise ValueError(f"cell_clip must be a number > 0, found {clip!r}")


def check_images(images: object, num_channels: int, nb: Neighbourhood, name: str = "images") -> None:
    """Raise ValueError unless `images` is a finite float tensor [B, C, H, W] at least as large as the window."""
    if not isinstance(images, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor [B, C, H, W], found {type(images).__name__}")
    if not images.is_floating_point():
        raise ValueError(f"{name} must have a floating dtype (pixel values on the [0,1) scale), found {images.dtype}")
    if images.dim() != 4:
        raise ValueError(f"{name} must have shape [B, C, H, W], found {images.dim()} dimensions {tuple(images.shape)}")
    if images.shape[1] != num_channels:
        raise ValueError(f"{name} must have {num_channels} channel(s), found {images.shape[1]} "
                         f"(shape {tuple(images.shape)})")
    if images.shape[2] < nb.rows or images.shape[3] < nb.cols:
        raise ValueError(f"{name} must be at least {nb.rows}x{nb.cols} pixels (the neighbourhood), found "
                         f"{images.shape[2]}x{images.shape[3]}")
    if images.shape[0] == 0:
        raise ValueError(f"{name} holds no image (batch size 0)")
    if not torch.isfinite(images).all():
        raise ValueError(f"{name} contains NaN or infinite values")


def draw_pairs(images: Tensor | Sequence[Tensor], pairs_of: Callable[[Tensor], tuple[Tensor, Tensor]],
               num_pairs: int | None = None, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Random rows of `pairs_of(batch)` (inputs [n, K], outputs [n, M]) over images [B, C, H, W] or a list of
    [C, H, W] of any sizes: num_pairs rows in all (every row when None or when fewer exist), each image of a list
    contributing an equal share drawn per image, so that memory stays O(num_pairs)."""
    if not isinstance(images, (list, tuple)):
        batches = [images]  # pairs_of checks the batch and names what it found
    else:
        for k, img in enumerate(images):
            if not isinstance(img, Tensor) or img.dim() != 3:
                found = tuple(img.shape) if isinstance(img, Tensor) else type(img).__name__
                raise ValueError(f"images[{k}] must be a torch.Tensor [C, H, W], found {found}")
        batches = [img[None] for img in images]
    quotas: list[int | None] = [None] * len(batches)
    if num_pairs is not None and len(batches) > 1:
        quotas = [num_pairs // len(batches) + (k < num_pairs % len(batches)) for k in range(len(batches))]
    ins, outs = [], []
    for batch, quota in zip(batches, quotas, strict=True):
        x, y = pairs_of(batch)
        if quota is not None and quota < x.shape[0]:
            idx = torch.randperm(x.shape[0], generator=generator)[:quota].to(x.device)
            x, y = x[idx], y[idx]
        ins.append(x)
        outs.append(y)
    inputs, outputs = torch.cat(ins), torch.cat(outs)
    if num_pairs is not None and num_pairs < inputs.shape[0]:
        idx = torch.randperm(inputs.shape[0], generator=generator)[:num_pairs].to(inputs.device)
        inputs, outputs = inputs[idx], outputs[idx]
    return inputs, outputs


class RIDE(nn.Module):
    """Recurrent image density estimator: a normalised density over images on the [0,1) scale."""

    def __init__(self, num_channels: int = 1, num_hiddens: int = 64, num_layers: int = 1, num_components: int = 32,
                 num_scales: int = 4, num_features: int = 32, nb_size: int = 5, cell_clip: float = CELL_CLIP) -> None:
        super().__init__()
        self.config = RIDEConfig(num_channels, num_hiddens, num_layers, num_components, num_scales, num_features,
                                 nb_size, cell_clip)
        self.neighbourhood = Neighbourhood.square(nb_size)
        dim_in = num_channels * self.neighbourhood.num_inputs
        self.preconditioner = Preconditioner(dim_in, num_channels)
        self.layers = nn.ModuleList(
            SpatialLSTM(dim_in if k == 0 else num_hiddens, num_hiddens, cell_clip=cell_clip)
            for k in range(num_layers))
        dim_hidden = num_hiddens if num_layers > 0 else dim_in
        self.mcgsm = MCGSM(dim_hidden, num_channels, num_components, num_scales, num_features)

    @property
    def margin(self) -> tuple[int, int, int]:
        """Pixels never predicted at the (top, left, right) border of an image (2, 2, 2 for nb_size 5)."""
        nb = self.neighbourhood
        return nb.rows - 1, nb.column, nb.right

    def check_images(self, images: object) -> None:
        check_images(images, self.config.num_channels, self.neighbourhood)

    # ------------------------------------------------------------------ densities

    def hidden_states(self, whitened_inputs: Tensor, impl: str = "sweep") -> Tensor:
        """Top-layer states [B, Hp, Wp, D] from x~ [B, Hp, Wp, K] (x~ itself when num_layers == 0)."""
        if not self.layers:
            return whitened_inputs
        return run_layers(self.layers, whitened_inputs, impl)

    def _log_prob_pixels(self, images: Tensor, impl: str = "sweep") -> Tensor:
        inputs, outputs = extract_pairs(images, self.neighbourhood)
        x, y = self.preconditioner(inputs, outputs)
        hidden = self.hidden_states(x, impl)
        b, hp, wp, d = hidden.shape
        lp = self.mcgsm.log_prob_unchecked(hidden.reshape(-1, d), y.reshape(-1, y.shape[-1]))
        return lp.view(b, hp, wp) + self.preconditioner.log_jacobian

    def log_prob_pixels(self, images: Tensor, impl: str = "sweep") -> Tensor:
        """ln p(x_ij | x_<ij) in nats, Jacobian included: images [B, C, H, W] on [0,1) -> [B, H-r, W-2r].

        Element [b, i-r, j-r] belongs to pixel (i, j) (r = (nb_size-1)//2); border pixels are never predicted.
        Images of another floating dtype are computed in the model's dtype.
        `impl` chooses the spatial LSTM implementation: "sweep" (fast) or "raster" (reference).
        """
        self.check_images(images)
        return self._log_prob_pixels(images.to(self.preconditioner.mean_in.dtype), impl)

    def log_prob_discrete_pixels(self, values: Tensor) -> Tensor:
        """ln P(v_ij | v_<ij) in nats of 8-bit pixels: values uint8 [B, 1, H, W] -> [B, H-r, W-2r] (one channel).

        The model's density integrated over each value's bin [v/256, (v+1)/256) of the [0,1) scale, the first bin
        extended to -inf and the last to +inf so that the 256 probabilities sum to exactly 1. The context is the
        bin centres (v + 1/2)/256. -log2 of this is the code length an arithmetic coder would use.
        """
        if not isinstance(values, Tensor) or values.dtype != torch.uint8:
            found = values.dtype if isinstance(values, Tensor) else type(values).__name__
            raise ValueError(f"values must be a uint8 tensor [B, 1, H, W], found {found}")
        if self.config.num_channels != 1:
            raise ValueError(f"discrete probabilities need a one-channel model, found {self.config.num_channels}")
        dtype = self.preconditioner.mean_in.dtype
        images = (values.to(dtype) + 0.5) / 256
        self.check_images(images)
        inputs, outputs = extract_pairs(images, self.neighbourhood)
        x = self.preconditioner.whiten_inputs(inputs)
        hidden = self.hidden_states(x)
        v = outputs * 256 - 0.5  # the integer values, [B, Hp, Wp, 1]
        lower = torch.where(v <= 0, float("-inf"), v / 256)
        upper = torch.where(v >= 255, float("inf"), (v + 1) / 256)
        # y -> y~ is increasing for one channel (whiten_out > 0), so bins map to bins.
        lo, hi = (self.preconditioner.whiten_outputs(x, bound).reshape(-1, 1) for bound in (lower, upper))
        b, hp, wp, d = hidden.shape
        return self.mcgsm.log_prob_interval(hidden.reshape(-1, d), lo, hi).view(b, hp, wp)

    def log_prob(self, images: Tensor) -> Tensor:
        """ln p(x) in nats over the predicted pixels: images [B, C, H, W] -> [B]."""
        return self.log_prob_pixels(images).flatten(1).sum(1)

    # ------------------------------------------------------------------ fitting helpers

    @torch.no_grad()
    def training_pairs(self, images: Tensor | Sequence[Tensor], num_pairs: int | None = None,
                       generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Random (neighbourhood, pixel) pairs from images [B, C, H, W] or a list of [C, H, W] of any sizes.

        Returns inputs [N, C*K], outputs [N, C] with N = num_pairs (all pairs when None, or when fewer exist).
        For a list, each image contributes an equal share (drawn per image, so memory stays O(num_pairs)).
        """
        def pairs_of(batch: Tensor) -> tuple[Tensor, Tensor]:
            self.check_images(batch)
            x, y = extract_pairs(batch.to(self.preconditioner.mean_in.dtype), self.neighbourhood)
            return x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])

        return draw_pairs(images, pairs_of, num_pairs, generator)

    def fit_preconditioner(self, images: Tensor | Sequence[Tensor], num_pairs: int = 500_000,
                           generator: torch.Generator | None = None) -> None:
        """Fit the conditional whitening on up to `num_pairs` random pairs of `images` (design §3)."""
        self.preconditioner.fit(*self.training_pairs(images, num_pairs, generator))

    # ------------------------------------------------------------------ sampling

    @torch.no_grad()
    def sample(self, images: Tensor, mask: Tensor | None = None, generator: torch.Generator | None = None,
               return_log_prob: bool = False, order: str = "front") -> Tensor | tuple[Tensor, Tensor]:
        """Ancestral sampling: a copy of images [B, C, H, W] whose predicted pixels where `mask` is True are drawn.

        mask: bool [H, W] or [B, H, W] (default: every predicted pixel); border pixels and pixels where mask is
        False are kept as the boundary condition. Pixels are drawn along the skewed front t = (r+1)*i + j, all
        pixels of a front in one batched step (order="raster": one pixel per step, the slow reference).
        Samples are not clipped to [0,1). With return_log_prob, also returns ln p(x_ij | x_<ij) [B, Hp, Wp] of
        the returned image, recorded while sampling (equal to `log_prob_pixels` of the result).
        """
        from .sampling import ancestral_sample  # sampling imports this module

        self.check_images(images)
        samples, log_probs = ancestral_sample(self, images.to(self.preconditioner.mean_in.dtype), mask, generator,
                                              order)
        samples = samples.to(images.dtype)
        return (samples, log_probs) if return_log_prob else samples
