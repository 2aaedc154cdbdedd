"""Ensembles over the 8 dihedral transforms: transforms, the common pixel set, alignment and the mixture."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ride import RIDE
from ride.ensemble import (
    IDENTITY,
    TRANSFORMS,
    aligned_log_prob_pixels,
    common_pixel_mask,
    ensemble_log_prob,
    predicted_mask,
)


def test_transforms_are_eight_distinct_permutations_with_inverses():
    x = torch.arange(2 * 3 * 5, dtype=torch.float64).view(2, 3, 5)  # non-square: transposes swap H and W
    images = set()
    for t in TRANSFORMS:
        y = t(x)
        assert sorted(y.flatten().tolist()) == sorted(x.flatten().tolist())
        assert torch.equal(t.inverse(y), x)
        images.add((tuple(y.shape), tuple(y.flatten().tolist())))
    assert len(TRANSFORMS) == 8 and len(images) == 8
    shapes = {t.name: tuple(t(x).shape[-2:]) for t in TRANSFORMS}
    assert shapes["identity"] == shapes["hflip"] == shapes["vflip"] == shapes["rot180"] == (3, 5)
    assert shapes["transpose"] == shapes["antitranspose"] == shapes["rot90"] == shapes["rot270"] == (5, 3)


def _box(height: int, width: int, r: int) -> torch.Tensor:
    mask = torch.zeros(height, width, dtype=torch.bool)
    mask[r:height - r, r:width - r] = True
    return mask


@pytest.mark.parametrize("nb_size, height, width, count", [(5, 64, 64, 60 * 60), (3, 64, 64, 62 * 62),
                                                           (3, 4, 5, 2 * 3), (5, 6, 9, 2 * 5), (5, 9, 6, 5 * 2)])
def test_common_pixel_mask_hand_counted(nb_size, height, width, count):
    r = (nb_size - 1) // 2
    mask = common_pixel_mask((r, r, r), height, width)
    assert mask.shape == (height, width)
    assert int(mask.sum()) == count
    assert torch.equal(mask, _box(height, width, r))
    # the model's own margin gives the same set
    assert torch.equal(common_pixel_mask(RIDE(nb_size=nb_size, num_hiddens=2).margin, height, width), mask)


def test_common_pixel_mask_of_an_asymmetric_margin_and_of_the_identity_alone():
    # margin (top 2, left 1, right 3): every side loses the largest margin, 3
    assert torch.equal(common_pixel_mask((2, 1, 3), 10, 12), _box(10, 12, 3))
    assert torch.equal(common_pixel_mask((2, 1, 3), 10, 12, (IDENTITY,)), predicted_mask((2, 1, 3), 10, 12))
    expected = torch.zeros(10, 12, dtype=torch.bool)
    expected[2:, 1:9] = True
    assert torch.equal(predicted_mask((2, 1, 3), 10, 12), expected)
    assert not common_pixel_mask((2, 2, 2), 4, 4).any()
    with pytest.raises(ValueError, match="model_margin"):
        common_pixel_mask((2, 2), 8, 8)


class PixelEcho(nn.Module):
    """A stand-in 'model' whose ln p at each predicted pixel is the pixel's own value: shows where values land."""

    margin = (2, 2, 2)

    def log_prob_pixels(self, images: torch.Tensor) -> torch.Tensor:
        return images[:, 0, 2:, 2:-2]


@pytest.mark.parametrize("t", TRANSFORMS, ids=lambda t: t.name)
def test_aligned_log_probs_land_on_their_original_pixels(t):
    images = torch.rand(2, 1, 7, 10, dtype=torch.float64)
    aligned = aligned_log_prob_pixels(PixelEcho(), images, t)
    assert aligned.shape == (2, 7, 10)
    predicted = ~aligned[0].isnan()
    h, w = t(torch.empty(7, 10)).shape
    assert torch.equal(predicted, t.inverse(predicted_mask((2, 2, 2), h, w)))
    assert torch.equal(aligned[:, predicted], images[:, 0][:, predicted])


def _invariant_ride(seed: int) -> RIDE:
    """num_layers=0 with zero predictors and features: every pixel has the same density whatever its context,
    so ln p(x) over any fixed pixel set is invariant under pixel permutations."""
    gen = torch.Generator().manual_seed(seed)
    model = RIDE(num_layers=0, nb_size=5, num_components=3, num_scales=2, num_features=4).double()
    with torch.no_grad():
        model.mcgsm.predictors.zero_()
        model.mcgsm.features.zero_()
        model.mcgsm.priors.copy_(torch.randn(3, 2, generator=gen, dtype=torch.float64))
        model.mcgsm.scales.copy_(torch.randn(3, 2, generator=gen, dtype=torch.float64))
        model.preconditioner.mean_out.fill_(0.4)
    return model


@pytest.mark.parametrize("height, width", [(12, 12), (11, 16)])
def test_ensemble_of_an_invariant_model_equals_the_model(height, width):
    model = _invariant_ride(0)
    images = torch.rand(3, 1, height, width, dtype=torch.float64)
    mask = common_pixel_mask(model.margin, height, width)
    r = 2
    single = model.log_prob_pixels(images)[:, mask[r:, r:-r]].sum(1)
    with torch.no_grad():
        ens = ensemble_log_prob(model, images)
    torch.testing.assert_close(ens, single, atol=1e-6, rtol=0)


def test_ensemble_of_a_general_model_is_a_mixture(tiny_ride, smooth_images):
    model = tiny_ride(nb_size=3)
    images = smooth_images(2, 1, 9, 12, seed=3)
    with torch.no_grad():
        ens = ensemble_log_prob(model, images)
        mask = common_pixel_mask(model.margin, 9, 12)
        per_t = torch.stack([aligned_log_prob_pixels(model, images, t)[:, mask].sum(1) for t in TRANSFORMS])
        # one transform alone: the model itself on the predicted set
        alone = ensemble_log_prob(model, images, (IDENTITY,))
    torch.testing.assert_close(ens, torch.logsumexp(per_t, 0) - math.log(8))
    assert bool((ens <= per_t.max(0).values + 1e-12).all())
    assert bool((ens >= per_t.max(0).values - math.log(8) - 1e-12).all())
    assert not torch.allclose(per_t[0], per_t[1])  # the test model is not invariant
    torch.testing.assert_close(alone, model.log_prob(images).double())


def test_ensemble_rejects_bad_input():
    model = _invariant_ride(0)
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        ensemble_log_prob(model, torch.rand(1, 8, 8))
    with pytest.raises(ValueError, match="no pixel"):
        ensemble_log_prob(model, torch.rand(1, 1, 4, 8, dtype=torch.float64))
