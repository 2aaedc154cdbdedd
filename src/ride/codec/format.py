"""The byte layout of a `ride.codec` stream, the model fingerprint and the pixel checksum.

Format version 2 (written by this ride; docs/codec_format.md describes it completely):

    offset  size  field (big-endian)
    0       4     magic b"RIDE"
    4       1     format version (2)
    5       1     mode: 0 range-coded with the integer model, 1 stored
    6       4     height
    10      4     width
    14      1     padding value of the frame (0..255)
    15      2     stripes: the image is cut into this many horizontal stripes, coded side by side
    17      1     bits per coded digit (1, 2, 4 or 8): each pixel is coded as 8 / bits digits, most significant first
    18      8     integer model fingerprint (`fixedpoint.IntRIDE.fingerprint`: SHA-256 of its integer tables)
    26      4     CRC-32 of the pixels (uint8, raster order), verified after decoding
    30      4     payload bytes n
    34      4     CRC-32 of bytes 0..33
    38      n     payload: the range coder's 32-bit words, little-endian (mode 0), or the pixels (mode 1)

Format version 4 (grey, written for a model whose cells are clipped more tightly than format 2's +-10^4, e.g.
`photo_grey`): version 2's fields with the clip inserted after the digit bits; the rest shifts by 4 bytes:

    17      1     bits per coded digit
    18      4     cell clip: the integer model's cells are clamped to +-this (at 2^-15; format 2 means 10^4 * 2^15)
    22      8     integer model fingerprint
    30      4     CRC-32 of the pixels
    34      4     payload bytes n
    38      4     CRC-32 of bytes 0..37
    42      n     payload

Format version 3 (colour: 8-bit RGB images, `colour_fixedpoint.IntColourRIDE`; grey images stay version 2 or 4):

    offset  size  field (big-endian)
    0       4     magic b"RIDE"
    4       1     format version (3)
    5       1     mode: 0 range-coded with the integer colour model, 1 stored
    6       4     height
    10      4     width
    14      3     padding value of the frame of each coded channel, in coding order (0..255 each)
    17      2     stripes
    19      1     bits per coded digit (1, 2, 4 or 8)
    20      1     channel order: 0 R, G, B; 1 G, R, B (the model's; it must match the model's transform)
    21      8     integer colour model fingerprint (`IntColourRIDE.fingerprint`)
    29      4     CRC-32 of the pixels (uint8 [H, W, 3], R, G, B interleaved, raster order), verified after decoding
    33      4     payload bytes n
    37      4     CRC-32 of bytes 0..36
    41      n     payload: the range coder's 32-bit words, little-endian (mode 0), or the RGB pixels (mode 1)

Format version 5 (colour, written for a model whose cells are clipped more tightly than version 3's +-10^4, e.g.
`photo_colour`): version 3's fields with the clip inserted after the channel order; the rest shifts by 4 bytes:

    20      1     channel order
    21      4     cell clip: the integer model's cells are clamped to +-this (at 2^-15; version 3 means 10^4 * 2^15)
    25      8     integer colour model fingerprint
    33      4     CRC-32 of the pixels
    37      4     payload bytes n
    41      4     CRC-32 of bytes 0..40
    45      n     payload

Format version 6 (colour with the repeat flag, written by `compress` for colour images since 2026-12-07): version
5's 45-byte header exactly (the cell clip field always present; it may be 10^4 * 2^15), and a payload in which, per
front and channel, the kept cells' repeat flags come before the digits of the cells that missed (`codec.repeat`,
docs/codec_format.md).

Format version 7 (grey with the repeat flag, written by `compress` for grey images since 2026-12-07): version 4's
42-byte header exactly (the cell clip field always present; it may be 10^4 * 2^15), and a payload in which, per
front, the kept cells' repeat flags come before the digits of the cells that missed.

Format version 8 (colour with the repeat flag and the adaptive probability maps, written by `compress` for colour
images since 2026-12-08): version 6's 45-byte header exactly, and version 6's payload except that the digits'
binary decisions are coded with the maps' refined probabilities (`codec.apm`, docs/codec_format.md).

Format version 1 (read only; floating-point probabilities, so it decodes only on machines whose arithmetic matches
the encoder's):

    0       4     magic b"RIDE"
    4       1     format version (1)
    5       1     mode: 0 range-coded with the model, 1 stored (the raw pixels, when the model would need more)
    6       4     height
    10      4     width
    14      1     padding value of the frame the model conditions on (0..255)
    15      2     span: bins per pixel where the mixture's CDF is evaluated exactly (see `codec`)
    17      8     model fingerprint: the first 8 bytes of SHA-256 over the model's class, config and weights
    25      4     CRC-32 of the pixels (uint8, raster order), verified after decoding
    29      4     payload bytes n
    33      4     CRC-32 of bytes 0..32, so that a damaged header fails before any decoding
    37      n     payload: the range coder's 32-bit words, little-endian (mode 0), or the pixels (mode 1)
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import asdict, dataclass, is_dataclass

import numpy as np
import torch
from torch import nn

from ..wavefront import CELL_CLIP
from .fixedpoint import CELL_CLIP_INT

MAGIC = b"RIDE"
VERSION = 2
VERSION_1 = 1
VERSION_COLOUR = 3
VERSION_CLIPPED = 4  # grey, with the cell clip in the header
VERSION_COLOUR_CLIPPED = 5  # colour, with the cell clip in the header
VERSION_COLOUR_REPEAT = 6  # colour, version 5's header, the repeat flag in the payload
VERSION_REPEAT = 7  # grey, version 4's header, the repeat flag in the payload
VERSION_COLOUR_MAPS = 8  # colour, version 6's header and payload, the digits refined by the adaptive maps
CHANNEL_ORDERS = ("rgb", "grb")  # the channel-order byte of versions 3, 5 and 6
_FIELDS = struct.Struct(">4sBBIIBH8sII")  # version 1
_FIELDS_2 = struct.Struct(">4sBBIIBHB8sII")
HEADER_BYTES_2 = _FIELDS_2.size + 4
_FIELDS_4 = struct.Struct(">4sBBIIBHBI8sII")
HEADER_BYTES_4 = _FIELDS_4.size + 4
_FIELDS_3 = struct.Struct(">4sBBII3sHBB8sII")
HEADER_BYTES_3 = _FIELDS_3.size + 4
_FIELDS_5 = struct.Struct(">4sBBII3sHBBI8sII")
HEADER_BYTES_5 = _FIELDS_5.size + 4
HEADER_BYTES = HEADER_BYTES_4  # of the grey format written now (7: format 4's header)
DIGIT_BITS = (1, 2, 4, 8)
_CRC = struct.Struct(">I")
HEADER_BYTES_1 = _FIELDS.size + _CRC.size
MAX_SIDE = 1 << 20  # a sanity bound on the image size read from a header


@dataclass(frozen=True)
class Header:
    """The fields of a stream's header (see the module docstring)."""

    mode: int
    height: int
    width: int
    pad_value: int
    span: int
    fingerprint: bytes
    pixel_crc: int
    num_bytes: int

    version = VERSION_1

    def pack(self) -> bytes:
        fields = _FIELDS.pack(MAGIC, VERSION_1, self.mode, self.height, self.width, self.pad_value, self.span,
                              self.fingerprint, self.pixel_crc, self.num_bytes)
        return fields + _CRC.pack(zlib.crc32(fields))


MODE_CODED, MODE_STORED = 0, 1


def unpack_header(data: bytes) -> tuple[Header | Header2 | Header3, bytes]:
    """Check a stream's header and length: (header, payload bytes); ValueError names what is wrong."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"expected the bytes of a ride codec stream, found {type(data).__name__}")
    data = bytes(data)
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise ValueError(f"not a ride codec stream: expected the magic bytes {MAGIC!r}, found {data[:4]!r}")
    if len(data) <= len(MAGIC):
        raise ValueError(f"truncated ride codec stream: {len(data)} bytes, no format version")
    version = data[len(MAGIC)]
    if version in (VERSION, VERSION_CLIPPED, VERSION_REPEAT):
        return _unpack_header_2(data)
    if version in (VERSION_COLOUR, VERSION_COLOUR_CLIPPED, VERSION_COLOUR_REPEAT, VERSION_COLOUR_MAPS):
        return _unpack_header_3(data)
    if version != VERSION_1:
        raise ValueError(f"ride codec stream of format version {version}; this ride reads versions {VERSION_1} to "
                         f"{VERSION_COLOUR_MAPS}")
    if len(data) < HEADER_BYTES_1:
        raise ValueError(f"truncated ride codec stream: {len(data)} bytes, shorter than the {HEADER_BYTES_1}-byte "
                         "header")
    magic, version, mode, height, width, pad, span, fingerprint, pixel_crc, num_bytes = _FIELDS.unpack_from(data)
    (header_crc,) = _CRC.unpack_from(data, _FIELDS.size)
    if zlib.crc32(data[: _FIELDS.size]) != header_crc:
        raise ValueError("corrupted ride codec stream: the header checksum does not match")
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE and 1 <= span <= 256) or mode > MODE_STORED:
        raise ValueError(f"corrupted ride codec stream: mode {mode}, image size {height}x{width}, span {span}")
    _check_payload_size(data, HEADER_BYTES_1, num_bytes, mode, height * width)
    return Header(mode, height, width, pad, span, fingerprint, pixel_crc, num_bytes), data[HEADER_BYTES_1:]


def pixel_checksum(image: np.ndarray) -> int:
    """CRC-32 of uint8 pixels [H, W] (or [H, W, 3], channels interleaved) in raster order."""
    return zlib.crc32(np.ascontiguousarray(image, dtype=np.uint8).tobytes())


def model_fingerprint(model: nn.Module) -> bytes:
    """8 bytes identifying a model's computation: SHA-256 over its class name, config, and every state tensor's
    name, dtype, shape and bytes (so the same weights in another dtype are another model)."""
    digest = hashlib.sha256(type(model).__name__.encode())
    config = getattr(model, "config", None)
    config = asdict(config) if is_dataclass(config) and not isinstance(config, type) else config
    if isinstance(config, dict) and config.get("cell_clip") == CELL_CLIP:
        # added to RIDEConfig after version 1; at its default the model computes what it computed before
        config = {k: v for k, v in config.items() if k != "cell_clip"}
    digest.update(repr(sorted(config.items()) if isinstance(config, dict) else config).encode())
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.digest()[:8]



@dataclass(frozen=True)
class Header2:
    """The fields of a grey header: format version 2, or 4 when the cell clip is not format 2's, or 7 with the
    repeat flag (see the module docstring)."""

    mode: int
    height: int
    width: int
    pad_value: int
    stripes: int
    digit_bits: int
    fingerprint: bytes  # of the integer model
    pixel_crc: int
    num_bytes: int
    cell_clip: int = CELL_CLIP_INT  # the integer model's cell clip at 2^-15
    repeat: bool = False  # the payload carries the repeat flag (version 7)

    @property
    def version(self) -> int:
        if self.repeat:
            return VERSION_REPEAT
        return VERSION if self.cell_clip == CELL_CLIP_INT else VERSION_CLIPPED

    def pack(self) -> bytes:
        if self.version == VERSION:
            fields = _FIELDS_2.pack(MAGIC, VERSION, self.mode, self.height, self.width, self.pad_value, self.stripes,
                                    self.digit_bits, self.fingerprint, self.pixel_crc, self.num_bytes)
        else:
            fields = _FIELDS_4.pack(MAGIC, self.version, self.mode, self.height, self.width, self.pad_value,
                                    self.stripes, self.digit_bits, self.cell_clip, self.fingerprint, self.pixel_crc,
                                    self.num_bytes)
        return fields + _CRC.pack(zlib.crc32(fields))


def _header_fields(data: bytes, layout: struct.Struct, clip_at: int | None) -> tuple[list, int]:
    """(the fields of `layout` without the cell clip, the clip: the field at clip_at, or CELL_CLIP_INT where the
    layout has none) of a header whose length and checksum are checked."""
    size = layout.size + _CRC.size
    if len(data) < size:
        raise ValueError(f"truncated ride codec stream: {len(data)} bytes, shorter than the {size}-byte header")
    values = list(layout.unpack_from(data))
    (header_crc,) = _CRC.unpack_from(data, layout.size)
    if zlib.crc32(data[: layout.size]) != header_crc:
        raise ValueError("corrupted ride codec stream: the header checksum does not match")
    return values, CELL_CLIP_INT if clip_at is None else values.pop(clip_at)


def _unpack_header_2(data: bytes) -> tuple[Header2, bytes]:
    """Format 2, 4 or 7 (grey)."""
    version = data[len(MAGIC)]
    clipped = version in (VERSION_CLIPPED, VERSION_REPEAT)  # the layout with the clip field
    layout, size = (_FIELDS_4, HEADER_BYTES_4) if clipped else (_FIELDS_2, HEADER_BYTES_2)
    values, clip = _header_fields(data, layout, 8 if clipped else None)
    _, _, mode, height, width, pad, stripes, bits, fingerprint, pixel_crc, num_bytes = values
    clip_limit = CELL_CLIP_INT if version == VERSION_REPEAT else CELL_CLIP_INT - 1
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE and 1 <= stripes <= height) or mode > MODE_STORED \
            or bits not in DIGIT_BITS or (clipped and not 1 <= clip <= clip_limit):
        raise ValueError(f"corrupted ride codec stream: mode {mode}, image size {height}x{width}, {stripes} stripes, "
                         f"{bits} bits per digit, cell clip {clip}")
    _check_payload_size(data, size, num_bytes, mode, height * width)
    header = Header2(mode, height, width, pad, stripes, bits, fingerprint, pixel_crc, num_bytes, clip,
                     version == VERSION_REPEAT)
    return header, data[size:]


@dataclass(frozen=True)
class Header3:
    """The fields of a colour header: format version 3, or 5 when the cell clip is not version 3's (see the module
    docstring)."""

    mode: int
    height: int
    width: int
    pads: tuple[int, int, int]  # frame values of the coded channels, in coding order
    stripes: int
    digit_bits: int
    channel_order: str  # one of CHANNEL_ORDERS
    fingerprint: bytes  # of the integer colour model
    pixel_crc: int
    num_bytes: int
    cell_clip: int = CELL_CLIP_INT  # the integer model's cell clip at 2^-15
    repeat: bool = False  # the payload carries the repeat flag (version 6)
    maps: bool = False  # and its digits are refined by the adaptive maps (version 8; needs `repeat`)

    @property
    def version(self) -> int:
        if self.maps:
            return VERSION_COLOUR_MAPS
        if self.repeat:
            return VERSION_COLOUR_REPEAT
        return VERSION_COLOUR if self.cell_clip == CELL_CLIP_INT else VERSION_COLOUR_CLIPPED

    def pack(self) -> bytes:
        common = (self.mode, self.height, self.width, bytes(self.pads), self.stripes, self.digit_bits,
                  CHANNEL_ORDERS.index(self.channel_order))
        if self.version == VERSION_COLOUR:
            fields = _FIELDS_3.pack(MAGIC, VERSION_COLOUR, *common, self.fingerprint, self.pixel_crc, self.num_bytes)
        else:
            fields = _FIELDS_5.pack(MAGIC, self.version, *common, self.cell_clip, self.fingerprint, self.pixel_crc,
                                    self.num_bytes)
        return fields + _CRC.pack(zlib.crc32(fields))


def _unpack_header_3(data: bytes) -> tuple[Header3, bytes]:
    """Format 3, 5, 6 or 8 (colour)."""
    version = data[len(MAGIC)]
    repeat = version in (VERSION_COLOUR_REPEAT, VERSION_COLOUR_MAPS)
    clipped = repeat or version == VERSION_COLOUR_CLIPPED  # the layout with the clip field
    layout, size = (_FIELDS_5, HEADER_BYTES_5) if clipped else (_FIELDS_3, HEADER_BYTES_3)
    values, clip = _header_fields(data, layout, 9 if clipped else None)
    _, _, mode, height, width, pads, stripes, bits, order, fingerprint, pixel_crc, num_bytes = values
    clip_limit = CELL_CLIP_INT if repeat else CELL_CLIP_INT - 1
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE and 1 <= stripes <= height) or mode > MODE_STORED \
            or bits not in DIGIT_BITS or order >= len(CHANNEL_ORDERS) or (clipped and not 1 <= clip <= clip_limit):
        raise ValueError(f"corrupted ride codec stream: mode {mode}, image size {height}x{width}, {stripes} stripes, "
                         f"{bits} bits per digit, channel order {order}, cell clip {clip}")
    _check_payload_size(data, size, num_bytes, mode, 3 * height * width)
    header = Header3(mode, height, width, tuple(pads), stripes, bits, CHANNEL_ORDERS[order], fingerprint, pixel_crc,
                     num_bytes, clip, repeat, version == VERSION_COLOUR_MAPS)
    return header, data[size:]


def _check_payload_size(data: bytes, header_bytes: int, num_bytes: int, mode: int, num_pixels: int) -> None:
    """ValueError unless the stream holds exactly header + payload bytes and the payload fits its mode (32-bit
    range-coder words, or one byte per pixel when stored)."""
    expected = header_bytes + num_bytes
    if len(data) != expected:
        kind = "truncated" if len(data) < expected else "corrupted (trailing bytes)"
        raise ValueError(f"{kind} ride codec stream: expected {expected} bytes, found {len(data)}")
    if (num_bytes % 4) if mode == MODE_CODED else num_bytes != num_pixels:
        raise ValueError(f"corrupted ride codec stream: a payload of {num_bytes} bytes for mode {mode}")
