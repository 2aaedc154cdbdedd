"""Lossless compression of 8-bit grey images with a RIDE model: `coder` (the range coder driven by the model's
discrete conditionals along the skewed front) and `format` (the stream's byte layout, the model fingerprint and
the pixel checksum).

    data = ride.codec.compress(model, pixels)      # uint8 [H, W] -> bytes
    pixels = ride.codec.decompress(model, data)    # bytes -> uint8 [H, W]
"""

from .coder import SPAN, compress, decompress, ideal_code_length_bits
from .format import HEADER_BYTES

__all__ = ["HEADER_BYTES", "SPAN", "compress", "decompress", "ideal_code_length_bits"]
