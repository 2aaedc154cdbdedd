"""Portable lossless coding with the integer RIDE (`fixedpoint`): the engine of codec format version 2.

The image is cut into `stripes` horizontal stripes of equal height (the last may be shorter), each in its own
constant frame (the image's rounded mean), and the stripes are stepped side by side along the skewed front, so that
a front holds up to stripes x (cells per stripe) pixels. Each pixel value v is coded as 8 / b digits of b bits, most
significant first (b = `digit_bits`): a digit chooses one of 2^b equal sub-intervals of the values still possible,
with probabilities proportional to the integer mixture CDF's masses Cq(e_(j+1)) - Cq(e_j) on them (`fixedpoint`),
rescaled in integer arithmetic to frequencies g_j with sum 2^24 - 2^b; `constriction`'s range coder receives g_j
as float64 and its leaky quantiser turns them into g_j + 1 with total exactly 2^24 (every quantity inside it is then
an integer below 2^24 and its scale factor is exactly 1, so its float arithmetic is exact). Coding order: front,
digit, then cells (stripe, row). The decoder evaluates the CDF only at the edges its digits need: 8 / b rounds of
2^b - 1 edges per pixel, the encoder all of them at once.

Colour (format versions 3 and 5, `encode_colour` / `decode_colour`): the same with the integer colour model on canvases
of the three coded channels (a frame value each); per front the trunk step, then channel 0, 1, 2 of all the front's
cells in turn (coding order: front, channel, digit, cells), each head given the channels decoded before it.

With `repeat` (formats 7, 6 and 8): before a channel's digits, the repeat flags of its cells rank by rank
(`codec.repeat`), and digits only for the cells where no candidate hit, each without its missed candidates. On the
kernel stepper each channel of a front is one compiled call with its own range coder (`fused`, `rangecoder`: the
same words as constriction's); `_RepeatFlags` with constriction is the torch backend's path and the reference.
"""

from __future__ import annotations

from collections.abc import Callable

import constriction
import numpy as np
import torch
from torch import Tensor

from . import apm, fused, kernels, rangecoder, repeat
from .colour_fixedpoint import IntColourRIDE
from .fixedpoint import FrontStepper, IntRIDE, Mixture
from .repeat import HIT, RepeatCounts

PRECISION = 24  # constriction's default range coder: frequencies sum to 2^24
_CATEGORICAL = constriction.stream.model.Categorical(perfect=False)

Progress = Callable[[int, int], None]


def stripe_layout(height: int, stripes: int) -> tuple[int, int]:
    """(stripe height, number of stripes actually used) for `stripes` requested on an image of `height` rows."""
    stripes = max(1, min(stripes, height))
    rows = -(-height // stripes)
    return rows, -(-height // rows)


class _Canvases:
    """The stripes' framed canvases of pixel codes 2v + 1 [B, top + rows, left + W + right] and the front stepper
    (the compiled kernels' when numba is there, else the torch one: the same integers, the same stream)."""

    def __init__(self, im: IntRIDE | IntColourRIDE, height: int, width: int, pad: int | tuple[int, int, int],
                 stripes: int, backend: str) -> None:
        top, left, right = im.margin
        self.rows, self.count = stripe_layout(height, stripes)
        self.height, self.width, self.top, self.left = height, width, top, left
        shape = (self.count, top + self.rows, left + width + right)
        if backend == "auto":
            backend = "kernels" if kernels.available() else "torch"
        if isinstance(im, IntColourRIDE):
            if backend != "kernels":
                raise RuntimeError("the colour codec runs on the compiled kernels only: it needs numba (pip install "
                                   "numba)" if backend == "torch" else f"unknown codec backend {backend!r}")
            canvas = np.empty((self.count, 3, *shape[1:]), dtype=np.int32)
            canvas[:] = (2 * np.asarray(pad, dtype=np.int32) + 1)[None, :, None, None]
            self.stepper = kernels.ColourKernelStepper(im, canvas)
        elif backend == "kernels":
            self.stepper = kernels.KernelStepper(im, np.full(shape, 2 * pad + 1, dtype=np.int32))
        elif backend == "torch":
            self.stepper = TorchCoding(im, torch.full(shape, 2 * pad + 1, dtype=torch.int64))
        else:
            raise ValueError(f"unknown codec backend {backend!r}: auto, kernels or torch")
        self.canvas = self.stepper.canvas
        # stripe b's grid row i is image row b * rows + i (dummy rows past the image's end are never coded)
        self.stripe_rows = np.array([min(self.rows, height - b * self.rows) for b in range(self.count)])

    def fill(self, pixels: np.ndarray) -> None:
        for b in range(self.count):  # stripe by stripe: no image-sized temporaries (large images)
            part = 2 * pixels[b * self.rows : (b + 1) * self.rows].astype(np.int32) + 1
            if part.ndim == 3:  # colour [rows, W, 3] into [3, rows, W]
                self.canvas[b, :, self.top : self.top + part.shape[0], self.left : self.left + self.width] = (
                    part.transpose(2, 0, 1))
                continue
            self.canvas[b, self.top : self.top + part.shape[0], self.left : self.left + self.width] = (
                torch.from_numpy(part) if isinstance(self.canvas, Tensor) else part)

    def cells(self, t: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Front t's cells inside the image (kept, indices into the front's B * n cells) and the image raster
        index of each kept cell; None when the front is empty."""
        lo, hi = self.stepper.rows(t)
        if lo > hi:
            return None
        rows = np.arange(lo, hi + 1)
        valid = (rows[None, :] < self.stripe_rows[:, None]).reshape(-1)
        image_rows = (np.arange(self.count)[:, None] * self.rows + rows[None, :]).reshape(-1)
        cols = np.tile(t - self.stepper.skew * rows, self.count)
        keep = np.flatnonzero(valid)
        return keep, (image_rows * self.width + cols)[keep]


class TorchCoding(FrontStepper):
    """The torch stepper with the coding interface of `kernels.KernelStepper` (front, encode_digits, decoder,
    write)."""

    def front(self, t: int) -> Mixture:
        return self.prepare(*self.step(t))

    def encode_digits(self, mix: Mixture, keep: np.ndarray, values: np.ndarray, digit_bits: int,
                      skip: np.ndarray | None = None, skip_mass: np.ndarray | None = None,
                      ) -> tuple[np.ndarray, np.ndarray]:
        mix = mix.select(torch.from_numpy(keep))
        v = torch.from_numpy(values.astype(np.int64))
        n, levels, radix = v.shape[0], 8 // digit_bits, 1 << digit_bits
        starts = [(v >> (8 - digit_bits * level)) << (8 - digit_bits * level) for level in range(levels)]
        edges = torch.cat([_interior(s, level, digit_bits) for level, s in enumerate(starts)], 1)
        skip_t, mass = _skips(n, skip, skip_mass)
        inner = _excluded(self.cdf(mix, edges), edges, skip_t, mass).view(n, levels, radix - 1)
        low, high = torch.zeros(n, 1, dtype=torch.int64), mix.total - mass.sum(1, keepdim=True)
        freqs, symbols = [], []
        for level in range(levels):
            ext = torch.cat([low, inner[:, level], high], 1)
            digit = (v >> (8 - digit_bits * (level + 1))) & (radix - 1)
            freqs.append(_digit_frequencies(ext, digit_bits))
            symbols.append(digit.numpy().astype(np.int32))
            low, high = ext.gather(1, digit[:, None]), ext.gather(1, digit[:, None] + 1)
        return np.concatenate(symbols), np.concatenate(freqs)

    def decoder(self, mix: Mixture, keep: np.ndarray, digit_bits: int, skip: np.ndarray | None = None,
                skip_mass: np.ndarray | None = None) -> _TorchDigits:
        return _TorchDigits(self, mix.select(torch.from_numpy(keep)), digit_bits, skip, skip_mass)

    def value_masses(self, mix: Mixture, keep: np.ndarray, values: np.ndarray,
                     wanted: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """int64 ([n, K], [n]): the masses Cq(v + 1) - Cq(v) of each kept cell's values v [n, K] (0..255), and its
        Cq(256) (`wanted` is ignored: all are computed at once)."""
        mix = mix.select(torch.from_numpy(keep))
        v = torch.from_numpy(np.asarray(values, dtype=np.int64))
        cq = self.cdf(mix, torch.cat([v.clamp(min=1), v + 1], 1))
        low, high = cq[:, : v.shape[1]], cq[:, v.shape[1] :]
        return (high - torch.where(v > 0, low, 0)).numpy(), mix.total[:, 0].numpy()

    def write(self, t: int, codes: np.ndarray) -> None:
        """Store front t's pixel codes [B * n] (cell order) in the canvases."""
        self.flat.index_copy_(1, self.pixel_index(t), torch.from_numpy(codes.astype(np.int64)).view(self.batch, -1))


def _skips(n: int, skip: np.ndarray | None, skip_mass: np.ndarray | None) -> tuple[Tensor, Tensor]:
    """int64 tensors (values left out, their masses) [n, K]; none: nothing left out ([n, 1] of -1 and 0)."""
    if skip is None:
        return torch.full((n, 1), -1, dtype=torch.int64), torch.zeros((n, 1), dtype=torch.int64)
    return torch.from_numpy(np.asarray(skip, dtype=np.int64)), torch.from_numpy(np.asarray(skip_mass, dtype=np.int64))


def _excluded(cq: Tensor, edges: Tensor, skip: Tensor, mass: Tensor) -> Tensor:
    """Cq [n, E] at edges [n, E] without the masses [n, K] of the values skip [n, K] (every edge above a value loses
    its mass)."""
    return cq - (mass[:, None, :] * (edges[:, :, None] > skip[:, None, :])).sum(2)


class _TorchDigits:
    def __init__(self, stepper: TorchCoding, mix: Mixture, digit_bits: int, skip: np.ndarray | None = None,
                 skip_mass: np.ndarray | None = None) -> None:
        n = mix.total.shape[0]
        self.stepper, self.mix, self.digit_bits = stepper, mix, digit_bits
        self.skip, self.mass = _skips(n, skip, skip_mass)
        self.start = torch.zeros(n, dtype=torch.int64)
        self.low, self.high = torch.zeros(n, 1, dtype=torch.int64), mix.total - self.mass.sum(1, keepdim=True)

    def frequencies(self, level: int) -> np.ndarray:
        edges = _interior(self.start, level, self.digit_bits)
        inner = _excluded(self.stepper.cdf(self.mix, edges), edges, self.skip, self.mass)
        self.ext = torch.cat([self.low, inner, self.high], 1)
        return _digit_frequencies(self.ext, self.digit_bits)

    def advance(self, digits: np.ndarray, level: int) -> None:
        digit = torch.from_numpy(digits.astype(np.int64))
        self.start += digit << (8 - self.digit_bits * (level + 1))
        self.low, self.high = self.ext.gather(1, digit[:, None]), self.ext.gather(1, digit[:, None] + 1)

    @property
    def values(self) -> np.ndarray:
        return self.start.numpy()


def _digit_frequencies(ext: Tensor, digit_bits: int) -> np.ndarray:
    """Cq at the 2^b + 1 edges of each cell's interval [N, 2^b + 1] -> frequencies g [N, 2^b] (float64 holding
    integers), sum 2^24 - 2^b per row; an interval without mass gets equal frequencies."""
    free = (1 << PRECISION) - (1 << digit_bits)
    rel = ext - ext[:, :1]
    total = rel[:, -1:]
    empty = total == 0
    j = torch.arange(ext.shape[1])
    uniform = (j * free) >> digit_bits
    scaled = torch.where(empty, uniform, torch.div(rel * free, torch.where(empty, 1, total), rounding_mode="floor"))
    return torch.diff(scaled, 1).double().numpy()


def _interior(lo: Tensor, level: int, digit_bits: int) -> Tensor:
    """Interior edges [N, 2^b - 1] of the sub-intervals of digit `level` given each cell's interval start lo [N]."""
    step = 1 << (8 - digit_bits * (level + 1))
    return lo[:, None] + step * torch.arange(1, 1 << digit_bits)


@torch.no_grad()
def encode(im: IntRIDE, pixels: np.ndarray, pad: int, stripes: int, digit_bits: int,
           progress: Progress | None = None, backend: str = "auto", repeat: bool = False, fuse: bool = True) -> bytes:
    """The range coder's 32-bit words (little-endian bytes) of uint8 pixels [H, W]; with `repeat` (format 7),
    per front the kept cells' repeat flags first, then the digits of those that missed (`codec.repeat`), in one
    compiled call per front on the kernel stepper (`fused`; `fuse=False`: through `_RepeatFlags`, the same
    stream)."""
    height, width = pixels.shape
    grid = _Canvases(im, height, width, pad, stripes, backend)
    grid.fill(pixels)
    stepper = grid.stepper
    values = pixels.reshape(-1)
    counts = RepeatCounts(1) if repeat else None
    front_coder = _front_coder(stepper, counts, None, digit_bits, fuse, rangecoder.RangeEncoder())
    encoder = constriction.stream.queue.RangeEncoder()
    for t in range(stepper.num_fronts):
        cells = grid.cells(t)
        if cells is not None:
            keep, index = cells
            x = values[index].astype(np.int64)
            if front_coder is not None:
                front_coder.start(t, keep)
                front_coder.channel(0, stepper.front(t), x)
                front_coder.finish()
            elif counts is None:
                symbols, freqs = stepper.encode_digits(stepper.front(t), keep, x, digit_bits)
                encoder.encode(symbols, _CATEGORICAL, freqs)
            else:
                flags = _RepeatFlags(counts, stepper, t, keep)
                flags.encode(encoder, 0, stepper.front(t), x, digit_bits)
                flags.update()
        if progress is not None:
            progress(t + 1, stepper.num_fronts)
    return _words(encoder, front_coder)


def _front_coder(stepper: kernels.KernelStepper | TorchCoding, counts: RepeatCounts | None,
                 tables: apm.Tables | None, digit_bits: int, fuse: bool,
                 coder: rangecoder.RangeEncoder | rangecoder.RangeDecoder) -> fused.FrontCoder | None:
    """The compiled coder of fronts with repeat flags (`fused`) where it applies (flags, the kernel stepper,
    `fuse`), else None."""
    if counts is None or not fuse or not isinstance(stepper, kernels.KernelStepper):
        return None
    return fused.FrontCoder(stepper, counts, tables, digit_bits, coder)


def _words(encoder, front_coder: fused.FrontCoder | None) -> bytes:  # noqa: ANN001 - constriction's encoder
    """The stream's 32-bit words as little-endian bytes, from whichever coder coded it."""
    words = front_coder.coder.get_compressed() if front_coder is not None else encoder.get_compressed()
    return np.ascontiguousarray(words, dtype="<u4").tobytes()


def _read_values(decoder, digits, digit_bits: int) -> np.ndarray:  # noqa: ANN001 - range decoder, digit state
    """The kept cells' values [n] of one front (and channel): their digits read level by level."""
    for level in range(8 // digit_bits):
        digits.advance(_decode_symbols(decoder, digits.frequencies(level)), level)
    return digits.values


@torch.no_grad()
def decode(im: IntRIDE, payload: bytes, height: int, width: int, pad: int, stripes: int, digit_bits: int,
           progress: Progress | None = None, backend: str = "auto", repeat: bool = False,
           fuse: bool = True) -> np.ndarray:
    """uint8 pixels [H, W] of a payload made by `encode` with the same `repeat` (not yet checked against the
    checksum); `fuse` as for `encode`."""
    grid = _Canvases(im, height, width, pad, stripes, backend)
    stepper = grid.stepper
    words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
    decoder = constriction.stream.queue.RangeDecoder(words)
    pixels = np.zeros(height * width, dtype=np.uint8)
    counts = RepeatCounts(1) if repeat else None
    front_coder = _front_coder(stepper, counts, None, digit_bits, fuse, rangecoder.RangeDecoder(words))
    for t in range(stepper.num_fronts):
        cells = grid.cells(t)
        if cells is not None:
            keep, index = cells
            if front_coder is not None:
                front_coder.start(t, keep)
                v = front_coder.channel(0, stepper.front(t))
                front_coder.finish()
            elif counts is None:
                v = _read_values(decoder, stepper.decoder(stepper.front(t), keep, digit_bits), digit_bits)
            else:
                flags = _RepeatFlags(counts, stepper, t, keep)
                v = flags.decode(decoder, 0, stepper.front(t), digit_bits)
                flags.update()
            pixels[index] = v
            lo, hi = stepper.rows(t)
            codes = np.full(stepper.batch * (hi - lo + 1), 2 * pad + 1, dtype=np.int64)  # stripes' padding too
            codes[keep] = 2 * v + 1
            stepper.write(t, codes)
        if progress is not None:
            progress(t + 1, stepper.num_fronts)
    return pixels.reshape(height, width)


def _candidates(stepper: kernels.KernelStepper | TorchCoding, t: int, keep: np.ndarray,
                channel: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(`repeat.candidates`, `repeat.activity`, `repeat.first_occurrence`) of front t's kept cells in `channel`'s
    canvas plane, from the codes of their neighbours W, N, NW, NE: pixels of earlier fronts, or the frame."""
    lo, hi = stepper.rows(t)
    n = hi - lo + 1
    wc = stepper.canvas.shape[-1]
    plane = stepper.canvas.shape[-2] * wc
    position = (stepper.pixel_start[lo : hi + 1] + t)[keep % n] + channel * plane
    stripe = keep // n
    if isinstance(stepper, kernels.KernelStepper):
        return kernels.repeat_prepare(stepper.flat, stripe, position, wc)
    flat = stepper.flat.numpy()  # the torch stepper's canvas: a view
    neighbours = tuple(flat[stripe, position - d].astype(np.int64) for d in (1, wc, wc + 1, wc - 1))
    cands = repeat.candidates(neighbours)
    return cands, repeat.activity(neighbours), repeat.first_occurrence(cands)


class _RepeatFlags:
    """The repeat flags' side of one front (`repeat`): per channel the candidates, their masses and the flags rank
    by rank (`repeat.FlagState`, compiled with the kernel stepper); the events are counted after the front. The
    torch backend's path, and the reference that `fused` (the kernel stepper's, one compiled call per channel) is
    tested against."""

    def __init__(self, counts: RepeatCounts, stepper: kernels.KernelStepper | TorchCoding, t: int,
                 keep: np.ndarray, maps: apm.Tables | None = None) -> None:
        self.counts, self.stepper, self.t, self.keep, self.maps = counts, stepper, t, keep, maps
        self.compiled = isinstance(stepper, kernels.KernelStepper)
        self.previous = np.zeros(keep.shape[0], dtype=np.int64)
        self.events: list[tuple[np.ndarray, np.ndarray]] = []

    def _state(self, k: int, mix: kernels.KernelMixture | Mixture) -> repeat.FlagState:
        """Channel k's flag state: its cells' candidates and their masses (a repeated candidate's is never used;
        the compiled state computes each mass when its flag is coded)."""
        cands, active, coded = _candidates(self.stepper, self.t, self.keep, k)
        if self.compiled:
            return kernels.FlagState(k, self.counts, coded, cands, mix, self.keep, self.stepper.phi, active,
                                     self.previous)
        masses, total = self.stepper.value_masses(mix, self.keep, cands, coded)
        return repeat.FlagState(k, self.counts, coded, cands, masses, total.copy(), active, self.previous)

    def _ranks(self, state: repeat.FlagState, hits_of) -> None:  # noqa: ANN001
        """The flags rank by rank: `hits_of(m, rank)` codes or decodes the hits of state.cells[:m]."""
        for rank in range(state.cands.shape[1]):
            m = state.step(rank)
            if m == 0:
                continue
            hits = hits_of(m, rank)
            self.events.append((state.contexts[:m].copy(), hits))
            state.apply(rank, m, hits)

    def encode(self, encoder, k: int, mix: kernels.KernelMixture | Mixture, values: np.ndarray,  # noqa: ANN001
               digit_bits: int) -> None:
        """Channel k's flags of the kept cells (values [n]), then the digits of those where none hit."""
        state = self._state(k, mix)

        def hits_of(m: int, rank: int) -> np.ndarray:
            cells = state.cells[:m]
            hits = values[cells] == state.cands[cells, rank]
            encoder.encode(hits.astype(np.int32), _CATEGORICAL, state.freqs[:m])
            return hits

        self._ranks(state, hits_of)
        self.previous = (~state.open_).astype(np.int64)
        rest = np.flatnonzero(state.open_)
        symbols, freqs = self.stepper.encode_digits(mix, self.keep[rest], values[rest], digit_bits, state.skip[rest],
                                                    state.skip_mass[rest], **self._maps(k, state, rest))
        if symbols.size:
            encoder.encode(symbols, _CATEGORICAL, freqs)

    def decode(self, decoder, k: int, mix: kernels.KernelMixture | Mixture,  # noqa: ANN001 - a range decoder
               digit_bits: int) -> np.ndarray:
        """Channel k's values [n] of the kept cells: their flags, then the digits of those where none hit."""
        state = self._state(k, mix)
        self._ranks(state, lambda m, rank: _decode_symbols(decoder, state.freqs[:m]) == HIT)
        self.previous = (~state.open_).astype(np.int64)
        values, rest = state.values, np.flatnonzero(state.open_)
        if rest.size:
            digits = self.stepper.decoder(mix, self.keep[rest], digit_bits, state.skip[rest], state.skip_mass[rest],
                                          **self._maps(k, state, rest))
            values[rest] = _read_values(decoder, digits, digit_bits)
        return values

    def _maps(self, k: int, state: repeat.FlagState, rest: np.ndarray) -> dict[str, kernels.MapsOfChannel]:
        """The digits' keyword for the maps as channel k's cells `rest` use them (format 8; the colour kernels
        only), or none."""
        return {} if self.maps is None else {"maps": kernels.MapsOfChannel(self.maps, k, state.activity[rest])}

    def update(self) -> None:
        if self.maps is not None:
            kernels.maps_update(self.maps)
        if self.events:
            self.counts.update(np.concatenate([c for c, _ in self.events]),
                               np.concatenate([h for _, h in self.events]))


def _fresh_maps(repeat: bool, maps: bool) -> apm.Tables | None:
    """A colour image's fresh maps (format 8), or None."""
    if maps and not repeat:
        raise ValueError("the adaptive probability maps (format 8) need the repeat flags")
    return apm.Tables(3) if maps else None


@torch.no_grad()
def encode_colour(im: IntColourRIDE, pixels: np.ndarray, pads: tuple[int, int, int], stripes: int, digit_bits: int,
                  progress: Progress | None = None, repeat: bool = False, maps: bool = False,
                  fuse: bool = True) -> bytes:
    """The range coder's 32-bit words (little-endian bytes) of uint8 pixels [H, W, 3] in the model's coded
    channel order; coding order: front, channel, digit, cells. pads: the frame's value of each channel.
    `repeat` (format 6): per front and channel the kept cells' repeat flags first (`codec.repeat`), then the
    digits of the cells that missed, each without its candidate value. `maps` (format 8, with `repeat`): those
    digits' binary decisions refined by the adaptive probability maps (`codec.apm`). With `repeat`, each channel of
    a front is one compiled call (`fused`; `fuse=False`: through `_RepeatFlags`, the same stream)."""
    height, width, _ = pixels.shape
    grid = _Canvases(im, height, width, pads, stripes, "kernels")
    grid.fill(pixels)
    stepper = grid.stepper
    values = pixels.reshape(-1, 3)
    pad_codes = 2 * np.asarray(pads, dtype=np.int64) + 1
    counts = RepeatCounts(3) if repeat else None
    tables = _fresh_maps(repeat, maps)
    encoder = constriction.stream.queue.RangeEncoder()
    front_coder = _front_coder(stepper, counts, tables, digit_bits, fuse, rangecoder.RangeEncoder())
    for t in range(stepper.num_fronts):
        cells = grid.cells(t)
        if cells is not None:
            keep, index = cells
            hidden, base = stepper.trunk(t)
            codes = np.tile(pad_codes, (hidden.shape[0], 1))  # the stripes' dummy rows keep the frame's value
            codes[keep] = 2 * values[index].astype(np.int64) + 1
            flags = _RepeatFlags(counts, stepper, t, keep, tables) if counts is not None and front_coder is None \
                else None
            if front_coder is not None:
                front_coder.start(t, keep)
            for k in range(3):
                mix = stepper.head(k, hidden, base, codes)
                x = values[index, k].astype(np.int64)
                if front_coder is not None:
                    front_coder.channel(k, mix, x)
                elif flags is None:
                    symbols, freqs = stepper.encode_digits(mix, keep, x, digit_bits)
                    encoder.encode(symbols, _CATEGORICAL, freqs)
                else:
                    flags.encode(encoder, k, mix, x, digit_bits)
            if front_coder is not None:
                front_coder.finish()
            if flags is not None:
                flags.update()
        if progress is not None:
            progress(t + 1, stepper.num_fronts)
    return _words(encoder, front_coder)


@torch.no_grad()
def decode_colour(im: IntColourRIDE, payload: bytes, height: int, width: int, pads: tuple[int, int, int],
                  stripes: int, digit_bits: int, progress: Progress | None = None, repeat: bool = False,
                  maps: bool = False, fuse: bool = True) -> np.ndarray:
    """uint8 pixels [H, W, 3] (coded channel order) of a payload made by `encode_colour` with the same `repeat`
    and `maps` (not yet checked against the checksum); `fuse` as for `encode_colour`."""
    grid = _Canvases(im, height, width, pads, stripes, "kernels")
    stepper = grid.stepper
    words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
    decoder = constriction.stream.queue.RangeDecoder(words)
    pixels = np.zeros((height * width, 3), dtype=np.uint8)
    pad_codes = 2 * np.asarray(pads, dtype=np.int64) + 1
    counts = RepeatCounts(3) if repeat else None
    tables = _fresh_maps(repeat, maps)
    front_coder = _front_coder(stepper, counts, tables, digit_bits, fuse, rangecoder.RangeDecoder(words))
    for t in range(stepper.num_fronts):
        cells = grid.cells(t)
        if cells is not None:
            keep, index = cells
            hidden, base = stepper.trunk(t)
            codes = np.tile(pad_codes, (hidden.shape[0], 1))
            flags = _RepeatFlags(counts, stepper, t, keep, tables) if counts is not None and front_coder is None \
                else None
            if front_coder is not None:
                front_coder.start(t, keep)
            for k in range(3):
                mix = stepper.head(k, hidden, base, codes)
                if front_coder is not None:
                    v = front_coder.channel(k, mix)
                elif flags is None:
                    v = _read_values(decoder, stepper.decoder(mix, keep, digit_bits), digit_bits)
                else:
                    v = flags.decode(decoder, k, mix, digit_bits)
                pixels[index, k] = v
                codes[keep, k] = 2 * v + 1
            if front_coder is not None:
                front_coder.finish()
            if flags is not None:
                flags.update()
            stepper.write(t, codes)
        if progress is not None:
            progress(t + 1, stepper.num_fronts)
    return pixels.reshape(height, width, 3)


def _decode_symbols(decoder, freqs: np.ndarray) -> np.ndarray:  # noqa: ANN001 - a range decoder
    try:
        return decoder.decode(_CATEGORICAL, freqs)
    except Exception as err:  # constriction reports inconsistent data in its own types
        raise ValueError(f"corrupted ride codec stream: the range decoder failed ({err})") from err
