"""ride.codec: exact round trips of every size and content, the stored fallback for noise, clear errors for bad
streams, wrong models and bad images, identical streams at 1 and 2 threads, the CLI round trip, and version-1
streams. Portability (kernel sets, the NumPy reference, golden streams) is in test_fixedpoint.py."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image

import ride
from ride.cli import main
from ride.codec import compress, compress_v1, decompress, ideal_code_length_bits
from ride.codec.format import HEADER_BYTES, unpack_header


@pytest.fixture
def model(tiny_ride):
    return tiny_ride(num_layers=2, nb_size=5, num_hiddens=6, num_components=4, num_scales=3, seed=3).float()


def smooth_uint8(smooth_images, height: int, width: int, seed: int = 0) -> np.ndarray:
    values = smooth_images(1, 1, height, width, seed=seed, noise=0.02)[0, 0] * 256
    return values.clamp(0, 255).to(torch.uint8).numpy()


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (7, 1), (5, 5), (7, 11), (13, 4), (2, 3)],
                         ids=lambda s: f"{s[0]}x{s[1]}")
def test_round_trip_sizes(model, smooth_images, shape) -> None:
    image = smooth_uint8(smooth_images, *shape, seed=sum(shape))
    data = compress(model, image)
    out = decompress(model, data)
    assert out.dtype == np.uint8 and out.shape == shape
    assert np.array_equal(out, image)


@pytest.mark.parametrize("value", [0, 77, 255])
def test_constant_images(model, value: int) -> None:
    image = np.full((9, 12), value, dtype=np.uint8)
    assert np.array_equal(decompress(model, compress(model, image)), image)


def test_only_black_and_white(model) -> None:
    image = np.where(np.random.default_rng(1).random((10, 14)) < 0.5, 0, 255).astype(np.uint8)
    assert np.array_equal(decompress(model, compress(model, image)), image)


def test_uniform_noise_costs_about_8_bits(model) -> None:
    image = np.random.default_rng(2).integers(0, 256, (24, 30), dtype=np.uint8)
    data = compress(model, image)
    assert np.array_equal(decompress(model, data), image)
    assert 8 * len(data) <= 8 * image.size + 8 * HEADER_BYTES  # stored when the model would need more


def test_file_size_is_close_to_the_ideal_code_length(tiny_ride, smooth_images) -> None:
    model = tiny_ride(num_layers=1, nb_size=3, seed=4).float()
    image = smooth_uint8(smooth_images, 40, 48, seed=5)
    data = compress(model, image, repeat=False)  # the model's code length alone (the repeat flag: test_fixedpoint)
    ideal_bits = ideal_code_length_bits(model, image)
    assert ideal_bits / image.size < 8  # the model beats storing the pixels, so the stream is range-coded
    overhead = (8 * len(unpack_header(data)[1]) - ideal_bits) / image.size
    assert -0.01 < overhead < 0.05, overhead


def test_streams_are_identical_at_1_and_2_threads(model, smooth_images) -> None:
    image = smooth_uint8(smooth_images, 20, 23, seed=6)
    torch.set_num_threads(1)
    one = compress(model, image)
    torch.set_num_threads(2)
    two = compress(model, image)
    assert one == two
    assert np.array_equal(decompress(model, one), image)
    assert torch.get_num_threads() == 2  # the codec restores the caller's setting


def test_progress_counts_fronts(model, smooth_images) -> None:
    calls: list[tuple[int, int]] = []
    image = smooth_uint8(smooth_images, 6, 8)
    data = compress(model, image, progress=lambda done, total: calls.append((done, total)))
    total = 3 * (6 - 1) + 8  # skewed fronts of the 6x8 image, the predicted grid of the framed canvas
    assert calls == [(k, total) for k in range(1, total + 1)]
    calls.clear()
    decompress(model, data, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (total, total)


def test_corrupted_truncated_and_foreign_streams(model, smooth_images) -> None:
    image = smooth_uint8(smooth_images, 16, 18, seed=7)
    data = compress(model, image)
    flipped = bytearray(data)
    flipped[len(data) // 2 + HEADER_BYTES // 2] ^= 0x10
    with pytest.raises(ValueError, match="corrupted|checksum"):
        decompress(model, bytes(flipped))
    header = bytearray(data)
    header[8] ^= 0x01  # the height
    with pytest.raises(ValueError, match="header checksum"):
        decompress(model, bytes(header))
    with pytest.raises(ValueError, match="truncated"):
        decompress(model, data[:-3])
    with pytest.raises(ValueError, match="truncated"):
        decompress(model, data[:10])
    with pytest.raises(ValueError, match="magic"):
        decompress(model, b"\x89PNG\r\n\x1a\n" + data[8:])
    with pytest.raises(ValueError, match="bytes"):
        decompress(model, "not bytes")


def test_another_model_is_refused(model, tiny_ride, smooth_images) -> None:
    image = smooth_uint8(smooth_images, 8, 9)
    data = compress(model, image)
    other = tiny_ride(num_layers=2, nb_size=5, num_hiddens=6, num_components=4, num_scales=3, seed=4).float()
    with pytest.raises(ValueError, match="another model"):
        decompress(other, data)
    # format 2: the same weights in another dtype are the same integer model, and decode
    wide = copy.deepcopy(model).double()
    assert np.array_equal(decompress(wide, data), image)
    with pytest.raises(ValueError, match="another model"):
        decompress(wide, compress_v1(model, image))  # format 1: other dtype, other numbers


@pytest.mark.parametrize(("image", "found"), [
    (np.zeros((4, 5, 3), dtype=np.uint8), "shape"),
    (np.zeros((4, 5), dtype=np.uint16), "uint16"),
    (np.zeros((4, 5), dtype=np.float32), "float32"),
    (np.zeros((0, 5), dtype=np.uint8), "at least 1x1"),
    ([[1, 2], [3, 4]], "list"),
], ids=["rgb", "16bit", "float", "empty", "list"])
def test_bad_images(model, image, found: str) -> None:
    with pytest.raises(ValueError, match=found):
        compress(model, image)


def test_colour_models_are_refused(tiny_ride) -> None:
    with pytest.raises(ValueError, match="one-channel"):
        compress(tiny_ride(num_channels=2), np.zeros((4, 4), dtype=np.uint8))


def test_cli_round_trip(model, smooth_images, tmp_path, capsys) -> None:
    ride.save(model, tmp_path / "m.pt")
    image = smooth_uint8(smooth_images, 12, 17, seed=8)
    Image.fromarray(image).save(tmp_path / "a.png")
    Image.fromarray(image[::-1].copy()).save(tmp_path / "b.png")
    assert main(["compress", str(tmp_path / "a.png"), "-o", str(tmp_path / "a.ride"), "--checkpoint",
                 str(tmp_path / "m.pt"), "--no-progress"]) == 0
    assert "bits/px" in capsys.readouterr().out
    assert main(["decompress", str(tmp_path / "a.ride"), "-o", str(tmp_path / "a2.png"), "--checkpoint",
                 str(tmp_path / "m.pt"), "--no-progress"]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a2.png")), image)
    assert main(["compress", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--out-dir", str(tmp_path / "out"),
                 "--checkpoint", str(tmp_path / "m.pt"), "--no-progress"]) == 0
    assert main(["decompress", str(tmp_path / "out" / "b.ride"), "-o", str(tmp_path / "b2.png"), "--checkpoint",
                 str(tmp_path / "m.pt"), "--no-progress"]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b2.png")), image[::-1])
    # --stripes 3 and --exact (one stripe); the stream says so, decompress needs no flag
    for flag, name in ((["--stripes", "3"], "s"), (["--exact"], "e")):
        assert main(["compress", str(tmp_path / "a.png"), "-o", str(tmp_path / f"{name}.ride"), "--checkpoint",
                     str(tmp_path / "m.pt"), "--no-progress", *flag]) == 0
        assert main(["decompress", str(tmp_path / f"{name}.ride"), "-o", str(tmp_path / f"{name}.png"),
                     "--checkpoint", str(tmp_path / "m.pt"), "--no-progress"]) == 0
        assert np.array_equal(np.asarray(Image.open(tmp_path / f"{name}.png")), image)
    assert (tmp_path / "s.ride").read_bytes() != (tmp_path / "e.ride").read_bytes()


@pytest.mark.parametrize(("mode", "kind"), [("RGB", "colour"), ("P", "palette"), ("I;16", "16-bit"),
                                            ("RGBA", "alpha channel is not coded"), ("LA", "alpha")])
def test_cli_refuses_non_grey_images(model, tmp_path, capsys, mode: str, kind: str) -> None:
    ride.save(model, tmp_path / "m.pt")
    Image.new(mode, (6, 5)).save(tmp_path / "x.png")
    assert main(["compress", str(tmp_path / "x.png"), "-o", str(tmp_path / "x.ride"), "--checkpoint",
                 str(tmp_path / "m.pt")]) == 2
    assert kind in capsys.readouterr().err


def test_cli_unreadable_inputs(model, tmp_path, capsys) -> None:
    ride.save(model, tmp_path / "m.pt")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    assert main(["compress", str(tmp_path / "bad.png"), "-o", str(tmp_path / "x.ride"), "--checkpoint",
                 str(tmp_path / "m.pt")]) == 2
    assert "not a readable image" in capsys.readouterr().err
    assert main(["decompress", str(tmp_path / "missing.ride"), "-o", str(tmp_path / "x.png"), "--checkpoint",
                 str(tmp_path / "m.pt")]) == 2
    assert "cannot read" in capsys.readouterr().err



@pytest.mark.parametrize(("stripes", "digit_bits"), [(1, 1), (2, 2), (3, 4), (5, 8), (40, 2)])
def test_stripes_and_digits_round_trip(model, smooth_images, stripes: int, digit_bits: int) -> None:
    image = smooth_uint8(smooth_images, 17, 13, seed=stripes)
    data = compress(model, image, stripes=stripes, digit_bits=digit_bits)
    assert np.array_equal(decompress(model, data), image)


def test_version_1_streams_still_decode(model, smooth_images) -> None:
    image = smooth_uint8(smooth_images, 11, 14, seed=9)
    data = compress_v1(model, image)
    assert data[4] == 1
    assert np.array_equal(decompress(model, data), image)


def test_unknown_versions_are_refused_by_number(model, smooth_images) -> None:
    data = bytearray(compress(model, smooth_uint8(smooth_images, 5, 6)))
    assert data[4] == 7
    data[4] = 9
    with pytest.raises(ValueError, match="format version 9"):
        decompress(model, bytes(data))


def test_models_without_layers_are_refused(tiny_ride) -> None:
    with pytest.raises(ValueError, match="at least one spatial LSTM layer"):
        compress(tiny_ride(num_layers=0).float(), np.zeros((4, 4), dtype=np.uint8))


def test_streams_photo_grey_made_before_its_cell_clip_still_decode(smooth_images, tmp_path) -> None:
    """photo_grey clips its cells at 10 since 2026-12-07 and writes format 4 (7 with the repeat flag); its earlier
    streams (format 2, clip 10^4, the same integer tables and fingerprint) decode with it, without --checkpoint, to
    the same pixels."""
    from dataclasses import asdict

    from ride.model_zoo import DEFAULT_CODEC_MODEL

    shipped = ride.pretrained(DEFAULT_CODEC_MODEL)
    assert shipped.config.cell_clip == 10.0
    before = ride.RIDE(**{**asdict(shipped.config), "cell_clip": 1e4}).float()
    before.load_state_dict(shipped.state_dict())
    image = smooth_uint8(smooth_images, 30, 41, seed=8)
    old, new = compress(before, image, repeat=False), compress(shipped, image, repeat=False)
    assert (old[4], new[4]) == (2, 4) and old[18:26] == new[22:30]  # the same fingerprint
    (tmp_path / "old.ride").write_bytes(old)
    assert main(["decompress", str(tmp_path / "old.ride"), "-o", str(tmp_path / "old.png"), "--no-progress"]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "old.png")), image)
    assert np.array_equal(decompress(shipped, new), image)


def test_cli_decompress_finds_the_shipped_model_that_made_the_stream(smooth_images, tmp_path, capsys) -> None:
    """Without --checkpoint, a stream of a shipped model that is not the default (an earlier default) decodes."""
    from ride.model_zoo import DEFAULT_CODEC_MODEL

    image = smooth_uint8(smooth_images, 9, 11, seed=3)
    Image.fromarray(image).save(tmp_path / "a.png")
    other = "bsds300_ride2_long2"
    assert other != DEFAULT_CODEC_MODEL
    assert main(["compress", str(tmp_path / "a.png"), "-o", str(tmp_path / "a.ride"), "--checkpoint", other,
                 "--no-progress"]) == 0
    assert main(["decompress", str(tmp_path / "a.ride"), "-o", str(tmp_path / "a2.png"), "--no-progress"]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a2.png")), image)
    ride.save(ride.RIDE(num_hiddens=3, num_components=2, num_scales=2, num_features=2, nb_size=3), tmp_path / "m.pt")
    assert main(["compress", str(tmp_path / "a.png"), "-o", str(tmp_path / "b.ride"), "--checkpoint",
                 str(tmp_path / "m.pt"), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["decompress", str(tmp_path / "b.ride"), "-o", str(tmp_path / "b2.png"), "--no-progress"]) == 2
    assert "not shipped with this version of ride" in capsys.readouterr().err
