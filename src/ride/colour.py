"""Colour RIDE (design §11): RGB images through a fixed YCbCr transform, Y first, then (Cb, Cr) given Y.

Colour transform: full-range ITU-R BT.601 YCbCr as in JPEG/JFIF, on the [0,1) scale (Kr = 0.299, Kb = 0.114):

    Y  = Kr R + Kg G + Kb B                      (the luma of the grey data, design §1)
    Cb = 0.5 (B - Y) / (1 - Kb) + 0.5
    Cr = 0.5 (R - Y) / (1 - Kr) + 0.5

It is not volume-preserving: det = Kg / (4 (1 - Kb)(1 - Kr)) ~ 0.2363, so every pixel's log-density gets the
constant ln|det| ~ -1.443 nats, which makes `log_prob` an exact density of the RGB values on the [0,1) scale:

    ln p(rgb_ij | rgb_<ij) = ln p(Y_ij | Y_<ij) + ln p(Cb_ij, Cr_ij | Y_<=ij, CbCr_<ij) + ln|det|   (nats)

Pixel order: raster over pixels, and within a pixel Y before (Cb, Cr). The luma model is a one-channel `RIDE`
on the causal window of Y. The chroma model sees the same causal window of all three channels plus the
current pixel's Y (known once Y is drawn), with a 2-D MCGSM output, a 2-D conditional whitening and its own
spatial LSTM. Both predict the same pixel grid, so the per-pixel densities add up.

Discrete probabilities: the colour transform mixes the 8-bit bins of the three channels, so the exact discrete
probability of an 8-bit RGB pixel is not a product of 1-D interval probabilities; this module does not compute
it. It reports the dequantisation bound instead (`bits_per_dim`): 8 - rate / 3 bits per dimension (sub-pixel),
rate the log-likelihood in bit per RGB pixel on the [0,1) scale, an upper bound on the discrete NLL.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from .mcgsm import MCGSM
from .model import RIDE, RIDEConfig, check_images, draw_pairs
from .neighbourhood import Neighbourhood, extract_pairs
from .preconditioner import Preconditioner
from .sampling import sample_outputs
from .slstm import SpatialLSTM, run_layers
from .units import bits_per_pixel, dequantize

# ---------------------------------------------------------------------------------------------- colour transform

_KR, _KB = 0.299, 0.114
_KG = 1.0 - _KR - _KB
# Rows: Y, Cb, Cr; columns: R, G, B (float64; cast to the images' dtype at use).
YCBCR_MATRIX = torch.tensor([
    [_KR, _KG, _KB],
    [-0.5 * _KR / (1 - _KB), -0.5 * _KG / (1 - _KB), 0.5],
    [0.5, -0.5 * _KG / (1 - _KR), -0.5 * _KB / (1 - _KR)],
], dtype=torch.float64)
YCBCR_OFFSET = torch.tensor([0.0, 0.5, 0.5], dtype=torch.float64)
_YCBCR_INVERSE = torch.linalg.inv(YCBCR_MATRIX)
YCBCR_LOG_DET = math.log(_KG / (4 * (1 - _KB) * (1 - _KR)))  # ln|det YCBCR_MATRIX|, nats per pixel, ~ -1.443


def _apply(matrix: Tensor, images: Tensor) -> Tensor:
    return torch.einsum("kc,bchw->bkhw", matrix.to(device=images.device, dtype=images.dtype), images)


def _check_rgb(images: object, name: str = "images") -> None:
    if isinstance(images, Tensor) and images.dim() == 4 and images.shape[1] != 3:
        raise ValueError(f"{name} must be RGB images [B, 3, H, W], found {images.shape[1]} channel(s) "
                         f"(shape {tuple(images.shape)})")


def rgb_to_ycbcr(images: Tensor) -> Tensor:
    """Full-range BT.601 YCbCr of RGB images: [B, 3, H, W] -> [B, 3, H, W] (Y, Cb, Cr), same scale and dtype."""
    _check_rgb(images)
    offset = YCBCR_OFFSET.to(device=images.device, dtype=images.dtype).view(3, 1, 1)
    return _apply(YCBCR_MATRIX, images) + offset


def ycbcr_to_rgb(images: Tensor) -> Tensor:
    """The inverse of `rgb_to_ycbcr`: [B, 3, H, W] (Y, Cb, Cr) -> [B, 3, H, W] (R, G, B)."""
    _check_rgb(images)
    offset = YCBCR_OFFSET.to(device=images.device, dtype=images.dtype).view(3, 1, 1)
    return _apply(_YCBCR_INVERSE, images - offset)


def bits_per_dim(log_prob_nats: Tensor | float, num_pixels: int | None = None) -> float:
    """Dequantisation bound on the discrete NLL of 8-bit RGB data, in bits per dimension (sub-pixel).

    log_prob_nats: a sum of ln p of RGB pixels on the [0,1) scale over num_pixels pixels (or per-pixel values
    when num_pixels is None). Returns 8 - rate / 3 with rate in bit per RGB pixel; for x = (v + u) / 256,
    E_u[this] >= -log2 P(v) / 3 per pixel. Lower is better (an NLL), unlike the rate.
    """
    return 8.0 - bits_per_pixel(log_prob_nats, num_pixels) / 3.0


# ---------------------------------------------------------------------------------------------- models


@dataclass(frozen=True)
class ColourRIDEConfig:
    """Constructor arguments of `ColourRIDE` (shared by its luma and chroma models); the defaults are RIDE's."""

    num_hiddens: int = 64
    num_layers: int = 1
    num_components: int = 32
    num_scales: int = 4
    num_features: int = 32
    nb_size: int = 5

    def __post_init__(self) -> None:
        RIDEConfig(num_channels=1, **asdict(self))  # the same checks and messages as RIDE's config

    @property
    def num_channels(self) -> int:
        """Channels of the modelled images (R, G, B); not a constructor argument."""
        return 3


def colour_pairs(ycbcr: Tensor, nb: Neighbourhood) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Luma and chroma (inputs, outputs) of every predicted pixel of YCbCr images [B, 3, H, W].

    Returns luma inputs [B, Hp, Wp, K] (the causal window of Y), luma outputs [B, Hp, Wp, 1], chroma inputs
    [B, Hp, Wp, 3K+1] (the causal windows of Y, Cb, Cr, then the current Y) and chroma outputs [B, Hp, Wp, 2].
    """
    inputs, outputs = extract_pairs(ycbcr, nb)  # [.., 3K] in channel blocks Y, Cb, Cr; [.., 3]
    k = nb.num_inputs
    return inputs[..., :k], outputs[..., :1], torch.cat([inputs, outputs[..., :1]], -1), outputs[..., 1:]


class ChromaRIDE(nn.Module):
    """p(Cb_ij, Cr_ij | causal windows of Y, Cb, Cr and Y_ij): a RIDE whose output is 2-D and whose inputs hold
    the current pixel's Y. Same attributes as RIDE (neighbourhood, preconditioner, layers, mcgsm)."""

    def __init__(self, num_hiddens: int = 64, num_layers: int = 1, num_components: int = 32, num_scales: int = 4,
                 num_features: int = 32, nb_size: int = 5) -> None:
        super().__init__()
        self.neighbourhood = Neighbourhood.square(nb_size)
        self.num_hiddens = num_hiddens
        dim_in = 3 * self.neighbourhood.num_inputs + 1
        self.preconditioner = Preconditioner(dim_in, 2)
        self.layers = nn.ModuleList(
            SpatialLSTM(dim_in if k == 0 else num_hiddens, num_hiddens) for k in range(num_layers))
        self.mcgsm = MCGSM(num_hiddens if num_layers > 0 else dim_in, 2, num_components, num_scales, num_features)

    def hidden_states(self, whitened_inputs: Tensor, impl: str = "sweep") -> Tensor:
        """Top-layer states [B, Hp, Wp, D] from x~ [B, Hp, Wp, 3K+1] (x~ itself when there is no layer)."""
        return run_layers(self.layers, whitened_inputs, impl) if self.layers else whitened_inputs

    def log_prob_pairs(self, inputs: Tensor, outputs: Tensor, impl: str = "sweep") -> Tensor:
        """ln p(CbCr | inputs) in nats, Jacobian included: inputs [B, Hp, Wp, 3K+1], outputs [B, Hp, Wp, 2] ->
        [B, Hp, Wp] (no checks)."""
        x, y = self.preconditioner(inputs, outputs)
        hidden = self.hidden_states(x, impl)
        b, hp, wp, d = hidden.shape
        lp = self.mcgsm.log_prob_unchecked(hidden.reshape(-1, d), y.reshape(-1, 2))
        return lp.view(b, hp, wp) + self.preconditioner.log_jacobian


class ColourRIDE(nn.Module):
    """A normalised density over RGB images on the [0,1) scale: a luma `RIDE` and a `ChromaRIDE` (see above)."""

    def __init__(self, num_hiddens: int = 64, num_layers: int = 1, num_components: int = 32, num_scales: int = 4,
                 num_features: int = 32, nb_size: int = 5) -> None:
        super().__init__()
        self.config = ColourRIDEConfig(num_hiddens, num_layers, num_components, num_scales, num_features, nb_size)
        args = asdict(self.config)
        self.luma = RIDE(num_channels=1, **args)
        self.chroma = ChromaRIDE(**args)

    @property
    def neighbourhood(self) -> Neighbourhood:
        """The causal window of every channel."""
        return self.luma.neighbourhood

    @property
    def margin(self) -> tuple[int, int, int]:
        """Pixels never predicted at the (top, left, right) border of an image (2, 2, 2 for nb_size 5)."""
        return self.luma.margin

    @property
    def _dtype(self) -> torch.dtype:
        return self.luma.preconditioner.mean_in.dtype

    def check_images(self, images: object, name: str = "images") -> None:
        """Raise ValueError unless `images` is a finite float RGB tensor [B, 3, H, W] at least the window's size."""
        _check_rgb(images, name)
        check_images(images, 3, self.neighbourhood, name)

    # ------------------------------------------------------------------ densities

    def log_prob_ycbcr_pixels(self, ycbcr: Tensor, impl: str = "sweep") -> tuple[Tensor, Tensor]:
        """(ln p(Y_ij | Y_<ij), ln p(Cb_ij, Cr_ij | Y_<=ij, CbCr_<ij)) in nats: YCbCr images [B, 3, H, W] -> two
        [B, Hp, Wp].

        Densities of the YCbCr values (preconditioner Jacobians included, the colour transform's not), computed in
        the model's dtype.
        """
        check_images(ycbcr, 3, self.neighbourhood, "ycbcr")
        return self._log_prob_ycbcr_pixels(ycbcr.to(self._dtype), impl)

    def _log_prob_ycbcr_pixels(self, ycbcr: Tensor, impl: str = "sweep") -> tuple[Tensor, Tensor]:
        _, _, chroma_in, chroma_out = colour_pairs(ycbcr, self.neighbourhood)
        luma = self.luma._log_prob_pixels(ycbcr[:, :1], impl)
        return luma, self.chroma.log_prob_pairs(chroma_in, chroma_out, impl)

    def log_prob_pixels(self, images: Tensor, impl: str = "sweep") -> Tensor:
        """ln p(rgb_ij | rgb_<ij) in nats of the 3 channels together: images [B, 3, H, W] RGB on [0,1) ->
        [B, H-r, W-2r] (r = (nb_size-1)//2; element [b, i-r, j-r] belongs to pixel (i, j)).

        The colour transform's ln|det| is included, so this is a density of the RGB values on the [0,1) scale.
        Images of another floating dtype are computed in the model's dtype. impl: "sweep" or "raster".
        """
        self.check_images(images)
        luma, chroma = self._log_prob_ycbcr_pixels(rgb_to_ycbcr(images.to(self._dtype)), impl)
        return luma + chroma + YCBCR_LOG_DET

    def log_prob(self, images: Tensor) -> Tensor:
        """ln p(x) in nats over the predicted pixels: RGB images [B, 3, H, W] -> [B]."""
        return self.log_prob_pixels(images).flatten(1).sum(1)

    @torch.no_grad()
    def nll_bound_bits_per_dim(self, values: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Dequantisation bound on the discrete NLL per image: values uint8 [B, 3, H, W] -> [B] bits per dim.

        Draws x = (v + u) / 256 (u from `generator`) and returns 8 - rate / 3 over the predicted pixels (see
        `bits_per_dim`); its expectation over u bounds -log2 P(v) per dimension from above.
        """
        if not isinstance(values, Tensor) or values.dtype != torch.uint8:
            found = values.dtype if isinstance(values, Tensor) else type(values).__name__
            raise ValueError(f"values must be a uint8 tensor [B, 3, H, W], found {found}")
        lp = self.log_prob_pixels(dequantize(values, generator).to(self._dtype))
        return 8.0 - lp.mean((1, 2)) / (3 * math.log(2))

    # ------------------------------------------------------------------ fitting helpers

    @torch.no_grad()
    def training_pairs(self, images: Tensor | Sequence[Tensor], num_pairs: int | None = None,
                       generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Random chroma (inputs, outputs) pairs of RGB images [B, 3, H, W] or a list of [3, H, W] of any sizes.

        Returns inputs [N, 3K+1] (windows of Y, Cb, Cr, then the current Y) and outputs [N, 2] (Cb, Cr), with
        N = num_pairs (all pairs when None or when fewer exist); each image of a list gives an equal share.
        The luma pairs are inputs[:, :K] and inputs[:, -1:].
        """
        def pairs_of(batch: Tensor) -> tuple[Tensor, Tensor]:
            self.check_images(batch)
            _, _, x, y = colour_pairs(rgb_to_ycbcr(batch.to(self._dtype)), self.neighbourhood)
            return x.reshape(-1, x.shape[-1]), y.reshape(-1, 2)

        return draw_pairs(images, pairs_of, num_pairs, generator)

    def fit_preconditioner(self, images: Tensor | Sequence[Tensor], num_pairs: int = 500_000,
                           generator: torch.Generator | None = None) -> None:
        """Fit the luma and chroma whitenings (design §3) on the same up to `num_pairs` random pixels of RGB images
        [B, 3, H, W] or a list of [3, H, W]."""
        inputs, outputs = self.training_pairs(images, num_pairs, generator)
        k = self.neighbourhood.num_inputs
        self.luma.preconditioner.fit(inputs[:, :k], inputs[:, -1:])
        self.chroma.preconditioner.fit(inputs, outputs)

    # ------------------------------------------------------------------ sampling

    @torch.no_grad()
    def sample(self, images: Tensor, mask: Tensor | None = None, generator: torch.Generator | None = None,
               return_log_prob: bool = False, order: str = "front") -> Tensor | tuple[Tensor, Tensor]:
        """Ancestral sampling: a copy of RGB images [B, 3, H, W] whose predicted pixels where `mask` is True are
        drawn (all three channels).

        mask: bool [H, W] or [B, H, W] (default: every predicted pixel); other pixels are kept (the boundary
        condition). Y is drawn for the whole image first (the luma model never looks at chroma), then (Cb, Cr)
        along the skewed front, both on the shared front step (`front.SkewedFront`); order="front_reference" (the
        plain front loop) and "raster" (one pixel per step) are the references. Samples are not clipped.
        With return_log_prob, also returns ln p(rgb_ij | rgb_<ij) [B, Hp, Wp] of the returned image, recorded
        while sampling (equal to `log_prob_pixels` of the result up to the rounding of the colour transform).
        """
        self.check_images(images)
        ycbcr = rgb_to_ycbcr(images.to(self._dtype))
        luma, luma_lp = self.luma.sample(ycbcr[:, :1], mask, generator, return_log_prob=True, order=order)
        ycbcr[:, :1] = luma
        grid_mask = self._grid_mask(mask, images)
        ycbcr, chroma_lp = self._sample_chroma(ycbcr, grid_mask, generator, order)
        # Kept pixels are returned bit for bit, not through the colour transform's round trip.
        full = torch.zeros(images.shape[0], *images.shape[2:], dtype=torch.bool, device=images.device)
        top, left, _ = self.margin
        full[:, top : top + grid_mask.shape[1], left : left + grid_mask.shape[2]] = grid_mask
        samples = torch.where(full[:, None], ycbcr_to_rgb(ycbcr).to(images.dtype), images)
        return (samples, luma_lp + chroma_lp + YCBCR_LOG_DET) if return_log_prob else samples

    def _grid_mask(self, mask: Tensor | None, images: Tensor) -> Tensor:
        """The sampling mask cropped to the predicted grid, bool [B, Hp, Wp] (shape checked by the luma sampler)."""
        b, _, h, w = images.shape
        hp, wp = self.neighbourhood.grid_shape(h, w)
        if mask is None:
            return torch.ones(b, hp, wp, dtype=torch.bool, device=images.device)
        top, left, _ = self.margin
        mask = mask.to(device=images.device, dtype=torch.bool).expand(b, h, w)
        return mask[:, top : top + hp, left : left + wp]

    def _sample_chroma(self, ycbcr: Tensor, grid_mask: Tensor, generator: torch.Generator | None,
                       order: str) -> tuple[Tensor, Tensor]:
        """Draw (Cb, Cr) where grid_mask [B, Hp, Wp] is True, given all of Y: YCbCr [B, 3, H, W] ->
        (a copy with the drawn chroma, ln p(Cb, Cr | .) [B, Hp, Wp] of the returned chroma, Jacobian included).

        The chroma inputs (windows of Y, Cb, Cr, then the current Y) reach `right` columns right in the rows above,
        like the luma's: the same skewed front, on the shared step (`front.SkewedFront` with current=1,
        outputs Cb, Cr); order="raster" runs the plain reference loop."""
        return sample_outputs(self.chroma, ycbcr, grid_mask, generator, order, current=1, outputs=slice(1, 3))
