"""Tests for ride.units: dequantisation of 8-bit values and the nats -> bit/px conversion."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ride.units import bits_per_pixel, dequantize, quantize


def test_dequantize_range_shape_dtype() -> None:
    values = torch.arange(256, dtype=torch.uint8).repeat(40).view(2, 5, 1024)
    x = dequantize(values, generator=torch.Generator().manual_seed(0))
    assert x.shape == values.shape and x.dtype == torch.float32
    assert float(x.min()) >= 0 and float(x.max()) < 1
    # each value keeps its own bin [v/256, (v+1)/256)
    assert torch.equal(torch.floor(x * 256).long(), values.long())
    # the noise is uniform within the bins: mean offset 1/2, variance 1/12
    u = (x * 256 - values.float()).double()
    assert abs(float(u.mean()) - 0.5) < 4 * math.sqrt(1 / 12 / u.numel())
    assert abs(float(u.var()) - 1 / 12) < 0.005
    assert float(u.min()) < 0.01 and float(u.max()) > 0.99


def test_dequantize_accepts_numpy_and_other_integer_types() -> None:
    arr = np.array([[0, 17], [128, 255]], dtype=np.uint8)
    x = dequantize(arr, generator=torch.Generator().manual_seed(1))
    assert isinstance(x, torch.Tensor) and x.shape == (2, 2) and x.dtype == torch.float32
    assert torch.equal(torch.floor(x * 256).long(), torch.from_numpy(arr).long())
    y = dequantize(torch.tensor([3, 250], dtype=torch.int64), generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.floor(y * 256).long(), torch.tensor([3, 250]))
    assert dequantize(torch.zeros(0, 3, dtype=torch.uint8)).shape == (0, 3)


def test_dequantize_is_seeded() -> None:
    values = torch.randint(0, 256, (64,), generator=torch.Generator().manual_seed(2), dtype=torch.uint8)
    a = dequantize(values, generator=torch.Generator().manual_seed(5))
    b = dequantize(values, generator=torch.Generator().manual_seed(5))
    c = dequantize(values, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_dequantize_never_reaches_one() -> None:
    x = dequantize(torch.full((1_000_000,), 255, dtype=torch.uint8), generator=torch.Generator().manual_seed(0))
    assert float(x.max()) < 1


@pytest.mark.parametrize(("values", "fragment"), [
    (torch.tensor([0.5, 1.0]), "torch.float32"),
    (np.array([1.0, 2.0]), "torch.float64"),
    (torch.tensor([True, False]), "torch.bool"),
    (torch.tensor([0, 256]), "0..256"),
    (torch.tensor([-1, 3], dtype=torch.int16), "-1..3"),
    (np.array([300], dtype=np.int32), "300..300"),
])
def test_dequantize_rejects_bad_values(values, fragment: str) -> None:
    with pytest.raises(ValueError, match="0..255") as err:
        dequantize(values)
    assert fragment in str(err.value)


def test_bits_per_pixel_arithmetic() -> None:
    ln2 = math.log(2)
    # a mean over pixels: ln p = ln 2 and 3 ln 2 -> 1 and 3 bits -> 2 bit/px
    assert bits_per_pixel(torch.tensor([ln2, 3 * ln2], dtype=torch.float64)) == pytest.approx(2.0, rel=1e-12)
    # a sum over 10 pixels of 8 bits each
    assert bits_per_pixel(80 * ln2, num_pixels=10) == pytest.approx(8.0, rel=1e-12)
    # per-image sums [B] with the pixel count given: (-4 ln 2 + 12 ln 2) / 4 pixels = 2 bit/px
    sums = torch.tensor([-4 * ln2, 12 * ln2], dtype=torch.float64)
    assert bits_per_pixel(sums, num_pixels=4) == pytest.approx(2.0, rel=1e-12)
    # a 2-D map of per-pixel values: the mean over all elements
    lp = torch.full((3, 4), -0.5 * ln2)
    assert bits_per_pixel(lp) == pytest.approx(-0.5, rel=1e-6)
    # ln 256 nats is 8 bits
    assert bits_per_pixel(math.log(256), num_pixels=1) == pytest.approx(8.0, rel=1e-12)
    assert isinstance(bits_per_pixel(torch.tensor([1.0])), float)


def test_bits_per_pixel_accumulates_in_float64() -> None:
    # a million float32 values of 0.1 nats: a float32 sum would drift; the result must be exact to ~1e-9
    lp = torch.full((1_000_000,), 0.1, dtype=torch.float32)
    expected = float(torch.tensor(0.1, dtype=torch.float32)) / math.log(2)
    assert bits_per_pixel(lp) == pytest.approx(expected, rel=1e-9)


def test_quantize_inverts_dequantize_and_clips() -> None:
    values = torch.arange(256, dtype=torch.uint8).repeat(50)
    assert torch.equal(quantize(dequantize(values, torch.Generator().manual_seed(0))), values)
    edges = torch.tensor([-0.5, 0.0, 1.0, 7.0, float(torch.nextafter(torch.tensor(1.0), torch.tensor(0.0)))])
    assert quantize(edges).tolist() == [0, 0, 255, 255, 255]
