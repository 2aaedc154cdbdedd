"""`ride.growth.widen`: a wider model with exactly the same density, whose new units then learn."""

from __future__ import annotations

import pytest
import torch

import ride
from ride.growth import widen, with_cell_clip
from ride.patch_ride import PatchRIDE


def trained_like(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """`model` with every parameter and whitening buffer randomised (no zeros that could hide a copying bug)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return model


@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_widened_ride_has_the_same_density(num_layers):
    torch.manual_seed(1)
    base = trained_like(ride.RIDE(num_hiddens=5, num_layers=num_layers, num_components=3, num_features=4,
                                  nb_size=3)).double()
    x = torch.rand(3, 1, 9, 11, dtype=torch.float64)
    wide = widen(base, 9)
    assert wide.config.num_hiddens == 9 and wide.config.num_layers == num_layers
    assert all(layer.hidden_size == 9 for layer in wide.layers)
    torch.testing.assert_close(wide.log_prob_pixels(x), base.log_prob_pixels(x), rtol=0, atol=1e-12)
    torch.testing.assert_close(wide.log_prob_pixels(x, impl="raster"), base.log_prob_pixels(x), rtol=0, atol=1e-12)
    # the new units are not idle: their states are non-zero and reach the loss through their outgoing weights
    loss = -wide.log_prob_pixels(x).mean()
    loss.backward()
    assert wide.mcgsm.features.grad[5:].abs().max() > 1e-6
    assert wide.mcgsm.predictors.grad[5:].abs().max() > 1e-6
    assert wide.layers[0].weight_rec.grad.abs().max() > 1e-6


def test_widened_model_learns_beyond_the_base():
    """A few steps of training change the widened model's density (the zero weights do not stay zero)."""
    torch.manual_seed(2)
    base = trained_like(ride.RIDE(num_hiddens=4, num_components=2, num_features=3, nb_size=3))
    wide = widen(base, 8)
    x = torch.rand(4, 1, 8, 8)
    opt = torch.optim.Adam(wide.parameters(), lr=1e-2)
    before = -wide.log_prob_pixels(x).mean().item()
    for _ in range(20):
        opt.zero_grad()
        loss = -wide.log_prob_pixels(x).mean()
        loss.backward()
        opt.step()
    assert loss.item() < before - 1e-3
    assert wide.mcgsm.features[4:].abs().max() > 1e-3 and wide.layers[0].weight_rec[:, :4].abs().max() > 0


def test_widened_patch_ride_has_the_same_density():
    torch.manual_seed(3)
    base = trained_like(PatchRIDE(4, num_hiddens=3, num_components=2, num_features=3, nb_size=3)).double()
    z = torch.randn(6, 15, dtype=torch.float64)
    wide = widen(base, 7)
    assert isinstance(wide, PatchRIDE) and wide.patch_size == 4 and wide.ride.config.num_hiddens == 7
    torch.testing.assert_close(wide.log_prob_pixels(z), base.log_prob_pixels(z), rtol=0, atol=1e-12)


def test_with_cell_clip_keeps_the_weights_and_the_kind_of_model():
    torch.manual_seed(4)
    base = trained_like(PatchRIDE(4, num_hiddens=3, num_components=2, num_features=3, nb_size=3)).double()
    z = torch.randn(6, 15, dtype=torch.float64)
    loose = with_cell_clip(base, 1e6)  # beyond any cell here: the same density
    assert isinstance(loose, PatchRIDE) and loose.patch_size == 4 and loose.ride.config.cell_clip == 1e6
    assert [layer.cell_clip for layer in loose.ride.layers] == [1e6]
    torch.testing.assert_close(loose.log_prob_pixels(z), base.log_prob_pixels(z), rtol=0, atol=0)
    tight = with_cell_clip(base, 1e-3)  # hit everywhere: another density
    assert not torch.allclose(tight.log_prob_pixels(z), base.log_prob_pixels(z))
    with pytest.raises(ValueError, match="needs a RIDE, PatchRIDE or LosslessColourRIDE"):
        with_cell_clip(torch.nn.Linear(2, 2), 10.0)


def test_with_cell_clip_of_the_lossless_colour_model(tmp_path):
    from conftest import make_smooth_images, make_tiny_lossless_colour

    base = make_tiny_lossless_colour("rgb", 2, seed=6).double()
    images = make_smooth_images(2, 3, 12, 13, seed=2, noise=0.05)
    loose = with_cell_clip(base, 1e6)
    assert type(loose) is type(base) and loose.config.cell_clip == 1e6
    assert [la.cell_clip for la in loose.layers] == [1e6, 1e6]
    assert next(loose.parameters()).dtype == torch.float64
    torch.testing.assert_close(loose.log_prob_pixels(images), base.log_prob_pixels(images), rtol=0, atol=0)
    tight = with_cell_clip(base, 1e-3)
    assert not torch.allclose(tight.log_prob_pixels(images), base.log_prob_pixels(images))
    ride.save(tight, tmp_path / "tight.pt")
    saved = ride.load(tmp_path / "tight.pt")
    assert saved.config.cell_clip == 1e-3 and [la.cell_clip for la in saved.layers] == [1e-3, 1e-3]


def test_widen_rejects_what_it_cannot_grow():
    model = ride.RIDE(num_hiddens=4, num_components=2, num_features=3, nb_size=3)
    with pytest.raises(ValueError, match="above the model's 4"):
        widen(model, 4)
    with pytest.raises(ValueError, match="at least one spatial LSTM layer"):
        widen(ride.RIDE(num_layers=0, num_components=2, num_features=3, nb_size=3), 8)
    with pytest.raises(ValueError, match="at least one spatial LSTM layer"):
        widen(torch.nn.Linear(2, 2), 8)


def test_widened_colour_model_has_the_same_probabilities():
    """The lossless colour model: the new units' inputs to the heads sit between h and the coded channels."""
    from ride.colour_lossless import LosslessColourRIDE

    torch.manual_seed(4)
    base = trained_like(LosslessColourRIDE(num_hiddens=4, num_layers=2, num_components=2, num_scales=2,
                                           num_features=3, nb_size=3)).double()
    wide = widen(base, 7)
    assert isinstance(wide, LosslessColourRIDE) and wide.config.num_hiddens == 7
    assert [head.dim_in for head in wide.heads] == [7, 8, 9]
    x = torch.rand(2, 3, 8, 9, dtype=torch.float64)
    torch.testing.assert_close(wide.log_prob_pixels(x), base.log_prob_pixels(x), rtol=0, atol=1e-12)
    values = torch.randint(0, 256, (2, 3, 7, 8), dtype=torch.uint8)
    torch.testing.assert_close(wide.log_prob_discrete_pixels(values), base.log_prob_discrete_pixels(values),
                               rtol=0, atol=1e-12)
    loss = -wide.log_prob_pixels(x).mean()
    loss.backward()
    assert all(head.features.grad[4:7].abs().max() > 1e-6 for head in wide.heads)
