"""`ride sample`: grid size, --npy, seeds, the implied distribution of fixed Gaussian models, boundaries, errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import torch
from PIL import Image

import ride
from ride import RIDE, marginal
from ride.cli import main
from ride.cli import sample as cli_sample

F64 = torch.float64


def gaussian_model(mean: float, std_tilde: float, residual_std: float, slope_left: float = 0.0) -> RIDE:
    """num_layers=0, one component and scale, zero MCGSM predictors: y~ ~ N(0, std_tilde^2) whatever the context.

    With an identity input whitening (x~ = x) and the preconditioner's predictor only on the left neighbour,
    y = mean + slope_left * x_left + residual_std * y~: along each row an AR(1) process with innovation std
    s = residual_std * std_tilde, so stationary mean mean / (1 - slope), variance s^2 / (1 - slope^2), correlation
    slope with the left neighbour and none with the pixel above. slope 0: i.i.d. N(mean, s^2).
    """
    torch.manual_seed(0)
    model = RIDE(num_hiddens=3, num_layers=0, num_components=1, num_scales=1, num_features=2, nb_size=3).double()
    pre = model.preconditioner
    with torch.no_grad():
        model.mcgsm.predictors.zero_()
        model.mcgsm.scales.fill_(-2 * math.log(std_tilde))
        pre.mean_out.fill_(mean)
        pre.predictor.zero_()
        pre.predictor[0, 3] = slope_left  # nb_size 3 inputs: the three above, then the left neighbour
        pre.colour_out.fill_(residual_std)
        pre.whiten_out.fill_(1 / residual_std)
        pre.log_jacobian.fill_(-math.log(residual_std))
    return model


def sample(checkpoint: Path, out: Path, *args: str) -> int:
    return main(["sample", "--checkpoint", str(checkpoint), "--out", str(out), "--no-progress", "--device", "cpu",
                 *args])


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    from conftest import randomize

    folder = tmp_path_factory.mktemp("sample")
    paths = {"iid": folder / "iid.pt", "ar": folder / "ar.pt", "random": folder / "random.pt",
             "mcgsm": folder / "mcgsm.pt"}
    ride.save(gaussian_model(0.4, 1.5, 0.1), paths["iid"])  # pixels i.i.d. N(0.4, 0.15^2)
    ride.save(gaussian_model(0.2, 1.0, 0.1, slope_left=0.5), paths["ar"])
    torch.manual_seed(0)
    model = RIDE(num_hiddens=4, num_components=2, num_scales=2, num_features=3, nb_size=5)
    randomize(model, 0)
    with torch.no_grad():
        model.preconditioner.mean_out.fill_(0.5)
        model.preconditioner.colour_out.fill_(0.1)
        model.preconditioner.whiten_out.fill_(10.0)
        model.preconditioner.log_jacobian.fill_(math.log(10.0))
    histogram = marginal.marginal_histogram(torch.full((1, 1, 4, 4), 200, dtype=torch.uint8))
    ride.save(model, paths["random"], extra={marginal.MARGINAL_KEY: histogram})
    ride.save(ride.MCGSM(4, 1, 2, 2, 3), paths["mcgsm"])
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 50), dtype=np.uint8)).save(folder / "boundary.png")
    (folder / "broken.pt").write_bytes(b"not a checkpoint")
    paths["dir"] = folder
    return paths


def test_png_grid_and_npy(checkpoints, tmp_path, capsys) -> None:
    out, npy = tmp_path / "grid.png", tmp_path / "raw.npy"
    assert sample(checkpoints["random"], out, "--size", "12x9", "--num", "5", "--npy", str(npy),
                  "--batch-size", "2") == 0
    grid = np.array(Image.open(out))
    assert grid.dtype == np.uint8 and grid.shape == (2 * 12 + 2, 3 * 9 + 2 * 2)  # 3 columns, 2 rows, 2-pixel gaps
    raw = np.load(npy)
    assert raw.shape == (5, 1, 12, 9) and raw.dtype == np.float32
    expected = np.floor(np.clip(raw.astype(np.float64), 0, 1 - 2.0**-24) * 256).astype(np.uint8)
    assert np.array_equal(grid[:12, :9], expected[0, 0]) and np.array_equal(grid[14:, 11:20], expected[4, 0])
    assert (grid[12:14] == 255).all() and (grid[14:, 20:] == 255).all()  # gaps and the empty sixth cell
    assert "wrote 5 sample(s) of 12x9" in capsys.readouterr().out
    one = tmp_path / "one.png"
    assert sample(checkpoints["random"], one, "--size", "7") == 0
    assert np.array(Image.open(one)).shape == (7, 7)


def test_seed_reproducible(checkpoints, tmp_path) -> None:
    arrays = []
    for name, seed, batch in (("a", "3", "4"), ("b", "3", "4"), ("c", "4", "4")):
        npy = tmp_path / f"{name}.npy"
        assert sample(checkpoints["random"], tmp_path / f"{name}.png", "--size", "8x10", "--num", "4", "--seed",
                      seed, "--npy", str(npy), "--batch-size", batch) == 0
        arrays.append(np.load(npy))
    assert np.array_equal(arrays[0], arrays[1]) and not np.array_equal(arrays[0], arrays[2])


def test_iid_gaussian_model_gives_its_gaussian(checkpoints, tmp_path) -> None:
    npy = tmp_path / "iid.npy"
    assert sample(checkpoints["iid"], tmp_path / "iid.png", "--size", "20x24", "--num", "12", "--npy",
                  str(npy)) == 0
    values = np.load(npy).astype(np.float64)[:, 0]  # (12, 20, 24)
    n = values.size
    assert abs(values.mean() - 0.4) < 4 * 0.15 / math.sqrt(n)
    assert abs(values.std() - 0.15) < 4 * 0.15 / math.sqrt(2 * n)
    assert scipy.stats.kstest(values.ravel(), "norm", args=(0.4, 0.15)).pvalue > 1e-3
    for a, b in ((values[:, :, :-1], values[:, :, 1:]), (values[:, :-1], values[:, 1:])):
        assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 4 / math.sqrt(a.size)


def test_autoregressive_gaussian_model_gives_its_stationary_process(checkpoints, tmp_path) -> None:
    # y = 0.2 + 0.5 x_left + 0.1 eps: stationary mean 0.4, std 0.1 / sqrt(0.75), correlations 0.5 (left), 0 (above);
    # the boundary is 1 + 8 pixels left of the first column, its influence 0.5^9 of its offset
    npy = tmp_path / "ar.npy"
    assert sample(checkpoints["ar"], tmp_path / "ar.png", "--size", "24x30", "--num", "16", "--npy",
                  str(npy)) == 0
    values = np.load(npy).astype(np.float64)[:, 0]
    n = values.size
    std = 0.1 / math.sqrt(0.75)
    assert abs(values.mean() - 0.4) < 5 * std * math.sqrt(3 / n)  # variance inflation (1 + a) / (1 - a) = 3
    assert abs(values.std() - std) < 0.03 * std
    left = np.corrcoef(values[:, :, :-1].ravel(), values[:, :, 1:].ravel())[0, 1]
    above = np.corrcoef(values[:, :-1].ravel(), values[:, 1:].ravel())[0, 1]
    assert abs(left - 0.5) < 0.05 and abs(above) < 0.05


def test_marginal_boundaries() -> None:
    model = gaussian_model(0.3, 1.0, 0.2, slope_left=0.4)
    g = torch.Generator().manual_seed(0)
    # no histogram: N(mean_out, P P^T + colour^2) = N(0.3, 0.4^2 + 0.2^2), clipped to [0,1)
    canvas = marginal.marginal_boundary(model, {}, (50, 1, 20, 20), g)
    clipped = scipy.stats.norm(0.3, math.sqrt(0.2)).cdf(0)
    assert abs(float((canvas == 0).double().mean()) - clipped) < 0.01
    assert float(canvas.max()) < 1
    hist = marginal.marginal_histogram(torch.tensor([[[[7, 7, 9]]]], dtype=torch.uint8))
    assert hist["counts"][0][7] == 2 and hist["counts"][0][9] == 1 and sum(hist["counts"][0]) == 3
    canvas = marginal.marginal_boundary(model, {marginal.MARGINAL_KEY: hist}, (4, 1, 30, 30), g)
    values = torch.floor(canvas * 256)
    assert set(values.unique().tolist()) == {7.0, 9.0}
    assert abs(float((values == 7).double().mean()) - 2 / 3) < 0.05
    with pytest.raises(ValueError, match="counts"):
        marginal.marginal_boundary(model, {marginal.MARGINAL_KEY: {"format": "x"}}, (1, 1, 4, 4), g)


def test_image_boundary(checkpoints, tmp_path) -> None:
    boundary = str(checkpoints["dir"] / "boundary.png")
    outs = [tmp_path / f"{k}.npy" for k in range(2)]
    for npy in outs:
        assert sample(checkpoints["random"], tmp_path / "b.png", "--size", "10x12", "--num", "2", "--boundary",
                      boundary, "--npy", str(npy), "--border", "4") == 0
    assert np.array_equal(np.load(outs[0]), np.load(outs[1]))


@pytest.mark.parametrize(("args", "message"), [
    (["--size", "12y9"], "--size must be HxW"),
    (["--size", "0x9"], "--size must be HxW"),
    (["--size", "8", "--num", "0"], "--num must be"),
    (["--size", "8", "--border", "-1"], "--border must be"),
    (["--size", "30x40", "--boundary", "BOUNDARY"], "is 40x50, the canvas needs at least 40x60"),
    (["--size", "8", "--boundary", "missing.png"], "does not exist"),
    (["--size", "8", "--threads", "-1"], "--threads must be"),
    (["--size", "200000x200000"], "GiB, this machine has"),
    (["--size", "64", "--num", "100000000000"], "GiB, this machine has"),
])
def test_errors(checkpoints, tmp_path, capsys, args: list[str], message: str) -> None:
    args = [str(checkpoints["dir"] / "boundary.png") if a == "BOUNDARY" else a for a in args]
    assert sample(checkpoints["random"], tmp_path / "x.png", *args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_checkpoint_and_output_errors(checkpoints, tmp_path, capsys) -> None:
    assert sample(checkpoints["mcgsm"], tmp_path / "x.png", "--size", "8") == 2
    assert "holds a MCGSM" in capsys.readouterr().err
    assert sample(checkpoints["dir"] / "broken.pt", tmp_path / "x.png", "--size", "8") == 2
    assert "not a readable ride checkpoint" in capsys.readouterr().err
    assert sample(checkpoints["dir"] / "missing.pt", tmp_path / "x.png", "--size", "8") == 2
    assert "does not exist" in capsys.readouterr().err
    assert sample(checkpoints["random"], tmp_path / "x.jpg", "--size", "8") == 2
    assert "must name a .png file" in capsys.readouterr().err


def test_parse_size() -> None:
    assert cli_sample.parse_size("64x48") == (64, 48)
    assert cli_sample.parse_size("32") == (32, 32)
    assert cli_sample.parse_size(" 5 X 7 ") == (5, 7)
    for bad in ("", "x4", "4x", "-3x4", "4x4x4", "4.5x3"):
        with pytest.raises(ValueError, match="--size"):
            cli_sample.parse_size(bad)


def test_colour_model_samples_with_its_marginal_or_says_what_it_needs(tmp_path, capsys) -> None:
    torch.manual_seed(0)
    model = ride.ColourRIDE(num_hiddens=4, num_components=2, num_scales=2, num_features=3, nb_size=3)
    model.fit_preconditioner(torch.rand(2, 3, 12, 12))
    histogram = marginal.marginal_histogram(torch.randint(0, 256, (3, 6, 6), dtype=torch.uint8))
    ride.save(model, tmp_path / "c.pt", extra={marginal.MARGINAL_KEY: histogram})
    out, npy = tmp_path / "c.png", tmp_path / "c.npy"
    assert sample(tmp_path / "c.pt", out, "--size", "10x11", "--num", "2", "--npy", str(npy)) == 0
    assert np.load(npy).shape == (2, 3, 10, 11)
    assert np.array(Image.open(out)).shape[-1] == 3  # an RGB grid
    ride.save(model, tmp_path / "bare.pt")  # no marginal, no Gaussian fallback for a ColourRIDE
    assert sample(tmp_path / "bare.pt", out, "--size", "10x11") == 2
    assert "training marginal" in capsys.readouterr().err


def test_progress_bar_counts_fronts(checkpoints, tmp_path, capsys) -> None:
    # 4x5 samples, border 1, nb_size 5: canvas 7x11, predicted grid 5x7, 3*(5-1)+7 = 19 fronts per batch, 2 batches
    assert main(["sample", "--checkpoint", str(checkpoints["random"]), "--out", str(tmp_path / "s.png"), "--size",
                 "4x5", "--num", "3", "--batch-size", "2", "--border", "1", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "/38 " in err and "front/s" in err
