"""Tests for ride.sampling: recorded log-probabilities, masks, determinism, known Gaussian models, agreement of
the skewed-front and raster orders, and the causal order of the front schedule."""

from __future__ import annotations

import math

import pytest
import scipy.stats
import torch

from ride import RIDE
from ride.neighbourhood import Neighbourhood
from ride.sampling import front_schedule, raster_schedule

F64 = torch.float64
CPU = torch.device("cpu")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("order", ["front", "raster"])
@pytest.mark.parametrize(("num_layers", "nb_size", "shape"),
                         [(1, 3, (7, 8)), (2, 3, (6, 9)), (1, 5, (7, 9)), (0, 5, (6, 8)), (2, 3, (6, 4)),
                          (1, 3, (2, 8)), (1, 5, (3, 5))], ids=["l1", "l2", "l1nb5", "l0nb5", "l2narrow", "l1row",
                                                                 "l1single"])
def test_recorded_log_probs_equal_log_prob_pixels(tiny_ride, smooth_images, order, num_layers, nb_size,
                                                  shape) -> None:
    model = tiny_ride(num_layers=num_layers, nb_size=nb_size, seed=num_layers + nb_size)
    images = smooth_images(2, 1, *shape, seed=1)
    samples, log_probs = model.sample(images, generator=gen(0), return_log_prob=True, order=order)
    assert samples.shape == images.shape and samples.dtype == images.dtype
    expected = model.log_prob_pixels(samples).detach()
    assert log_probs.shape == expected.shape
    torch.testing.assert_close(log_probs, expected, atol=1e-10, rtol=1e-10)
    top, left, right = model.margin
    h, w = shape
    interior = torch.zeros(h, w, dtype=torch.bool)
    interior[top:, left : w - right] = True
    assert torch.equal(samples[..., ~interior], images[..., ~interior])  # the border is the boundary condition
    assert bool((samples[..., interior] != images[..., interior]).all())  # every predicted pixel was drawn


@pytest.mark.parametrize("order", [
    "front",
    "raster"])
@pytest.mark.parametrize(("nb_size", "width"), [(3, 3), (5, 5), (5, 6)])
def test_sampling_grids_narrower_than_the_front_skew(tiny_ride, smooth_images, order: str, nb_size: int,
                                                     width: int) -> None:
    model = tiny_ride(num_layers=1, nb_size=nb_size, seed=6)
    images = smooth_images(2, 1, 6, width, seed=6)
    samples, log_probs = model.sample(images, generator=gen(0), return_log_prob=True, order=order)
    torch.testing.assert_close(log_probs, model.log_prob_pixels(samples).detach(), atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("order", ["front", "raster"])
@pytest.mark.parametrize("per_image", [False, True])
def test_partial_mask(tiny_ride, smooth_images, order: str, per_image: bool) -> None:
    model = tiny_ride(num_layers=2, nb_size=3, seed=2)
    images = smooth_images(2, 1, 7, 8, seed=2)
    g = gen(5)
    mask = torch.rand((2, 7, 8) if per_image else (7, 8), generator=g) < 0.5
    mask[..., 0, :] = True  # border pixels in the mask are still never drawn
    samples, log_probs = model.sample(images, mask=mask, generator=gen(1), return_log_prob=True, order=order)
    torch.testing.assert_close(log_probs, model.log_prob_pixels(samples).detach(), atol=1e-10, rtol=1e-10)
    top, left, right = model.margin
    interior = torch.zeros(7, 8, dtype=torch.bool)
    interior[top:, left : 8 - right] = True
    drawn = (mask & interior).expand(2, 7, 8)[:, None]
    assert bool(drawn.any()) and bool((~drawn).any())
    assert torch.equal(samples[~drawn], images[~drawn])
    assert bool((samples[drawn] != images[drawn]).all())


def test_empty_mask_only_evaluates(tiny_ride, smooth_images) -> None:
    model = tiny_ride(num_layers=1, seed=3)
    images = smooth_images(2, 1, 6, 6, seed=3)
    samples, log_probs = model.sample(images, mask=torch.zeros(6, 6, dtype=torch.bool), return_log_prob=True)
    assert torch.equal(samples, images)
    torch.testing.assert_close(log_probs, model.log_prob_pixels(images).detach(), atol=1e-10, rtol=1e-10)


def test_multi_channel_recorded_log_probs(tiny_ride, smooth_images) -> None:
    model = tiny_ride(num_layers=1, num_channels=2, seed=4)
    images = smooth_images(2, 2, 6, 7, seed=4)
    samples, log_probs = model.sample(images, generator=gen(2), return_log_prob=True)
    torch.testing.assert_close(log_probs, model.log_prob_pixels(samples).detach(), atol=1e-10, rtol=1e-10)
    assert bool((samples[:, :, 1:, 1:-1] != images[:, :, 1:, 1:-1]).all())


@pytest.mark.parametrize("order", ["front", "raster"])
def test_determinism(tiny_ride, smooth_images, order: str) -> None:
    model = tiny_ride(num_layers=1, seed=5)
    images = smooth_images(2, 1, 6, 7, seed=5)
    a = model.sample(images, generator=gen(11), order=order)
    b = model.sample(images, generator=gen(11), order=order)
    c = model.sample(images, generator=gen(12), order=order)
    assert torch.equal(a, b)
    assert bool((a[..., 1:, 1:-1] != c[..., 1:, 1:-1]).all())
    # the initial values of the drawn pixels play no part (each pixel is read only after it is drawn)
    other = images.clone()
    other[..., 1:, 1:-1] = torch.rand(other[..., 1:, 1:-1].shape, generator=gen(13), dtype=F64)
    assert torch.equal(model.sample(other, generator=gen(11), order=order), a)
    torch.manual_seed(3)  # without a generator: torch's default RNG
    d = model.sample(images, order=order)
    torch.manual_seed(3)
    assert torch.equal(d, model.sample(images, order=order))


def gaussian_model(mean: float, std_tilde: float, residual_std: float, slope_left: float = 0.0) -> RIDE:
    """A RIDE whose conditionals are Gaussian: y = mean + slope_left * x_left + residual_std * std_tilde * eps.

    One component and one scale (the gate is trivial), zero MCGSM predictors, and a hand-set preconditioner
    (identity input whitening, predictor on the left neighbour, residual scale residual_std).
    """
    torch.manual_seed(0)
    model = RIDE(num_hiddens=3, num_components=1, num_scales=1, num_features=2, nb_size=3).double()
    pre = model.preconditioner
    with torch.no_grad():
        model.mcgsm.predictors.zero_()
        model.mcgsm.scales.fill_(-2 * math.log(std_tilde))
        pre.mean_out.fill_(mean)
        pre.predictor.zero_()
        pre.predictor[0, 3] = slope_left  # the inputs of nb_size 3: three above, then the left neighbour
        pre.colour_out.fill_(residual_std)
        pre.whiten_out.fill_(1 / residual_std)
        pre.log_jacobian.fill_(-math.log(residual_std))
    return model


@pytest.mark.parametrize("order", ["front", "raster"])
def test_fixed_gaussian_is_reproduced(order: str) -> None:
    model = gaussian_model(mean=0.3, std_tilde=1.5, residual_std=0.2)  # pixels ~ N(0.3, 0.3^2), i.i.d.
    images = torch.full((4, 1, 24, 26), 0.5, dtype=F64)
    samples, log_probs = model.sample(images, generator=gen(7), return_log_prob=True, order=order)
    values = samples[:, 0, 1:, 1:-1]  # the predicted grid
    n = values.numel()
    assert n == 4 * 23 * 24
    mean, std = float(values.mean()), float(values.std())
    assert abs(mean - 0.3) < 4 * 0.3 / math.sqrt(n)
    assert abs(std - 0.3) < 4 * 0.3 / math.sqrt(2 * n)
    assert scipy.stats.kstest(values.flatten().numpy(), "norm", args=(0.3, 0.3)).pvalue > 1e-3
    # no dependence between neighbours
    left, right = values[..., :-1].flatten(), values[..., 1:].flatten()
    assert abs(float(torch.corrcoef(torch.stack([left, right]))[0, 1])) < 4 / math.sqrt(left.numel())
    # the recorded densities are the Gaussian's, Jacobian included
    expected = scipy.stats.norm.logpdf(values.numpy(), 0.3, 0.3)
    torch.testing.assert_close(log_probs, torch.from_numpy(expected), atol=1e-10, rtol=1e-10)


def test_autoregressive_gaussian_is_reproduced() -> None:
    # y = 0.2 + 0.5 * x_left + 0.15 eps: sampling must invert the preconditioner with the current neighbourhood
    model = gaussian_model(mean=0.2, std_tilde=1.0, residual_std=0.15, slope_left=0.5)
    images = torch.full((6, 1, 20, 30), 0.4, dtype=F64)
    samples = model.sample(images, generator=gen(8))
    x_left = samples[:, 0, 1:, 1:-2].flatten()
    y = samples[:, 0, 1:, 2:-1].flatten()
    design = torch.stack([torch.ones_like(x_left), x_left], dim=1)
    coef = torch.linalg.lstsq(design, y[:, None]).solution[:, 0]
    resid_std = float((y - design @ coef).std())
    n = y.numel()
    slope_se = 0.15 / (float(x_left.std()) * math.sqrt(n))
    assert abs(float(coef[1]) - 0.5) < 5 * slope_se
    assert abs(resid_std - 0.15) < 5 * 0.15 / math.sqrt(2 * n)


def test_front_and_raster_orders_sample_the_same_distribution(tiny_ride, smooth_images) -> None:
    # strong spatial dependencies (large LSTM weights), a 3 x 3 predicted grid, many images in one batch
    model = tiny_ride(num_layers=2, seed=9)
    images = smooth_images(1, 1, 4, 5, seed=9).expand(3000, -1, -1, -1).contiguous()
    images[:, 0, 1:, 1:-1] = 1.5  # initial values of the drawn pixels far off: reading one before it is drawn shows
    front = model.sample(images, generator=gen(21), order="front")[:, 0, 1:, 1:-1].flatten(1)  # (N, 9)
    raster = model.sample(images, generator=gen(22), order="raster")[:, 0, 1:, 1:-1].flatten(1)
    n = front.shape[0]
    se = ((front.var(0) + raster.var(0)) / n).sqrt()
    assert bool(((front.mean(0) - raster.mean(0)).abs() < 5 * se).all())
    ratio = front.std(0) / raster.std(0)
    assert bool(((ratio - 1).abs() < 5 / math.sqrt(n)).all())
    for k in (0, 4, 8):
        assert scipy.stats.ks_2samp(front[:, k].numpy(), raster[:, k].numpy()).pvalue > 1e-4
    # the joint structure too: the correlation of the last pixel with its left neighbour
    corr_f = float(torch.corrcoef(front[:, 7:9].T)[0, 1])
    corr_r = float(torch.corrcoef(raster[:, 7:9].T)[0, 1])
    assert abs(corr_f - corr_r) < 5 * (1 - corr_f**2) / math.sqrt(n) + 0.02


def schedule_steps(schedule: list[tuple[torch.Tensor, torch.Tensor]], height: int, width: int) -> torch.Tensor:
    """long [H, W]: the step at which each cell is visited; asserts every cell is visited exactly once."""
    step = torch.full((height, width), -1, dtype=torch.long)
    for t, (rows, cols) in enumerate(schedule):
        assert rows.shape == cols.shape
        for i, j in zip(rows.tolist(), cols.tolist(), strict=True):
            assert step[i, j] == -1, f"cell {(i, j)} visited twice"
            step[i, j] = t
    assert bool((step >= 0).all()), "some cell is never visited"
    return step


NEIGHBOURHOODS = {
    "nb3": Neighbourhood.square(3),
    "nb5": Neighbourhood.square(5),
    "nb9": Neighbourhood.square(9),
    # a window reaching 3 columns right in the row above, predicted pixel at column 1
    "right3": Neighbourhood(torch.tensor([[0, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool), 1),
}


@pytest.mark.parametrize("name", list(NEIGHBOURHOODS))
@pytest.mark.parametrize("grid", [(5, 7), (1, 6), (6, 1), (4, 4), (7, 2)], ids=lambda g: f"{g[0]}x{g[1]}")
def test_front_schedule_is_causal(name: str, grid: tuple[int, int]) -> None:
    nb = NEIGHBOURHOODS[name]
    height, width = grid
    schedule = front_schedule(height, width, nb.right, CPU)
    if width > nb.right:  # every step of the front holds a cell
        assert len(schedule) == (nb.right + 1) * (height - 1) + width
        assert all(rows.numel() > 0 for rows, _ in schedule)
    else:
        assert len(schedule) <= (nb.right + 1) * (height - 1) + width
    step = schedule_steps(schedule, height, width)
    offsets = nb.offsets().tolist() + [[-1, 0], [0, -1]]  # the window's inputs and both LSTM neighbours
    for i in range(height):
        for j in range(width):
            for dr, dc in offsets:
                k, m = i + dr, j + dc
                if 0 <= k < height and 0 <= m < width:
                    assert step[k, m] < step[i, j], f"{name}: input {(k, m)} not before {(i, j)}"
    # the front is as parallel as the window allows: the cell up-right at the window's reach is one step before
    if height > 1 and width > nb.right:
        assert int(step[1, 0] - step[0, nb.right]) == 1


def test_plain_anti_diagonals_would_not_be_causal() -> None:
    # the check above can fail: a front t = i + j violates the nb_size 5 window (inputs up to 2 columns right)
    nb = Neighbourhood.square(5)
    step = schedule_steps(front_schedule(4, 6, 0, CPU), 4, 6)
    i, j = 1, 1
    assert any(step[i + dr, j + dc] >= step[i, j] for dr, dc in nb.offsets().tolist()
               if 0 <= i + dr < 4 and 0 <= j + dc < 6)


def test_raster_schedule_order() -> None:
    schedule = raster_schedule(3, 4, CPU)
    assert [(int(r), int(c)) for r, c in schedule] == [(i, j) for i in range(3) for j in range(4)]


def mask_cases() -> list[tuple[str, object, str]]:
    return [
        ("too_tall", torch.ones(7, 6, dtype=torch.bool), "(7, 6)"),
        ("transposed", torch.ones(5, 6, dtype=torch.bool), "(5, 6)"),
        ("batch_mismatch", torch.ones(3, 6, 5, dtype=torch.bool), "(3, 6, 5)"),
        ("extra_axis", torch.ones(6, 5, 1, dtype=torch.bool), "(6, 5, 1)"),
        ("channel_axis", torch.ones(2, 1, 6, 5, dtype=torch.bool), "(2, 1, 6, 5)"),
        ("list", [[True] * 5] * 6, "list"),
        ("numpy", torch.ones(6, 5, dtype=torch.bool).numpy(), "ndarray"),
    ]


@pytest.mark.parametrize(("case", "mask", "found"), mask_cases(), ids=[c[0] for c in mask_cases()])
def test_bad_masks_raise_value_error(tiny_ride, smooth_images, case: str, mask: object, found: str) -> None:
    model = tiny_ride(fit=False)
    images = smooth_images(2, 1, 6, 5, seed=0)
    with pytest.raises(ValueError, match="mask") as err:
        model.sample(images, mask=mask)
    assert found in str(err.value) and "(6, 5)" in str(err.value)


@pytest.mark.parametrize(("num_layers", "num_channels", "nb_size", "shape"),
                         [(1, 1, 3, (7, 8)), (2, 1, 5, (9, 11)), (0, 1, 5, (6, 8)), (1, 2, 3, (6, 7)),
                          (2, 1, 5, (3, 5)), (1, 1, 5, (6, 5))],
                         ids=["l1", "l2nb5", "l0", "two_channels", "one_row", "narrow"])
@pytest.mark.parametrize("masked", [False, True])
def test_fast_front_equals_the_reference_loop(tiny_ride, smooth_images, num_layers, num_channels, nb_size, shape,
                                              masked) -> None:
    # SkewedFront (folded weights, ring of states) against the plain front loop: same draws, same log-densities
    model = tiny_ride(num_layers=num_layers, num_channels=num_channels, nb_size=nb_size, seed=nb_size + num_layers)
    images = smooth_images(2, num_channels, *shape, seed=4)
    mask = torch.rand(2, *shape, generator=gen(3)) < 0.5 if masked else None
    fast, lp_fast = model.sample(images, mask=mask, generator=gen(1), return_log_prob=True, order="front")
    ref, lp_ref = model.sample(images, mask=mask, generator=gen(1), return_log_prob=True, order="front_reference")
    torch.testing.assert_close(fast, ref, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(lp_fast, lp_ref, atol=1e-10, rtol=1e-10)


def test_fast_front_float32_matches_the_reference(tiny_ride, smooth_images) -> None:
    model = tiny_ride(num_layers=2, nb_size=5, seed=8).float()
    images = smooth_images(1, 1, 12, 14, seed=8).float()
    fast = model.sample(images, generator=gen(2), order="front")
    ref = model.sample(images, generator=gen(2), order="front_reference")
    torch.testing.assert_close(fast, ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("order", ["front", "front_reference", "raster"])
def test_progress_callback(tiny_ride, smooth_images, order: str) -> None:
    from ride.sampling import ancestral_sample

    model = tiny_ride(num_layers=1, seed=1)
    images = smooth_images(2, 1, 6, 7, seed=1)
    calls: list[tuple[int, int]] = []
    ancestral_sample(model, images, generator=gen(0), order=order, progress=lambda d, t: calls.append((d, t)))
    total = 5 * 5 if order == "raster" else 2 * (5 - 1) + 5  # the 5x5 grid: pixels, or fronts of skew 2
    assert calls == [(k, total) for k in range(1, total + 1)]


def test_unknown_order_is_refused(tiny_ride, smooth_images) -> None:
    with pytest.raises(ValueError, match="front_reference"):
        tiny_ride().sample(smooth_images(1, 1, 5, 5, seed=0), order="diagonal")
