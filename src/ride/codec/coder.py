"""Lossless compression of 8-bit grey images with a RIDE model, and of 8-bit RGB images with a lossless colour RIDE
(`ride.colour_lossless.LosslessColourRIDE`), with a range coder (`constriction`).

Colour images (format version 8 with the repeat flag of `codec.repeat` and the adaptive probability maps of
`codec.apm`; 6 without the maps; 3, or 5 for a model that clips its cells below 10^4, without either) are coded as
the grey ones are, with the colour model's integer form (`colour_fixedpoint.quantise_colour`): the three channels
of each pixel in the model's order (R, then G given R, then B given R and G), each channel's frame at its own
rounded mean.

`compress` writes grey images as format version 7 (the repeat flag; without it 2, or 4 for a model that clips its
cells below 10^4; docs/codec_format.md): the
model is first turned into exact integer arithmetic (`fixedpoint.quantise`, cached per model), so that a stream
decodes on any machine, under any kernel set, BLAS or thread count; the engine is `codec.engine`. `decompress`
also reads version-1 streams with the float path below.

Version 1 (float, read only). The image is placed in a frame of constant value (its rounded mean, stored in the
header): `top` rows above and `left`/`right` columns beside it, so that every image pixel is a predicted pixel of
the framed canvas and is coded with the model's conditional distribution; the frame is context only. Pixels are
coded along the skewed front (`front.SkewedFront`), one range-coder call per front. For each pixel the model's
discrete distribution over the 256 values is the MCGSM's CDF at the bin edges k/256 of the [0,1) scale (the first
and last bins extended to -inf and +inf, as in `RIDE.log_prob_discrete_pixels`), all mixture components, evaluated
exactly on a window of `span` bins around the pixel's predicted mean; the exact mass of each tail outside the window
is spread geometrically over its bins (the gate of a trained MCGSM spreads over most of its components, so keeping
only the top few costs ~0.1 bit/px, while the window costs ~1e-3 bit/px and a quarter of the work of all 256 bins).
`constriction`'s leaky quantisation turns the table into integer frequencies, every value at least one.

The decoder recomputes each front's probabilities from pixels it has already decoded, so encoder and decoder run
the same code with the same batching. A stream decoded on other hardware (or another BLAS) may see different
rounding; the pixel checksum turns that into an error, never a silently wrong image.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterator

import constriction
import numpy as np
import torch
from torch import Tensor, nn

from ..front import MCGSMTables, SkewedFront
from . import engine
from .colour_fixedpoint import IntColourRIDE, quantise_colour
from .fixedpoint import CELL_CLIP_INT, IntRIDE, quantise
from .format import (
    DIGIT_BITS,
    MODE_CODED,
    MODE_STORED,
    VERSION_1,
    Header,
    Header2,
    Header3,
    model_fingerprint,
    pixel_checksum,
    unpack_header,
)

SPAN = 64  # bins around each pixel's predicted mean where the mixture's CDF is evaluated exactly
TAIL_DECAY = 0.9  # outside the window, each bin further away gets this fraction of its neighbour's probability
WINDOW_DTYPE = torch.float32  # of the [n, components, span] erf evaluations
_CATEGORICAL = constriction.stream.model.Categorical(perfect=False)

Progress = Callable[[int, int], None]

# Default stripe heights (see `default_stripes`). A stripe's top rows lose the context above them, so long stripes
# code smaller, as long as the model does not drift on sequences longer than its training patches (RESULTS.md
# "Stripe height"). photo_colour, trained on patches of up to 128 px, codes every Wikimedia val photograph smaller
# in one stripe than in ~128-row stripes (pooled 3.077 vs 3.089 bits per sub-pixel; ~512 rows: 3.079, encoding
# ~10% slower at two threads). Grey models trained on patches of up to 64 px drift on some with the default cell clip
# (photo_grey before its clip of 10: 003 2.971 bits/px in stripes of ~512 rows, 2.932 at ~128); with its cells
# clipped at 10, photo_grey codes all ten smaller at ~512 rows (pooled 3.5714 vs 3.5869) and in one stripe (3.5692).
STRIPE_ROWS = 128  # grey, a model with format 2's cell clip
STRIPE_ROWS_COLOUR = 512  # RGB (formats 3 and 5)
STRIPE_ROWS_BOUNDED = 512  # grey, a model that clips its cells more tightly (format 4)
DIGIT_BITS_DEFAULT = 2
_INT_MODELS: dict[bytes, IntRIDE | IntColourRIDE] = {}


def integer_model(model: nn.Module) -> IntRIDE | IntColourRIDE:
    """The model's exact integer form (`fixedpoint.quantise`, or `colour_fixedpoint.quantise_colour` for a lossless
    colour model), computed once per distinct model."""
    _check_model(model)
    key = model_fingerprint(model)
    if key not in _INT_MODELS:
        _INT_MODELS[key] = quantise_colour(model) if _is_colour(model) else quantise(model)
    return _INT_MODELS[key]


def _is_colour(model: nn.Module) -> bool:
    from ..colour_lossless import LosslessColourRIDE

    return isinstance(model, LosslessColourRIDE)


def default_stripes(height: int, colour: bool = False, bounded: bool = False) -> int:
    """Stripes used by `compress` when not given: about one per STRIPE_ROWS_COLOUR rows (RGB), STRIPE_ROWS_BOUNDED
    (grey, a model whose cells are clipped below format 2's clip: `bounded`) or STRIPE_ROWS (other grey models)."""
    rows = STRIPE_ROWS_COLOUR if colour else STRIPE_ROWS_BOUNDED if bounded else STRIPE_ROWS
    return max(1, round(height / rows))


def compress(model: nn.Module, image: np.ndarray | Tensor, progress: Progress | None = None,
             stripes: int | None = None, digit_bits: int = DIGIT_BITS_DEFAULT, backend: str = "auto",
             repeat: bool = True, maps: bool | None = None) -> bytes:
    """Lossless stream of a grey image uint8 [H, W] (any size from 1x1) under a one-channel RIDE `model` with at
    least one layer (format version 7; without `repeat` 2, or 4 with a tighter cell clip), or of an RGB image uint8
    [H, W, 3] under a `LosslessColourRIDE` (format version 8; without `maps` 6, without `repeat` either 3, or 5
    with a tighter cell clip; then `backend` must be "auto" or "kernels").

    `progress(done_fronts, total_fronts)` is called after every front. `stripes` horizontal stripes are coded side
    by side (default `default_stripes(H, colour, bounded)`; more stripes: more pixels per front, less context at
    their top rows).
    `digit_bits` (1, 2, 4 or 8) bits of each pixel are coded per range-coder symbol. Returns the bytes of the
    stream (header included, the model excluded: decoding needs the same model). Where the model would need more
    than 8 bits per pixel (noise), the pixels are stored as they are. The result does not depend on the machine,
    the torch kernels or the number of threads. `backend`: "kernels" (compiled with numba), "torch", or "auto"
    (the kernels when numba can be imported): the same integers, the same stream. `repeat` (colour only): code
    each pixel's (sub-pixel's) repeat flag first (`codec.repeat`; format 7 grey, 6 colour; False: format 2 or 4
    grey, 3 or 5 colour, as before). `maps` (colour with `repeat` only; default: True for colour images): refine
    the digits' binary decisions with adaptive probability maps learnt on the image as it is coded (`codec.apm`;
    format 8; False: format 6).
    """
    im = integer_model(model)
    colour = isinstance(im, IntColourRIDE)
    pixels = _check_image(image, colour)
    height, width = pixels.shape[:2]
    bounded = not colour and im.cell_clip < CELL_CLIP_INT
    stripes = default_stripes(height, colour, bounded) if stripes is None else stripes
    if not isinstance(stripes, int) or not 1 <= stripes <= 65535:
        raise ValueError(f"stripes must be an integer in [1, 65535], found {stripes!r}")
    if digit_bits not in DIGIT_BITS:
        raise ValueError(f"digit_bits must be one of {DIGIT_BITS}, found {digit_bits!r}")
    stripes = engine.stripe_layout(height, stripes)[1]
    if maps and not (colour and repeat):
        raise ValueError("the adaptive probability maps (format 8) are for colour images with the repeat flags")
    if colour:
        maps = repeat if maps is None else maps
        return _compress_colour(im, pixels, stripes, digit_bits, progress, backend, repeat, maps)
    pad = int(round(float(pixels.mean())))
    payload = engine.encode(im, pixels, pad, stripes, digit_bits, progress, backend, repeat)
    mode = MODE_CODED
    if len(payload) >= pixels.size:
        mode, payload = MODE_STORED, pixels.tobytes()
    header = Header2(mode, height, width, pad, stripes, digit_bits, im.fingerprint, pixel_checksum(pixels),
                     len(payload), im.cell_clip, repeat)  # format 7 (2, or 4 for a tighter clip, without repeat)
    return header.pack() + payload


def _compress_colour(im: IntColourRIDE, pixels: np.ndarray, stripes: int, digit_bits: int,
                     progress: Progress | None, backend: str, repeat: bool, maps: bool) -> bytes:
    if backend not in ("auto", "kernels"):
        raise ValueError(f"the colour codec runs on the compiled kernels: backend 'auto' or 'kernels', found "
                         f"{backend!r}")
    coded = _to_coded(pixels, im.transform)
    pads = tuple(int(round(float(coded[..., k].mean()))) for k in range(3))
    payload = engine.encode_colour(im, coded, pads, stripes, digit_bits, progress, repeat, maps)
    mode = MODE_CODED
    if len(payload) >= pixels.size:
        mode, payload = MODE_STORED, pixels.tobytes()
    height, width, _ = pixels.shape
    # format 8 (6 without the maps, 3 or 5 without the flags either)
    header = Header3(mode, height, width, pads, stripes, digit_bits, im.transform, im.fingerprint,
                     pixel_checksum(pixels), len(payload), im.cell_clip, repeat, maps)
    return header.pack() + payload


def _to_coded(pixels: np.ndarray, transform: str) -> np.ndarray:
    """RGB [H, W, 3] -> the coded channel order (an 8-bit permutation; its own inverse)."""
    return np.ascontiguousarray(pixels[..., [1, 0, 2]]) if transform == "grb" else pixels


def compress_v1(model: nn.Module, image: np.ndarray | Tensor, progress: Progress | None = None,
                span: int = SPAN) -> bytes:
    """A format-version-1 stream (float probabilities: decodes only where the arithmetic matches the encoder's);
    kept for comparisons and tests of the version-1 reader."""
    _check_model(model)
    pixels = _check_image(image)
    if not isinstance(span, int) or not 1 <= span <= 256:
        raise ValueError(f"span must be an integer in [1, 256], found {span!r}")
    height, width = pixels.shape
    pad = int(round(float(pixels.mean())))
    with _one_thread():
        payload = _encode(model, pixels, pad, span, progress)
    mode = MODE_CODED
    if len(payload) >= pixels.size:
        mode, payload = MODE_STORED, pixels.tobytes()
    header = Header(mode, height, width, pad, span, model_fingerprint(model), pixel_checksum(pixels), len(payload))
    return header.pack() + payload


def _encode(model: nn.Module, pixels: np.ndarray, pad: int, span: int, progress: Progress | None) -> bytes:
    """The range coder's words of an image, little-endian."""
    height, width = pixels.shape
    coder = _FrontCoder(model, height, width, pad, span)
    coder.fill(pixels)
    encoder = constriction.stream.queue.RangeEncoder()
    values = torch.from_numpy(pixels.astype(np.int32)).view(-1)
    for t in range(coder.front.num_fronts):
        front = coder.front.front(t)
        if front.size:
            probs = coder.probabilities(front)
            encoder.encode(values[_image_index(coder, front)].numpy(), _CATEGORICAL, probs)
        if progress is not None:
            progress(t + 1, coder.front.num_fronts)
    return np.ascontiguousarray(encoder.get_compressed(), dtype="<u4").tobytes()


def _fingerprint(model: nn.Module, version: int) -> bytes:
    """The fingerprint a stream of `version` made with `model` carries (float weights for 1, integer tables for 2
    and 3)."""
    return model_fingerprint(model) if version == VERSION_1 else integer_model(model).fingerprint


def made_with(model: nn.Module, data: bytes) -> bool:
    """Whether the stream `data` was made with `model` (its header's fingerprint is the model's); ValueError for a
    foreign, truncated or damaged header."""
    _check_model(model)
    header, _ = unpack_header(data)
    return header.fingerprint == _fingerprint(model, header.version)


def decompress(model: nn.Module, data: bytes, progress: Progress | None = None, backend: str = "auto") -> np.ndarray:
    """The image of a stream made by `compress` with the same `model`: grey uint8 [H, W] (format 7, 2, 4 or 1), or RGB
    uint8 [H, W, 3] (format 3, 5 or 6, a colour model).

    ValueError for a foreign, truncated or corrupted stream, a stream of another model, or a checksum mismatch.
    `backend` as for `compress` (formats 2 and 3).
    """
    _check_model(model)
    header, payload = unpack_header(data)
    fingerprint = _fingerprint(model, header.version)
    if header.fingerprint != fingerprint:
        kind = "colour" if isinstance(header, Header3) else "grey"
        raise ValueError(f"the stream ({kind}) was made with another model (fingerprint {header.fingerprint.hex()}), "
                         f"not this one ({fingerprint.hex()}); decode it with the model that encoded it")
    if isinstance(header, Header3):
        image = _decompress_colour(integer_model(model), header, payload, progress, backend)
    elif header.mode == MODE_STORED:
        image = np.frombuffer(payload, dtype=np.uint8).reshape(header.height, header.width).copy()
    elif header.version == VERSION_1:
        with _one_thread():
            image = _decode(model, header, payload, progress)
    else:
        im = integer_model(model)
        if im.cell_clip != header.cell_clip:  # the clip the stream was coded with (format 2: 10^4), not the model's
            im = dataclasses.replace(im, cell_clip=header.cell_clip)
        image = engine.decode(im, payload, header.height, header.width, header.pad_value, header.stripes,
                              header.digit_bits, progress, backend, header.repeat)
    if pixel_checksum(image) != header.pixel_crc:
        cause = ("it was encoded on hardware or software whose arithmetic differs from this one's (format version 1 "
                 "streams decode only there)" if header.version == VERSION_1 else "or made by another program")
        raise ValueError(f"pixel checksum mismatch after decoding: the stream is corrupted, or {cause}")
    return image


def _decompress_colour(im: IntColourRIDE, header: Header3, payload: bytes, progress: Progress | None,
                       backend: str) -> np.ndarray:
    if header.channel_order != im.transform:
        raise ValueError(f"corrupted ride codec stream: channel order {header.channel_order!r}, but the model that "
                         f"made it codes {im.transform!r}")
    if header.mode == MODE_STORED:
        return np.frombuffer(payload, dtype=np.uint8).reshape(header.height, header.width, 3).copy()
    if im.cell_clip != header.cell_clip:  # the clip the stream was coded with (format 3: 10^4), not the model's
        im = dataclasses.replace(im, cell_clip=header.cell_clip)
    if backend not in ("auto", "kernels"):
        raise ValueError(f"the colour codec runs on the compiled kernels: backend 'auto' or 'kernels', found "
                         f"{backend!r}")
    coded = engine.decode_colour(im, payload, header.height, header.width, header.pads, header.stripes,
                                 header.digit_bits, progress, header.repeat, header.maps)
    return _to_coded(coded, im.transform)


def _decode(model: nn.Module, header: Header, payload: bytes, progress: Progress | None) -> np.ndarray:
    """The pixels uint8 [H, W] of a range-coded payload (not yet checked against the checksum)."""
    coder = _FrontCoder(model, header.height, header.width, header.pad_value, header.span)
    decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(payload, dtype="<u4").astype(np.uint32))
    pixels = np.empty(header.height * header.width, dtype=np.uint8)
    for t in range(coder.front.num_fronts):
        front = coder.front.front(t)
        if front.size:
            probs = coder.probabilities(front)
            try:
                symbols = decoder.decode(_CATEGORICAL, probs)
            except Exception as err:  # constriction reports inconsistent data in its own types
                raise ValueError(f"corrupted ride codec stream: the range decoder failed ({err})") from err
            coder.write(front, symbols)
            pixels[_image_index(coder, front).numpy()] = symbols
        if progress is not None:
            progress(t + 1, coder.front.num_fronts)
    return pixels.reshape(header.height, header.width)


@torch.no_grad()
def ideal_code_length_bits(model: nn.Module, image: np.ndarray | Tensor) -> float:
    """-log2 P(image) in bits under the model's exact discrete probabilities (all mixture components, no
    quantisation) with the same frame as `compress`: the code length an ideal entropy coder would reach."""
    _check_model(model)
    if _is_colour(model):
        pixels = _to_coded(_check_image(image, colour=True), model.config.transform)
        canvases = [_framed(model, torch.from_numpy(pixels[..., k]), int(round(float(pixels[..., k].mean()))))
                    for k in range(3)]
        values = (torch.cat(canvases, 1) * 256).floor().to(torch.uint8)
        values = values[:, [1, 0, 2]] if model.config.transform == "grb" else values  # back to R, G, B
    else:
        pixels = _check_image(image)
        pad = int(round(float(pixels.mean())))
        canvas = _framed(model, torch.from_numpy(pixels), pad)
        values = (canvas * 256).floor().to(torch.uint8)
    return float(-model.log_prob_discrete_pixels(values).sum()) / math.log(2)


# ---------------------------------------------------------------------------------------------- internals

@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """torch on one intra-op thread while coding, restored afterwards: with two threads some kernels split their
    work differently (other rounding), and encoder and decoder must compute bit-identical probabilities."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _check_model(model: object) -> None:
    from ..model import RIDE

    if _is_colour(model):
        return
    if not isinstance(model, RIDE):
        raise ValueError(f"the codec needs a ride.RIDE model (grey) or a LosslessColourRIDE (RGB), found "
                         f"{type(model).__name__}")
    if model.config.num_channels != 1:
        raise ValueError(f"the codec needs a one-channel (grey) RIDE, found {model.config.num_channels} channels")


def _check_image(image: object, colour: bool = False) -> np.ndarray:
    """uint8 [H, W] (grey) or [H, W, 3] (colour: R, G, B) as a contiguous numpy array; ValueError naming what was
    found otherwise."""
    kind, shape = ("RGB", "[H, W, 3]") if colour else ("grey", "[H, W]")
    if isinstance(image, Tensor):
        image = image.detach().cpu().numpy()
    if not isinstance(image, np.ndarray):
        raise ValueError(f"expected {'an' if colour else 'a'} {kind} image as a uint8 array {shape}, found "
                         f"{type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected an 8-bit {kind} image (uint8 {shape}), found dtype {image.dtype}")
    if colour and (image.ndim != 3 or image.shape[2] != 3):
        hint = " (grey? use a grey model, e.g. photo_grey)" if image.ndim == 2 else ""
        raise ValueError(f"a colour model codes RGB images of shape [H, W, 3], found shape {image.shape}{hint}")
    if not colour and image.ndim != 2:
        raise ValueError(f"expected a grey image of shape [H, W], found shape {image.shape}"
                         + (" (colour? use a colour model, e.g. photo_colour)" if image.ndim == 3 else ""))
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"expected an image of at least 1x1 pixels, found shape {image.shape}")
    return np.ascontiguousarray(image)


def _framed(model: nn.Module, pixels: Tensor, pad: int) -> Tensor:
    """Canvas [1, 1, top + H, left + W + right] on [0,1): bin centres (v + 1/2)/256, the frame at `pad`."""
    top, left, right = model.margin
    h, w = pixels.shape
    dtype = model.preconditioner.mean_in.dtype
    canvas = torch.full((1, 1, top + h, left + w + right), (pad + 0.5) / 256, dtype=dtype,
                        device=model.preconditioner.mean_in.device)
    canvas[0, 0, top:, left : left + w] = (pixels.to(canvas) + 0.5) / 256
    return canvas


def _image_index(coder: _FrontCoder, front) -> Tensor:  # noqa: ANN001 - a front.Front
    """Raster index in the H x W image of the front's pixels (the predicted grid is the image)."""
    return front.cells.cpu()


class _FrontCoder:
    """What encoder and decoder share: the framed canvas, the front stepper and the per-model tables."""

    def __init__(self, model: nn.Module, height: int, width: int, pad: int, span: int) -> None:
        self.canvas = _framed(model, torch.zeros(height, width, dtype=torch.uint8), pad)
        self.front = SkewedFront(model, self.canvas)
        self.tables: MCGSMTables = self.front.mcgsm
        mcgsm, dtype, device = model.mcgsm, WINDOW_DTYPE, self.canvas.device
        self.span = span
        self.num_scales = mcgsm.num_scales
        self.whiten = float(model.preconditioner.whiten_out[0, 0])  # y~ = (y - base) * whiten
        # the erf argument of edge e for component (c, s): ((e - base) whiten - mu_c) exp(alpha_cs / 2) / sqrt 2
        self.half_scale = ((0.5 * mcgsm.scales.detach().double()).exp() / math.sqrt(2.0)).to(dtype).view(-1)
        self.steps = torch.arange(span + 1, device=device)
        self.levels = torch.arange(256, device=device)
        self.decay = math.log(TAIL_DECAY)

    def fill(self, pixels: np.ndarray) -> None:
        """Encoder: the whole image at once (a front only reads pixels before it, as the decoder has them)."""
        top, left, _ = self.front.model.margin
        h, w = pixels.shape
        self.canvas[0, 0, top:, left : left + w] = (torch.from_numpy(pixels).to(self.canvas) + 0.5) / 256

    def write(self, front, symbols: np.ndarray) -> None:  # noqa: ANN001 - a front.Front
        """Decoder: store a front's decoded values."""
        values = torch.from_numpy(symbols.astype(np.float64)).to(self.canvas)
        self.front.write(front, ((values + 0.5) / 256)[:, None])

    def probabilities(self, front) -> np.ndarray:  # noqa: ANN001 - a front.Front
        """float64 [n, 256]: each cell's probabilities of the 256 values (before the coder's quantisation)."""
        hidden, base = self.front.hidden(front)
        gate, means = self.tables.gate_and_means(hidden)
        n, dtype, span = gate.shape[0], WINDOW_DTYPE, self.span
        weights = torch.softmax(gate.view(n, -1).to(dtype), 1)  # [n, C*S]
        mu = means.to(dtype).repeat_interleave(self.num_scales, 1)  # [n, C*S]
        base = base.to(dtype)
        # the window: span bins around the mixture's mean, in 8-bit levels
        centre = ((weights * mu).sum(1, keepdim=True) / self.whiten + base) * 256 - 0.5
        lo = (centre.round().long()[:, 0] - span // 2).clamp_(0, 256 - span)  # [n]
        edges = (lo[:, None] + self.steps).to(dtype) / 256  # [n, span + 1]
        standard = (edges - base).mul_(self.whiten)  # y~ of the edges
        arg = torch.addcmul((mu * self.half_scale).neg_()[:, :, None], standard[:, None, :],
                            self.half_scale[:, None]).erf_()  # [n, C*S, span + 1]
        cdf = torch.bmm(weights[:, None, :], arg)[:, 0].double().add_(1.0).mul_(0.5)  # [n, span + 1]
        cdf[:, 0].masked_fill_(lo == 0, 0.0)  # the first bin reaches -inf, the last +inf
        cdf[:, span].masked_fill_(lo + span == 256, 1.0)
        cdf = torch.cummax(cdf.clamp_(0.0, 1.0), 1).values  # rounding must not make a bin negative
        probs = torch.zeros(n, 256, dtype=torch.float64, device=cdf.device)
        probs.scatter_(1, lo[:, None] + self.steps[:-1], torch.diff(cdf, 1))
        # the tails' exact masses spread geometrically away from the window
        below, above = self.levels < lo[:, None], self.levels >= (lo + span)[:, None]  # [n, 256]
        dist = torch.where(below, lo[:, None] - 1 - self.levels, self.levels - lo[:, None] - span).double()
        profile = dist.mul_(self.decay).exp_()
        left = (profile * below).sum(1, keepdim=True).clamp_(min=1e-300)
        right = (profile * above).sum(1, keepdim=True).clamp_(min=1e-300)
        tails = torch.where(below, cdf[:, :1] / left, (1.0 - cdf[:, span:]) / right) * profile
        probs += torch.where(below | above, tails, 0.0)
        return probs.cpu().numpy()
