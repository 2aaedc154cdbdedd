"""The colour codec (format version 3, `ride.codec.colour_fixedpoint`): the compiled kernels' integer CDF tables equal
the plain NumPy reference at all 257 edges of every channel of every pixel; exact round trips of awkward sizes,
colours, stripes and digit sizes; the integer model's code length stays close to the float model's exact discrete
probabilities; streams are independent of the thread count; bad input and foreign streams are refused with clear
messages. The shipped photo_colour model is checked the same way where it exists."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_smooth_images, make_tiny_lossless_colour, repeat_image

import ride
from ride.codec import compress, decompress, ideal_code_length_bits, integer_model, kernels
from ride.codec.colour_fixedpoint import R_CLIP, quantise_colour
from ride.codec.fixedpoint import F64_EXACT
from ride.codec.fixedpoint_ref import reference_colour_cdf_tables
from ride.codec.format import HEADER_BYTES_3, MODE_CODED, MODE_STORED, Header3, unpack_header
from ride.colour_lossless import LosslessColourRIDE

pytestmark = pytest.mark.skipif(not kernels.available(), reason="the colour codec needs numba")


def _colour_model(transform: str = "rgb", num_layers: int = 1, seed: int = 0, lstm_scale: float = 0.5):
    return make_tiny_lossless_colour(transform, num_layers, seed, lstm_scale)


def _smooth_rgb(height: int, width: int, seed: int) -> np.ndarray:
    images = make_smooth_images(1, 3, height, width, seed=seed, noise=0.02)
    return (images[0].permute(1, 2, 0).numpy() * 256).astype(np.uint8)


def _kernel_fronts(stepper: kernels.ColourKernelStepper, canvas: np.ndarray):  # noqa: ANN202
    """The kernel stepper on its canvas, front by front (the encoder's view: the codes of the channels before each
    one read from the canvas): (rows [n], cols [n], codes [B n, 3], the mixture of channel k for k = 0..2)."""
    top, left = stepper.im.margin[0], stepper.im.margin[1]
    for t in range(stepper.num_fronts):
        lo, hi = stepper.rows(t)
        if lo > hi:
            continue
        rows = np.arange(lo, hi + 1)
        cols = t - stepper.skew * rows
        hidden, base = stepper.trunk(t)
        codes = canvas[:, :, rows + top, cols + left].transpose(0, 2, 1).reshape(-1, 3)  # [B n, 3]
        yield rows, cols, codes, [stepper.head(k, hidden, base, codes) for k in range(3)]


def _kernel_tables(im, canvas: np.ndarray) -> np.ndarray:
    """Cq at all 257 edges of each channel of every cell [B, Hp, Wp, 3, 257] from the kernel stepper."""
    stepper = kernels.ColourKernelStepper(im, canvas.astype(np.int32))
    b = stepper.batch
    out = np.zeros((b, stepper.hp, stepper.wp, 3, 257), dtype=np.int64)
    for rows, cols, codes, mixes in _kernel_fronts(stepper, canvas):
        edges = np.tile(np.arange(1, 257), (codes.shape[0], 1))
        for k, mix in enumerate(mixes):
            out[:, rows, cols, k, 1:] = stepper.cdf(mix, edges).reshape(b, -1, 256)
    return out


def _canvas(im, images: np.ndarray, pads: tuple[int, int, int]) -> np.ndarray:
    """Codes [B, 3, top + H, left + W + right] of uint8 [B, H, W, 3] (coded order) in frames of values pads."""
    top, left, right = im.margin
    b, h, w, _ = images.shape
    canvas = np.empty((b, 3, top + h, left + w + right), dtype=np.int64)
    canvas[:] = (2 * np.asarray(pads) + 1)[None, :, None, None]
    canvas[:, :, top:, left : left + w] = 2 * images.transpose(0, 3, 1, 2).astype(np.int64) + 1
    return canvas


@pytest.mark.parametrize("transform, layers", [("rgb", 1), ("grb", 2)])
def test_kernel_tables_equal_reference(transform: str, layers: int) -> None:
    model = _colour_model(transform, layers, seed=layers)
    im = quantise_colour(model)
    rng = np.random.default_rng(layers)
    smooth = np.stack([_smooth_rgb(9, 11, seed=s) for s in (1, 2)])
    noisy = rng.integers(0, 256, (1, 9, 11, 3), dtype=np.uint8)
    noisy[0, :3] = [[255, 0, 255]]  # saturated colours: residuals far from the prediction
    for images, pads in ((smooth, (100, 120, 90)), (noisy, (0, 255, 17))):
        canvas = _canvas(im, images, pads)
        ref = reference_colour_cdf_tables(im, canvas)
        assert np.array_equal(_kernel_tables(im, canvas), ref)
        assert (np.diff(ref, axis=-1) >= 0).all() and (ref[..., 0] == 0).all() and (ref[..., 256] > 0).all()


def test_exactness_bounds() -> None:
    """The heads' float64 GEMMs on [h, r] (|h| <= A, |r| <= R_CLIP) and the energies stay below 2^53."""
    im = quantise_colour(_colour_model("rgb", 2))
    for k, head in enumerate(im.heads):
        assert head.out_weight.shape[0] == im.dims[0] + k
        assert ((R_CLIP + 1) * np.abs(head.out_weight).sum(0) < F64_EXACT).all()
        assert ((1 << 30) * head.beta2.sum(0) < F64_EXACT).all()
    assert (511 * np.abs(im.in_weight).sum(0) + np.abs(im.in_bias) < F64_EXACT).all()
    assert im.in_weight.shape == (3 * 12, 5 * im.dims[0] + 3)


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1), (2, 3), (13, 5), (31, 17)])
def test_round_trip_awkward_sizes(shape: tuple[int, int]) -> None:
    model = _colour_model()
    image = _smooth_rgb(*shape, seed=sum(shape))
    for stripes, bits in ((None, 2), (1, 1), (shape[0], 8), (3, 4)):
        data = compress(model, image, stripes=stripes, digit_bits=bits)
        assert np.array_equal(decompress(model, data), image), (stripes, bits)


def test_round_trip_colours_and_stored_mode() -> None:
    model = _colour_model("grb", 2)
    rng = np.random.default_rng(5)
    cases = {
        "black": np.zeros((6, 9, 3), np.uint8),
        "white": np.full((6, 9, 3), 255, np.uint8),
        "saturated": rng.choice(np.array([0, 255], np.uint8), (10, 12, 3)),
        "noise": rng.integers(0, 256, (16, 16, 3), dtype=np.uint8),
    }
    for name, image in cases.items():
        for repeat, maps, version in ((True, None, 8), (True, False, 6), (False, None, 3)):
            data = compress(model, image, repeat=repeat, maps=maps)
            header, _ = unpack_header(data)
            assert header.version == version and header.channel_order == "grb"
            assert np.array_equal(decompress(model, data), image), (name, repeat, maps)
    # white noise cannot be compressed: stored, one byte per sub-pixel
    assert header.mode == MODE_STORED and len(data) == HEADER_BYTES_3 + 16 * 16 * 3
    assert len(compress(model, image)) == HEADER_BYTES_3 + 4 + 16 * 16 * 3  # format 8: the clip field too


def test_code_length_near_float_model() -> None:
    """One stripe: the stream's length is the float model's exact discrete code length within 1% + 4 bytes of
    range-coder overhead (the integer model's quantisation and the coder's frequency rounding)."""
    model = _colour_model("rgb", 2, lstm_scale=0.3)
    image = _smooth_rgb(40, 48, seed=11)
    data = compress(model, image, stripes=1, repeat=False)  # the model's code length alone
    flagged = compress(model, image, stripes=1)  # the repeat flags: their prior keeps a small image's cost low
    assert len(unpack_header(flagged)[1]) < 1.02 * len(unpack_header(data)[1])
    header, payload = unpack_header(data)
    assert header.mode == MODE_CODED
    ideal = ideal_code_length_bits(model, image) / 8
    assert len(payload) < 0.9 * image.size  # really compressed
    assert abs(len(payload) - ideal) < 0.01 * ideal + 4, (len(payload), ideal)


def test_streams_do_not_depend_on_threads() -> None:
    model = _colour_model("rgb", 2)
    image = _smooth_rgb(30, 40, seed=3)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = compress(model, image, stripes=4)
        torch.set_num_threads(2)
        two = compress(model, image, stripes=4)
        assert two == one and np.array_equal(decompress(model, one), image)
    finally:
        torch.set_num_threads(threads)


def test_refusals() -> None:
    model = _colour_model()
    grey = ride.RIDE(1, 4, 1, 2, 2, 2, 5)
    rgb = _smooth_rgb(8, 8, seed=4)
    with pytest.raises(ValueError, match=r"RGB images of shape \[H, W, 3\].*grey\? use a grey model"):
        compress(model, rgb[..., 0])
    with pytest.raises(ValueError, match=r"shape \(8, 8, 4\)"):
        compress(model, np.concatenate([rgb, rgb[..., :1]], 2))  # RGBA
    with pytest.raises(ValueError, match="8-bit RGB"):
        compress(model, rgb.astype(np.uint16))
    with pytest.raises(ValueError, match="colour\\? use a colour model"):
        compress(grey, rgb)
    with pytest.raises(ValueError, match="8-bit channels"):
        compress(LosslessColourRIDE("ycocg_r", num_hiddens=4, num_components=2, num_features=2), rgb)
    with pytest.raises(ValueError, match="backend"):
        compress(model, rgb, backend="torch")


def test_foreign_and_damaged_streams() -> None:
    model, other = _colour_model(seed=0), _colour_model(seed=1)
    image = _smooth_rgb(12, 14, seed=6)
    data = compress(model, image)
    with pytest.raises(ValueError, match=r"stream \(colour\) was made with another model"):
        decompress(other, data)
    with pytest.raises(ValueError, match="another model"):
        decompress(ride.RIDE(1, 4, 1, 2, 2, 2, 5), data)
    with pytest.raises(ValueError, match="truncated"):
        decompress(model, data[:-4])
    with pytest.raises(ValueError, match="header checksum"):
        decompress(model, data[:20] + bytes([data[20] ^ 1]) + data[21:])
    damaged = bytearray(data)
    damaged[HEADER_BYTES_3 + 2] ^= 0x40
    with pytest.raises(ValueError, match="corrupted|checksum"):
        decompress(model, bytes(damaged))
    header, payload = unpack_header(data)
    swapped = Header3(header.mode, header.height, header.width, header.pads, header.stripes, header.digit_bits,
                      "grb", header.fingerprint, header.pixel_crc, header.num_bytes)
    with pytest.raises(ValueError, match="channel order 'grb'"):
        decompress(model, swapped.pack() + payload)


def test_a_tighter_cell_clip_is_format_5_and_the_stream_states_it() -> None:
    """A colour model whose cells are clipped below format 3's 10^4 (LosslessColourConfig.cell_clip, as
    photo_colour's) codes with that clip in the kernels and the reference, and writes format 5, whose header states
    the clip: any model with the same integer tables decodes it, and format-3 streams still decode with 10^4."""
    from ride.growth import with_cell_clip

    model = _colour_model("rgb", 2, seed=4)
    with torch.no_grad():
        for layer in model.layers:
            layer.bias[3 * 6 :] = 3.0  # forget gates near 1: the cells grow along the diagonals
    clipped = with_cell_clip(model, 0.5)
    assert clipped.config.cell_clip == 0.5 and [la.cell_clip for la in clipped.layers] == [0.5, 0.5]
    im, im_clipped = quantise_colour(model), quantise_colour(clipped)
    assert (im.cell_clip, im_clipped.cell_clip) == (10_000 << 15, 1 << 14)
    assert im_clipped.fingerprint == im.fingerprint  # the tables; the stream states the clip
    canvas = _canvas(im, np.stack([_smooth_rgb(9, 11, seed=3)]), (100, 120, 90))
    ref = reference_colour_cdf_tables(im_clipped, canvas)
    assert not np.array_equal(ref, reference_colour_cdf_tables(im, canvas)), "the clip was never hit"
    assert np.array_equal(_kernel_tables(im_clipped, canvas), ref)
    image = _smooth_rgb(13, 17, seed=2)
    data, plain = compress(clipped, image, stripes=2, repeat=False), compress(model, image, stripes=2, repeat=False)
    assert data != plain and (data[4], plain[4]) == (5, 3)
    header, _ = unpack_header(data)
    assert header.cell_clip == 1 << 14 and header.version == 5 and len(data) == HEADER_BYTES_3 + 4 + header.num_bytes
    assert unpack_header(plain)[0].cell_clip == 10_000 << 15
    for decoder, stream in ((clipped, data), (model, data), (clipped, plain), (model, plain)):
        assert np.array_equal(decompress(decoder, stream), image)
    with pytest.raises(ValueError, match="header checksum"):
        decompress(model, data[:22] + bytes([data[22] ^ 1]) + data[23:])  # a damaged clip
    bad = Header3(*(getattr(header, f) for f in ("mode", "height", "width", "pads", "stripes", "digit_bits",
                                                  "channel_order", "fingerprint", "pixel_crc", "num_bytes")), 0)
    with pytest.raises(ValueError, match="cell clip 0"):
        decompress(model, bad.pack() + data[HEADER_BYTES_3 + 4 :])


def test_shipped_photo_colour() -> None:
    """photo_colour: kernels == reference on a small crop; the integer code length within 0.5% of the float
    model's on a smooth colour image; an exact round trip."""
    if "photo_colour" not in {e.name for e in ride.pretrained_models()}:
        pytest.skip("photo_colour is not shipped in this version")
    model = ride.pretrained("photo_colour")
    im = integer_model(model)
    image = _smooth_rgb(64, 80, seed=21)
    canvas = _canvas(im, image[None, :10, :12], (90, 100, 110))
    assert np.array_equal(_kernel_tables(im, canvas), reference_colour_cdf_tables(im, canvas))
    data = compress(model, image, stripes=1)
    assert np.array_equal(decompress(model, data), image)
    ideal = ideal_code_length_bits(model, image) / 8
    assert abs(unpack_header(data)[0].num_bytes - ideal) < 0.005 * ideal + 8
    assert math.isfinite(ideal)


def test_cli_round_trip(tmp_path, capsys) -> None:
    from PIL import Image

    from ride.cli import main

    ride.save(_colour_model("rgb", 2), tmp_path / "c.pt")
    image = _smooth_rgb(11, 19, seed=9)
    Image.fromarray(image, mode="RGB").save(tmp_path / "a.png")
    Image.fromarray(image[..., 0], mode="L").save(tmp_path / "g.png")
    assert main(["compress", str(tmp_path / "a.png"), "-o", str(tmp_path / "a.ride"), "--checkpoint",
                 str(tmp_path / "c.pt"), "--no-progress", "--stripes", "2"]) == 0
    assert "bits per sub-pixel" in capsys.readouterr().out
    assert main(["decompress", str(tmp_path / "a.ride"), "-o", str(tmp_path / "a2.png"), "--checkpoint",
                 str(tmp_path / "c.pt"), "--no-progress"]) == 0
    with Image.open(tmp_path / "a2.png") as decoded:
        assert decoded.mode == "RGB" and np.array_equal(np.asarray(decoded), image)
    # PPM and TIFF as Pillow reads them
    for suffix in ("ppm", "tiff"):
        Image.fromarray(image[::-1].copy(), mode="RGB").save(tmp_path / f"b.{suffix}")
        assert main(["compress", str(tmp_path / f"b.{suffix}"), "-o", str(tmp_path / f"b_{suffix}.ride"),
                     "--checkpoint", str(tmp_path / "c.pt"), "--no-progress"]) == 0
        assert main(["decompress", str(tmp_path / f"b_{suffix}.ride"), "-o", str(tmp_path / f"b_{suffix}.png"),
                     "--checkpoint", str(tmp_path / "c.pt"), "--no-progress"]) == 0
        assert np.array_equal(np.asarray(Image.open(tmp_path / f"b_{suffix}.png")), image[::-1])
    # a grey image with the colour model: refused, naming the fix
    assert main(["compress", str(tmp_path / "g.png"), "-o", str(tmp_path / "g.ride"), "--checkpoint",
                 str(tmp_path / "c.pt"), "--no-progress"]) == 2
    assert "use a grey model" in capsys.readouterr().err


GOLDEN = Path(__file__).parent / "golden" / "colour"


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.ride")), ids=lambda p: p.name)
def test_golden_colour_streams(path: Path) -> None:
    """Streams made by tests/golden/make_golden.py --colour decode to their image and are re-encoded byte for
    byte: the colour format and integer model cannot drift silently."""
    from PIL import Image

    from ride.growth import with_cell_clip

    model = ride.load(GOLDEN / "tiny_colour.pt")
    image = np.asarray(Image.open(GOLDEN / "image_rgb_20x26.png"))
    data = path.read_bytes()
    header, _ = unpack_header(data)
    clipped = path.name.startswith("colour_clip")  # format 5: the model with its cells clipped at 0.25
    maps = path.name.startswith("colour_maps")  # format 8: the flags and the maps, on the image with a flat block
    repeat = maps or path.name.startswith("colour_repeat")  # format 6: the repeat flag, likewise
    if repeat:
        image = repeat_image(image)
    assert header.version == (5 if clipped else 8 if maps else 6 if repeat else 3) and header.mode == MODE_CODED
    assert header.fingerprint == integer_model(model).fingerprint
    assert header.cell_clip == (1 << 13 if clipped else 10_000 << 15)
    assert np.array_equal(decompress(model, data), image)
    encoder = with_cell_clip(model, 0.25) if clipped else model
    assert compress(encoder, image, stripes=header.stripes, digit_bits=header.digit_bits, repeat=repeat,
                    maps=maps) == data
    if clipped:  # the clip changes the probabilities of this image
        plain = compress(model, image, stripes=header.stripes, digit_bits=header.digit_bits, repeat=False)
        assert plain[41:] != data[45:]


def test_golden_colour_set_is_complete() -> None:
    names = sorted(p.name for p in GOLDEN.glob("*.ride"))
    assert names == ["colour_clip_s2_b2.ride", "colour_maps_s2_b2.ride", "colour_repeat_s2_b2.ride",
                     "colour_s1_b2.ride", "colour_s2_b1.ride"], \
        "run tests/golden/make_golden.py --colour, --colour-clip, --colour-repeat, --colour-maps"


def test_cli_picks_the_shipped_colour_model_by_mode(tmp_path, capsys) -> None:
    """Without --checkpoint: an RGB image is coded with photo_colour (the stream's fingerprint says so) and a grey
    one with photo_grey; decompress finds each model from its stream."""
    from PIL import Image

    from ride.cli import main
    from ride.model_zoo import DEFAULT_CODEC_MODEL, DEFAULT_COLOUR_CODEC_MODEL

    if DEFAULT_COLOUR_CODEC_MODEL not in {e.name for e in ride.pretrained_models()}:
        pytest.skip(f"{DEFAULT_COLOUR_CODEC_MODEL} is not shipped in this version")
    image = _smooth_rgb(9, 13, seed=12)
    Image.fromarray(image, mode="RGB").save(tmp_path / "c.png")
    Image.fromarray(image[..., 1], mode="L").save(tmp_path / "g.png")
    assert main(["compress", str(tmp_path / "c.png"), str(tmp_path / "g.png"), "--out-dir", str(tmp_path),
                 "--no-progress"]) == 0
    expected = {"c": (8, DEFAULT_COLOUR_CODEC_MODEL), "g": (7, DEFAULT_CODEC_MODEL)}  # the flags (and the maps)
    for stem, (version, name) in expected.items():
        data = (tmp_path / f"{stem}.ride").read_bytes()
        header, _ = unpack_header(data)
        assert header.version == version
        assert header.fingerprint == integer_model(ride.pretrained(name)).fingerprint
        assert main(["decompress", str(tmp_path / f"{stem}.ride"), "-o", str(tmp_path / f"{stem}2.png"),
                     "--no-progress"]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "c2.png")), image)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "g2.png")), image[..., 1])


def test_streams_photo_colour_made_before_its_cell_clip_still_decode(tmp_path) -> None:
    """photo_colour clips its cells at 10 since 2026-12-07 and writes format 5; its earlier streams (format 3, clip
    10^4, the same integer tables and fingerprint) decode with it, without --checkpoint, to the same pixels."""
    from PIL import Image

    from ride.cli import main
    from ride.growth import with_cell_clip

    shipped = ride.pretrained("photo_colour")
    assert shipped.config.cell_clip == 10.0
    image = _smooth_rgb(23, 31, seed=13)
    old = compress(with_cell_clip(shipped, 1e4), image, repeat=False)
    new = compress(shipped, image, repeat=False)
    assert (old[4], new[4]) == (3, 5) and old[21:29] == new[25:33]  # the same fingerprint
    (tmp_path / "old.ride").write_bytes(old)
    assert main(["decompress", str(tmp_path / "old.ride"), "-o", str(tmp_path / "old.png"), "--no-progress"]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "old.png")), image)
    assert np.array_equal(decompress(shipped, new), image)


def test_cli_decodes_files_of_an_earlier_shipped_colour_model(tmp_path, capsys) -> None:
    """A stream made with the first photo_colour (kept as photo_colour_v1 when photo_colour was retrained) still
    decodes without --checkpoint: decompress finds the retired model by the stream's fingerprint; naming the new
    photo_colour for it is refused (another model made it)."""
    from PIL import Image

    from ride.cli import main

    if "photo_colour_v1" not in {e.name for e in ride.pretrained_models()}:
        pytest.skip("photo_colour_v1 is not shipped in this version")
    old = ride.pretrained("photo_colour_v1")
    assert integer_model(old).fingerprint != integer_model(ride.pretrained("photo_colour")).fingerprint
    image = _smooth_rgb(11, 7, seed=13)
    (tmp_path / "old.ride").write_bytes(compress(old, image))
    assert main(["decompress", str(tmp_path / "old.ride"), "-o", str(tmp_path / "old.png"), "--no-progress"]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "old.png")), image)
    assert main(["decompress", str(tmp_path / "old.ride"), "-o", str(tmp_path / "x.png"), "--checkpoint",
                 "photo_colour", "--no-progress"]) != 0
    assert "made with another model" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def _plain_digits(table: np.ndarray, value: int, bits: int) -> tuple[list[int], np.ndarray]:
    """The digits of `value` and their frequencies [levels, 2^b] from one cell's Cq at all 257 edges, plainly
    (engine's rule: sum 2^24 - 2^b, equal frequencies for an interval without mass)."""
    radix, free = 1 << bits, (1 << 24) - (1 << bits)
    start, digits, freqs = 0, [], []
    for level in range(8 // bits):
        width = 8 - bits * (level + 1)
        ext = [int(table[start + (j << width)]) for j in range(radix + 1)]
        total = ext[-1] - ext[0]
        cum = [(j * free) >> bits if total == 0 else ((e - ext[0]) * free) // total for j, e in enumerate(ext)]
        freqs.append(np.diff(cum))
        digit = (value >> width) & (radix - 1)
        digits.append(digit)
        start += digit << width
    return digits, np.array(freqs)


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_digits_without_some_values_equal_a_plain_reference(bits: int) -> None:
    """The repeat flags' misses: the kernels' value masses are the reference tables' Cq(v + 1) - Cq(v), and the
    digits' frequencies with up to three values taken out are the plain ones of the reference table minus each
    value's mass above it."""
    model = _colour_model("rgb", 2, seed=2)
    im = quantise_colour(model)
    image = _smooth_rgb(7, 9, seed=8)
    canvas = _canvas(im, image[None], (100, 110, 120))
    ref = reference_colour_cdf_tables(im, canvas)[0]  # [Hp, Wp, 3, 257]
    rng = np.random.default_rng(bits)
    checked = 0
    stepper = kernels.ColourKernelStepper(im, canvas.astype(np.int32))
    for rows, cols, codes, mixes in _kernel_fronts(stepper, canvas):
        keep = np.arange(rows.size)
        for k, mix in enumerate(mixes):
            values = (codes[:, k] - 1) >> 1
            # three distinct values other than the pixel's, two of them near it (where the mass is)
            skip = np.stack([(values + d) % 256 for d in (1, 255, int(rng.integers(2, 255)))], 1)
            mass, total = stepper.value_masses(mix, keep, skip)
            tables = ref[rows, cols, k]  # [n, 257]
            assert np.array_equal(mass, np.take_along_axis(tables, skip + 1, 1) - np.take_along_axis(tables, skip, 1))
            assert np.array_equal(total, tables[:, 256])
            used = rng.random(skip.shape) < 0.7  # a candidate that was never flagged is not left out
            skip_mass = np.where(used, mass, 0)
            symbols, freqs = stepper.encode_digits(mix, keep, values, bits, np.where(used, skip, -1), skip_mass)
            levels = 8 // bits
            for q in keep:
                above = np.arange(257)[None, :] > skip[q][:, None]  # [3, 257]
                excluded = tables[q] - (skip_mass[q][:, None] * above).sum(0)
                digits, plain = _plain_digits(excluded, int(values[q]), bits)
                assert list(symbols.reshape(levels, -1)[:, q]) == digits
                assert np.array_equal(freqs.reshape(levels, -1, 1 << bits)[:, q], plain)
                checked += 1
    assert checked == 3 * 7 * 9


def test_repeat_buckets_counts_and_frequencies() -> None:
    from ride.codec import repeat

    rng = np.random.default_rng(0)
    total = rng.integers(1 << 20, 1 << 38, 2000)
    mass = (total * rng.random(2000) ** 6).astype(np.int64)
    mass[:5] = 0
    b = repeat.buckets(mass, total)
    assert (b[:5] == repeat.BUCKETS - 1).all()
    half_bits = -2 * np.log2(np.maximum(mass, 1) / total)
    exact = np.minimum(np.floor(half_bits), repeat.BUCKETS - 1)
    inside = np.abs(half_bits - np.rint(half_bits)) > 1e-3  # not at a bucket's edge (the thresholds are rounded)
    assert np.array_equal(b[5:][inside[5:]], exact[5:][inside[5:]])
    with pytest.raises(ValueError, match="2\\^48"):
        repeat.buckets(np.array([1]), np.array([1 << 48]))
    counts = repeat.RepeatCounts(3)
    context = np.array([7])
    first = counts.frequencies(context)
    assert first.sum() == (1 << 24) - 2 and first[0, 1] < first[0, 0]  # bucket 7: the prior's rate, below 1/2
    for _ in range(repeat.COUNT_LIMIT + 10):
        counts.update(context, np.array([True]))
    assert counts.seen[7] < repeat.UNIT * repeat.COUNT_LIMIT and counts.hits[7] > 0.99 * counts.seen[7]  # halved
    freqs = counts.frequencies(context)
    assert freqs.sum() == (1 << 24) - 2 and freqs[0, 1] > 0.998 * freqs.sum() and freqs[0, 0] > 0
    # candidates, activity and the repeats among them, from the codes 2v + 1 of W, N, NW, NE
    codes = tuple(2 * np.array(v) + 1 for v in ([5, 5, 7, 0], [5, 6, 7, 255], [5, 5, 9, 255], [5, 5, 8, 0]))
    cands = repeat.candidates(codes)
    assert cands.tolist() == [[5, 5, 5, 5, 5], [5, 6, 5, 5, 6], [7, 7, 8, 9, 5], [0, 255, 0, 255, 0]]
    assert repeat.activity(codes).tolist() == [0, 1, 2, 4]
    assert repeat.first_occurrence(cands).tolist() == [[True, False, False, False, False],
                                                       [True, True, False, False, False],
                                                       [True, False, True, True, True],
                                                       [True, True, False, False, False]]
    ctx = counts.contexts(2, 1, np.array([0, 4]), np.array([1, 0]), np.array([10, 10]), np.array([10, 10]))
    fresh = repeat.RepeatCounts(1).frequencies(np.arange(repeat.BUCKETS))[:, 1] / ((1 << 24) - 2)
    middle = 2 ** (-(np.arange(repeat.BUCKETS) + 0.5) / 2)  # an unseen context: about the model's own rate
    assert np.allclose(fresh, (repeat.PRIOR_EVENTS * middle + 0.5) / (repeat.PRIOR_EVENTS + 1), atol=0.01)
    assert ctx.tolist() == [(((2 * 3 + 1) * repeat.ACTIVITY + a) * 2 + p) * repeat.BUCKETS for a, p in ((0, 1), (4, 0))]


def test_compiled_repeat_loops_equal_the_plain_ones() -> None:
    """kernels.repeat_prepare and kernels.FlagState give repeat's integers (the torch backend uses those); the
    compiled state computes only the masses of the flags it codes, and those equal `value_masses`'."""
    from ride.codec import repeat

    rng = np.random.default_rng(3)
    hc, wc, n = 9, 12, 40
    flat = (2 * rng.choice(np.array([0, 7, 8, 9, 255]), (2, hc * wc)) + 1).astype(np.int32)
    stripe = rng.integers(0, 2, n)
    position = rng.integers(wc + 1, hc * wc - 1, n)
    neighbours = tuple(flat[stripe, position - d].astype(np.int64) for d in (1, wc, wc + 1, wc - 1))
    cands, active, coded = kernels.repeat_prepare(flat, stripe, position, wc)
    assert np.array_equal(cands, repeat.candidates(neighbours))
    assert np.array_equal(active, repeat.activity(neighbours))
    assert np.array_equal(coded, repeat.first_occurrence(cands))
    # a real mixture for the masses: the widest front of a tiny colour model, its cells drawn n times
    im = quantise_colour(_colour_model("rgb", 2, seed=6))
    image = _smooth_rgb(8, 9, seed=2)
    canvas = _canvas(im, image[None], (80, 90, 100))
    stepper = kernels.ColourKernelStepper(im, canvas.astype(np.int32))
    mix = max((mixes[1] for _, _, _, mixes in _kernel_fronts(stepper, canvas)), key=lambda m: m.total.shape[0])
    keep = rng.integers(0, mix.total.shape[0], n)
    counts = repeat.RepeatCounts(3)
    counts.update(rng.integers(0, counts.seen.size, 5000), rng.random(5000) < 0.4)
    previous = rng.integers(0, 2, n)
    masses, total = stepper.value_masses(mix, keep, cands, coded)
    states = {}
    for name in ("plain", "compiled"):
        if name == "plain":
            state = repeat.FlagState(1, counts, coded, cands, masses, total.copy(), active, previous)
        else:
            state = kernels.FlagState(1, counts, coded, cands, mix, keep, stepper.phi, active, previous)
        outputs = []
        for rank in range(repeat.CANDIDATES):
            m = state.step(rank)
            hits = np.random.default_rng(rank).random(m) < 0.3
            outputs.append((state.cells[:m].copy(), state.contexts[:m].copy(), state.freqs[:m].copy()))
            state.apply(rank, m, hits)
        states[name] = (outputs, state.open_, state.remaining, state.skip, state.skip_mass, state.values)
        if name == "compiled":  # the masses of the coded flags, none of the others
            flagged = np.zeros(cands.shape, dtype=bool)
            for rank, (cells, _, _) in enumerate(outputs):
                flagged[cells, rank] = True
            assert np.array_equal(state.masses[flagged], masses[flagged]) and not state.masses[~flagged].any()
            assert (~flagged & coded).any()  # some cells hit before their later candidates
    for a, b in zip(states["plain"][1:], states["compiled"][1:], strict=True):
        assert np.array_equal(a, b)
    for (c1, x1, f1), (c2, x2, f2) in zip(states["plain"][0], states["compiled"][0], strict=True):
        assert np.array_equal(c1, c2) and np.array_equal(x1, x2) and np.array_equal(f1, f2)


def test_repeat_flag_round_trips_and_codes_flat_areas_nearly_free() -> None:
    """Format 6: exact round trips (flat blocks, smooth areas, edges of the value range, every digit size and
    stripes), a flat image at a few hundredths of a bit per value, never (much) larger than format 3."""
    model = _colour_model("grb", 2, seed=5)
    rng = np.random.default_rng(9)
    smooth = repeat_image(_smooth_rgb(23, 29, seed=4))
    smooth[:4, -6:] = 255
    smooth[-5:, :3] = 0
    smooth[10:12] = smooth[9:10]  # rows that repeat the row above
    speckled = smooth.copy()
    speckled[rng.random(smooth.shape[:2]) < 0.05] = rng.integers(0, 256, 3)
    for name, image in (("smooth", smooth), ("speckled", speckled)):
        for stripes, bits in ((None, 2), (1, 1), (3, 4), (2, 8)):
            data = compress(model, image, stripes=stripes, digit_bits=bits, maps=False)
            header, _ = unpack_header(data)
            assert header.version == 6 and header.repeat and not header.maps and header.mode == MODE_CODED
            assert np.array_equal(decompress(model, data), image), (name, stripes, bits)
            plain = compress(model, image, stripes=stripes, digit_bits=bits, repeat=False)
            assert len(data) < len(plain) + 8, (name, len(data), len(plain))
    flat = np.full((40, 50, 3), (12, 200, 255), np.uint8)
    data, plain = compress(model, flat), compress(model, flat, repeat=False)
    assert np.array_equal(decompress(model, data), flat)
    assert 8 * unpack_header(data)[0].num_bytes < 0.05 * flat.size < 8 * unpack_header(plain)[0].num_bytes
    damaged = bytearray(compress(model, smooth))
    damaged[HEADER_BYTES_3 + 4 + 3] ^= 0x10
    with pytest.raises(ValueError, match="corrupted|checksum"):
        decompress(model, bytes(damaged))
