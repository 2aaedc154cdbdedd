"""`ride fit-mcgsm` on a tiny image folder: checkpoint, learning curve, resume."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from conftest import make_photo_root
from PIL import Image

import ride
from ride.cli import main
from ride.deadleaves import dead_leaves_images


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for k, img in enumerate(dead_leaves_images(4, 32, seed=3, r_max=8.0)):
        Image.fromarray(np.asarray(img)).save(folder / f"{k}.png")
    return folder


def test_fit_mcgsm_writes_a_loadable_baseline_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "m" / "mcgsm.pt"
    args = ["fit-mcgsm", "--out", str(out), "--images", str(_folder(tmp_path)), "--nb-size", "3",
            "--components", "2", "--scales", "2", "--features", "3", "--pairs", "2000", "--val-pairs", "500",
            "--max-iter", "6", "--val-every", "2"]
    assert main(args) == 0
    model = ride.load(out)
    assert isinstance(model, ride.RIDE) and model.config.num_layers == 0 and model.config.nb_size == 3
    rows = list(csv.DictReader(out.with_suffix(".csv").open()))
    assert len(rows) == 6 and all(float(r["train_bits_per_pixel"]) > -10 for r in rows)
    first = float(rows[0]["train_bits_per_pixel"])
    assert float(rows[-1]["train_bits_per_pixel"]) > first  # L-BFGS improved the fit
    extra = ride.checkpoint.load_payload(out)["extra"]
    assert extra["status"] == "done" and extra["config"]["out"] == str(out)
    assert main([*args, "--resume", "--max-iter", "2"]) == 0
    rows = list(csv.DictReader(out.with_suffix(".csv").open()))
    assert len(rows) == 8 and [int(r["iteration"]) for r in rows] == list(range(1, 9))  # appended, counted on
    assert float(ride.checkpoint.load_payload(out)["extra"]["elapsed_s"]) > float(extra["elapsed_s"])


def test_fit_mcgsm_on_the_photograph_mix(tmp_path: Path) -> None:
    """`--data photos`: pairs from BSDS300 train and the Wikimedia training images (stand-ins), tiled 128x128."""
    root = make_photo_root(tmp_path / "data", size=130)
    out = tmp_path / "photo_mcgsm.pt"
    assert main(["fit-mcgsm", "--out", str(out), "--data", "photos", "--data-root", str(root), "--nb-size", "3",
                 "--components", "2", "--scales", "2", "--features", "3", "--pairs", "3000", "--val-pairs", "500",
                 "--max-iter", "3", "--val-every", "1"]) == 0
    extra = ride.checkpoint.load_payload(out)["extra"]
    assert extra["status"] == "done" and extra["config"]["data"] == "photos"


def test_fit_mcgsm_rejects_a_folder_with_one_image(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "one"
    folder.mkdir()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(folder / "a.png")
    assert main(["fit-mcgsm", "--out", str(tmp_path / "x.pt"), "--images", str(folder)]) == 2
    assert "at least 2 images" in capsys.readouterr().err
