"""The adaptive probability maps of colour format 8 (`ride.codec.apm`): the integer stretch and squash, the compiled
digit frequencies and events against the plain reference (cell by cell, every digit size, from the plain reference
CDF tables), the order-free update, exact round trips, and refusals."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import flag_test_images, make_tiny_lossless_colour, make_tiny_ride
from test_colour_codec import _canvas, _kernel_fronts, _smooth_rgb

from ride.codec import apm, compress, decompress, kernels, repeat
from ride.codec.colour_fixedpoint import quantise_colour
from ride.codec.fixedpoint_ref import reference_colour_cdf_tables
from ride.codec.format import MODE_CODED, unpack_header

pytestmark = pytest.mark.skipif(not kernels.available(), reason="the colour codec needs numba")


def test_stretch_inverts_the_integer_squash() -> None:
    p = np.arange(4096)
    s = apm.STRETCH
    assert np.all(np.diff(s) >= 0) and s.min() >= -2047 and s.max() <= 2047
    # squash(stretch(p)) reaches p, and one step less does not (the smallest such x), away from the clamped ends
    inner = (p >= 2) & (p <= 4094)
    assert np.all(apm.squash(s[inner]) >= p[inner])
    assert np.all(apm.squash(s[inner] - 1) < p[inner])
    # stretch is the logit in 1/256 nat, to within the knots' interpolation
    mid = (p >= 64) & (p <= 4032)
    logit = 256 * np.log(p[mid] / (4096 - p[mid]))
    assert np.abs(s[mid] - logit).max() < 40
    # the maps start as the identity: each knot's probability is squash at the knot, in 2^-16
    assert np.array_equal(apm.START + apm.START[::-1], np.full(apm.KNOTS, 65536))
    assert np.all(np.abs(apm.START - 16 * apm.SQUASH_KNOTS)[1:-1] <= 16)


def test_node_probability_and_locate() -> None:
    assert apm.node_probability(5, 5, 5) == 32768  # an empty interval
    assert apm.node_probability(0, 10, 10) == 1 and apm.node_probability(0, 0, 10) == 65535
    assert apm.node_probability(0, 1 << 47, (1 << 48) - 1) in (32768, 32767, 32766)  # no overflow at 2^48
    for p in (1, 100, 32768, 60000, 65535):
        j, w = apm.locate(p)
        assert 0 <= j <= apm.KNOTS - 2 and 0 <= w < 128
    assert apm.locate(32768) == (16, 0)


def _random_ext(rng: np.random.Generator, radix: int) -> np.ndarray:
    """Cq at a digit's 2^b + 1 edges: sorted, some intervals empty, up to 2^47."""
    top = int(rng.choice([1 << 10, 1 << 30, 1 << 47]))
    ext = np.sort(rng.integers(0, top, radix + 1))
    if rng.random() < 0.3:
        ext[1 : 1 + radix // 2] = ext[1]  # empty sub-intervals
    return ext.astype(np.int64)


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_compiled_digit_frequencies_equal_the_plain_reference(bits: int) -> None:
    rng = np.random.default_rng(bits)
    radix = 1 << bits
    tables = apm.Tables(3)
    tables.table[:] = rng.integers(1, 65536, tables.table.shape)
    for _ in range(40):
        ext = _random_ext(rng, radix)
        channel, activity = int(rng.integers(3)), int(rng.integers(repeat.ACTIVITY))
        level = int(rng.integers(8 // bits))
        plain, nodes = apm.digit_frequencies(tables.table, channel, activity, level, bits, ext)
        assert plain.sum() == (1 << 24) - radix and plain.min() >= 0
        freqs = np.empty((1, radix), dtype=np.float64)
        knot, weight = np.empty(radix - 1, np.int64), np.empty(radix - 1, np.int64)
        base = apm.context(channel, level * bits, activity)
        kernels._apm_digit(tables.table, apm.STRETCH, base, repeat.ACTIVITY, bits, ext, freqs, 0,
                           np.empty(radix, np.int64), knot, weight)
        assert np.array_equal(freqs[0], plain)
        assert [(c * apm.KNOTS + j, w) for c, j, w, _ in nodes] == list(zip(knot, weight, strict=True))


def test_the_update_is_a_running_mean_and_ignores_the_order_of_a_fronts_events() -> None:
    rng = np.random.default_rng(3)
    events = [(int(rng.integers(apm.contexts(3))), int(rng.integers(apm.KNOTS - 1)), int(rng.integers(128)),
               int(rng.integers(2))) for _ in range(3000)]
    results = []
    for order in (events, events[::-1], [events[k] for k in rng.permutation(len(events))]):
        tables = apm.Tables(3)
        for _ in range(3):  # three fronts
            for e in order:
                tables.add(*e)
            tables.update()
        results.append((tables.table.copy(), tables.seen.copy()))
    assert all(np.array_equal(a, results[0][0]) and np.array_equal(b, results[0][1]) for a, b in results)
    # compiled update equals the plain one, and a knot that only sees hits moves towards 1 without passing it
    plain, compiled = apm.Tables(3), apm.Tables(3)
    for t in (plain, compiled):
        for e in events:
            t.add(*e)
    plain.update()
    kernels.maps_update(compiled)
    for name in ("table", "seen", "ones", "shares"):
        assert np.array_equal(getattr(plain, name), getattr(compiled, name)), name
    t = apm.Tables(1)
    for _ in range(50):
        for _ in range(100):
            t.add(0, 16, 0, 1)
        t.update()
    assert 65000 < t.table[0, 16] < 65536 and t.seen[0, 16] == apm.MEMORY


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_encoder_digits_with_maps_equal_a_plain_reference(bits: int) -> None:
    """Cell by cell from the reference CDF tables (with up to three values taken out, as the flags' misses): the
    kernels' symbols and frequencies with the maps are the plain `apm.digit_frequencies` along each value's path,
    and the gathered events are `apm.Tables.add`'s."""
    model = make_tiny_lossless_colour("rgb", 2, seed=2)
    im = quantise_colour(model)
    image = _smooth_rgb(6, 8, seed=8)
    canvas = _canvas(im, image[None], (90, 100, 110))
    ref = reference_colour_cdf_tables(im, canvas)[0]  # [Hp, Wp, 3, 257]
    rng = np.random.default_rng(10 + bits)
    stepper = kernels.ColourKernelStepper(im, canvas.astype(np.int32))
    compiled, plain = apm.Tables(3), apm.Tables(3)
    learnt = rng.integers(1, 65536, compiled.table.shape)  # maps that have learnt something
    compiled.table[:], plain.table[:] = learnt, learnt
    levels, radix = 8 // bits, 1 << bits
    checked = 0
    for rows, cols, codes, mixes in _kernel_fronts(stepper, canvas):
        keep = np.arange(rows.size)
        for k, mix in enumerate(mixes):
            values = (codes[:, k] - 1) >> 1
            skip = np.stack([(values + d) % 256 for d in (1, 255, int(rng.integers(2, 255)))], 1)
            mass, _ = stepper.value_masses(mix, keep, skip)
            skip_mass = np.where(rng.random(skip.shape) < 0.7, mass, 0)
            activity = rng.integers(0, repeat.ACTIVITY, keep.size)
            maps = kernels.MapsOfChannel(compiled, k, activity)
            symbols, freqs = stepper.encode_digits(mix, keep, values, bits, np.where(skip_mass > 0, skip, -1),
                                                   skip_mass, maps)
            tables = ref[rows, cols, k]
            for q in keep:
                above = np.arange(257)[None, :] > skip[q][:, None]
                excluded = tables[q] - (skip_mass[q][:, None] * above).sum(0)
                start = 0
                for level in range(levels):
                    width = 8 - bits * (level + 1)
                    ext = np.array([excluded[start + (j << width)] for j in range(radix + 1)])
                    g, nodes = apm.digit_frequencies(plain.table, k, int(activity[q]), level, bits, ext)
                    digit = (int(values[q]) >> width) & (radix - 1)
                    assert symbols.reshape(levels, -1)[level, q] == digit
                    assert np.array_equal(freqs.reshape(levels, -1, radix)[level, q], g)
                    for depth in range(bits):  # the path's decisions
                        ctx, j, w, _ = nodes[(1 << depth) - 1 + (digit >> (bits - depth))]
                        plain.add(ctx, j, w, (digit >> (bits - depth - 1)) & 1)
                    start += digit << width
                checked += 1
            assert np.array_equal(compiled.ones, plain.ones) and np.array_equal(compiled.shares, plain.shares)
    assert checked == 3 * 6 * 8


def test_format_8_round_trips_and_refusals() -> None:
    """Exact round trips (flat blocks, edges of the value range, speckles, every digit size and stripes); the maps
    never cost (much) more than format 6; the maps need colour and the repeat flags."""
    model = make_tiny_lossless_colour("grb", 2, seed=5)
    smooth, speckled = flag_test_images(23, 29, seed=4, speckle=0.05)
    for name, image in (("smooth", smooth), ("speckled", speckled)):
        for stripes, bits in ((None, 2), (1, 1), (3, 4), (2, 8)):
            data = compress(model, image, stripes=stripes, digit_bits=bits)
            header, _ = unpack_header(data)
            assert header.version == 8 and header.maps and header.repeat and header.mode == MODE_CODED
            assert np.array_equal(decompress(model, data), image), (name, stripes, bits)
            format_6 = compress(model, image, stripes=stripes, digit_bits=bits, maps=False)
            assert len(data) < 1.01 * len(format_6) + 8, (name, len(data), len(format_6))
    with pytest.raises(ValueError, match="repeat flags"):
        compress(model, smooth, repeat=False, maps=True)
    with pytest.raises(ValueError, match="colour images"):
        compress(make_tiny_ride(), smooth[..., 0], maps=True)
