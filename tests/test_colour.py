"""Tests for ride.colour: the YCbCr transform and its log-determinant, the causal order (Y, then Cb/Cr given the
current Y) checked with gradients, normalisation of the luma and chroma conditionals on grids, the sampler,
preconditioner fitting, checkpoints and argument errors."""

from __future__ import annotations

import math
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import torch

import ride
from ride.checkpoint import load_payload
from ride.colour import (
    YCBCR_LOG_DET,
    YCBCR_MATRIX,
    ColourRIDE,
    ColourRIDEConfig,
    bits_per_dim,
    colour_pairs,
    rgb_to_ycbcr,
    ycbcr_to_rgb,
)
from ride.model import RIDEConfig
from ride.sampling import front_schedule, raster_schedule

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def raster_later(i: int, j: int, height: int, width: int) -> torch.Tensor:
    """bool [H, W]: pixels after (i, j) in raster order."""
    order = torch.arange(height * width).view(height, width)
    return order > i * width + j


# ---------------------------------------------------------------------------------------------- colour transform


def test_colour_transform_is_invertible_with_the_right_log_det() -> None:
    rgb = torch.rand(4, 3, 5, 6, generator=gen(0), dtype=F64)
    ycc = rgb_to_ycbcr(rgb)
    torch.testing.assert_close(ycbcr_to_rgb(ycc), rgb, atol=1e-14, rtol=0)
    torch.testing.assert_close(rgb_to_ycbcr(ycbcr_to_rgb(ycc)), ycc, atol=1e-14, rtol=0)
    assert YCBCR_LOG_DET == pytest.approx(float(torch.linalg.slogdet(YCBCR_MATRIX)[1]), abs=1e-14)
    assert YCBCR_LOG_DET == pytest.approx(-1.4427, abs=1e-4)
    # the map is affine: the Jacobian of one pixel's map is the matrix itself
    jac = torch.autograd.functional.jacobian(lambda p: rgb_to_ycbcr(p.view(1, 3, 1, 1)).flatten(), rgb[0, :, 0, 0])
    torch.testing.assert_close(jac, YCBCR_MATRIX, atol=1e-15, rtol=0)
    # Y is BT.601 luma (the grey data's); grey pixels have neutral chroma 0.5; float32 follows the input
    torch.testing.assert_close(ycc[:, 0], 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2])
    grey = rgb[:, :1].expand(-1, 3, -1, -1)
    torch.testing.assert_close(rgb_to_ycbcr(grey)[:, 1:], torch.full_like(grey[:, 1:], 0.5), atol=1e-15, rtol=0)
    assert rgb_to_ycbcr(rgb.float()).dtype == torch.float32
    # [0,1) RGB stays in [0,1] in every channel
    corners = torch.cartesian_prod(*[torch.tensor([0.0, 1.0], dtype=F64)] * 3).T.reshape(1, 3, 8, 1)
    assert bool((rgb_to_ycbcr(corners) >= -1e-15).all() and (rgb_to_ycbcr(corners) <= 1 + 1e-15).all())


# ---------------------------------------------------------------------------------------------- config, densities


def test_config_defaults_follow_ride_and_validate() -> None:
    # the colour models keep the default cell clip (RIDEConfig.cell_clip is not one of their arguments)
    ride_defaults = {k: v for k, v in asdict(RIDEConfig()).items() if k not in ("num_channels", "cell_clip")}
    assert asdict(ColourRIDEConfig()) == ride_defaults
    assert ColourRIDEConfig().num_channels == 3
    assert [f.name for f in fields(ColourRIDEConfig)] == list(ride_defaults)
    with pytest.raises(ValueError, match="nb_size must be odd"):
        ColourRIDEConfig(nb_size=4)
    with pytest.raises(ValueError, match="num_hiddens"):
        ColourRIDE(num_hiddens=0)
    model = ColourRIDE(num_hiddens=4, num_components=2, num_scales=2, num_features=2)
    assert model.config == ColourRIDEConfig(num_hiddens=4, num_components=2, num_scales=2, num_features=2)
    assert model.margin == (2, 2, 2)
    assert model.chroma.preconditioner.dim_in == 3 * 12 + 1 and model.chroma.mcgsm.dim_out == 2


@pytest.mark.parametrize("num_layers", [0, 1, 2])
def test_log_prob_is_luma_plus_chroma_plus_log_det(tiny_colour, smooth_images, num_layers: int) -> None:
    model = tiny_colour(num_layers=num_layers, nb_size=5, seed=num_layers)
    images = smooth_images(2, 3, 6, 8, seed=1)
    with torch.no_grad():
        lp = model.log_prob_pixels(images)
        assert lp.shape == (2, 4, 4) and lp.dtype == F64 and torch.isfinite(lp).all()
        ycc = rgb_to_ycbcr(images)
        luma, chroma = model.log_prob_ycbcr_pixels(ycc)
        torch.testing.assert_close(lp, luma + chroma + YCBCR_LOG_DET, atol=1e-12, rtol=0)
        # the luma model is a plain one-channel RIDE on Y
        torch.testing.assert_close(luma, model.luma.log_prob_pixels(ycc[:, :1]), atol=1e-12, rtol=0)
        torch.testing.assert_close(model.log_prob(images), lp.flatten(1).sum(1))
        # the chroma model reads the windows of Y, Cb, Cr and then the current Y (nb_size 5: 12 each)
        _, _, chroma_in, chroma_out = colour_pairs(ycc, model.neighbourhood)
        assert chroma_in.shape == (2, 4, 4, 37) and chroma_out.shape == (2, 4, 4, 2)
        torch.testing.assert_close(chroma_in[0, 1, 2, -1], ycc[0, 0, 3, 4])
        torch.testing.assert_close(chroma_in[0, 1, 2, 11], ycc[0, 0, 3, 3])  # Y left of the pixel
        cb_window = torch.cat([ycc[0, 1, 1:3, 2:7].flatten(), ycc[0, 1, 3, 2:4]])
        torch.testing.assert_close(chroma_in[0, 1, 2, 12:24], cb_window)
        torch.testing.assert_close(chroma_out[0, 1, 2], ycc[0, 1:, 3, 4])
        if num_layers:
            torch.testing.assert_close(model.log_prob_pixels(images, impl="raster"), lp, atol=1e-10, rtol=0)
        # float32 images on a float64 model are computed in float64
        assert model.log_prob_pixels(images.float()).dtype == F64


@pytest.mark.parametrize(("num_layers", "impl"), [(1, "sweep"), (2, "raster"), (0, "sweep")])
def test_causality_via_gradients(tiny_colour, smooth_images, num_layers: int, impl: str) -> None:
    model = tiny_colour(num_layers=num_layers, seed=3 + num_layers)
    height, width = 5, 6
    ycc = rgb_to_ycbcr(smooth_images(1, 3, height, width, seed=2))
    hp, wp = model.neighbourhood.grid_shape(height, width)
    top, left, _ = model.margin
    jac_luma, jac_chroma = (j.view(hp, wp, 3, height, width) for j in torch.autograd.functional.jacobian(
        lambda x: tuple(lp[0] for lp in model.log_prob_ycbcr_pixels(x, impl)), ycc))
    rgb = ycbcr_to_rgb(ycc)
    jac_rgb = torch.autograd.functional.jacobian(lambda x: model.log_prob_pixels(x, impl)[0], rgb)
    jac_rgb = jac_rgb.view(hp, wp, 3, height, width).abs().sum(2)
    for p in range(hp):
        for q in range(wp):
            i, j = p + top, q + left
            later = raster_later(i, j, height, width)
            earlier = ~later
            earlier[i, j] = False
            luma, chroma = jac_luma[p, q].abs(), jac_chroma[p, q].abs()
            # Y: only earlier Y values, never chroma
            assert torch.equal(luma[1:], torch.zeros_like(luma[1:])), f"luma of {(i, j)} depends on chroma"
            assert float(luma[0, i, j]) > 0  # its own value
            assert torch.equal(luma[0][later], torch.zeros_like(luma[0][later]))
            assert float(luma[0][earlier].sum()) > 0
            # (Cb, Cr): earlier pixels of every channel and the current pixel's Y
            assert float(chroma[0, i, j]) > 0, f"chroma of {(i, j)} does not see the current Y"
            assert float(chroma[1, i, j]) > 0 and float(chroma[2, i, j]) > 0
            for c in range(3):
                assert torch.equal(chroma[c][later], torch.zeros_like(chroma[c][later])), (i, j, c)
                assert float(chroma[c][earlier].sum()) > 0, (i, j, c)
            # on the RGB scale: nothing after the pixel in raster order
            assert torch.equal(jac_rgb[p, q][later], torch.zeros_like(jac_rgb[p, q][later]))
    # the recurrence reaches beyond the window (the last pixel sees the top-left corner); the MCGSM does not
    corner = float(jac_luma[-1, -1, 0, 0, 0].abs() + jac_chroma[-1, -1, :, 0, 0].abs().sum())
    assert (corner > 0) if num_layers > 0 else (corner == 0)


# ---------------------------------------------------------------------------------------------- normalisation


def _luma_grid(model: ColourRIDE, ycc: torch.Tensor, i: int, j: int, half_width: float, num: int) -> torch.Tensor:
    """Values of Y_ij [num] spaced evenly over +-half_width luma residual stds around the linear prediction."""
    top, left, _ = model.margin
    pre = model.luma.preconditioner
    luma_in, _, _, _ = colour_pairs(ycc, model.neighbourhood)
    x_tilde = pre.whiten_inputs(luma_in[0, i - top, j - left])
    t = torch.linspace(-half_width, half_width, num, dtype=F64)
    return pre.inverse(x_tilde.expand(num, -1), t[:, None])[:, 0]


def _chroma_grid(model: ColourRIDE, ycc: torch.Tensor, i: int, j: int, half_width: float,
                 num: int) -> tuple[torch.Tensor, torch.Tensor]:
    """An axis-aligned grid of (Cb_ij, Cr_ij) in data units: axes [num] each, centred on the linear prediction,
    +-half_width marginal residual stds wide."""
    top, left, _ = model.margin
    pre = model.chroma.preconditioner
    _, _, chroma_in, _ = colour_pairs(ycc, model.neighbourhood)
    centre = pre.inverse(pre.whiten_inputs(chroma_in[0, i - top, j - left]), torch.zeros(2, dtype=F64))
    std = pre.colour_out.square().sum(1).sqrt()  # marginal std of each chroma residual for unit y~
    t = torch.linspace(-half_width, half_width, num, dtype=F64)
    return centre[0] + std[0] * t, centre[1] + std[1] * t


def _chroma_density(model: ColourRIDE, ycc: torch.Tensor, i: int, j: int, cb: torch.Tensor,
                    cr: torch.Tensor) -> torch.Tensor:
    """p(Cb_ij, Cr_ij | rest) on the grid cb x cr: [len(cb), len(cr)]."""
    top, left, _ = model.margin
    grid_cb, grid_cr = torch.meshgrid(cb, cr, indexing="ij")
    batch = ycc.repeat(grid_cb.numel(), 1, 1, 1)
    batch[:, 1, i, j] = grid_cb.flatten()
    batch[:, 2, i, j] = grid_cr.flatten()
    with torch.no_grad():
        _, chroma = model.log_prob_ycbcr_pixels(batch)
    return chroma[:, i - top, j - left].exp().view(cb.numel(), cr.numel())


@pytest.mark.parametrize("num_layers", [1, 2])
def test_luma_and_chroma_conditionals_integrate_to_one(tiny_colour, smooth_images, num_layers: int) -> None:
    model = tiny_colour(num_layers=num_layers, seed=10 + num_layers)
    # residual stds well below 1: without the preconditioners' Jacobians the integrals are far from 1
    assert float(model.luma.preconditioner.log_jacobian) > 2
    assert float(model.chroma.preconditioner.log_jacobian) > 4
    colour_out = model.chroma.preconditioner.colour_out
    assert float(colour_out[0, 1].abs()) > 0.3 * float(colour_out.diagonal().min())  # correlated residuals
    ycc = rgb_to_ycbcr(smooth_images(1, 3, 3, 4, seed=5))
    i, j = 2, 2  # the last predicted pixel: its conditionals see the LSTM states of the three others
    top, left, _ = model.margin
    # Y: a 1-D integral over Y_ij, the rest fixed
    values = _luma_grid(model, ycc, i, j, 30.0, 6001)
    batch = ycc.repeat(values.numel(), 1, 1, 1)
    batch[:, 0, i, j] = values
    with torch.no_grad():
        density = model.log_prob_ycbcr_pixels(batch)[0][:, i - top, j - left].exp()
    assert abs(np.trapezoid(density.numpy(), values.numpy()) - 1) < 1e-4
    assert float(density[0] + density[-1]) < 1e-8  # the grid covers the tails
    # (Cb, Cr): a 2-D integral in data units over an axis-aligned box (no change of variables)
    cb, cr = _chroma_grid(model, ycc, i, j, 14.0, 301)
    density = _chroma_density(model, ycc, i, j, cb, cr)
    total = np.trapezoid(np.trapezoid(density.numpy(), cr.numpy(), axis=1), cb.numpy())
    assert abs(total - 1) < 1e-6, total
    edge = torch.cat([density[0], density[-1], density[:, 0], density[:, -1]])
    assert float(edge.max()) < 1e-6 * float(density.max())


def test_rgb_conditional_integrates_to_one(tiny_colour, smooth_images) -> None:
    """The whole model on the RGB scale: p(R, G, B of one pixel | the rest) over a 3-D grid. The grid follows the
    principal axes of sampled pixels (a rotation and per-axis scaling, whose Jacobian is known independently of
    the colour transform), so the transform's ln|det| is what makes the integral 1 (without it: exp(1.44))."""
    model = tiny_colour(seed=60)
    rgb = smooth_images(1, 3, 2, 3, seed=7)  # one predicted pixel, (1, 1)
    drawn = model.sample(rgb.expand(4000, -1, -1, -1), generator=gen(1))[:, :, 1, 1]
    evals, evecs = torch.linalg.eigh(torch.cov(drawn.T))
    std = evals.sqrt()
    t = torch.linspace(-10, 10, 41, dtype=F64)
    values = drawn.mean(0) + (torch.cartesian_prod(t, t, t) * std) @ evecs.T  # (41^3, 3) RGB values
    batch = rgb.repeat(values.shape[0], 1, 1, 1)
    batch[:, :, 1, 1] = values
    with torch.no_grad():
        density = model.log_prob_pixels(batch)[:, 0, 0].exp().view(41, 41, 41).numpy()
    tt = t.numpy()
    total = np.trapezoid(np.trapezoid(np.trapezoid(density, tt, axis=2), tt, axis=1), tt) * float(std.prod())
    assert abs(total - 1) < 1e-6, total


# ---------------------------------------------------------------------------------------------- sampling


@pytest.mark.parametrize("order", ["front", "raster"])
@pytest.mark.parametrize(("num_layers", "nb_size", "shape"), [(1, 3, (6, 7)), (2, 3, (5, 4)), (1, 5, (6, 8)),
                                                              (0, 5, (4, 6))])
def test_recorded_log_probs_equal_log_prob_pixels(tiny_colour, smooth_images, order: str, num_layers: int,
                                                  nb_size: int, shape: tuple[int, int]) -> None:
    model = tiny_colour(num_layers=num_layers, nb_size=nb_size, seed=20 + num_layers)
    images = smooth_images(2, 3, *shape, seed=3)
    top, left, right = model.margin
    h, w = shape
    interior = torch.zeros(h, w, dtype=torch.bool)
    interior[top:, left : w - right] = True
    start = images.clone()
    start[..., interior] = 1.5  # far-off initial values: reading a pixel before it is drawn shows
    samples, log_probs = model.sample(start, generator=gen(0), return_log_prob=True, order=order)
    assert samples.shape == images.shape and samples.dtype == images.dtype
    torch.testing.assert_close(log_probs, model.log_prob_pixels(samples).detach(), atol=1e-9, rtol=1e-10)
    assert torch.equal(samples[..., ~interior], start[..., ~interior])  # the border, bit for bit
    assert bool((samples[..., interior] != start[..., interior]).all())
    again = model.sample(start, generator=gen(0), order=order)
    assert torch.equal(again, samples)  # all randomness from the generator


@pytest.mark.parametrize("num_layers", [0, 1, 2])
def test_front_sampler_on_the_shared_step_matches_the_reference_loop(tiny_colour, smooth_images,
                                                                      num_layers: int) -> None:
    """The chroma sampler runs on `front.SkewedFront` (current Y as an extra input, Cb and Cr as outputs): the
    same draws as the plain front loop, up to rounding, with and without a mask."""
    model = tiny_colour(num_layers=num_layers, seed=50 + num_layers)
    images = smooth_images(2, 3, 7, 9, seed=5)
    mask = torch.zeros(2, 7, 9, dtype=torch.bool)
    mask[0, 1:6, 2:8] = True
    mask[1] = True
    for m in (None, mask):
        fast, fast_lp = model.sample(images, mask=m, generator=gen(6), return_log_prob=True, order="front")
        ref, ref_lp = model.sample(images, mask=m, generator=gen(6), return_log_prob=True, order="front_reference")
        torch.testing.assert_close(fast, ref, atol=1e-9, rtol=1e-9)
        torch.testing.assert_close(fast_lp, ref_lp, atol=1e-8, rtol=1e-9)


def test_partial_mask_keeps_observed_pixels(tiny_colour, smooth_images) -> None:
    model = tiny_colour(seed=30)
    images = smooth_images(2, 3, 6, 7, seed=4)
    mask = torch.zeros(2, 6, 7, dtype=torch.bool)
    mask[0, 2:5, 2:5] = True
    mask[1, 3, 1:6] = True
    samples, log_probs = model.sample(images, mask=mask, generator=gen(1), return_log_prob=True)
    changed = (samples != images).any(1)  # [B, H, W]
    assert torch.equal(changed, mask)
    torch.testing.assert_close(log_probs, model.log_prob_pixels(samples).detach(), atol=1e-9, rtol=1e-10)
    with pytest.raises(ValueError, match="mask must be"):
        model.sample(images, mask=torch.ones(5, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="order"):
        model.sample(images, order="zigzag")


def test_sampled_luma_and_chroma_follow_the_conditionals(tiny_colour, smooth_images) -> None:
    """One predicted pixel (2x3 image, nb_size 3), 20000 draws: Y by its exact CDF (PIT), then (Cb, Cr) for a
    fixed Y against mean and covariance from the 2-D quadrature of the density."""
    model = tiny_colour(seed=40)
    n = 20000
    rgb = smooth_images(1, 3, 2, 3, seed=7)
    samples = model.sample(rgb.expand(n, -1, -1, -1), generator=gen(2))
    y = rgb_to_ycbcr(samples)[:, 0, 1, 1]
    luma = model.luma
    luma_in, _, _, _ = colour_pairs(rgb_to_ycbcr(rgb), model.neighbourhood)
    x_tilde = luma.preconditioner.whiten_inputs(luma_in[0, 0, 0])
    hidden = luma.hidden_states(x_tilde.view(1, 1, 1, -1)).view(1, -1).expand(n, -1)
    y_tilde = luma.preconditioner.whiten_outputs(x_tilde, y[:, None])  # increasing in y: CDFs agree
    with torch.no_grad():
        pit = luma.mcgsm.cdf(hidden, y_tilde)
    assert scipy.stats.kstest(pit.numpy(), "uniform").pvalue > 1e-3
    # chroma given a fixed Y (the chroma sampler alone)
    ycc = rgb_to_ycbcr(rgb)
    grid_mask = torch.ones(n, 1, 1, dtype=torch.bool)
    drawn, _ = model._sample_chroma(ycc.expand(n, -1, -1, -1), grid_mask, gen(3), "front")
    chroma = drawn[:, 1:, 1, 1]  # (N, 2)
    assert torch.equal(drawn[:, 0], ycc[0, 0].expand(n, -1, -1))  # Y untouched
    cb, cr = _chroma_grid(model, ycc, 1, 1, 14.0, 301)
    density = _chroma_density(model, ycc, 1, 1, cb, cr).numpy()
    grid_cb, grid_cr = (g.numpy() for g in torch.meshgrid(cb, cr, indexing="ij"))

    def integral(f: np.ndarray) -> float:
        return float(np.trapezoid(np.trapezoid(f * density, cr.numpy(), axis=1), cb.numpy()))

    mean = np.array([integral(grid_cb), integral(grid_cr)])
    cov = np.array([[integral((grid_cb - mean[0]) ** 2), integral((grid_cb - mean[0]) * (grid_cr - mean[1]))],
                    [0.0, integral((grid_cr - mean[1]) ** 2)]])
    cov[1, 0] = cov[0, 1]
    emp_mean = chroma.mean(0).numpy()
    emp_cov = np.cov(chroma.numpy().T)
    se = np.sqrt(np.diag(cov) / n)
    assert np.all(np.abs(emp_mean - mean) < 5 * se), (emp_mean, mean)
    # variances (mixtures have heavier tails than Gaussians: a loose but still sharp tolerance)
    assert np.all(np.abs(np.diag(emp_cov) / np.diag(cov) - 1) < 0.1), (emp_cov, cov)
    corr, emp_corr = cov[0, 1] / math.sqrt(cov[0, 0] * cov[1, 1]), emp_cov[0, 1] / math.sqrt(emp_cov[0, 0] *
                                                                                            emp_cov[1, 1])
    assert abs(corr - emp_corr) < 0.05, (corr, emp_corr)


def _removed_chroma_loop(model: ColourRIDE, ycbcr: torch.Tensor, grid_mask: torch.Tensor,
                         generator: torch.Generator, order: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The chroma sampler's own copy of the front/raster loop, as `ColourRIDE._sample_chroma` had it before it
    moved onto `front.SkewedFront` (issue 31 item 5): kept here only as an independent reference."""
    b, _, h, w = ycbcr.shape
    nb, chroma = model.neighbourhood, model.chroma
    pre, mcgsm = chroma.preconditioner, chroma.mcgsm
    top, left, right = model.margin
    hp, wp = nb.grid_shape(h, w)
    schedule = front_schedule(hp, wp, right, ycbcr.device) if order == "front" else raster_schedule(hp, wp,
                                                                                                     ycbcr.device)
    out = ycbcr.clone()
    flat = out.view(b, 3, h * w)
    offsets = nb.offsets()
    log_probs = ycbcr.new_zeros(b, hp, wp)
    stride = wp + 1
    hs = [ycbcr.new_zeros(b, (hp + 1) * stride, chroma.num_hiddens) for _ in chroma.layers]
    cs = [ycbcr.new_zeros(b, (hp + 1) * stride, chroma.num_hiddens) for _ in chroma.layers]
    with torch.no_grad():
        for rows, cols in schedule:
            n = rows.numel()
            window = ((rows + top)[:, None] + offsets[:, 0]) * w + (cols + left)[:, None] + offsets[:, 1]
            pixel = (rows + top) * w + cols + left
            inputs = torch.cat([flat[:, :, window].permute(0, 2, 1, 3).reshape(b, n, -1), flat[:, 0, pixel, None]],
                               dim=-1)
            x = pre.whiten_inputs(inputs)
            hidden = x
            here, up, lft = (rows + 1) * stride + cols + 1, rows * stride + cols + 1, (rows + 1) * stride + cols
            for layer, h_grid, c_grid in zip(chroma.layers, hs, cs, strict=True):
                z = hidden @ layer.weight_in + layer.bias
                hidden, c_new = layer.step(z, h_grid[:, up], h_grid[:, lft], c_grid[:, up], c_grid[:, lft])
                h_grid[:, here] = hidden
                c_grid[:, here] = c_new
            hidden = hidden.reshape(b * n, -1)
            y_tilde = mcgsm.sample(hidden, generator=generator).to(x.dtype).view(b, n, 2)
            drawn = pre.inverse(x, y_tilde)
            kept = flat[:, 1:, pixel].permute(0, 2, 1)
            value = torch.where(grid_mask[:, rows, cols, None], drawn, kept)
            flat[:, 1:, pixel] = value.permute(0, 2, 1)
            lp = mcgsm.log_prob_unchecked(hidden, pre.whiten_outputs(x, value).reshape(b * n, 2)).view(b, n)
            log_probs[:, rows, cols] = lp.to(log_probs.dtype) + pre.log_jacobian
    return out, log_probs


@pytest.mark.parametrize("order", ["front", "raster"])
@pytest.mark.parametrize(("num_layers", "nb_size"), [(0, 3), (1, 5), (2, 3)])
def test_chroma_sampler_matches_the_removed_copy_of_its_loop(tiny_colour, smooth_images, order: str,
                                                             num_layers: int, nb_size: int) -> None:
    """Same generator, same draws in the same order: the shared step gives the removed loop's chroma and
    log-probabilities up to rounding, with and without a mask, and so does the whole sampler (Y first)."""
    model = tiny_colour(num_layers=num_layers, nb_size=nb_size, seed=70 + num_layers)
    images = smooth_images(2, 3, 7, 9, seed=13)
    ycc = rgb_to_ycbcr(images)
    hp, wp = model.neighbourhood.grid_shape(7, 9)
    grid_mask = torch.rand(2, hp, wp, generator=gen(14)) < 0.6
    for m in (torch.ones_like(grid_mask), grid_mask):
        new, new_lp = model._sample_chroma(ycc, m, gen(15), order)
        old, old_lp = _removed_chroma_loop(model, ycc, m, gen(15), order)
        torch.testing.assert_close(new, old, atol=1e-10, rtol=1e-10)
        torch.testing.assert_close(new_lp, old_lp, atol=1e-9, rtol=1e-10)
        assert bool((new[:, 1:] != ycc[:, 1:]).any())  # something was drawn
    # the whole sampler: Y drawn first from the same generator, then the chroma
    generator = gen(16)
    luma, luma_lp = model.luma.sample(ycc[:, :1], None, generator, return_log_prob=True, order=order)
    old, old_lp = _removed_chroma_loop(model, torch.cat([luma, ycc[:, 1:]], 1), torch.ones(2, hp, wp,
                                       dtype=torch.bool), generator, order)
    samples, log_probs = model.sample(images, generator=gen(16), return_log_prob=True, order=order)
    top, left, _ = model.margin
    grid = (slice(None), slice(None), slice(top, top + hp), slice(left, left + wp))
    torch.testing.assert_close(samples[grid], ycbcr_to_rgb(old)[grid], atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(log_probs, luma_lp + old_lp + YCBCR_LOG_DET, atol=1e-9, rtol=1e-10)


@pytest.mark.parametrize(("num_layers", "nb_size"), [(2, 3), (1, 5)])
def test_sampled_pixels_depend_only_on_their_causal_context(tiny_colour, smooth_images, num_layers: int,
                                                            nb_size: int) -> None:
    """With the random numbers fixed (same generator), a drawn pixel is a function of the pixels before it in
    raster order: changing a kept pixel (outside the mask, or a never-predicted border pixel) changes no drawn
    pixel before it, nor any other image, but does change the drawn pixels whose window holds it; what masked
    pixels held before sampling is never read; pixels outside the mask or the predicted grid come back bit for
    bit."""
    model = tiny_colour(num_layers=num_layers, nb_size=nb_size, seed=80 + num_layers)
    h, w = 8, 10
    images = smooth_images(2, 3, h, w, seed=17)
    mask = torch.rand(2, h, w, generator=gen(18)) < 0.7  # also True on some never-predicted border pixels
    top, left, right = model.margin
    grid = torch.zeros(h, w, dtype=torch.bool)
    grid[top:, left : w - right] = True
    drawn = mask & grid  # [B, H, W]
    samples = model.sample(images, mask=mask, generator=gen(19))
    assert torch.equal(samples[~drawn[:, None].expand(-1, 3, -1, -1)],
                       images[~drawn[:, None].expand(-1, 3, -1, -1)])
    assert bool((samples != images).all(1)[drawn].all())
    # the masked pixels' old values are never read
    garbage = torch.where(drawn[:, None], torch.full_like(images, 5.0), images)
    assert torch.equal(model.sample(garbage, mask=mask, generator=gen(19)), samples)
    order = torch.arange(h * w).view(h, w)
    kept = [(int(i), int(j)) for i, j in (~drawn[0]).nonzero()]
    assert any(j >= w - right for _, j in kept) and any(grid[i, j] for i, j in kept)
    offsets, checked = model.neighbourhood.offsets(), 0  # window of (i, j): (i, j) + offsets
    for i, j in kept:
        changed_input = images.clone()
        changed_input[0, :, i, j] += 0.2
        again = model.sample(changed_input, mask=mask, generator=gen(19))
        assert torch.equal(again[1], samples[1]), f"image 1 depends on image 0's pixel {(i, j)}"
        changed = (again[0] != samples[0]).any(0)
        changed[i, j] = False
        before = order < i * w + j
        assert not bool(changed[before].any()), f"pixels {changed[before].nonzero().tolist()} read {(i, j)}"
        # every drawn pixel whose window holds (i, j) changes (through its inputs, whatever the LSTM does)
        readers = [(i - int(di), j - int(dj)) for di, dj in offsets]
        readers = [q for q in readers if q[0] < h and 0 <= q[1] < w and drawn[0][q]]
        assert all(bool(changed[q]) for q in readers), (i, j, readers)
        checked += len(readers)
    assert checked > 10


def test_sampled_chroma_matches_the_conditional_chi_square(tiny_colour, smooth_images) -> None:
    """(Cb, Cr) of one pixel given Y and its context, 20000 draws on the shared front step, against 4 x 4 cells
    (quartiles of each marginal) whose probabilities come from the model's density on a grid (`log_prob`)."""
    model = tiny_colour(seed=41)
    n = 20000
    ycc = rgb_to_ycbcr(smooth_images(1, 3, 2, 3, seed=8))  # one predicted pixel, (1, 1)
    drawn, _ = model._sample_chroma(ycc.expand(n, -1, -1, -1), torch.ones(n, 1, 1, dtype=torch.bool), gen(4),
                                    "front")
    cb, cr = _chroma_grid(model, ycc, 1, 1, 14.0, 281)
    mass = _chroma_density(model, ycc, 1, 1, cb, cr) * (cb[1] - cb[0]) * (cr[1] - cr[0])  # midpoint rule
    assert abs(float(mass.sum()) - 1) < 1e-6
    mass = mass / mass.sum()

    def cell_of(values: torch.Tensor, axis: torch.Tensor, marginal: torch.Tensor) -> torch.Tensor:
        """Quartile cell (0..3) of values; each grid point's cell holds +-half a step around it."""
        ends = torch.searchsorted(marginal.cumsum(0), torch.tensor([0.25, 0.5, 0.75], dtype=F64))
        edges = axis[ends] + 0.5 * (axis[1] - axis[0])
        return torch.searchsorted(edges, values.contiguous(), right=True)

    cells_cb, cells_cr = cell_of(cb, cb, mass.sum(1)), cell_of(cr, cr, mass.sum(0))
    expected = torch.zeros(4, 4, dtype=F64).index_put_((cells_cb[:, None].expand_as(mass).reshape(-1),
                                                        cells_cr[None].expand_as(mass).reshape(-1)),
                                                       mass.reshape(-1), accumulate=True)
    sample_cb, sample_cr = drawn[:, 1, 1, 1], drawn[:, 2, 1, 1]
    observed = torch.zeros(4, 4, dtype=F64).index_put_(
        (cell_of(sample_cb, cb, mass.sum(1)), cell_of(sample_cr, cr, mass.sum(0))), torch.ones(n, dtype=F64),
        accumulate=True)
    assert float(expected.min()) * n > 5  # strongly correlated (corners nearly empty), still chi-square's range
    result = scipy.stats.chisquare(observed.flatten().numpy(), n * expected.flatten().numpy())
    assert result.pvalue > 1e-3, (observed, n * expected)


# ---------------------------------------------------------------------------------------------- fitting, units


def test_fit_preconditioner_fits_luma_and_chroma_on_the_same_pixels(smooth_images) -> None:
    model = ColourRIDE(num_hiddens=4, num_components=2, num_scales=2, num_features=2, nb_size=3).double()
    images = smooth_images(3, 3, 7, 8, seed=8)
    model.fit_preconditioner(images)  # fewer than num_pairs pairs: all of them
    reference = ride.RIDE(num_channels=1, nb_size=3).double()
    reference.fit_preconditioner(rgb_to_ycbcr(images)[:, :1])
    for name, buf in reference.preconditioner.named_buffers():
        torch.testing.assert_close(getattr(model.luma.preconditioner, name), buf, atol=1e-10, rtol=1e-10)
    inputs, outputs = model.training_pairs(images)
    assert inputs.shape == (3 * 6 * 6, 13) and outputs.shape == (3 * 6 * 6, 2)
    # the chroma whitening is the exact conditional whitening: whitened chroma residuals have identity covariance
    x, y = model.chroma.preconditioner(inputs, outputs)
    torch.testing.assert_close(y.T @ y / y.shape[0], torch.eye(2, dtype=F64), atol=1e-8, rtol=0)
    torch.testing.assert_close(y.mean(0), torch.zeros(2, dtype=F64), atol=1e-10, rtol=0)
    # lists of [3, H, W] images of different sizes; a generator makes the draw reproducible
    images_list = [images[0], images[1, :, :6, :5]]
    some, _ = model.training_pairs(images_list, num_pairs=9, generator=gen(5))
    again, _ = model.training_pairs(images_list, num_pairs=9, generator=gen(5))
    assert some.shape == (9, 13) and torch.equal(some, again)
    model.fit_preconditioner(images_list, num_pairs=40, generator=gen(6))
    assert torch.isfinite(model.log_prob_pixels(images)).all()


def test_bits_per_dim_is_the_dequantisation_bound() -> None:
    # a uniform density on [0,1)^3 has rate 0 bit per pixel: exactly 8 bits per dimension
    assert bits_per_dim(torch.zeros(10)) == 8.0
    # a rate of 3 bit per RGB pixel is 1 bit per dimension better
    assert bits_per_dim(3 * math.log(2) * 50, num_pixels=50) == pytest.approx(7.0)
    model = ColourRIDE(num_hiddens=4, num_components=2, num_scales=2, num_features=2, nb_size=3).double()
    values = torch.randint(0, 256, (2, 3, 5, 6), generator=gen(9), dtype=torch.uint8)
    bound = model.nll_bound_bits_per_dim(values, generator=gen(10))
    x = ride.dequantize(values, generator=gen(10)).double()
    lp = model.log_prob_pixels(x).detach()
    assert bound.shape == (2,)
    for b in range(2):
        assert float(bound[b]) == pytest.approx(bits_per_dim(lp[b]), abs=1e-12)
    with pytest.raises(ValueError, match="uint8"):
        model.nll_bound_bits_per_dim(x)


def test_checkpoint_round_trip(tiny_colour, smooth_images, tmp_path: Path) -> None:
    model = tiny_colour(num_layers=2, seed=50)
    path = tmp_path / "colour.pt"
    ride.save(model, path, extra={"data": "cifar10"})
    loaded = ride.load(path)
    assert isinstance(loaded, ColourRIDE) and not loaded.training and loaded.config == model.config
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    images = smooth_images(2, 3, 5, 6, seed=11)
    with torch.no_grad():
        assert torch.equal(loaded.log_prob(images), model.log_prob(images))
    assert torch.equal(loaded.sample(images, generator=gen(1)), model.sample(images, generator=gen(1)))
    payload = load_payload(path)
    assert payload["model"] == "ColourRIDE" and payload["config"] == asdict(model.config)
    assert payload["extra"] == {"data": "cifar10"}


def test_float32_model_and_device_follow_the_input(smooth_images) -> None:
    model = ColourRIDE(num_hiddens=4, num_components=2, num_scales=2, num_features=2, nb_size=3)
    images = smooth_images(2, 3, 5, 6, seed=12, dtype=torch.float32)
    model.fit_preconditioner(images)
    lp = model.log_prob_pixels(images)
    assert lp.dtype == torch.float32 and lp.shape == (2, 4, 4) and torch.isfinite(lp).all()
    lp.sum().backward()  # the trainer's path: gradients reach both sub-models
    assert model.luma.mcgsm.predictors.grad is not None and model.chroma.mcgsm.predictors.grad is not None
    assert model.chroma.layers[0].weight_in.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(("images", "fragments"), [
    (torch.rand(2, 1, 6, 6), ["RGB", "found 1 channel"]),
    (torch.rand(2, 4, 6, 6), ["RGB", "found 4 channel"]),
    (torch.rand(1, 3, 2, 8), ["3x5", "found 2x8"]),
    (torch.full((1, 3, 6, 6), float("nan")), ["NaN"]),
    (torch.zeros(1, 3, 6, 6, dtype=torch.uint8), ["floating", "torch.uint8"]),
    (torch.rand(3, 6, 6), ["[B, C, H, W]"]),
    (np.zeros((1, 3, 6, 6), dtype=np.float32), ["torch.Tensor", "ndarray"]),
], ids=["grey", "rgba", "small", "nan", "uint8", "no_batch", "numpy"])
def test_bad_images_raise_value_error(images: object, fragments: list[str]) -> None:
    model = ColourRIDE(num_hiddens=4, num_components=2, num_scales=2, num_features=2, nb_size=5)
    for call in (model.log_prob_pixels, model.log_prob, model.sample, model.fit_preconditioner,
                 model.training_pairs):
        with pytest.raises(ValueError) as err:
            call(images)
        for fragment in fragments:
            assert fragment in str(err.value), f"{call.__name__}: {fragment!r} not in {str(err.value)!r}"
    with pytest.raises(ValueError, match=r"images\[0\] must be a torch.Tensor \[C, H, W\]"):
        model.fit_preconditioner([torch.rand(1, 3, 6, 6)])


def test_transform_rejects_wrong_channel_counts() -> None:
    for fn in (rgb_to_ycbcr, ycbcr_to_rgb):
        with pytest.raises(ValueError, match="found 1 channel"):
            fn(torch.rand(1, 1, 4, 4))
