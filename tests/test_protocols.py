"""Protocol arithmetic on hand-computable cases: tiles, units, the discrete bound, the -ln 64 Jacobian, the DC model."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ride import protocols as P
from ride.ensemble import TRANSFORMS
from ride.units import dequantize

# ---------------------------------------------------------------------------------------------- units


def test_unit_conversions_and_discrete_bound():
    assert P.nats_to_bits(math.log(2)) == pytest.approx(1.0)
    assert P.bits_to_nats(3.0) == pytest.approx(3 * math.log(2))
    assert P.bits_per_pixel_from_nats(10 * math.log(2), 5) == pytest.approx(2.0)
    assert P.discrete_bound_bits_per_pixel(3.75) == pytest.approx(4.25)
    with pytest.raises(ValueError, match="num_pixels"):
        P.bits_per_pixel_from_nats(1.0, 0)


def test_standard_error():
    values = torch.tensor([1.0, 2.0, 3.0, 4.0])
    expected = math.sqrt(((1.5**2 + 0.5**2) * 2) / 3) / 2  # sample std / sqrt(n)
    assert P.standard_error(values) == pytest.approx(expected)
    assert P._stderr_from_sums(4, 10.0, 30.0) == pytest.approx(expected)
    assert math.isnan(P.standard_error(torch.tensor([1.0])))


def test_image_seed_depends_on_the_run_seed_and_the_image_alone():
    images = [torch.randint(0, 256, (1, 6, 7), generator=torch.Generator().manual_seed(k), dtype=torch.uint8)
              for k in range(50)]
    assert P.image_seed(0, images[3]) == P.image_seed(0, images[3].clone())
    assert len({P.image_seed(s, image) for s in range(3) for image in images}) == 150
    # the same pixels in another shape are another image
    assert P.image_seed(0, images[0]) != P.image_seed(0, images[0].reshape(1, 7, 6))


# ---------------------------------------------------------------------------------------------- tiles


@pytest.mark.parametrize("height, width, count", [(64, 64, 1), (130, 200, 6), (63, 500, 0), (128, 64, 2)])
def test_tile_counting_drops_the_remainder(height, width, count):
    image = torch.arange(height * width).view(1, height, width)
    t = P.tiles(image, 64)
    assert t.shape == (count, 1, 64, 64)
    per_row = width // 64
    for k in range(count):
        i, j = divmod(k, per_row)
        assert torch.equal(t[k, 0], image[0, 64 * i:64 * i + 64, 64 * j:64 * j + 64])


def test_tiles_of_several_channels_and_small_sizes():
    image = torch.arange(3 * 5 * 7).view(3, 5, 7)
    t = P.tiles(image, 2)
    assert t.shape == (2 * 3, 3, 2, 2)
    assert torch.equal(t[4], image[:, 2:4, 2:4])
    with pytest.raises(ValueError, match=r"\[C, H, W\]"):
        P.tiles(image[0], 2)


class PixelValue(nn.Module):
    """ln p of each predicted pixel = its dequantised value (nats): hand-computable protocol results."""

    margin = (2, 2, 2)

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def log_prob_pixels(self, images: torch.Tensor) -> torch.Tensor:
        return images[:, 0, 2:, 2:-2].double()


def _images(seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (1, h, w), generator=gen, dtype=torch.uint8)
            for h, w in ((20, 30), (10, 10), (25, 11))]


def test_an_image_has_the_same_rate_alone_and_in_a_list():
    """The dequantisation noise comes from the image, not from its position: an image evaluated alone gets exactly
    the log-likelihood it gets in a list, in any order."""
    images = _images()

    def per_image(images: list[torch.Tensor]) -> torch.Tensor:
        rows = torch.zeros(len(images), 3, dtype=torch.float64)
        P.tile_sums(PixelValue(), images, tile_size=10, seed=7, batch_size=4, per_image=rows)
        return rows  # (num_tiles, num_pixels, sum ln p) per image

    together = per_image(images)
    for k, image in enumerate(images):
        assert torch.equal(per_image([image])[0], together[k])
    assert torch.equal(per_image(images[::-1]), together.flip(0))
    rate_alone = P.evaluate_tiles(PixelValue(), images[1:2], tile_size=10, seed=7).bits_per_pixel
    assert rate_alone == float(together[1, 2] / together[1, 1]) / math.log(2)


@pytest.mark.parametrize("ensemble", [False, True])
def test_evaluate_tiles_by_hand(ensemble):
    images = _images()
    result = P.evaluate_tiles(PixelValue(), images, tile_size=10, ensemble=ensemble, seed=7, batch_size=4)
    r = 2
    values = []
    for image in images:
        x = dequantize(image, torch.Generator().manual_seed(P.image_seed(7, image)))
        for tile in P.tiles(x, 10):
            counted = tile[0, r:, r:-r] if not ensemble else tile[0, r:-r, r:-r]
            values.append(counted.double().flatten())
    per_tile = torch.stack(values)  # tiles: 2*3 + 1 + 2*1 = 9
    assert result.num_tiles == 9
    assert result.pixels_per_tile == (6 * 6 if ensemble else 8 * 6)
    assert result.num_pixels == 9 * result.pixels_per_tile
    assert result.bits_per_pixel == pytest.approx(float(per_tile.mean()) / math.log(2), rel=1e-10)
    assert result.stderr == pytest.approx(P.standard_error(per_tile.mean(1) / math.log(2)), rel=1e-8)
    assert result.discrete_bound_bits_per_pixel == pytest.approx(8 - result.bits_per_pixel)


def test_evaluate_tiles_is_reproducible_and_independent_of_batching_and_sharding(tiny_ride):
    model = tiny_ride(nb_size=3)
    images = _images(1)
    ref = P.evaluate_tiles(model, images, tile_size=8, seed=3, batch_size=64)
    again = P.evaluate_tiles(model, images, tile_size=8, seed=3, batch_size=1)
    assert again.bits_per_pixel == pytest.approx(ref.bits_per_pixel, rel=1e-12)
    sums = sum(P.tile_sums(model, images, tile_size=8, seed=3, batch_size=2, shard=(r, 3)) for r in range(3))
    sharded = P.tile_result(sums, ref.pixels_per_tile, False)
    assert sharded.bits_per_pixel == pytest.approx(ref.bits_per_pixel, rel=1e-12)
    assert sharded.stderr == pytest.approx(ref.stderr, rel=1e-9)
    assert (sharded.num_tiles, sharded.num_pixels) == (ref.num_tiles, ref.num_pixels)
    other_seed = P.evaluate_tiles(model, images, tile_size=8, seed=4)
    assert other_seed.bits_per_pixel != ref.bits_per_pixel
    ens = P.evaluate_tiles(model, images, tile_size=8, seed=3, ensemble=True)
    assert ens.num_pixels == ref.num_tiles * 6 * 6
    reduced = P.evaluate_tiles(model, images, tile_size=8, seed=3, shard=(0, 2), reduce=lambda s: s + s)
    assert reduced.num_tiles % 2 == 0


def test_whole_image_sums_by_hand_and_by_shard():
    """Each image in one piece with the tile protocol's noise; images without a predicted pixel are left out."""
    images = [*_images(), torch.zeros(1, 2, 40, dtype=torch.uint8)]  # the last has fewer rows than the margin
    rows = torch.zeros(len(images), 3, dtype=torch.float64)
    sums = P.whole_image_sums(PixelValue(), images, seed=7, per_image=rows)
    counted = [dequantize(im, torch.Generator().manual_seed(P.image_seed(7, im)))[0, 2:, 2:-2].double()
               for im in images[:3]]
    rates = torch.stack([c.mean() for c in counted]) / math.log(2)
    assert sums[:2].tolist() == [3.0, float(sum(c.numel() for c in counted))]
    assert float(sums[2]) == pytest.approx(float(sum(c.sum() for c in counted)), rel=1e-12)
    assert sums[3:].tolist() == pytest.approx([float(rates.sum()), float(rates.square().sum())], rel=1e-12)
    assert rows[:3, 1].tolist() == [c.numel() for c in counted] and rows[3].tolist() == [0.0, 0.0, 0.0]
    assert rows[:, 2].sum() == pytest.approx(float(sums[2]), rel=1e-12)
    sharded = sum(P.whole_image_sums(PixelValue(), images, seed=7, shard=(r, 2)) for r in range(2))
    torch.testing.assert_close(sharded, sums, rtol=1e-12, atol=0)
    assert P.whole_image_sums(PixelValue(), images, seed=8)[2] != sums[2]
    with pytest.raises(ValueError, match="uint8"):
        P.whole_image_sums(PixelValue(), [torch.zeros(1, 64, 64)])


def test_evaluate_tiles_rejects_bad_images():
    with pytest.raises(ValueError, match="no 64x64 tile"):
        P.evaluate_tiles(PixelValue(), [torch.zeros(1, 40, 80, dtype=torch.uint8)])
    with pytest.raises(ValueError, match="no 64x64 tile"):
        P.evaluate_tiles(PixelValue(), [])
    with pytest.raises(ValueError, match="uint8"):
        P.evaluate_tiles(PixelValue(), [torch.zeros(1, 64, 64)])
    with pytest.raises(ValueError, match="shard"):
        P.evaluate_tiles(PixelValue(), [torch.zeros(1, 64, 64, dtype=torch.uint8)], shard=(2, 2))


# ---------------------------------------------------------------------------------------------- patches


def test_patches_to_63_and_back():
    x = torch.rand(5, 64, dtype=torch.float64)
    z, dc = P.patches_to_63(x)
    assert z.shape == (5, 63) and dc.shape == (5,)
    torch.testing.assert_close(dc, x.mean(1))
    torch.testing.assert_close(z, x[:, :63] - x.mean(1, keepdim=True))
    torch.testing.assert_close(P.patches_from_63(z, dc), x)
    with pytest.raises(ValueError, match=r"\[N, 64\]"):
        P.patches_to_63(torch.rand(5, 63))


def test_jacobian_of_the_63_dc_map_is_one_over_64():
    # the matrix of x -> (z_1..z_63, m) has |det| = 1/64, so ln p(x) = ln p(z, m) - ln 64
    eye = torch.eye(64, dtype=torch.float64)
    z, dc = P.patches_to_63(eye)  # rows are the images of the basis vectors
    jac = torch.cat([z, dc[:, None]], 1).T
    assert float(torch.linalg.det(jac).abs()) == pytest.approx(1 / 64, rel=1e-12)


class Gaussian(nn.Module):
    """N(mean, cov) with log_prob [N, D] -> [N] nats (float64)."""

    def __init__(self, mean: torch.Tensor, cov: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean.double())
        self.register_buffer("chol", torch.linalg.cholesky(cov.double()))
        self.dummy = nn.Parameter(torch.zeros(()))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        d = torch.linalg.solve_triangular(self.chol, (x.double() - self.mean).T, upper=False)
        return (-0.5 * d.square().sum(0) - self.chol.diagonal().log().sum()
                - 0.5 * x.shape[-1] * math.log(2 * math.pi))


class GaussianDC:
    def __init__(self, mean: float, var: float) -> None:
        self.mean, self.var = mean, var

    def log_prob(self, dc: torch.Tensor) -> torch.Tensor:
        return -0.5 * (dc.double() - self.mean) ** 2 / self.var - 0.5 * math.log(2 * math.pi * self.var)


def _exchangeable_gaussian(sigma2: float = 0.01, c: float = 0.02, mu: float = 0.45):
    """x ~ N(mu 1, sigma2 I + c 1 1^T): its centred part z and its mean m are independent Gaussians,
    z [63] ~ N(0, sigma2 H[:63, :63]) (H the centring matrix), m ~ N(mu, (sigma2 + 64 c) / 64)."""
    ones = torch.ones(64, dtype=torch.float64)
    cov = sigma2 * torch.eye(64, dtype=torch.float64) + c * torch.outer(ones, ones)
    centring = torch.eye(64, dtype=torch.float64) - torch.outer(ones, ones) / 64
    model63 = Gaussian(torch.zeros(63), sigma2 * centring[:63, :63])
    return mu * ones, cov, model63, GaussianDC(mu, (sigma2 + 64 * c) / 64)


def test_patches64_rate_equals_the_closed_form_gaussian_density():
    mean, cov, model63, dc_model = _exchangeable_gaussian()
    gen = torch.Generator().manual_seed(0)
    x = mean + torch.randn(500, 64, generator=gen, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
    exact = Gaussian(mean, cov).log_prob(x)  # ln p(x), nats per patch
    result = P.evaluate_patches64(model63, dc_model, x, batch_size=128)
    assert result.nats == pytest.approx(float(exact.mean()), rel=1e-10)
    assert result.bits_per_pixel == pytest.approx(float(exact.mean()) / (64 * math.log(2)), rel=1e-10)
    assert result.stderr == pytest.approx(P.standard_error(exact) / (64 * math.log(2)), rel=1e-8)
    assert result.num_patches == 500 and result.num_pixels == 500 * 64
    assert result.discrete_bound_bits_per_pixel == pytest.approx(8 - result.bits_per_pixel)
    r63 = P.evaluate_patches63(model63, x, batch_size=77)
    z, dc = P.patches_to_63(x)
    assert r63.nats == pytest.approx(float(model63.log_prob(z).mean()), rel=1e-10)
    assert r63.discrete_bound_bits_per_pixel is None
    # (L63 + L_DC - ln 64) / (64 ln 2) with the means of the parts
    l_dc = float(dc_model.log_prob(dc).mean())
    assert result.bits_per_pixel == pytest.approx((r63.nats + l_dc - math.log(64)) / (64 * math.log(2)), rel=1e-10)


def test_patch_sharding_sums_to_the_whole():
    _, _, model63, dc_model = _exchangeable_gaussian()
    x = 0.45 + 0.1 * torch.randn(101, 64, dtype=torch.float64)
    whole = P.patch_sums(model63, x, dc_model)
    parts = sum(P.patch_sums(model63, x, dc_model, batch_size=10, shard=(r, 4)) for r in range(4))
    torch.testing.assert_close(parts, whole)


def test_patch_transforms_have_unit_jacobian_and_ensemble_of_invariant_model_is_exact():
    for t in TRANSFORMS:
        jac = P.patch_transform_63(torch.eye(63, dtype=torch.float64), t).T
        assert float(torch.linalg.det(jac).abs()) == pytest.approx(1.0, rel=1e-10)
    _, _, model63, _ = _exchangeable_gaussian()  # permutation-invariant on the centred patches
    x = 0.45 + 0.1 * torch.randn(20, 64, dtype=torch.float64)
    z, _ = P.patches_to_63(x)
    torch.testing.assert_close(P.log_prob_63(model63, z, ensemble=True), model63.log_prob(z))
    assert P.evaluate_patches63(model63, x, ensemble=True).nats == pytest.approx(P.evaluate_patches63(model63, x).nats)


# ---------------------------------------------------------------------------------------------- DC model


def test_dc_model_is_normalised_and_fits_a_mixture():
    gen = torch.Generator().manual_seed(0)
    dc = torch.cat([0.2 + 0.03 * torch.randn(3000, generator=gen, dtype=torch.float64),
                    0.6 + 0.1 * torch.randn(7000, generator=gen, dtype=torch.float64)])
    model = P.DCModel.fit(dc, num_components=2)
    order = model.means.argsort()
    torch.testing.assert_close(model.means[order], torch.tensor([0.2, 0.6], dtype=torch.float64), atol=0.01, rtol=0)
    torch.testing.assert_close(model.weights[order], torch.tensor([0.3, 0.7], dtype=torch.float64), atol=0.02, rtol=0)
    big = P.DCModel.fit(dc, num_components=6)
    grid = torch.linspace(-1.0, 2.0, 30001, dtype=torch.float64)
    for m in (model, big):
        assert float(torch.trapezoid(m.log_prob(grid).exp(), grid)) == pytest.approx(1.0, abs=1e-6)
    assert float(big.log_prob(dc).mean()) >= float(model.log_prob(dc).mean()) - 1e-3
    samples = model.sample(20000, torch.Generator().manual_seed(1))
    assert float(samples.mean()) == pytest.approx(float(dc.mean()), abs=0.01)


def test_dc_model_round_trips_through_plain_data():
    model = P.DCModel.fit(torch.rand(1000, dtype=torch.float64), num_components=3)
    data = model.to_dict()
    assert data["format"] == "ride-dc-gmm" and data["version"] == 1
    assert all(isinstance(v, float) for v in data["means"])
    again = P.DCModel.from_dict(data)
    x = torch.linspace(0, 1, 11, dtype=torch.float64)
    torch.testing.assert_close(again.log_prob(x), model.log_prob(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="not a DC model"):
        P.DCModel.from_dict({"format": "something"})
    with pytest.raises(ValueError, match="version"):
        P.DCModel.from_dict({**data, "version": 99})
    with pytest.raises(ValueError, match="invalid DC model"):
        P.DCModel.from_dict({"format": "ride-dc-gmm", "version": 1})
    with pytest.raises(ValueError, match="sum"):
        P.DCModel([0.5, 0.2], [0.0, 1.0], [1.0, 1.0])
