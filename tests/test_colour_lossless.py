"""Tests for ride.colour_lossless: the integer colour transforms, normalisation of every channel's discrete
conditional, the causal order (pixels in raster order, channels in sequence) checked with gradients, the sampler
against the exact probabilities, checkpoints and argument errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import torch
from conftest import make_smooth_images, randomize

import ride
from ride.colour_lossless import TRANSFORMS, LosslessColourConfig, LosslessColourRIDE, from_channels, to_channels
from ride.units import dequantize

F64 = torch.float64
LN2 = math.log(2)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def smooth_values(num: int, height: int, width: int, seed: int) -> torch.Tensor:
    """8-bit RGB images [num, 3, H, W] with correlated channels and smooth structure (plus noise)."""
    return (make_smooth_images(num, 3, height, width, seed, noise=0.03) * 256).floor().clamp(0, 255).to(torch.uint8)


@pytest.fixture
def tiny_lossless():
    """Factory of small float64 models with random parameters, preconditioners fitted on smooth images."""

    def make(transform: str = "ycocg_r", num_layers: int = 1, nb_size: int = 3, seed: int = 0) -> LosslessColourRIDE:
        torch.manual_seed(seed)
        model = LosslessColourRIDE(transform, num_hiddens=4, num_layers=num_layers, num_components=3, num_scales=2,
                                   num_features=3, nb_size=nb_size).double()
        randomize(model, seed)
        model.fit_preconditioner(dequantize(smooth_values(8, 16, 16, seed=seed + 1000), gen(seed)).double())
        return model

    return make


def raster_later(i: int, j: int, height: int, width: int) -> torch.Tensor:
    """bool [H, W]: pixels after (i, j) in raster order."""
    order = torch.arange(height * width).view(height, width)
    return order > i * width + j


# ---------------------------------------------------------------------------------------------- colour transforms


@pytest.mark.parametrize("transform", sorted(TRANSFORMS))
def test_transforms_are_reversible_within_their_ranges(transform: str) -> None:
    levels = torch.tensor([0, 1, 2, 63, 127, 128, 129, 200, 253, 254, 255])
    grid = torch.cartesian_prod(levels, levels, levels).T.reshape(1, 3, -1, 1)  # every combination of the levels
    noise = torch.randint(0, 256, (1, 3, 20000, 1), generator=gen(0))
    for values in (grid, noise):
        codes = to_channels(values.to(torch.uint8), transform)
        assert codes.dtype == torch.int32
        assert torch.equal(from_channels(codes, transform), values.to(torch.int32))
        for k, (lo, hi) in enumerate(TRANSFORMS[transform][1]):
            assert lo <= int(codes[:, k].min()) and int(codes[:, k].max()) <= hi
    codes = to_channels(grid.to(torch.uint8), transform)  # the grid holds the cube's corners: ranges are reached
    assert [(int(codes[:, k].min()), int(codes[:, k].max())) for k in range(3)] == list(TRANSFORMS[transform][1])
    ycocg = to_channels(torch.tensor([[[[200]], [[100]], [[50]]]], dtype=torch.uint8), "ycocg_r").flatten().tolist()
    assert ycocg == [112, 150, -25]  # Co = 150, t = 125, Cg = -25, Y = 125 + floor(-12.5) = 112


def test_config_validates_and_is_the_constructor() -> None:
    model = LosslessColourRIDE()
    assert model.config == LosslessColourConfig()
    assert model.config.num_channels == 3 and model.channel_names == ("R", "G", "B")
    assert LosslessColourRIDE("ycocg_r").channel_names == ("Y", "Co", "Cg")
    assert [head.dim_in for head in model.heads] == [64, 65, 66]
    with pytest.raises(ValueError, match="transform must be one of"):
        LosslessColourConfig(transform="xyz")
    with pytest.raises(ValueError, match="nb_size"):
        LosslessColourRIDE(nb_size=4)
    with pytest.raises(ValueError, match="num_hiddens"):
        LosslessColourRIDE(num_hiddens=0)


# ---------------------------------------------------------------------------------------------- exactness


@pytest.mark.parametrize(("transform", "num_layers"), [("rgb", 1), ("ycocg_r", 2), ("rct", 0), ("grb", 1)])
def test_every_channel_conditional_sums_to_one(tiny_lossless, transform: str, num_layers: int) -> None:
    """For a pixel, each channel k's discrete conditional over its whole range (256 or 511 values), the other
    channels and the past fixed, sums to 1 (in float64, to rounding)."""
    model = tiny_lossless(transform, num_layers, seed=3)
    values = smooth_values(1, 4, 5, seed=4)
    codes = to_channels(values, transform)
    i, j = 3, 2  # a predicted pixel (nb_size 3: the grid starts at (1, 1))
    for k, (lo, hi) in enumerate(model.channel_ranges):
        batch = codes.repeat(hi - lo + 1, 1, 1, 1)
        batch[:, k, i, j] = torch.arange(lo, hi + 1)
        lp = model.log_prob_discrete_channels(batch)[:, i - 1, j - 1, k].detach()
        assert abs(float(lp.exp().sum()) - 1) < 1e-9, (k, float(lp.exp().sum()))
        assert bool((lp < 0).all())


def test_pixel_log_prob_is_the_sum_of_its_channels_and_matches_the_codes(tiny_lossless) -> None:
    model = tiny_lossless("ycocg_r", seed=5)
    values = smooth_values(2, 6, 7, seed=6)
    lp = model.log_prob_discrete_pixels(values)
    assert lp.shape == (2, 5, 5, 3) and lp.dtype == F64
    torch.testing.assert_close(lp, model.log_prob_discrete_channels(to_channels(values, "ycocg_r")))
    bits = model.bits_per_subpixel(values)
    torch.testing.assert_close(bits, -lp.sum(-1).flatten(1).mean(1) / (3 * LN2))


@pytest.mark.parametrize(("num_layers", "discrete"), [(1, True), (2, True), (1, False), (0, False)])
def test_causality_via_gradients(tiny_lossless, num_layers: int, discrete: bool) -> None:
    """The log-probability of channel k of pixel (i, j) has zero gradient w.r.t. every pixel after (i, j) in raster
    order and w.r.t. channels > k of (i, j) itself (and, for the density, non-zero w.r.t. channel k itself and the
    causal window). Checked on the discrete probabilities (contexts at bin centres) and on the density."""
    model = tiny_lossless("rct", num_layers, seed=7)
    h, w = 6, 7
    values = smooth_values(1, h, w, seed=8)
    x = model._centres(to_channels(values, "rct")) if discrete else dequantize(values, gen(1)).double()
    x = x.clone().requires_grad_(True)
    channels = x if discrete else model.channels_of(x)
    lp = model._log_prob_channels(channels, discrete)
    top, left, _ = model.margin
    for i, j in [(1, 1), (2, 3), (4, 5), (5, 1)]:
        for k in range(3):
            (grad,) = torch.autograd.grad(lp[0, i - top, j - left, k], x, retain_graph=True)
            assert bool((grad[0][:, raster_later(i, j, h, w)] == 0).all()), (i, j, k)
            assert bool((grad[0, k + 1 :, i, j] == 0).all()), (i, j, k)
            assert bool((grad[0, :, i - 1, j] != 0).any())  # the window above
            if not discrete:
                assert float(grad[0, k, i, j]) != 0  # the density of channel k depends on its own value
            if k > 0:
                assert bool((grad[0, :k, i, j] != 0).all())  # the channels coded before, at the same pixel


def test_discrete_probabilities_approach_density_times_bin_width(tiny_lossless) -> None:
    """Where the conditional density is wide compared with a bin, P(bin) ~ density at the centre / 256 (per
    channel: the density of x = centre is that of the channel's scale, so ln P ~ ln p - ln 256)."""
    model = tiny_lossless("rgb", seed=9)
    with torch.no_grad():
        model.preconditioner.whiten_out.mul_(0.01)  # 100x wider conditionals on the pixel scale
        model.preconditioner.colour_out.mul_(100)
        model.preconditioner.log_jacobian.add_(3 * math.log(0.01))
    values = smooth_values(1, 5, 6, seed=10)
    centres = model._centres(to_channels(values, "rgb"))
    discrete = model._log_prob_channels(centres, True)
    density = model._log_prob_channels(centres, False) - math.log(256)
    torch.testing.assert_close(discrete, density, atol=2e-3, rtol=0)


# ---------------------------------------------------------------------------------------------- sampling


@pytest.mark.parametrize(("transform", "num_layers", "nb_size", "shape"),
                         [("rgb", 1, 3, (6, 7)), ("ycocg_r", 2, 3, (5, 4)), ("rct", 0, 5, (6, 8)),
                          ("grb", 1, 5, (4, 6))])
def test_recorded_log_probs_equal_the_exact_probabilities(tiny_lossless, transform: str, num_layers: int,
                                                          nb_size: int, shape: tuple[int, int]) -> None:
    model = tiny_lossless(transform, num_layers, nb_size, seed=11 + num_layers)
    values = smooth_values(2, *shape, seed=12)
    codes = to_channels(values, transform)
    top, left, right = model.margin
    h, w = shape
    interior = torch.zeros(h, w, dtype=torch.bool)
    interior[top:, left : w - right] = True
    drawn, log_probs = model.sample_channels(codes, generator=gen(0), return_log_prob=True)
    assert drawn.dtype == torch.int32 and log_probs.shape == (2, h - top, w - left - right, 3)
    torch.testing.assert_close(log_probs, model.log_prob_discrete_channels(drawn), atol=1e-9, rtol=1e-10)
    assert torch.equal(drawn[..., ~interior], codes[..., ~interior])  # the border
    assert torch.equal(model.sample_channels(codes, generator=gen(0)), drawn)  # all randomness from the generator
    samples, rgb_log_probs = model.sample(values, generator=gen(0), return_log_prob=True)
    assert samples.dtype == torch.uint8 and torch.equal(rgb_log_probs, log_probs)
    rgb = from_channels(drawn, transform)
    on_cube = ((rgb >= 0) & (rgb <= 255)).all(1, keepdim=True)  # draws that are the transform of an RGB pixel
    assert torch.equal(torch.where(on_cube, to_channels(samples, transform), drawn), drawn)
    if transform in ("rgb", "grb"):
        torch.testing.assert_close(model.log_prob_discrete_pixels(samples), log_probs, atol=1e-9, rtol=1e-10)


def test_mask_keeps_observed_pixels(tiny_lossless) -> None:
    model = tiny_lossless("rgb", seed=13)
    values = smooth_values(2, 6, 7, seed=14)
    mask = torch.zeros(2, 6, 7, dtype=torch.bool)
    mask[0, 2:5, 2:5] = True
    mask[1, 3, 1:6] = True
    samples, log_probs = model.sample(values, mask=mask, generator=gen(1), return_log_prob=True)
    changed = (samples != values).any(1)
    assert not bool((changed & ~mask).any()) and bool(changed[0].any()) and bool(changed[1].any())
    torch.testing.assert_close(log_probs, model.log_prob_discrete_pixels(samples), atol=1e-9, rtol=1e-10)
    assert torch.equal(model.sample(values, mask=torch.zeros(6, 7, dtype=torch.bool), generator=gen(1)), values)
    with pytest.raises(ValueError, match="mask must be"):
        model.sample(values, mask=torch.ones(5, 5, dtype=torch.bool))


def test_sampled_channels_follow_the_exact_conditionals(tiny_lossless) -> None:
    """One predicted pixel (nb_size 3, a 2x3 image), 20000 draws: the first channel's histogram against its exact
    distribution (chi-square), and the second channel given a fixed first one."""
    model = tiny_lossless("ycocg_r", seed=15)
    with torch.no_grad():  # wide conditionals: many bins with enough expected counts
        model.preconditioner.whiten_out.mul_(0.2)
        model.preconditioner.colour_out.mul_(5)
    n = 20000
    codes = to_channels(smooth_values(1, 2, 3, seed=16), "ycocg_r").expand(n, -1, -1, -1)
    drawn = model.sample_channels(codes, generator=gen(2))
    for k in range(2):
        lo, hi = model.channel_ranges[k]
        batch = codes[:1].repeat(hi - lo + 1, 1, 1, 1)
        if k == 1:  # condition on the most frequent first channel
            first = int(drawn[:, 0, 1, 1].mode().values)
            batch[:, 0, 1, 1] = first
            fixed = codes.clone()
            fixed[:, 0, 1, 1] = first
            drawn_k = _sample_channel(model, fixed, k, gen(3))
        else:
            drawn_k = drawn[:, 0, 1, 1]
        batch[:, k, 1, 1] = torch.arange(lo, hi + 1)
        probs = model.log_prob_discrete_channels(batch)[:, 0, 0, k].detach().exp().numpy()
        counts = np.bincount((drawn_k - lo).numpy(), minlength=hi - lo + 1)
        expected = probs * n
        big = expected >= 5
        observed, wanted = counts[big], expected[big]
        if not big.all():  # the rare values together
            observed, wanted = np.append(observed, counts[~big].sum()), np.append(wanted, expected[~big].sum())
        assert big.sum() > 10 and abs(probs.sum() - 1) < 1e-9
        assert scipy.stats.chisquare(observed, wanted).pvalue > 1e-3, (k, observed, wanted)


def _sample_channel(model: LosslessColourRIDE, codes: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Draws of channel k of pixel (1, 1) given its channels < k in `codes` (nb_size 3, one predicted pixel)."""
    with torch.no_grad():
        centres = model._centres(codes)
        hidden, base, outputs = model._trunk(centres)
        hidden, base, outputs = hidden.reshape(-1, hidden.shape[-1]), base.reshape(-1, 3), outputs.reshape(-1, 3)
        whiten = model.preconditioner.whiten_out
        resid = outputs - base
        y = resid @ whiten.T
        shift = resid[:, :k] @ whiten[k, :k] - whiten[k, k] * base[:, k]
        y_k = model.heads[k].sample(model._head_input(hidden, y, k), generator)[:, 0]
        lo, hi = model.channel_ranges[k]
        return (((y_k - shift) / whiten[k, k]) * 256).floor().clamp(lo, hi).long()


# ---------------------------------------------------------------------------------------------- fitting, files, errors


def test_fit_preconditioner_is_triangular(tiny_lossless) -> None:
    model = tiny_lossless("rgb", seed=17)
    whiten = model.preconditioner.whiten_out
    assert torch.equal(whiten, whiten.tril()) and bool((whiten.diagonal() > 0).all())
    torch.testing.assert_close(whiten @ model.preconditioner.colour_out, torch.eye(3, dtype=F64))
    torch.testing.assert_close(model.preconditioner.log_jacobian, whiten.diagonal().log().sum())


def test_continuous_density_is_the_channels_density(tiny_lossless) -> None:
    """log_prob_pixels sums the three channels' densities, Jacobian included, on the translated unit cubes."""
    model = tiny_lossless("ycocg_r", seed=19)
    x = dequantize(smooth_values(2, 6, 6, seed=20), gen(4)).double()
    lp = model.log_prob_pixels(x)
    torch.testing.assert_close(lp, model._log_prob_channels(model.channels_of(x), False).sum(-1))
    moved = model.channels_of(x) * 256
    assert torch.equal(moved.floor().long(), to_channels((x * 256).floor().to(torch.uint8), "ycocg_r").long())
    torch.testing.assert_close(moved - moved.floor(), x * 256 - (x * 256).floor())  # same offsets in the bins


def test_checkpoint_round_trip(tiny_lossless, tmp_path: Path) -> None:
    model = tiny_lossless("rct", num_layers=2, seed=21)
    path = tmp_path / "m.pt"
    ride.save(model, path)
    loaded = ride.load(path)
    assert isinstance(loaded, LosslessColourRIDE) and loaded.config == model.config
    values = smooth_values(1, 6, 6, seed=22)
    torch.testing.assert_close(loaded.log_prob_discrete_pixels(values), model.log_prob_discrete_pixels(values))


def test_float32_model_follows_the_input() -> None:
    model = LosslessColourRIDE("rgb", num_hiddens=4, num_components=3, num_scales=2, num_features=3, nb_size=3)
    values = smooth_values(1, 12, 12, seed=23)
    model.fit_preconditioner(dequantize(values, gen(5)))
    lp = model.log_prob_discrete_pixels(values)
    assert lp.dtype == torch.float32 and bool(torch.isfinite(lp).all())
    assert model.log_prob_pixels(dequantize(values, gen(6)).double()).dtype == torch.float32


@pytest.mark.parametrize(("values", "fragment"), [
    (torch.zeros(1, 3, 6, 6), "uint8"),
    (torch.zeros(1, 1, 6, 6, dtype=torch.uint8), "3 channel"),
    (torch.zeros(1, 3, 1, 6, dtype=torch.uint8), "at least"),
    ("image", "uint8"),
])
def test_bad_values_raise_value_error(values: object, fragment: str) -> None:
    model = LosslessColourRIDE("rgb", num_hiddens=4, num_components=3, num_scales=2, num_features=3, nb_size=3)
    with pytest.raises(ValueError, match=fragment):
        model.log_prob_discrete_pixels(values)
    codes = torch.zeros(1, 3, 6, 6, dtype=torch.int32)
    codes[0, 1, 0, 0] = 300
    with pytest.raises(ValueError, match=r"channel 1 \(G\) must lie in 0..255"):
        model.log_prob_discrete_channels(codes)


# ---------------------------------------------------------------------------------------------- ride eval, ride map


@pytest.fixture
def colour_checkpoint(tiny_lossless, tmp_path: Path) -> tuple[Path, LosslessColourRIDE, Path]:
    """A saved tiny model (nb_size 5) and a folder with two RGB PNGs (70x130 and 64x64)."""
    model = tiny_lossless("ycocg_r", nb_size=5, seed=30)
    path = tmp_path / "colour.pt"
    ride.save(model, path)
    folder = tmp_path / "rgb"
    folder.mkdir()
    from PIL import Image

    for k, (h, w) in enumerate([(70, 130), (64, 64)]):
        rgb = smooth_values(1, h, w, seed=31 + k)[0].permute(1, 2, 0).numpy()
        Image.fromarray(rgb).save(folder / f"{k}.png")
    return path, model, folder


def test_ride_eval_reports_the_exact_code_length_per_subpixel(colour_checkpoint, capsys) -> None:
    import json

    from ride.cli import main
    from ride.data import load_image

    path, model, folder = colour_checkpoint
    assert main(["eval", "--checkpoint", str(path), "--images", str(folder), "--json", "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["exact_discrete"] and result["num_tiles"] == 3 and result["num_pixels"] == 3 * 62 * 60
    first = load_image(folder / "0.png", grey=False)
    tiles = [first[:, :64, :64], first[:, :64, 64:128], load_image(folder / "1.png", grey=False)]
    expected = torch.cat([model.bits_per_subpixel(t[None]) for t in tiles]).mean()
    assert abs(result["code_length_bits_per_subpixel"] - float(expected)) < 1e-9
    assert main(["eval", "--checkpoint", str(path), "--images", str(folder), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "bits per sub-pixel" in out and "not a bound" in out
    assert main(["eval", "--checkpoint", str(path), "--images", str(folder), "--ensemble", "--no-progress"]) == 2
    assert "no ensemble version" in capsys.readouterr().err


def test_ride_map_of_a_colour_image(colour_checkpoint, tmp_path: Path, capsys) -> None:
    from ride.cli import main
    from ride.data import load_image
    from ride.maps import colour_code_length_map

    path, model, folder = colour_checkpoint
    npy = tmp_path / "map.npy"
    assert main(["map", str(folder / "1.png"), "--checkpoint", str(path), "--npy", str(npy)]) == 0
    out = capsys.readouterr().out
    assert "bits per sub-pixel" in out and "exact" in out
    bits = np.load(npy)
    values = load_image(folder / "1.png", grey=False)
    assert bits.shape == (64, 64) and np.isnan(bits[:2]).all() and np.isnan(bits[:, :2]).all()
    np.testing.assert_allclose(bits, colour_code_length_map(model, values).numpy())
    expected = -model.log_prob_discrete_pixels(values[None]).detach().sum(-1)[0] / LN2
    np.testing.assert_allclose(bits[2:, 2:62], expected.numpy(), rtol=1e-12)
    pytest.importorskip("matplotlib")
    png = tmp_path / "map.png"
    assert main(["map", str(folder / "0.png"), "--checkpoint", str(path), "-o", str(png)]) == 0
    assert png.stat().st_size > 0
