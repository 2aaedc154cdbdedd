"""`ride eval` and `ride map` with a lossless colour model (issue 31 item 4): exact code lengths in bits per
sub-pixel of small RGB PNGs of awkward sizes, in all and per coded channel, recomputed here from
`LosslessColourRIDE.log_prob_discrete_pixels`; the map against the evaluation; grey/colour mismatches refused; the
real-valued ColourRIDE's dequantisation bound per sub-pixel."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_smooth_images, make_tiny_colour, make_tiny_ride, randomize, run_two_ranks
from PIL import Image

import ride
from ride import protocols
from ride.cli import main
from ride.colour import bits_per_dim
from ride.colour_lossless import LosslessColourRIDE
from ride.data import load_image
from ride.units import dequantize

LN2 = math.log(2)
SIZES = {"a.png": (7, 9), "b.png": (13, 5), "c.png": (67, 131)}  # c: two 64x64 tiles, remainder dropped


@pytest.fixture(scope="module")
def colour_model(tmp_path_factory) -> tuple[Path, LosslessColourRIDE]:
    """A small random float32 LosslessColourRIDE (R, G, B; nb 5), preconditioner fitted on smooth RGB images."""
    torch.manual_seed(3)
    model = LosslessColourRIDE("rgb", num_hiddens=8, num_layers=1, num_components=4, num_scales=2, num_features=4)
    randomize(model, 3)
    smooth = (make_smooth_images(6, 3, 20, 20, seed=4, noise=0.03) * 256).floor().clamp(0, 255).to(torch.uint8)
    model.fit_preconditioner(dequantize(smooth, torch.Generator().manual_seed(5)))
    path = tmp_path_factory.mktemp("models") / "colour.pt"
    ride.save(model, path)
    return path, ride.load(path)


@pytest.fixture(scope="module")
def rgb_dir(tmp_path_factory) -> Path:
    """Smooth-ish RGB PNGs of awkward sizes (structure across channels, so the channels' figures differ)."""
    folder = tmp_path_factory.mktemp("rgb")
    for k, (name, (h, w)) in enumerate(SIZES.items()):
        images = make_smooth_images(1, 3, h, w, seed=10 + k, noise=0.05)
        rgb = (images[0] * 256).floor().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
        Image.fromarray(rgb).save(folder / name)
    return folder


def _cli(argv: list[str], capsys) -> tuple[int, str, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def _log_p(model: LosslessColourRIDE, path: Path) -> torch.Tensor:
    """ln P of each coded channel of each predicted pixel of an RGB file: [Hp, Wp, 3] nats, float64."""
    with torch.no_grad():
        return model.log_prob_discrete_pixels(load_image(path, grey=False)[None])[0].double()


def _figure(label: str, out: str) -> float:
    """The number printed after `label` (first match)."""
    return float(re.search(rf"{label}\s+([0-9.]+)", out).group(1))


# ---------------------------------------------------------------------------------------------- ride eval


def test_eval_whole_images_prints_the_exact_code_length(colour_model, rgb_dir, capsys) -> None:
    path, model = colour_model
    rc, out, err = _cli(["eval", "--checkpoint", str(path), "--images", str(rgb_dir), "--protocol", "whole",
                         "--no-progress"], capsys)
    assert rc == 0, err
    log_p = torch.cat([_log_p(model, rgb_dir / name).reshape(-1, 3) for name in SIZES])  # [pixels, 3]
    expected = float(-log_p.mean() / LN2)  # -mean(ln P) / ln 2 over every coded sub-pixel
    assert f"exact code length  {expected:.4f} ± " in out
    assert "bits per sub-pixel (exact discrete, RGB" in out and "not a bound" in out
    assert "8 - rate" not in out and "discrete code-length bound" not in out  # no dequantisation, no bound
    per_channel = [float(-log_p[:, k].mean() / LN2) for k in range(3)]
    assert f"R {per_channel[0]:.4f}, G {per_channel[1]:.4f}, B {per_channel[2]:.4f} bits per sub-pixel" in out
    assert f"{log_p.shape[0]} RGB pixels ({3 * log_p.shape[0]} sub-pixels)" in out
    assert log_p.shape[0] == 5 * 5 + 11 * 1 + 65 * 127  # (H - 2) x (W - 4) each, nb 5

    rc, out, _ = _cli(["eval", "--checkpoint", str(path), "--images", str(rgb_dir), "--protocol", "whole", "--json",
                       "--no-progress"], capsys)
    result = json.loads(out)
    assert rc == 0 and result["exact_discrete"] and result["channels"] == ["R", "G", "B"]
    assert result["code_length_bits_per_subpixel"] == pytest.approx(expected, rel=1e-9)
    assert list(result["code_length_bits_per_subpixel_by_channel"].values()) == pytest.approx(per_channel, rel=1e-9)
    assert "discrete_bound_bits_per_pixel" not in result and "seed" not in result
    per_image = [float(-_log_p(model, rgb_dir / name).mean() / LN2) for name in SIZES]
    assert result["stderr"] == pytest.approx(float(torch.tensor(per_image).std() / math.sqrt(3)), rel=1e-6)


def test_eval_tiles_of_a_colour_image_and_per_image_rows(colour_model, rgb_dir, tmp_path, capsys) -> None:
    path, model = colour_model
    rows_file = tmp_path / "rows.csv"
    results = []
    for batch in ("1", "32"):  # batching does not change the figures
        rc, out, err = _cli(["eval", "--checkpoint", str(path), "--images", str(rgb_dir), "--json", "--no-progress",
                             "--batch-size", batch, "--per-image", str(rows_file)], capsys)
        assert rc == 0, err
        results.append(json.loads(out))
    result = results[0]
    assert result["protocol"] == "tiles64" and result["num_tiles"] == 2 and result["num_pixels"] == 2 * 62 * 60
    c = load_image(rgb_dir / "c.png", grey=False)
    with torch.no_grad():
        log_p = model.log_prob_discrete_pixels(torch.stack([c[:, :64, :64], c[:, :64, 64:128]])).double()
    assert result["code_length_bits_per_subpixel"] == pytest.approx(float(-log_p.mean() / LN2), rel=1e-6)
    by_channel = result["code_length_bits_per_subpixel_by_channel"]
    assert [by_channel[k] for k in "RGB"] == pytest.approx((-log_p.mean((0, 1, 2)) / LN2).tolist(), rel=1e-6)
    assert results[1]["code_length_bits_per_subpixel"] == pytest.approx(result["code_length_bits_per_subpixel"],
                                                                        rel=1e-6)
    # the rows file is the last run's (batch 32): its one image with tiles carries that run's figures
    last = results[1]
    with open(rows_file, newline="") as f:
        rows = {Path(r["image"]).name: r for r in csv.DictReader(f)}
    assert rows["a.png"]["num_tiles"] == "0" and rows["a.png"]["code_length_bits_per_subpixel"] == ""
    assert float(rows["c.png"]["code_length_bits_per_subpixel"]) == pytest.approx(
        last["code_length_bits_per_subpixel"], rel=1e-9)
    assert float(rows["c.png"]["code_length_bits_per_subpixel_G"]) == pytest.approx(
        last["code_length_bits_per_subpixel_by_channel"]["G"], rel=1e-9)


def test_eval_whole_per_image_rows_match_each_image(colour_model, rgb_dir, capsys) -> None:
    path, model = colour_model
    rc, out, err = _cli(["eval", "--checkpoint", str(path), "--images", str(rgb_dir), "--protocol", "whole",
                         "--json", "--no-progress", "--per-image", "-"], capsys)
    assert rc == 0, err
    lines = out.strip().splitlines()
    rows = [json.loads(line) for line in lines[:-1]]  # the JSON lines, then the result
    assert [Path(r["image"]).name for r in rows] == list(SIZES)
    for row, name in zip(rows, SIZES, strict=True):
        log_p = _log_p(model, rgb_dir / name)
        assert row["num_pixels"] == log_p.shape[0] * log_p.shape[1] and "num_tiles" not in row
        assert row["code_length_bits_per_subpixel"] == pytest.approx(float(-log_p.mean() / LN2), rel=1e-9)
        assert row["code_length_bits_per_subpixel_B"] == pytest.approx(float(-log_p[..., 2].mean() / LN2), rel=1e-9)


def test_eval_whole_on_two_ranks_matches_one(colour_model, rgb_dir, capsys) -> None:
    path, _ = colour_model
    argv = ["eval", "--checkpoint", str(path), "--images", str(rgb_dir), "--protocol", "whole", "--json",
            "--device", "cpu", "--no-progress"]
    rc, out, _ = _cli(argv, capsys)
    single = json.loads(out)
    codes, outputs = run_two_ranks(argv, timeout=120)
    assert codes == [0, 0], [o[1][-2000:] for o in outputs]
    both = json.loads(outputs[0][0])
    assert both["world_size"] == 2 and both["num_pixels"] == single["num_pixels"]
    assert both["code_length_bits_per_subpixel"] == pytest.approx(single["code_length_bits_per_subpixel"], rel=1e-12)
    assert both["stderr"] == pytest.approx(single["stderr"], rel=1e-9)


# ---------------------------------------------------------------------------------------------- ride map


@pytest.mark.parametrize("name", ["a.png", "b.png"])
def test_map_agrees_with_eval_of_the_same_image(name, colour_model, rgb_dir, tmp_path, capsys) -> None:
    path, model = colour_model
    image = rgb_dir / name
    npy, channels_npy = tmp_path / "map.npy", tmp_path / "channels.npy"
    rc, out, err = _cli(["map", str(image), "--checkpoint", str(path), "--npy", str(npy)], capsys)
    assert rc == 0, err
    printed = _figure("exact code length", out)
    assert "bits per sub-pixel (exact discrete, RGB" in out and f"wrote {npy} (bits per RGB pixel" in out
    bits = np.load(npy)
    h, w = SIZES[name]
    assert bits.shape == (h, w)
    assert np.isnan(bits[:2]).all() and np.isnan(bits[:, :2]).all() and np.isnan(bits[:, w - 2:]).all()
    inner = bits[2:, 2: w - 2]
    log_p = _log_p(model, image)
    np.testing.assert_allclose(inner, (-log_p.sum(-1) / LN2).numpy(), rtol=1e-12)  # bits per RGB pixel

    rc, out, _ = _cli(["eval", "--checkpoint", str(path), "--images", str(image), "--protocol", "whole", "--json",
                       "--no-progress"], capsys)
    evaluated = json.loads(out)
    assert np.nanmean(bits) / 3 == pytest.approx(evaluated["code_length_bits_per_subpixel"], rel=1e-12)
    assert printed == pytest.approx(evaluated["code_length_bits_per_subpixel"], abs=5e-5)

    rc, out, _ = _cli(["map", str(image), "--checkpoint", str(path), "--npy", str(channels_npy), "--per-channel"],
                      capsys)
    channel_bits = np.load(channels_npy)
    assert rc == 0 and channel_bits.shape == (3, h, w)
    np.testing.assert_allclose(channel_bits.sum(0), bits, rtol=1e-12)  # NaN where bits is NaN
    by_channel = evaluated["code_length_bits_per_subpixel_by_channel"]
    for k, c in enumerate("RGB"):
        assert np.nanmean(channel_bits[k]) == pytest.approx(by_channel[c], rel=1e-12)
        assert f"{c} {by_channel[c]:.4f}" in out


def test_map_png_with_channel_panels(colour_model, rgb_dir, tmp_path, capsys) -> None:
    pytest.importorskip("matplotlib", reason="the PNG map needs the plot extra (matplotlib)")
    path, _ = colour_model
    png = tmp_path / "map.png"
    rc, out, err = _cli(["map", str(rgb_dir / "b.png"), "--checkpoint", str(path), "-o", str(png), "--per-channel"],
                        capsys)
    assert rc == 0, err
    assert "the heat map shows bits per RGB pixel" in out and "each coded channel in bits per sub-pixel" in out
    with Image.open(png) as img:
        assert img.size[0] > img.size[1]  # image + total + three channel panels side by side


# ---------------------------------------------------------------------------------------------- mismatches


@pytest.fixture(scope="module")
def grey_files(tmp_path_factory) -> tuple[Path, Path]:
    """A grey PNG (L) and a folder holding an RGB PNG and that grey one."""
    folder = tmp_path_factory.mktemp("mixed")
    rng = np.random.default_rng(7)
    Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(folder / "colour.png")
    grey = folder / "grey.png"
    Image.fromarray(rng.integers(0, 256, (12, 10), dtype=np.uint8)).save(grey)
    return grey, folder


@pytest.fixture(scope="module")
def grey_checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("grey") / "grey.pt"
    ride.save(make_tiny_ride(num_layers=1, nb_size=3).float(), path)
    return path


@pytest.mark.parametrize("protocol", ["tiles64", "whole"])
def test_eval_refuses_grey_images_for_a_colour_model(protocol, colour_model, grey_files, capsys) -> None:
    grey, folder = grey_files
    rc, out, err = _cli(["eval", "--checkpoint", str(colour_model[0]), "--images", str(folder), "--protocol",
                         protocol, "--no-progress"], capsys)
    assert rc == 2 and out == "" and "Traceback" not in err
    assert "1 of the 2 images is grey" in err and "grey.png (mode L)" in err and "grey model" in err
    assert "--checkpoint photo_grey" in err


def test_map_refuses_a_grey_image_for_a_colour_model(colour_model, grey_files, tmp_path, capsys) -> None:
    grey, _ = grey_files
    npy = tmp_path / "m.npy"
    rc, out, err = _cli(["map", str(grey), "--checkpoint", str(colour_model[0]), "--npy", str(npy)], capsys)
    assert rc == 2 and not npy.exists() and "Traceback" not in err
    assert "is a grey image (mode L)" in err and "map it with a grey model (--checkpoint photo_grey)" in err


def test_colour_images_with_a_grey_model_say_what_to_use(grey_checkpoint, grey_files, tmp_path, capsys) -> None:
    _, folder = grey_files
    rc, out, err = _cli(["map", str(folder / "colour.png"), "--checkpoint", str(grey_checkpoint), "--npy",
                         str(tmp_path / "m.npy")], capsys)
    assert rc == 0 and "is a colour image (RGB); using its luma" in err and "LosslessColourRIDE" in err
    rc, out, err = _cli(["map", str(folder / "colour.png"), "--checkpoint", str(grey_checkpoint), "--npy",
                         str(tmp_path / "m.npy"), "--per-channel"], capsys)
    assert rc == 2 and "--per-channel maps the coded channels of a lossless colour model" in err
    rc, out, err = _cli(["eval", "--checkpoint", str(grey_checkpoint), "--images", str(folder), "--protocol",
                         "whole", "--no-progress"], capsys)  # a grey model scores the colour file's luma
    assert rc == 0 and "converted to luma" in err and "from 2 images" in out
    images = [load_image(folder / name, grey=True) for name in ("colour.png", "grey.png")]
    sums = protocols.whole_image_sums(ride.load(grey_checkpoint), images)
    rc, out, _ = _cli(["eval", "--checkpoint", str(grey_checkpoint), "--images", str(folder), "--protocol",
                       "whole", "--json", "--no-progress"], capsys)
    result = json.loads(out)
    assert result["bits_per_pixel"] == pytest.approx(float(sums[2] / sums[1]) / LN2, rel=1e-9)
    assert (result["num_evaluated_images"], result["num_pixels"]) == (2, int(sums[1]))
    rc, out, err = _cli(["eval", "--checkpoint", str(grey_checkpoint), "--images", str(folder), "--protocol",
                         "whole", "--ensemble", "--no-progress"], capsys)
    assert rc == 2 and "--ensemble is available under --protocol tiles64 only" in err


def test_images_too_small_for_the_protocol(colour_model, rgb_dir, tmp_path, capsys) -> None:
    path, _ = colour_model
    rc, _, err = _cli(["eval", "--checkpoint", str(path), "--images", str(rgb_dir / "a.png"), "--no-progress"],
                      capsys)
    assert rc == 2 and "no 64x64 tile" in err and "--protocol whole" in err
    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.zeros((2, 9, 3), dtype=np.uint8)).save(tiny)  # fewer rows than the 3x5 window
    rc, _, err = _cli(["eval", "--checkpoint", str(path), "--images", str(tiny), "--protocol", "whole",
                       "--no-progress"], capsys)
    assert rc == 2 and "smaller than its window (3x5)" in err


# ---------------------------------------------------------------------------------------------- ColourRIDE


def test_real_valued_colour_model_reports_the_bound_per_subpixel(tmp_path, capsys) -> None:
    path = tmp_path / "colour_ride.pt"
    ride.save(make_tiny_colour(nb_size=3), path)
    rgb = (make_smooth_images(1, 3, 64, 70, seed=20)[0] * 256).floor().clamp(0, 255).to(torch.uint8)
    Image.fromarray(rgb.permute(1, 2, 0).numpy()).save(tmp_path / "x.png")
    argv = ["eval", "--checkpoint", str(path), "--images", str(tmp_path / "x.png"), "--no-progress"]
    rc, out, err = _cli([*argv, "--json"], capsys)
    assert rc == 0, err
    result = json.loads(out)
    rate = result["bits_per_pixel"]  # log2 p per RGB pixel: three values, so far above 8 for smooth images
    assert "discrete_bound_bits_per_pixel" not in result  # 8 - rate would be a bound of nothing
    nats = rate * LN2 * result["num_pixels"]
    assert result["discrete_bound_bits_per_subpixel"] == pytest.approx(bits_per_dim(nats, result["num_pixels"]))
    assert result["discrete_bound_bits_per_subpixel"] == pytest.approx(8 - rate / 3)
    rc, out, _ = _cli(argv, capsys)
    assert rc == 0 and f"{rate:.4f}" in out and "bit per RGB pixel" in out
    assert f"8 - rate/3 = {8 - rate / 3:.4f} bits per sub-pixel" in out and "8 - rate =" not in out
