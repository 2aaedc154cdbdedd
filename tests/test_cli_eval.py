"""`ride eval` on tiny saved models and tiny image folders; errors; a 2-process gloo evaluation."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_two_ranks
from PIL import Image

import ride
from ride import checkpoint
from ride import protocols as P
from ride.cli import eval as cli_eval
from ride.cli import main
from ride.data import load_image
from ride.patch_models import PatchChainMCGSM

REGISTERED = "PatchChainMCGSM" in checkpoint._MODELS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ride")
    cli_eval.register(parser.add_subparsers(dest="command", required=True))
    return parser


def _eval(argv: list[str], capsys) -> tuple[int, str, str]:
    """Run `ride eval ARGV` through a parser like the main CLI's; ValueError -> exit status 2 (as ride.cli does)."""
    args = _parser().parse_args(["eval", "--no-progress", *argv])
    try:
        rc = args.func(args)
    except ValueError as err:
        print(f"ride eval: error: {err}", file=sys.stderr)
        rc = 2
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def ride_checkpoint(tmp_path_factory) -> Path:
    from conftest import randomize

    torch.manual_seed(0)
    model = ride.RIDE(num_hiddens=4, num_layers=1, num_components=2, num_scales=2, num_features=3, nb_size=3)
    randomize(model, 0)
    with torch.no_grad():
        model.preconditioner.mean_out.fill_(0.5)
        model.preconditioner.whiten_out.fill_(4.0)
        model.preconditioner.log_jacobian.fill_(float(np.log(4.0)))
    path = tmp_path_factory.mktemp("models") / "tiny.pt"
    ride.save(model, path)
    return path


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (70, 130), dtype=np.uint8)).save(folder / "a.png")  # 2 tiles
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / "b.png")  # colour: 1 tile
    Image.fromarray(rng.integers(0, 256, (40, 90), dtype=np.uint8)).save(folder / "c.png")  # no tile
    return folder


def _folder_images(folder: Path) -> list[torch.Tensor]:
    return [load_image(f, grey=True) for f in sorted(folder.glob("*.png"))]


def test_eval_json_on_an_image_folder(ride_checkpoint, image_dir, capsys):
    rc, out, _ = _eval(["--checkpoint", str(ride_checkpoint), "--images", str(image_dir), "--json", "--seed", "5",
                        "--device", "cpu"], capsys)
    assert rc == 0
    result = json.loads(out)  # exactly one JSON object
    for key in ("protocol", "bits_per_pixel", "stderr", "num_pixels", "discrete_bound_bits_per_pixel",
                "num_tiles", "ensemble", "checkpoint", "data"):
        assert key in result
    assert result["protocol"] == "tiles64" and result["ensemble"] is False
    assert result["num_tiles"] == 3 and result["num_pixels"] == 3 * 63 * 62 and result["num_images"] == 3
    model = ride.load(ride_checkpoint)
    expected = P.evaluate_tiles(model, _folder_images(image_dir), seed=5)
    assert result["bits_per_pixel"] == pytest.approx(expected.bits_per_pixel, rel=1e-9)
    assert result["stderr"] == pytest.approx(expected.stderr, rel=1e-6)
    assert result["discrete_bound_bits_per_pixel"] == pytest.approx(8 - result["bits_per_pixel"])


def test_eval_ensemble_limit_and_human_output(ride_checkpoint, image_dir, capsys):
    rc, out, _ = _eval(["--checkpoint", str(ride_checkpoint), "--images", str(image_dir), "--json", "--ensemble",
                        "--limit", "1", "--batch-size", "1"], capsys)
    result = json.loads(out)
    assert rc == 0 and result["ensemble"] is True
    assert result["num_images"] == 1 and result["num_tiles"] == 2 and result["num_pixels"] == 2 * 62 * 62
    rc, out, _ = _eval(["--checkpoint", str(ride_checkpoint), "--images", str(image_dir)], capsys)
    assert rc == 0
    assert "log-likelihood rate" in out and "bit/px (higher is better" in out
    assert "discrete code-length bound" in out and "8 - rate =" in out
    assert "counted pixels" in out and str(3 * 63 * 62) in out


@pytest.mark.parametrize("case", ["no_root", "bad_root", "empty", "unreadable", "missing_folder"])
def test_clear_errors_for_bad_data(case, ride_checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("RIDE_DATA", raising=False)
    args = ["--checkpoint", str(ride_checkpoint)]
    if case == "no_root":
        args += ["--data", "bsds300"]
        expected = "RIDE_DATA"
    elif case == "bad_root":
        args += ["--data", "bsds300", "--data-root", str(tmp_path)]
        expected = "not found"
    elif case == "empty":
        args += ["--images", str(tmp_path)]
        expected = "no image files"
    elif case == "missing_folder":
        args += ["--images", str(tmp_path / "nowhere")]
        expected = "does not exist"
    else:
        Image.fromarray(np.zeros((64, 64), dtype=np.uint8)).save(tmp_path / "good.png")
        (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
        args += ["--images", str(tmp_path), "--strict"]
        expected = "cannot read image"
    rc, out, err = _eval(args, capsys)
    assert rc == 2 and out == ""
    assert expected in err and "Traceback" not in err


@pytest.mark.parametrize("content", ["foreign", "truncated", "text"])
def test_clear_error_for_a_checkpoint_that_is_not_a_ride_model(content, ride_checkpoint, image_dir, tmp_path,
                                                               capsys):
    path = tmp_path / "model.pt"
    if content == "foreign":
        torch.save({"weights": torch.zeros(3)}, path)
    elif content == "truncated":
        path.write_bytes(ride_checkpoint.read_bytes()[:200])
    else:
        path.write_text("hello")
    assert main(["eval", "--checkpoint", str(path), "--images", str(image_dir), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ride eval: error:") and "checkpoint" in err
    assert main(["eval", "--checkpoint", str(tmp_path / "absent.pt"), "--images", str(image_dir)]) == 2


def test_protocol_and_model_must_match(ride_checkpoint, image_dir, capsys):
    rc, _, err = _eval(["--checkpoint", str(ride_checkpoint), "--data", "bsds300", "--protocol", "patches63"], capsys)
    assert rc == 2 and "63-dim patch model" in err
    rc, _, err = _eval(["--checkpoint", str(ride_checkpoint), "--images", str(image_dir), "--protocol", "patches64"],
                       capsys)
    assert rc == 2 and "patch model" in err


# ---------------------------------------------------------------------------------------------- patch protocols


@pytest.fixture
def registered(monkeypatch):
    """Make ride.save/ride.load accept PatchChainMCGSM for this test when the lead has not registered it yet."""
    if not REGISTERED:
        original = checkpoint._config_of
        monkeypatch.setitem(checkpoint._MODELS, "PatchChainMCGSM", PatchChainMCGSM)
        monkeypatch.setattr(checkpoint, "_config_of", lambda m: dict(m.config) if isinstance(m, PatchChainMCGSM)
                            else original(m))


@pytest.fixture
def fake_patches(monkeypatch):
    """A stand-in for the BSDS300 patch set: 300 dequantised 8x8 patches."""
    gen = torch.Generator().manual_seed(0)
    base = torch.rand(300, 1, generator=gen)
    patches = (base + 0.1 * torch.rand(300, 64, generator=gen)).clamp(0, 0.999)

    class FakePatches:
        def __init__(self, root, split):
            self.patches = patches

    monkeypatch.setattr("ride.data.BSDS300Patches", FakePatches)  # what `ride eval` reads
    return patches


def test_eval_patch_protocols(registered, fake_patches, tmp_path, capsys):
    z, dc = P.patches_to_63(fake_patches.double())
    model = PatchChainMCGSM(num_components=2, num_scales=2, dim=63)
    model.fit(z[:200].float(), max_iter=3)
    dc_model = P.DCModel.fit(dc[:200], num_components=3)
    path = tmp_path / "chain.pt"
    ride.save(model, path, extra={P.DC_MODEL_KEY: dc_model.to_dict()})
    common = ["--checkpoint", str(path), "--data", "bsds300", "--data-root", str(tmp_path), "--json"]
    rc, out, _ = _eval([*common, "--protocol", "patches63", "--batch-size", "64"], capsys)
    r63 = json.loads(out)
    assert rc == 0 and r63["num_patches"] == 300 and r63["num_pixels"] == 300 * 63
    with torch.no_grad():
        expected = P.evaluate_patches63(model, fake_patches)
    assert r63["nats"] == pytest.approx(expected.nats, rel=1e-6)
    assert r63["bits_per_pixel"] == pytest.approx(expected.nats / (63 * np.log(2)), rel=1e-6)
    rc, out, _ = _eval([*common, "--protocol", "patches64", "--limit", "100"], capsys)
    r64 = json.loads(out)
    assert rc == 0 and r64["num_patches"] == 100 and r64["num_pixels"] == 100 * 64
    with torch.no_grad():
        expected = P.evaluate_patches64(model, dc_model, fake_patches[:100])
    assert r64["bits_per_pixel"] == pytest.approx(expected.bits_per_pixel, rel=1e-6)
    assert r64["discrete_bound_bits_per_pixel"] == pytest.approx(8 - r64["bits_per_pixel"])
    rc, out, _ = _eval([*common, "--protocol", "patches64", "--ensemble", "--limit", "20"], capsys)
    assert rc == 0 and json.loads(out)["ensemble"] is True
    rc, out, _ = _eval([*common[:-1], "--protocol", "patches64", "--limit", "20"], capsys)
    assert rc == 0 and "nats per patch" in out and "(L63 + L_DC - ln 64) / (64 ln 2)" in out
    # a patch checkpoint without its DC model
    ride.save(model, tmp_path / "no_dc.pt")
    rc, _, err = _eval(["--checkpoint", str(tmp_path / "no_dc.pt"), "--data", "bsds300", "--protocol", "patches64"],
                       capsys)
    assert rc == 2 and "DC model" in err


# ---------------------------------------------------------------------------------------------- distributed


def test_two_process_gloo_evaluation_equals_one_process(ride_checkpoint, image_dir, capsys):
    argv = ["--checkpoint", str(ride_checkpoint), "--images", str(image_dir), "--json", "--device", "cpu",
            "--batch-size", "1", "--no-progress"]
    rc, out, _ = _eval(argv, capsys)
    single = json.loads(out)
    codes, outputs = run_two_ranks(["eval", *argv], timeout=120)
    assert codes == [0, 0], [o[1][-2000:] for o in outputs]
    assert outputs[1][0] == ""  # only rank 0 prints
    both = json.loads(outputs[0][0])
    assert both["world_size"] == 2
    assert (both["num_tiles"], both["num_pixels"]) == (single["num_tiles"], single["num_pixels"])
    assert both["bits_per_pixel"] == pytest.approx(single["bits_per_pixel"], rel=1e-12)
    assert both["stderr"] == pytest.approx(single["stderr"], rel=1e-9)


def test_per_image_rates_average_to_the_overall_rate(ride_checkpoint, image_dir, tmp_path, capsys):
    target = tmp_path / "rates.csv"
    rc, out, err = _eval(["--checkpoint", str(ride_checkpoint), "--images", str(image_dir), "--json", "--seed", "5",
                          "--per-image", str(target)], capsys)
    assert rc == 0
    result = json.loads(out)
    import csv

    rows = list(csv.DictReader(target.open()))
    assert [Path(r["image"]).name for r in rows] == ["a.png", "b.png", "c.png"]
    assert [int(r["num_tiles"]) for r in rows] == [2, 1, 0] and rows[2]["bits_per_pixel"] == ""
    pixels = np.array([int(r["num_pixels"]) for r in rows[:2]])
    rates = np.array([float(r["bits_per_pixel"]) for r in rows[:2]])
    assert pixels.sum() == result["num_pixels"]
    # pixel-weighted mean of the per-image rates = the overall rate over the same pixels
    assert np.isclose((rates * pixels).sum() / pixels.sum(), result["bits_per_pixel"], rtol=0, atol=1e-12)
    # each image's rate is the tile protocol's rate of that image alone (same dequantisation seed per index)
    model = ride.load(ride_checkpoint)
    images = _folder_images(image_dir)
    sums = P.tile_sums(model, [images[0]], seed=5)
    assert np.isclose(rates[0], P.tile_result(sums, 62 * 63, False).bits_per_pixel, atol=1e-12)
    # JSON lines on standard output
    rc, out, _ = _eval(["--checkpoint", str(ride_checkpoint), "--images", str(image_dir), "--seed", "5",
                        "--per-image", "-"], capsys)
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert rc == 0 and [round(r["bits_per_pixel"], 9) for r in lines[:2]] == [round(float(x), 9) for x in rates]


def test_per_image_needs_the_tile_protocol(ride_checkpoint, capsys):
    rc, out, err = _eval(["--checkpoint", str(ride_checkpoint), "--data", "bsds300", "--protocol", "patches63",
                          "--per-image", "-"], capsys)
    assert rc == 2 and "--per-image needs --protocol tiles64" in err


def test_single_file_colour_notice_and_skipped_unreadable_files(ride_checkpoint, image_dir, tmp_path, capsys):
    rc, out, err = _eval(["--checkpoint", str(ride_checkpoint), "--images", str(image_dir / "b.png"), "--json"],
                         capsys)
    assert rc == 0 and json.loads(out)["num_images"] == 1 and json.loads(out)["num_tiles"] == 1
    assert "1 colour image(s) converted to luma" in err
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("a.png", "c.png"):
        (folder / name).write_bytes((image_dir / name).read_bytes())
    (folder / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    rc, out, err = _eval(["--checkpoint", str(ride_checkpoint), "--images", str(folder), "--json"], capsys)
    result = json.loads(out)
    assert rc == 0 and result["num_images"] == 2 and result["num_skipped"] == 1 and result["num_tiles"] == 2
    assert "skipping unreadable image" in err and "b.png" in err and "skipped 1 unreadable image(s) of 3" in err
    assert "converted to luma" not in err


def test_eval_rejects_negative_threads(ride_checkpoint, image_dir, capsys):
    rc, out, err = _eval(["--checkpoint", str(ride_checkpoint), "--images", str(image_dir), "--threads", "-1"],
                         capsys)
    assert rc == 2 and out == "" and "--threads" in err and "Traceback" not in err


def test_eval_on_the_wikipedia_photographs_split(ride_checkpoint, tmp_path, capsys):
    """`--data wikipedia_photos --split val` evaluates the 10 validation images of the fixed split (stand-ins)."""
    folder = tmp_path / "wikipedia_photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(1, 50):
        Image.fromarray(rng.integers(0, 256, (70, 66, 3), dtype=np.uint8)).save(folder / f"{k:03d}.png")
    common = ["--checkpoint", str(ride_checkpoint), "--data", "wikipedia_photos", "--data-root", str(tmp_path)]
    rows = tmp_path / "rates.jsonl"
    rc, out, _ = _eval([*common, "--split", "val", "--json", "--per-image", str(rows)], capsys)
    result = json.loads(out)
    assert rc == 0 and result["num_images"] == 10 and result["num_tiles"] == 10
    assert result["data"] == "wikipedia_photos val"
    names = [Path(json.loads(line)["image"]).name for line in rows.read_text().splitlines()]
    assert names[:2] == ["003.png", "008.png"] and len(names) == 10
    rc, _, err = _eval(common, capsys)  # the default split "test" does not exist here
    assert rc == 2 and "split must be one of ('train', 'val', 'all')" in err
