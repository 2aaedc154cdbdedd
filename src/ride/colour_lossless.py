"""Lossless colour RIDE: exact discrete probabilities of 8-bit RGB pixels, one channel after another (issue 31).

Pixel order: raster over pixels; within a pixel, the three channels c_0, c_1, c_2 of a reversible integer colour
transform of (R, G, B) (`TRANSFORMS`), in that order. Channel values are integers in the transform's ranges
(8 bits: 0..255; 9-bit chroma: -255..255), on the model scale x = (c + u) / 256 (u in [0,1): the bin; its centre
u = 1/2 for discrete probabilities).

Model (the grey RIDE's trunk with three channel blocks, plus three small heads):
- the causal windows of all three channels (3K inputs, design §2) are whitened and feed one spatial LSTM stack
  (design §4); its top state h_ij summarises the causal past of the pixel;
- one preconditioner whitens the three outputs given the window with a triangular map (`Preconditioner.fit(...,
  triangular=True)`): y~_k = (x_k - m_k - P_k x~ - sum_{j<k} L_kj y~_j) / L_kk, the standardised residual of
  x_k's linear regression on the window and on the channels already coded at the same pixel (so that, e.g.,
  G's mean follows R linearly);
- head k, a univariate MCGSM (design §5), models y~_k given [h_ij, y~_0 .. y~_(k-1)] (k = 0, 1, 2 extra inputs).

    ln P(c_ij | c_<ij) = sum_k ln P_k(c_k,ij | h_ij, c_0..c_(k-1),ij)     (nats per RGB pixel)

P_k(c | .) is head k's density integrated over c's bin [c/256, (c+1)/256) mapped through the (increasing) whitening,
the first and last bin of the channel's range extended to -inf and +inf, so that each conditional sums to exactly
1 over the channel's values; the contexts are bin centres. -log2 of it is the code length of an arithmetic coder.
The transform is a bijection of 8-bit RGB onto its image, so these are exact probabilities of RGB pixels (the
model also gives some mass to transformed triples outside the RGB cube, which only costs code length).

`log_prob_pixels` is the continuous counterpart for training and the tile protocol: a density of dequantised RGB
images on [0,1)^3 per pixel, each unit cube of RGB values moved onto its transformed cube (a translation, so no
Jacobian), giving 8 - rate/3 as the usual dequantisation bound per sub-pixel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from .mcgsm import MCGSM
from .model import RIDEConfig, check_images, draw_pairs
from .neighbourhood import Neighbourhood, extract_pairs
from .preconditioner import Preconditioner
from .slstm import SpatialLSTM, run_layers
from .wavefront import CELL_CLIP

# ---------------------------------------------------------------------------------------------- colour transforms

_BYTE, _CHROMA = (0, 255), (-255, 255)
# name -> (channel names, value range of each channel)
# "rgb" is the default: coded in sequence with the triangular whitening, native R, G, B beat the integer
# transforms (experiments/colour_lossless.md), whose 9-bit chroma and rounding only add structure to model.
TRANSFORMS: dict[str, tuple[tuple[str, str, str], tuple[tuple[int, int], ...]]] = {
    "rgb": (("R", "G", "B"), (_BYTE, _BYTE, _BYTE)),  # R, then G given R, then B given R and G
    "grb": (("G", "R", "B"), (_BYTE, _BYTE, _BYTE)),  # G first
    "ycocg_r": (("Y", "Co", "Cg"), (_BYTE, _CHROMA, _CHROMA)),  # lifting YCoCg-R (Malvar & Sullivan)
    "rct": (("Y", "Cb", "Cr"), (_BYTE, _CHROMA, _CHROMA)),  # the JPEG 2000 reversible colour transform
}


def _floor_div(a: Tensor, b: int) -> Tensor:
    return torch.div(a, b, rounding_mode="floor")


def to_channels(values: Tensor, transform: str) -> Tensor:
    """The transform's integer channels of 8-bit RGB: values uint8 or integer [B, 3, H, W] -> int32 [B, 3, H, W].

    ycocg_r: Co = R - B, t = B + floor(Co/2), Cg = G - t, Y = t + floor(Cg/2).
    rct: Y = floor((R + 2G + B)/4), Cb = B - G, Cr = R - G.
    """
    r, g, b = values.to(torch.int32).unbind(1)
    if transform == "rgb":
        out = (r, g, b)
    elif transform == "grb":
        out = (g, r, b)
    elif transform == "ycocg_r":
        co = r - b
        t = b + _floor_div(co, 2)
        cg = g - t
        out = (t + _floor_div(cg, 2), co, cg)
    elif transform == "rct":
        out = (_floor_div(r + 2 * g + b, 4), b - g, r - g)
    else:
        raise ValueError(f"transform must be one of {sorted(TRANSFORMS)}, found {transform!r}")
    return torch.stack(out, 1)


def from_channels(channels: Tensor, transform: str) -> Tensor:
    """The inverse of `to_channels`: int32 [B, 3, H, W] -> int32 RGB [B, 3, H, W] (outside 0..255 where the
    channels are no transform of an 8-bit pixel)."""
    c0, c1, c2 = channels.to(torch.int32).unbind(1)
    if transform == "rgb":
        out = (c0, c1, c2)
    elif transform == "grb":
        out = (c1, c0, c2)
    elif transform == "ycocg_r":
        t = c0 - _floor_div(c2, 2)
        g = c2 + t
        b = t - _floor_div(c1, 2)
        out = (b + c1, g, b)
    elif transform == "rct":
        g = c0 - _floor_div(c1 + c2, 4)
        out = (c2 + g, g, c1 + g)
    else:
        raise ValueError(f"transform must be one of {sorted(TRANSFORMS)}, found {transform!r}")
    return torch.stack(out, 1)


# ---------------------------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class LosslessColourConfig:
    """Constructor arguments of `LosslessColourRIDE`; the network's defaults are RIDE's."""

    transform: str = "rgb"  # measured best (experiments/colour_lossless.md)
    num_hiddens: int = 64
    num_layers: int = 1
    num_components: int = 32
    num_scales: int = 4
    num_features: int = 32
    nb_size: int = 5
    # as RIDEConfig.cell_clip: the shipped colour models clip at 10, which leaves their code lengths of whole
    # photographs within 0.001% and stops photo_colour's cells running away along a tall image (RESULTS.md, issue 31)
    cell_clip: float = CELL_CLIP

    def __post_init__(self) -> None:
        if self.transform not in TRANSFORMS:
            raise ValueError(f"transform must be one of {sorted(TRANSFORMS)}, found {self.transform!r}")
        network = {k: v for k, v in asdict(self).items() if k != "transform"}
        RIDEConfig(num_channels=3, **network)  # the same checks and messages as RIDE's config

    @property
    def num_channels(self) -> int:
        """Channels of the modelled images (R, G, B); not a constructor argument."""
        return 3


class LosslessColourRIDE(nn.Module):
    """Exact discrete probabilities of 8-bit RGB images, channel by channel (see the module notes)."""

    def __init__(self, transform: str = "rgb", num_hiddens: int = 64, num_layers: int = 1,
                 num_components: int = 32, num_scales: int = 4, num_features: int = 32, nb_size: int = 5,
                 cell_clip: float = CELL_CLIP) -> None:
        super().__init__()
        self.config = LosslessColourConfig(transform, num_hiddens, num_layers, num_components, num_scales,
                                           num_features, nb_size, cell_clip)
        self.neighbourhood = Neighbourhood.square(nb_size)
        dim_in = 3 * self.neighbourhood.num_inputs
        self.preconditioner = Preconditioner(dim_in, 3)  # fitted with triangular=True
        self.layers = nn.ModuleList(
            SpatialLSTM(dim_in if k == 0 else num_hiddens, num_hiddens, cell_clip=cell_clip) for k in range(num_layers))
        dim_hidden = num_hiddens if num_layers > 0 else dim_in
        self.heads = nn.ModuleList(
            MCGSM(dim_hidden + k, 1, num_components, num_scales, num_features) for k in range(3))

    @property
    def channel_names(self) -> tuple[str, str, str]:
        return TRANSFORMS[self.config.transform][0]

    @property
    def channel_ranges(self) -> tuple[tuple[int, int], ...]:
        """(lowest, highest) integer value of each coded channel."""
        return TRANSFORMS[self.config.transform][1]

    @property
    def margin(self) -> tuple[int, int, int]:
        """Pixels never predicted at the (top, left, right) border of an image (2, 2, 2 for nb_size 5)."""
        nb = self.neighbourhood
        return nb.rows - 1, nb.column, nb.right

    @property
    def _dtype(self) -> torch.dtype:
        return self.preconditioner.mean_in.dtype

    def check_images(self, images: object, name: str = "images") -> None:
        """Raise ValueError unless `images` is a finite float RGB tensor [B, 3, H, W] at least the window's size."""
        check_images(images, 3, self.neighbourhood, name)

    def _check_values(self, values: object) -> None:
        if not isinstance(values, Tensor) or values.dtype != torch.uint8:
            found = values.dtype if isinstance(values, Tensor) else type(values).__name__
            raise ValueError(f"values must be a uint8 tensor [B, 3, H, W] (8-bit RGB), found {found}")
        self.check_images(values.float(), "values")

    # ------------------------------------------------------------------ the coded channels

    def channels_of(self, images: Tensor) -> Tensor:
        """The coded channels on the model scale of dequantised RGB images on [0,1): [B, 3, H, W] -> [B, 3, H, W].

        Each unit cube of RGB values (v + [0,1)^3) / 256 moves onto the cube (to_channels(v) + [0,1)^3) / 256, the
        same offsets u: a translation per cube, so densities carry over without a Jacobian.
        """
        if self.config.transform == "rgb":
            return images
        scaled = images * 256
        v = scaled.detach().floor().clamp(0, 255)
        shift = to_channels(v.to(torch.int32), self.config.transform).to(images.dtype) - v
        return (scaled + shift) / 256

    def _centres(self, codes: Tensor) -> Tensor:
        """Bin centres of integer channel codes [B, 3, H, W] on the model scale, in the model's dtype."""
        return (codes.to(self._dtype) + 0.5) / 256

    def _check_codes(self, codes: object) -> None:
        if not isinstance(codes, Tensor) or codes.is_floating_point() or codes.dtype == torch.bool:
            found = codes.dtype if isinstance(codes, Tensor) else type(codes).__name__
            raise ValueError(f"codes must be an integer tensor [B, 3, H, W], found {found}")
        self.check_images(codes.float(), "codes")
        for k, (lo, hi) in enumerate(self.channel_ranges):
            if codes[:, k].numel() and (int(codes[:, k].min()) < lo or int(codes[:, k].max()) > hi):
                raise ValueError(f"codes of channel {k} ({self.channel_names[k]}) must lie in {lo}..{hi}, found "
                                 f"{int(codes[:, k].min())}..{int(codes[:, k].max())}")

    # ------------------------------------------------------------------ densities

    def hidden_states(self, whitened_inputs: Tensor, impl: str = "sweep") -> Tensor:
        """Top-layer states [B, Hp, Wp, D] from x~ [B, Hp, Wp, 3K] (x~ itself when num_layers == 0)."""
        return run_layers(self.layers, whitened_inputs, impl) if self.layers else whitened_inputs

    def _trunk(self, channels: Tensor, impl: str = "sweep") -> tuple[Tensor, Tensor, Tensor]:
        """(hidden [B, Hp, Wp, D], linear prediction m + P x~ [B, Hp, Wp, 3], outputs [B, Hp, Wp, 3]) of the coded
        channels [B, 3, H, W] on the model scale."""
        inputs, outputs = extract_pairs(channels, self.neighbourhood)
        pre = self.preconditioner
        x = pre.whiten_inputs(inputs)
        return self.hidden_states(x, impl), pre.mean_out + x @ pre.predictor.T, outputs

    def _head_input(self, hidden: Tensor, y_tilde: Tensor, k: int) -> Tensor:
        """[N, D + k]: the top state and the whitened channels coded before channel k (y~ [N, >= k])."""
        return torch.cat([hidden, y_tilde[:, :k]], 1) if k else hidden

    def _log_prob_channels(self, channels: Tensor, discrete: bool, impl: str = "sweep") -> Tensor:
        """ln p of each coded channel given its context, nats: channels [B, 3, H, W] on the model scale ->
        [B, Hp, Wp, 3]. discrete: probabilities of the integer values' bins (channels must be bin centres), else
        densities (each channel's share ln L^-1_kk of the whitening's Jacobian included)."""
        hidden, base, outputs = self._trunk(channels, impl)
        b, hp, wp, d = hidden.shape
        hidden, base, outputs = hidden.reshape(-1, d), base.reshape(-1, 3), outputs.reshape(-1, 3)
        whiten = self.preconditioner.whiten_out  # lower triangular, positive diagonal
        resid = outputs - base
        y = resid @ whiten.T  # y~_k depends on the channels <= k only
        if discrete:
            codes = (outputs.detach() * 256 - 0.5).round()  # the integer channel values
        out = []
        for k, head in enumerate(self.heads):
            inputs = self._head_input(hidden, y, k)
            if not discrete:
                out.append(head.log_prob_unchecked(inputs, y[:, k : k + 1]) + whiten[k, k].log())
                continue
            # y~_k = whiten_kk x_k + shift, increasing in x_k: the bin of x_k maps to an interval of y~_k
            lo, hi = self.channel_ranges[k]
            shift = resid[:, :k] @ whiten[k, :k] - whiten[k, k] * base[:, k]
            lower = torch.where(codes[:, k] <= lo, -math.inf, codes[:, k] / 256)
            upper = torch.where(codes[:, k] >= hi, math.inf, (codes[:, k] + 1) / 256)
            bounds = [(whiten[k, k] * bound + shift)[:, None] for bound in (lower, upper)]
            out.append(head.log_prob_interval(inputs, *bounds))
        return torch.stack(out, 1).view(b, hp, wp, 3)

    def log_prob_pixels(self, images: Tensor, impl: str = "sweep") -> Tensor:
        """ln p(rgb_ij | rgb_<ij) in nats (density on the [0,1) scale, three channels together): dequantised RGB
        images [B, 3, H, W] -> [B, H-r, W-2r] (element [b, i-r, j-r] belongs to pixel (i, j)).

        For training and the tile protocol (8 - rate/3 bounds the discrete code length per sub-pixel); exact code
        lengths come from `log_prob_discrete_pixels`. impl: "sweep" or "raster" (the spatial LSTM's).
        """
        self.check_images(images)
        return self._log_prob_channels(self.channels_of(images.to(self._dtype)), False, impl).sum(-1)

    def log_prob(self, images: Tensor) -> Tensor:
        """ln p(x) in nats over the predicted pixels: dequantised RGB images [B, 3, H, W] -> [B]."""
        return self.log_prob_pixels(images).flatten(1).sum(1)

    def log_prob_discrete_pixels(self, values: Tensor) -> Tensor:
        """ln P(c_k,ij | c_<k,ij, rgb_<ij) in nats, exact: values uint8 RGB [B, 3, H, W] -> [B, H-r, W-2r, 3].

        Channel k of the last axis is the k-th coded channel (`channel_names`); the sum over it is ln P of the RGB
        pixel, and -sum / (3 ln 2) its code length in bits per sub-pixel. See the module notes.
        """
        self._check_values(values)
        return self._log_prob_channels(self._centres(to_channels(values, self.config.transform)), True)

    def log_prob_discrete_channels(self, codes: Tensor) -> Tensor:
        """`log_prob_discrete_pixels` of coded channels: integer codes [B, 3, H, W] within `channel_ranges` (on
        or off the RGB cube) -> [B, H-r, W-2r, 3] nats."""
        self._check_codes(codes)
        return self._log_prob_channels(self._centres(codes), True)

    @torch.no_grad()
    def bits_per_subpixel(self, values: Tensor) -> Tensor:
        """Exact code length per image in bits per sub-pixel over the predicted pixels: uint8 [B, 3, H, W] -> [B]."""
        lp = self.log_prob_discrete_pixels(values)
        return -lp.flatten(1).mean(1) / math.log(2)

    # ------------------------------------------------------------------ fitting helpers

    @torch.no_grad()
    def training_pairs(self, images: Tensor | Sequence[Tensor], num_pairs: int | None = None,
                       generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Random (windows [N, 3K], coded channels [N, 3]) pairs of dequantised RGB images [B, 3, H, W] or a
        list of [3, H, W] of any sizes, on the model scale (each image of a list gives an equal share)."""
        def pairs_of(batch: Tensor) -> tuple[Tensor, Tensor]:
            self.check_images(batch)
            x, y = extract_pairs(self.channels_of(batch.to(self._dtype)), self.neighbourhood)
            return x.reshape(-1, x.shape[-1]), y.reshape(-1, 3)

        return draw_pairs(images, pairs_of, num_pairs, generator)

    def fit_preconditioner(self, images: Tensor | Sequence[Tensor], num_pairs: int = 500_000,
                           generator: torch.Generator | None = None) -> None:
        """Fit the input whitening and the triangular output whitening (design §3) on up to `num_pairs` random
        pixels of dequantised RGB images [B, 3, H, W] or a list of [3, H, W]."""
        self.preconditioner.fit(*self.training_pairs(images, num_pairs, generator), triangular=True)

    # ------------------------------------------------------------------ sampling

    @torch.no_grad()
    def sample(self, values: Tensor, mask: Tensor | None = None, generator: torch.Generator | None = None,
               return_log_prob: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Ancestral sampling of 8-bit RGB images: a copy of values uint8 [B, 3, H, W] whose predicted pixels
        where `mask` (bool [H, W] or [B, H, W], default all) is True are drawn (see `sample_channels`).

        With return_log_prob, also returns ln P [B, Hp, Wp, 3] of the drawn channels. With a transform other than
        rgb/grb, a pixel drawn off the RGB cube (the model allows it, rarely once trained) is clipped into it;
        `sample_channels` returns the draws themselves.
        """
        self._check_values(values)
        codes = to_channels(values, self.config.transform)
        drawn, log_probs = self.sample_channels(codes, mask, generator, return_log_prob=True)
        rgb = from_channels(drawn, self.config.transform).clamp(0, 255).to(torch.uint8)
        samples = torch.where((drawn != codes).any(1, keepdim=True), rgb, values)
        return (samples, log_probs) if return_log_prob else samples

    @torch.no_grad()
    def sample_channels(self, codes: Tensor, mask: Tensor | None = None, generator: torch.Generator | None = None,
                        return_log_prob: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Ancestral sampling of coded channels: a copy of integer codes [B, 3, H, W] (int32) whose predicted
        pixels where `mask` is True are drawn, channel by channel from the exact discrete conditionals (the bin of
        a draw from head k's density, clamped to the channel's range: the extended end bins), along the skewed
        front on the shared step (`front.SkewedFront`).

        With return_log_prob, also returns ln P [B, Hp, Wp, 3] of the returned codes, recorded while sampling
        (equal to `log_prob_discrete_channels` of the result). All randomness comes from `generator`.
        """
        from .front import SkewedFront
        from .sampling import _grid_mask

        self._check_codes(codes)
        b, _, h, w = codes.shape
        hp, wp = self.neighbourhood.grid_shape(h, w)
        grid = _grid_mask(mask, codes, self).reshape(b, hp * wp)
        canvas = self._centres(codes)
        sf = SkewedFront(self, canvas)
        whiten = self.preconditioner.whiten_out.to(canvas.dtype)
        log_probs = canvas.new_zeros(b, hp * wp, 3)
        for t in range(sf.num_fronts):
            front = sf.front(t)
            if not front.size:
                continue
            hidden, base = sf.hidden(front)  # [N, D], [N, 3]
            keep = ~grid[:, front.cells].reshape(-1)
            value, y = sf.read(front).clone(), torch.zeros_like(base)
            lps = []
            for k, head in enumerate(self.heads):
                lo, hi = self.channel_ranges[k]
                inputs = self._head_input(hidden, y, k)
                shift = (value[:, :k] - base[:, :k]) @ whiten[k, :k] - whiten[k, k] * base[:, k]
                drawn = (head.sample(inputs, generator)[:, 0].to(canvas.dtype) - shift) / whiten[k, k]
                code = (drawn * 256).floor().clamp(lo, hi)
                code = torch.where(keep, (value[:, k] * 256 - 0.5).round(), code)
                value[:, k] = (code + 0.5) / 256
                y[:, k] = whiten[k, k] * value[:, k] + shift
                lower = torch.where(code <= lo, -math.inf, code / 256)
                upper = torch.where(code >= hi, math.inf, (code + 1) / 256)
                bounds = [(whiten[k, k] * bound + shift)[:, None] for bound in (lower, upper)]
                lps.append(head.log_prob_interval(inputs, *bounds))
            sf.write(front, value)
            log_probs[:, front.cells] = torch.stack(lps, 1).to(canvas.dtype).view(b, -1, 3)
        samples = (canvas * 256 - 0.5).round().to(torch.int32)
        log_probs = log_probs.view(b, hp, wp, 3)
        return (samples, log_probs) if return_log_prob else samples
