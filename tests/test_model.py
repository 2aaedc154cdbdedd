"""Tests for ride.model: exact gradients, causality, normalisation of every conditional, the two spatial LSTM
implementations, the MCGSM baseline (num_layers=0), several channels, fitting helpers and input errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from ride import RIDE, RIDEConfig
from ride.neighbourhood import extract_pairs

F64 = torch.float64


class LogProb(nn.Module):
    """model.log_prob behind a forward, so torch.func.functional_call can swap every parameter."""

    def __init__(self, model: RIDE) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.log_prob(images)


def test_config_defaults_and_validation() -> None:
    model = RIDE()
    assert model.config == RIDEConfig(1, 64, 1, 32, 4, 32, 5)
    assert model.margin == (2, 2, 2)
    assert RIDE(nb_size=9, num_layers=0).margin == (4, 4, 4)
    for kwargs, found in [({"num_layers": -1}, "-1"), ({"nb_size": 4}, "4"), ({"num_hiddens": 0}, "0"),
                          ({"num_components": 2.0}, "2.0"), ({"num_channels": True}, "True"),
                          ({"nb_size": 1}, "1"), ({"cell_clip": 0.0}, "0.0"), ({"cell_clip": float("nan")}, "nan"),
                          ({"cell_clip": True}, "True"), ({"cell_clip": "10"}, "'10'")]:
        with pytest.raises(ValueError, match=next(iter(kwargs))) as err:
            RIDE(**kwargs)
        assert found in str(err.value)


def test_the_configs_cell_clip_reaches_every_path(tiny_ride, smooth_images, tmp_path) -> None:
    """RIDEConfig.cell_clip: the sweep, the raster reference, the sampler's front and a saved copy all clip the cells
    there, so the clipped model is one normalised density whatever computes it."""
    from dataclasses import asdict

    import ride

    model = tiny_ride(num_layers=2, nb_size=3, seed=5)
    clipped = RIDE(**{**asdict(model.config), "cell_clip": 0.3}).double()
    clipped.load_state_dict(model.state_dict())
    assert [layer.cell_clip for layer in clipped.layers] == [0.3, 0.3]
    images = smooth_images(2, 1, 9, 10, seed=6)
    lp = clipped.log_prob_pixels(images)
    assert not torch.allclose(lp, model.log_prob_pixels(images)), "the clip was never hit: the test would not test it"
    torch.testing.assert_close(clipped.log_prob_pixels(images, impl="raster"), lp, rtol=1e-10, atol=1e-12)
    drawn, lp_drawn = clipped.sample(images, generator=torch.Generator().manual_seed(1), return_log_prob=True)
    torch.testing.assert_close(lp_drawn, clipped.log_prob_pixels(drawn), rtol=1e-9, atol=1e-10)
    ride.save(clipped, tmp_path / "clipped.pt")
    again = ride.load(tmp_path / "clipped.pt")
    assert again.config.cell_clip == 0.3
    torch.testing.assert_close(again.log_prob_pixels(images), lp, rtol=0, atol=0)


@pytest.mark.parametrize("num_layers", [0, 1, 2])
def test_gradcheck_log_prob_wrt_images_and_parameters(tiny_ride, smooth_images, num_layers: int) -> None:
    model = tiny_ride(num_layers=num_layers, num_hiddens=3, num_components=2, num_scales=2, num_features=2)
    assert abs(float(model.preconditioner.log_jacobian)) > 1  # fitted, far from the identity
    images = smooth_images(2, 1, 4, 5, seed=3).requires_grad_(True)
    assert torch.autograd.gradcheck(model.log_prob, (images,), eps=1e-6, atol=1e-6)

    wrapper = LogProb(model)
    names = [name for name, _ in wrapper.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in wrapper.parameters())

    def log_prob(*values: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(wrapper, dict(zip(names, values, strict=True)), (images.detach(),))

    assert torch.autograd.gradcheck(log_prob, params, eps=1e-6, atol=1e-6)


def raster_later(i: int, j: int, height: int, width: int) -> torch.Tensor:
    """bool [H, W]: pixels after (i, j) in raster order."""
    order = torch.arange(height * width).view(height, width)
    return order > i * width + j


@pytest.mark.parametrize(("num_layers", "num_channels", "impl"),
                         [(1, 1, "sweep"), (2, 1, "sweep"), (1, 1, "raster"), (2, 2, "raster"), (1, 2, "sweep"),
                          (0, 1, "sweep")])
def test_causality_via_gradients(tiny_ride, smooth_images, num_layers: int, num_channels: int, impl: str) -> None:
    model = tiny_ride(num_layers=num_layers, num_channels=num_channels, seed=num_layers)
    height, width = 6, 7
    images = smooth_images(1, num_channels, height, width, seed=4)
    jac = torch.autograd.functional.jacobian(lambda x: model.log_prob_pixels(x, impl=impl)[0], images)
    hp, wp = model.neighbourhood.grid_shape(height, width)
    top, left, _ = model.margin
    jac = jac.view(hp, wp, num_channels, height, width).abs().sum(2)  # (Hp, Wp, H, W), channels pooled
    for p in range(hp):
        for q in range(wp):
            i, j = p + top, q + left  # the pixel that element [p, q] belongs to
            dep = jac[p, q]
            assert float(dep[i, j]) > 0, f"ln p of pixel {(i, j)} does not depend on the pixel itself"
            later = dep[raster_later(i, j, height, width)]
            assert torch.equal(later, torch.zeros_like(later)), f"pixel {(i, j)} depends on later pixels"
            earlier = dep.clone()
            earlier[i, j] = 0
            assert float(earlier.sum()) > 0, f"pixel {(i, j)} depends on no earlier pixel"
    # the recurrence reaches beyond the window: the last pixel depends on the top-left corner of the image
    # (outside its 2 x 3 window); the MCGSM baseline does not
    last = float(jac[hp - 1, wp - 1, 0, 0])
    assert (last > 0) if num_layers > 0 else (last == 0)


@pytest.mark.parametrize("num_layers", [1, 2])
def test_each_conditional_integrates_to_one(tiny_ride, smooth_images, num_layers: int) -> None:
    model = tiny_ride(num_layers=num_layers, seed=10 + num_layers)
    pre = model.preconditioner
    assert float(pre.log_jacobian) > 2  # residual std well below 1: without the Jacobian the test fails
    base = smooth_images(1, 1, 5, 6, seed=5)
    top, left, _ = model.margin
    inputs, _ = extract_pairs(base, model.neighbourhood)
    t = torch.linspace(-30, 30, 6001, dtype=F64)  # in units of the residual std
    for i, j in [(1, 1), (3, 2), (4, 4)]:
        # the grid is centred on the linear prediction and scaled by the residual std (preconditioner)
        x_tilde = pre.whiten_inputs(inputs[0, i - top, j - left])
        values = pre.inverse(x_tilde.expand(t.numel(), -1), t[:, None])[:, 0]
        batch = base.repeat(t.numel(), 1, 1, 1)
        batch[:, 0, i, j] = values
        with torch.no_grad():
            density = model.log_prob_pixels(batch)[:, i - top, j - left].exp()
        total = np.trapezoid(density.numpy(), values.numpy())
        assert abs(total - 1) < 1e-4, f"pixel {(i, j)}: integral {total}"
        assert float(density[0] + density[-1]) < 1e-8  # the grid covers the tails


def test_two_channel_conditional_integrates_to_one(tiny_ride, smooth_images) -> None:
    # both channels of a pixel are modelled jointly; the 2-D Jacobian (a full matrix) must be included
    model = tiny_ride(num_layers=1, num_channels=2, seed=20)
    pre = model.preconditioner
    assert float(pre.log_jacobian) > 4
    assert abs(float(pre.colour_out[0, 1])) > 1e-3  # correlated residuals: a non-diagonal Jacobian
    base = smooth_images(1, 2, 2, 3, seed=6)  # exactly the window: one predicted pixel at (1, 1)
    inputs, _ = extract_pairs(base, model.neighbourhood)
    x_tilde = pre.whiten_inputs(inputs[0, 0, 0])
    t = torch.linspace(-14, 14, 351, dtype=F64)
    t1, t2 = torch.meshgrid(t, t, indexing="ij")
    y_tilde = torch.stack([t1.flatten(), t2.flatten()], dim=1)
    values = pre.inverse(x_tilde.expand(y_tilde.shape[0], -1), y_tilde)  # (N, 2) pixel values
    batch = base.repeat(y_tilde.shape[0], 1, 1, 1)
    batch[:, :, 1, 1] = values
    with torch.no_grad():
        density = model.log_prob_pixels(batch)[:, 0, 0].exp().view(t.numel(), t.numel())
    # integrate over t, then change variables: dy = |det colour_out| dt
    total = np.trapezoid(np.trapezoid(density.numpy(), t.numpy(), axis=1), t.numpy())
    total *= float(torch.linalg.det(pre.colour_out).abs())
    assert abs(total - 1) < 1e-3, total


@pytest.mark.parametrize("num_layers", [1, 2])
def test_sweep_equals_raster(tiny_ride, smooth_images, num_layers: int) -> None:
    model = tiny_ride(num_layers=num_layers, nb_size=5, seed=30 + num_layers)
    images = smooth_images(2, 1, 7, 9, seed=7).requires_grad_(True)
    sweep = model.log_prob_pixels(images, impl="sweep")
    raster = model.log_prob_pixels(images, impl="raster")
    assert sweep.shape == (2, 5, 5)
    torch.testing.assert_close(sweep, raster, atol=1e-10, rtol=1e-12)
    g_sweep = torch.autograd.grad(sweep.sum(), [images, *model.parameters()])
    g_raster = torch.autograd.grad(raster.sum(), [images, *model.parameters()])
    for a, b in zip(g_sweep, g_raster, strict=True):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9)
    assert torch.equal(model.log_prob(images), sweep.flatten(1).sum(1))
    with pytest.raises(ValueError, match="'loop'"):
        model.log_prob_pixels(images, impl="loop")


def test_mcgsm_baseline_is_mcgsm_on_whitened_window(tiny_ride, smooth_images) -> None:
    """num_layers=0: ln p(x_ij | .) = MCGSM(y~ | x~) + log-Jacobian, with the window read by hand (nb_size 5)."""
    model = tiny_ride(num_layers=0, nb_size=5, seed=40)
    images = smooth_images(2, 1, 6, 8, seed=8)
    with torch.no_grad():
        lp = model.log_prob_pixels(images)
    assert lp.shape == (2, 4, 4)
    pre = model.preconditioner
    for b in range(2):
        for i in range(2, 6):
            for j in range(2, 6):
                img = images[b, 0]
                window = torch.cat([img[i - 2 : i, j - 2 : j + 3].flatten(), img[i, j - 2 : j]])  # 12 inputs
                with torch.no_grad():
                    x_tilde, y_tilde = pre(window[None], img[i, j].view(1, 1))
                    expected = model.mcgsm.log_prob(x_tilde, y_tilde)[0] + pre.log_jacobian
                assert abs(float(lp[b, i - 2, j - 2] - expected)) < 1e-12, (b, i, j)
    assert torch.allclose(model.log_prob(images), lp.flatten(1).sum(1))
    samples = model.sample(images, generator=torch.Generator().manual_seed(0))
    assert samples.shape == images.shape and torch.isfinite(samples).all()


@pytest.mark.parametrize("num_channels", [2, 3])
def test_multi_channel_shapes(tiny_ride, smooth_images, num_channels: int) -> None:
    model = tiny_ride(num_layers=1, num_channels=num_channels, nb_size=5, seed=50)
    assert model.preconditioner.dim_in == 12 * num_channels
    images = smooth_images(3, num_channels, 6, 9, seed=9)
    lp = model.log_prob_pixels(images)
    assert lp.shape == (3, 4, 5) and torch.isfinite(lp).all()
    assert model.log_prob(images).shape == (3,)
    samples = model.sample(images, generator=torch.Generator().manual_seed(1))
    assert samples.shape == images.shape
    inputs, outputs = model.training_pairs(images, num_pairs=7, generator=torch.Generator().manual_seed(2))
    assert inputs.shape == (7, 12 * num_channels) and outputs.shape == (7, num_channels)


def test_training_pairs_and_fit_preconditioner(smooth_images) -> None:
    model = RIDE(num_hiddens=4, num_components=2, num_scales=2, num_features=2, nb_size=3).double()
    images = smooth_images(2, 1, 6, 7, seed=10)
    all_in, all_out = model.training_pairs(images)
    ref_in, ref_out = extract_pairs(images, model.neighbourhood)
    assert torch.equal(all_in, ref_in.reshape(-1, 4)) and torch.equal(all_out, ref_out.reshape(-1, 1))
    some_in, some_out = model.training_pairs(images, num_pairs=9, generator=torch.Generator().manual_seed(3))
    again_in, _ = model.training_pairs(images, num_pairs=9, generator=torch.Generator().manual_seed(3))
    assert some_in.shape == (9, 4) and torch.equal(some_in, again_in)
    # every drawn pair is a real pair, drawn without replacement
    rows = [int(((all_in == row).all(1) & (all_out[:, 0] == out)).nonzero()[0]) for row, out in
            zip(some_in, some_out[:, 0], strict=True)]
    assert len(set(rows)) == 9
    assert model.training_pairs(images, num_pairs=10_000)[0].shape == (50, 4)  # fewer exist: all of them
    # a list of images of different sizes
    listed_in, _ = model.training_pairs([images[0], smooth_images(1, 1, 3, 4, seed=11)[0]])
    assert listed_in.shape == (25 + 4, 4)
    assert float(model.preconditioner.log_jacobian) == 0
    model.fit_preconditioner(smooth_images(4, 1, 12, 12, seed=12), num_pairs=300,
                             generator=torch.Generator().manual_seed(4))
    assert float(model.preconditioner.log_jacobian) > 2


# ---------------------------------------------------------------------- input errors

def bad_inputs() -> list[tuple[str, object, list[str]]]:
    """(case, images, fragments the message must contain) for a 1-channel model with nb_size 5 (3 x 5 window)."""
    nan = torch.rand(1, 1, 6, 6)
    nan[0, 0, 3, 3] = float("nan")
    inf = torch.rand(1, 1, 6, 6)
    inf[0, 0, 0, 0] = float("inf")
    return [
        ("rank3", torch.rand(1, 6, 6), ["[B, C, H, W]", "3 dimensions", "(1, 6, 6)"]),
        ("rank5", torch.rand(1, 1, 1, 6, 6), ["[B, C, H, W]", "5 dimensions"]),
        ("channels", torch.rand(2, 3, 6, 6), ["1 channel", "found 3"]),
        ("too_small_h", torch.rand(1, 1, 2, 8), ["3x5", "found 2x8"]),
        ("too_small_w", torch.rand(1, 1, 8, 4), ["3x5", "found 8x4"]),
        ("nan", nan, ["NaN"]),
        ("inf", inf, ["infinite"]),
        ("uint8", torch.zeros(1, 1, 6, 6, dtype=torch.uint8), ["floating", "torch.uint8"]),
        ("int64", torch.zeros(1, 1, 6, 6, dtype=torch.long), ["floating", "torch.int64"]),
        ("numpy", np.zeros((1, 1, 6, 6), dtype=np.float32), ["torch.Tensor", "ndarray"]),
        ("list", [[[[0.5] * 6] * 6]], ["torch.Tensor", "list"]),
        ("tuple", (torch.rand(1, 1, 6, 6),), ["torch.Tensor", "tuple"]),
        ("empty_batch", torch.rand(0, 1, 6, 6), ["batch size 0"]),
    ]


@pytest.mark.parametrize(("case", "images", "fragments"), bad_inputs(), ids=[c[0] for c in bad_inputs()])
def test_bad_images_raise_value_error(case: str, images: object, fragments: list[str]) -> None:
    model = RIDE(num_hiddens=4, num_components=2, num_scales=2, num_features=2, nb_size=5)
    calls = [model.log_prob_pixels, model.log_prob, model.sample]
    if not isinstance(images, (list, tuple)):  # the fitting helpers also take a sequence of [C, H, W] images
        calls += [model.fit_preconditioner, model.training_pairs]
    for call in calls:
        with pytest.raises(ValueError) as err:
            call(images)
        for fragment in fragments:
            assert fragment in str(err.value), f"{call.__name__}: {fragment!r} not in {str(err.value)!r}"


def test_training_pairs_rejects_bad_list_items() -> None:
    model = RIDE(num_hiddens=4, num_components=2, num_scales=2, num_features=2, nb_size=3)
    with pytest.raises(ValueError, match="3 channel|found 3"):
        model.training_pairs([torch.rand(3, 5, 5)])
    with pytest.raises(ValueError, match="ndarray"):
        model.training_pairs([np.zeros((1, 5, 5), dtype=np.float32)])
    with pytest.raises(ValueError, match="2x2"):
        model.fit_preconditioner([torch.rand(1, 5, 5), torch.rand(1, 2, 2)])


def test_training_pairs_rejects_non_tensor_sequences() -> None:
    model = RIDE(num_hiddens=4, num_components=2, num_scales=2, num_features=2, nb_size=3)
    with pytest.raises(ValueError, match="list"):
        model.training_pairs([[[0.5] * 5] * 5])


def test_sample_rejects_bad_order(tiny_ride, smooth_images) -> None:
    model = tiny_ride()
    with pytest.raises(ValueError, match="'zigzag'"):
        model.sample(smooth_images(1, 1, 4, 4, seed=0), order="zigzag")


def test_float16_images_follow_float32_model(smooth_images) -> None:
    torch.manual_seed(0)
    model = RIDE(num_hiddens=4, num_components=2, num_scales=2, num_features=2, nb_size=3)
    images = smooth_images(1, 1, 5, 5, seed=13, dtype=torch.float32)
    half = model.log_prob(images.half())
    assert torch.isfinite(half).all()
    torch.testing.assert_close(half, model.log_prob(images.half().float()))


def test_float64_images_on_float32_model_work_or_raise_value_error(smooth_images) -> None:
    torch.manual_seed(0)
    model = RIDE(num_hiddens=4, num_components=2, num_scales=2, num_features=2, nb_size=3)
    images = smooth_images(1, 1, 5, 5, seed=13)
    try:
        lp = model.log_prob(images)
    except ValueError as err:
        assert "float64" in str(err) and "float32" in str(err)
    else:
        torch.testing.assert_close(lp.double(), model.log_prob(images.float()).double(), atol=1e-4, rtol=1e-5)


def test_discrete_pixel_probabilities_sum_to_one_and_match_density_times_bin_width() -> None:
    gen = torch.Generator().manual_seed(8)
    model = RIDE(num_hiddens=4, num_components=3, num_scales=2, num_features=3, nb_size=3)
    values = torch.randint(0, 256, (2, 1, 6, 7), generator=gen, dtype=torch.uint8)
    values[0, 0, 3, 3] = 0  # the open-ended first and last bins are used
    values[1, 0, 4, 2] = 255
    model.fit_preconditioner((values.float() + torch.rand(values.shape, generator=gen)) / 256)
    log_p = model.log_prob_discrete_pixels(values)
    assert log_p.shape == (2, 5, 5) and bool((log_p <= 0).all())
    # Vary one pixel over all 256 values: the probabilities of its conditional sum to 1.
    i, j = 3, 4
    grid = values[:1].repeat(256, 1, 1, 1)
    grid[:, 0, i, j] = torch.arange(256, dtype=torch.uint8)
    total = model.log_prob_discrete_pixels(grid)[:, i - 1, j - 1].detach().double().exp().sum()
    assert abs(float(total) - 1) < 1e-4
    # The bin probability is the density integrated over the bin: close to density * 1/256 for a smooth density.
    centre = (values.float() + 0.5) / 256
    approx = model.log_prob_pixels(centre) - math.log(256)
    inner = (values[:, :, 1:, 1:-1] > 0) & (values[:, :, 1:, 1:-1] < 255)
    torch.testing.assert_close(log_p[inner[:, 0]], approx[inner[:, 0]], atol=0.05, rtol=0)


def test_discrete_pixel_probabilities_reject_float_values() -> None:
    model = RIDE(num_hiddens=4, num_components=2, num_scales=2, num_features=2, nb_size=3)
    with pytest.raises(ValueError, match="uint8"):
        model.log_prob_discrete_pixels(torch.rand(1, 1, 5, 5))
