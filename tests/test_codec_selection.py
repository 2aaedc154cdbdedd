"""ride.codec.selection: the encoder picks the candidate that codes the image's sample smallest (in either order,
the first of equals), the stream decodes with the chosen model, small images are coded whole by every candidate,
and the CLI chooses among repeated --checkpoint models (and, by default, among the shipped candidates)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import ride
from ride.cli import main
from ride.codec import compress, decompress
from ride.codec.selection import compress_best, sample_windows


@pytest.fixture
def good(tiny_ride):
    return tiny_ride(num_layers=1, nb_size=3, num_hiddens=4, seed=3).float()


@pytest.fixture
def poor(tiny_ride):
    """The same kind of model without a fitted preconditioner: broad conditionals, longer streams."""
    return tiny_ride(num_layers=1, nb_size=3, num_hiddens=4, seed=3, fit=False).float()


def smooth(smooth_images, height: int, width: int, seed: int = 0) -> np.ndarray:
    values = smooth_images(1, 1, height, width, seed=seed, noise=0.02)[0, 0] * 256
    return values.clamp(0, 255).to(torch.uint8).numpy()


@pytest.mark.parametrize(("height", "width"), [(1, 1), (5, 700), (31, 40), (64, 64), (129, 513), (1000, 300)])
def test_sample_windows_lie_inside_the_image_and_do_not_overlap(height: int, width: int) -> None:
    windows = sample_windows(height, width, bands=4, rows=32, max_width=512)
    assert 1 <= len(windows) <= 4
    tops = [r.start for r, _ in windows]
    assert tops == sorted(tops)
    for (r, c), nxt in zip(windows, [*windows[1:], None], strict=True):
        assert 0 <= r.start < r.stop <= height and r.stop - r.start == min(32, height)
        assert 0 <= c.start < c.stop <= width and c.stop - c.start == min(512, width)
        if nxt is not None:
            assert r.stop <= nxt[0].start
    if height >= 4 * 32:
        assert len(windows) == 4 and windows[0][0].start < height / 4 and windows[-1][0].stop > 3 * height / 4


def test_sample_windows_refuse_empty_images() -> None:
    with pytest.raises(ValueError, match="positive"):
        sample_windows(0, 5)


@pytest.mark.parametrize("order", ["good_first", "poor_first"])
def test_the_smaller_coder_is_chosen_and_decodes(good, poor, smooth_images, order: str) -> None:
    image = smooth(smooth_images, 70, 50, seed=1)
    models = [good, poor] if order == "good_first" else [poor, good]
    choice = compress_best(models, image, bands=2, rows=8, max_width=32)  # a sample smaller than the image
    assert not choice.whole and choice.sample_pixels == 2 * 8 * 32
    assert models[choice.index] is good
    assert choice.sample_bytes[choice.index] < choice.sample_bytes[1 - choice.index]
    assert choice.data == compress(good, image)
    assert np.array_equal(decompress(good, choice.data), image)
    assert len(compress(poor, image)) > len(choice.data)  # the sample's verdict holds for the whole image


def test_images_no_larger_than_the_sample_are_coded_whole_by_every_candidate(good, poor, smooth_images) -> None:
    image = smooth(smooth_images, 9, 13, seed=2)
    choice = compress_best([poor, good], image)
    assert choice.whole and choice.sample_pixels == image.size
    assert choice.sample_bytes == (len(compress(poor, image)), len(compress(good, image)))
    assert choice.index == 1 and choice.data == compress(good, image)


def test_equal_candidates_keep_the_first(good, smooth_images) -> None:
    image = smooth(smooth_images, 40, 40, seed=3)
    twin = ride.RIDE(**vars(good.config)).float()
    twin.load_state_dict(good.state_dict())
    choice = compress_best([good, twin], image, bands=2, rows=8)
    assert choice.sample_bytes[0] == choice.sample_bytes[1] and choice.index == 0


def test_no_candidate_is_an_error(smooth_images) -> None:
    with pytest.raises(ValueError, match="no candidate"):
        compress_best([], smooth(smooth_images, 4, 4))


def test_cli_chooses_among_repeated_checkpoints(good, poor, smooth_images, tmp_path, capsys) -> None:
    ride.save(good, tmp_path / "good.pt")
    ride.save(poor, tmp_path / "poor.pt")
    image = smooth(smooth_images, 20, 24, seed=4)
    Image.fromarray(image).save(tmp_path / "a.png")
    both = ["--checkpoint", str(tmp_path / "poor.pt"), "--checkpoint", str(tmp_path / "good.pt")]
    assert main(["compress", str(tmp_path / "a.png"), "-o", str(tmp_path / "a.ride"), *both, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"model {tmp_path / 'good.pt'} (whole image: " in out
    assert (tmp_path / "a.ride").read_bytes() == compress(good, image)
    # decompress finds, among the models given, the one that made the stream
    assert main(["decompress", str(tmp_path / "a.ride"), "-o", str(tmp_path / "a2.png"), *both,
                 "--no-progress"]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a2.png")), image)
    ride.save(ride.RIDE(num_hiddens=3, num_components=2, num_scales=2, num_features=2, nb_size=3), tmp_path / "x.pt")
    capsys.readouterr()
    assert main(["decompress", str(tmp_path / "a.ride"), "-o", str(tmp_path / "a3.png"), "--checkpoint",
                 str(tmp_path / "x.pt"), "--checkpoint", str(tmp_path / "poor.pt"), "--no-progress"]) == 2
    assert "none of the --checkpoint models made the stream" in capsys.readouterr().err


def test_cli_default_chooses_among_the_shipped_candidates(smooth_images, tmp_path, capsys) -> None:
    from ride.model_zoo import CODEC_CANDIDATES

    image = smooth(smooth_images, 10, 12, seed=5)
    rgb = np.stack([image, image[::-1], image[:, ::-1]], axis=-1).copy()
    Image.fromarray(image).save(tmp_path / "g.png")
    Image.fromarray(rgb).save(tmp_path / "c.png")
    for name, pixels, colour in (("g", image, False), ("c", rgb, True)):
        assert main(["compress", str(tmp_path / f"{name}.png"), "-o", str(tmp_path / f"{name}.ride"),
                     "--no-progress", "--threads", "1"]) == 0
        out = capsys.readouterr().out
        assert any(f"model {candidate} (whole image: " in out for candidate in CODEC_CANDIDATES[colour])
        assert all(f"{candidate} " in out for candidate in CODEC_CANDIDATES[colour])
        assert main(["decompress", str(tmp_path / f"{name}.ride"), "-o", str(tmp_path / f"{name}2.png"),
                     "--no-progress", "--threads", "1"]) == 0
        assert np.array_equal(np.asarray(Image.open(tmp_path / f"{name}2.png")), pixels)
