"""PatchRIDE: RIDE as a normalised density over 63-dim centred patches; its training mode in the trainer."""

from __future__ import annotations

import math
import os

import pytest
import torch

import ride
from ride import protocols
from ride.patch_ride import PatchRIDE
from ride.train.config import TrainConfig, replace_checked
from ride.train.trainer import Trainer


def tiny(seed: int = 0, num_layers: int = 1) -> PatchRIDE:
    torch.manual_seed(seed)
    model = PatchRIDE(num_hiddens=5, num_layers=num_layers, num_components=3, num_features=4, nb_size=3).double()
    z = torch.randn(400, 63, dtype=torch.float64) * 0.1
    model.ride.preconditioner.fit(*model.pairs(z))
    for p in model.parameters():  # away from the symmetric initialisation, so that every input matters
        p.data += 0.3 * torch.randn_like(p)
    return model


def test_every_one_of_the_63_values_is_predicted_and_summed():
    model = tiny()
    z = torch.randn(7, 63, dtype=torch.float64) * 0.1
    per_value = model.log_prob_pixels(z)
    assert per_value.shape == (7, 63) and torch.isfinite(per_value).all()
    torch.testing.assert_close(model.log_prob(z), per_value.sum(1))


def test_conditionals_are_causal_in_raster_order():
    model = tiny(num_layers=2)
    z = (torch.randn(1, 63, dtype=torch.float64) * 0.1).requires_grad_()
    per_value = model.log_prob_pixels(z)[0]
    for k in (0, 9, 30, 62):
        (grad,) = torch.autograd.grad(per_value[k], z, retain_graph=True)
        assert torch.all(grad[0, k + 1 :] == 0), k  # no later value
        assert grad[0, k] != 0  # the value itself (its own density)
        if k > 0:
            assert grad[0, :k].abs().sum() > 0  # earlier values are used


def test_the_last_conditional_integrates_to_one():
    # value 62 given values 0..61: integrate exp(ln p(z_62 | z_<62)) over a fine grid
    model = tiny(seed=1)
    z = torch.randn(1, 63, dtype=torch.float64) * 0.1
    grid = torch.linspace(-3, 3, 6001, dtype=torch.float64)
    batch = z.repeat(len(grid), 1)
    batch[:, 62] = grid
    with torch.no_grad():
        density = model.log_prob_pixels(batch)[:, 62].exp()
    assert torch.trapezoid(density, grid).item() == pytest.approx(1.0, abs=2e-3)
    # and the others do not move (they do not depend on z_62)
    with torch.no_grad():
        others = model.log_prob_pixels(batch[[0, -1]])[:, :62]
    torch.testing.assert_close(others[0], others[1])


def test_save_load_and_the_patch_protocol_interface(tmp_path):
    model = tiny()
    ride.save(model, tmp_path / "p.pt")
    loaded = ride.load(tmp_path / "p.pt")
    assert isinstance(loaded, PatchRIDE) and loaded.config == model.config
    x = torch.rand(20, 64, dtype=torch.float64)
    result = protocols.evaluate_patches63(loaded, x)
    z, _ = protocols.patches_to_63(x)
    with torch.no_grad():
        expected = float(model.log_prob(z).mean())
    assert result.nats == pytest.approx(expected, rel=1e-9)


def test_errors():
    with pytest.raises(ValueError, match=r"\[N, 63\]"):
        tiny().log_prob(torch.zeros(3, 64, dtype=torch.float64))
    with pytest.raises(ValueError, match="grey"):
        PatchRIDE(num_channels=3)


@pytest.mark.skipif(not os.environ.get("RIDE_DATA"), reason="needs BSDS300 (set RIDE_DATA to the folder holding "
                                                             "bsds300/)")
def test_patches63_training_mode_runs_and_stores_the_dc_model(tmp_path):
    config = replace_checked(TrainConfig(), dict(
        mode="patches63", data="bsds300", train_patches=3000, val_patches=500, num_hiddens=6, num_components=3,
        num_features=4, nb_size=3, patch_sizes=(8,), learning_rates=(3e-3,), optimizer="adam", batch_size=20,
        max_steps_per_epoch=30, precondition_pairs=20000, finetune_pixels=5000, finetune_val_pixels=2000,
        finetune_iter=5, tensorboard=False))
    summary = Trainer(config, tmp_path / "p63", progress=False).run()
    assert summary["best_val_bits_per_dim"] > summary["history"][0]["val_bits_per_dim"]
    payload = ride.checkpoint.load_payload(tmp_path / "p63" / "model.pt")
    dc = protocols.DCModel.from_dict(payload["extra"][protocols.DC_MODEL_KEY])
    assert dc.num_components == 10
    assert math.isfinite(payload["extra"]["history"][-1]["val_nats_per_patch"])
