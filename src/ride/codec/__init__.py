"""Lossless compression of 8-bit grey images with a RIDE model and of 8-bit RGB images with a lossless colour RIDE:
`coder` (compress / decompress, and the version-1 float path), `engine` (formats 2 to 5: the range coder driven by
the integer model along the skewed front, stripes side by side), `colour_fixedpoint` (the colour model in exact
integer arithmetic, formats 3 and 5), `fixedpoint` (the model in exact integer arithmetic and its torch front stepper;
`fixedpoint_ref` its plain NumPy reference), `kernels` (the same integers from compiled numba loops, the default
when numba is installed), `format` (the stream's byte layout, the fingerprints and the pixel checksum;
docs/codec_format.md) and `selection` (the encoder's choice among candidate models: `compress_best`).

    data = ride.codec.compress(model, pixels)      # uint8 [H, W] (or [H, W, 3] with a colour model) -> bytes
    pixels = ride.codec.decompress(model, data)    # bytes -> uint8 [H, W] (or [H, W, 3])
"""

from .coder import SPAN, compress, compress_v1, decompress, ideal_code_length_bits, integer_model, made_with
from .format import HEADER_BYTES

__all__ = ["HEADER_BYTES", "SPAN", "compress", "compress_v1", "decompress", "ideal_code_length_bits",
           "integer_model", "made_with"]
