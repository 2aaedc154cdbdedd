"""Likelihood maps (`ride.maps`, `ride map`) and the shipped models (`ride.model_zoo`, `ride models`)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

import ride
from ride import model_zoo
from ride.cli import main
from ride.maps import code_length_map


def test_map_matches_the_discrete_log_probabilities(tiny_ride):
    model = tiny_ride(num_layers=1, nb_size=3)
    values = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (9, 12), dtype=np.uint8))
    bits = code_length_map(model, values)
    assert bits.shape == (9, 12) and bits.dtype == torch.float64
    expected = -model.log_prob_discrete_pixels(values[None, None])[0] / math.log(2)
    top, left, right = model.margin
    assert torch.allclose(bits[top:, left: 12 - right], expected.double(), rtol=0, atol=1e-12)
    border = torch.ones(9, 12, dtype=torch.bool)
    border[top:, left: 12 - right] = False
    assert bits[border].isnan().all() and bits[~border].isfinite().all() and (bits[~border] >= 0).all()
    assert torch.equal(code_length_map(model, values[None]).nan_to_num(-1), bits.nan_to_num(-1))  # [1, H, W]


@pytest.mark.parametrize("bad", [torch.zeros(2, 5, 5, dtype=torch.uint8), torch.zeros(5, 5), "image"])
def test_map_rejects_bad_values(tiny_ride, bad):
    with pytest.raises(ValueError, match="uint8 tensor"):
        code_length_map(tiny_ride(), bad)


def test_ride_map_writes_png_and_npy(tiny_ride, tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="the PNG map needs the plot extra (matplotlib)")
    model = tiny_ride(num_layers=1, nb_size=3).float()
    ckpt = tmp_path / "m.pt"
    ride.save(model, ckpt)
    rgb = np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "x.png")
    rc = main(["map", str(tmp_path / "x.png"), "--checkpoint", str(ckpt), "-o", str(tmp_path / "m.png"), "--npy",
               str(tmp_path / "m.npy")])
    out, err = capsys.readouterr()
    assert rc == 0 and "colour image" in err and "mean code length" in out
    bits = np.load(tmp_path / "m.npy")
    luma = torch.from_numpy(np.array(Image.fromarray(rgb).convert("L")))
    assert np.allclose(bits, code_length_map(model, luma).numpy(), equal_nan=True)
    with Image.open(tmp_path / "m.png") as png:
        assert png.size[0] > 100 and png.size[1] > 50


@pytest.mark.parametrize("argv, message", [
    (["--threads", "-1", "-o", "m.png"], "--threads"),
    ([], "nothing to write"),
    (["-o", "m.png", "--checkpoint", "missing.pt"], "does not exist"),
])
def test_ride_map_bad_input_one_line_error(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.zeros((10, 10), dtype=np.uint8)).save(tmp_path / "x.png")
    assert main(["map", "x.png", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_unreadable_image_for_map(tmp_path, capsys):
    (tmp_path / "x.png").write_bytes(b"not an image")
    assert main(["map", str(tmp_path / "x.png"), "--npy", str(tmp_path / "m.npy")]) == 2
    assert "cannot read image" in capsys.readouterr().err


def test_every_shipped_model_loads_and_is_listed(capsys):
    names = [e.name for e in ride.pretrained_models()]
    assert model_zoo.DEFAULT_CODEC_MODEL in names
    for entry in ride.pretrained_models():
        model = ride.pretrained(entry.name)
        assert not model.training and entry.figures
    assert main(["models", "--json"]) == 0
    listed = [json.loads(line)["name"] for line in capsys.readouterr().out.splitlines()]
    assert listed == names


def test_unknown_or_damaged_shipped_model(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="no shipped model named 'nope'"):
        ride.pretrained("nope")
    entry = ride.pretrained_models()[0]
    damaged = model_zoo.PretrainedModel(**{**entry.__dict__, "sha256": "0" * 64})
    monkeypatch.setattr(model_zoo, "_ZOO", (damaged,))
    with pytest.raises(ValueError, match="damaged"):
        ride.pretrained(entry.name)


def test_checkpoint_argument_takes_shipped_names(tmp_path):
    assert model_zoo.resolve_checkpoint("bsds300_mcgsm") == model_zoo.pretrained_path("bsds300_mcgsm")
    assert model_zoo.resolve_checkpoint(tmp_path / "x.pt") == tmp_path / "x.pt"
