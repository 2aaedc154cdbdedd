"""The compiled front coder (`ride.codec.fused`: candidates, flags, digits, maps and the range coder in one call per
channel) against the Python layers it replaces (`engine._RepeatFlags` with constriction's range coder): the same
words for formats 6, 7 and 8 at every digit size and several stripe counts, each decoding the other's stream,
and a clear error for damaged streams."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import flag_test_images, make_tiny_lossless_colour, make_tiny_ride

from ride.codec import engine, fused, kernels
from ride.codec.coder import integer_model

pytestmark = pytest.mark.skipif(not kernels.available(), reason="the compiled front coder needs numba")


def _images() -> tuple[np.ndarray, np.ndarray]:
    return flag_test_images(21, 26, seed=2, speckle=0.08)


@pytest.fixture(params=["serial", "parallel"])
def build(request, monkeypatch) -> str:  # noqa: ANN001
    """Run a test with the fused coder's serial build, or its build that splits cells over numba's threads (two
    threads where the machine allows)."""
    parallel = request.param == "parallel"
    monkeypatch.setattr(fused.numba, "get_num_threads", lambda: 2 if parallel else 1)
    threads = torch.get_num_threads()
    torch.set_num_threads(2 if parallel else 1)
    yield request.param
    torch.set_num_threads(threads)


@pytest.mark.parametrize("maps", [False, True])
def test_colour_streams_equal_the_python_layers(maps: bool, build: str) -> None:
    im = integer_model(make_tiny_lossless_colour("grb", 2, seed=3))
    pads = (120, 131, 90)
    for image in _images():
        for stripes, bits in ((1, 2), (2, 1), (3, 4), (2, 8)):
            args = (im, image, pads, stripes, bits)
            fused = engine.encode_colour(*args, repeat=True, maps=maps)
            plain = engine.encode_colour(*args, repeat=True, maps=maps, fuse=False)
            assert fused == plain, (stripes, bits)
            h, w = image.shape[:2]
            for fuse in (True, False):
                out = engine.decode_colour(im, fused, h, w, pads, stripes, bits, repeat=True, maps=maps, fuse=fuse)
                assert np.array_equal(out, image), (stripes, bits, fuse)


def test_grey_streams_equal_the_python_layers(build: str) -> None:
    im = integer_model(make_tiny_ride(num_layers=2, seed=4))
    for image in _images():
        grey = np.ascontiguousarray(image[..., 1])
        for stripes, bits in ((1, 2), (3, 1), (2, 4), (1, 8)):
            args = (im, grey, 100, stripes, bits)
            fused = engine.encode(*args, backend="kernels", repeat=True)
            assert fused == engine.encode(*args, backend="kernels", repeat=True, fuse=False), (stripes, bits)
            assert fused == engine.encode(*args, backend="torch", repeat=True), (stripes, bits)
            h, w = grey.shape
            for fuse in (True, False):
                out = engine.decode(im, fused, h, w, 100, stripes, bits, backend="kernels", repeat=True, fuse=fuse)
                assert np.array_equal(out, grey), (stripes, bits, fuse)


def test_damaged_streams_raise_or_decode_other_pixels() -> None:
    """The range decoder is not injective: damaged words decode to other pixels (the codec's checksum catches
    them) or stop with ValueError; nothing else escapes."""
    im = integer_model(make_tiny_lossless_colour("grb", 2, seed=3))
    image = _images()[1]
    h, w = image.shape[:2]
    data = engine.encode_colour(im, image, (120, 131, 90), 2, 2, repeat=True, maps=True)
    rng = np.random.default_rng(0)
    changed = 0
    for _ in range(30):
        damaged = bytearray(data)
        damaged[int(rng.integers(0, len(data)))] ^= 1 << int(rng.integers(0, 8))
        try:
            out = engine.decode_colour(im, bytes(damaged), h, w, (120, 131, 90), 2, 2, repeat=True, maps=True)
        except ValueError as err:
            assert "corrupted" in str(err)
            continue
        changed += int(not np.array_equal(out, image))
    assert changed > 0
