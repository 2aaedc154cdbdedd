"""Tests for ride.restoration: PSNR, and MAP denoising with a tiny fitted model as the prior."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import make_smooth_images

from ride import RIDE
from ride.restoration import denoise_map, denoise_objective, psnr

F64 = torch.float64


@pytest.fixture(scope="module")
def prior() -> RIDE:
    """An MCGSM baseline (num_layers=0, nb_size 5) fitted on smooth images: a prior that prefers smooth images."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = RIDE(num_hiddens=4, num_layers=0, num_components=2, num_scales=2, num_features=3, nb_size=5).double()
    train = make_smooth_images(16, 1, 24, 24, seed=1)
    model.fit_preconditioner(train)
    model.mcgsm.fit(*model.preconditioner(*model.training_pairs(train)), max_iter=20)
    return model.eval()


def noisy_pair(sigma: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    clean = make_smooth_images(2, 1, 20, 20, seed=2)
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return clean, clean + sigma * noise


def test_psnr_values() -> None:
    a = torch.zeros(3, 1, 4, 5, dtype=F64)
    b = a.clone()
    b[0] += 0.1  # mse 0.01: 20 dB
    b[1, 0, 0, 0] = 1.0  # mse 1/20: 10 log10(20) dB
    result = psnr(a, b)
    assert result.shape == (3,)
    torch.testing.assert_close(result[:2], torch.tensor([20.0, 10 * math.log10(20)], dtype=F64))
    assert math.isinf(float(result[2]))
    assert float(psnr(a[0, 0], b[0, 0] * 255, peak=255.0)) == pytest.approx(20.0)  # other shapes: one value
    with pytest.raises(ValueError, match="same shape"):
        psnr(a, b[:2])


def test_objective_is_the_log_posterior(prior) -> None:
    clean, noisy = noisy_pair(0.05)
    expected = prior.log_prob(clean) - ((noisy - clean) ** 2).sum((1, 2, 3)) / (2 * 0.05**2)
    torch.testing.assert_close(denoise_objective(prior, clean, noisy, 0.05), expected)


@pytest.mark.parametrize("sigma", [0.02, 0.05])
def test_map_denoising_improves_psnr(prior, sigma: float) -> None:
    clean, noisy = noisy_pair(sigma)
    steps = []
    out, history = denoise_map(prior, noisy, sigma, num_steps=100, callback=lambda step, obj: steps.append(step))
    assert history.shape == (101, 2) and steps == list(range(1, 101))
    torch.testing.assert_close(history[-1], denoise_objective(prior, out, noisy, sigma).detach())
    assert bool((history[-1] > history[0]).all())
    # the optimum is at least as good as the clean image, which is a candidate too
    assert bool((history[-1] > denoise_objective(prior, clean, noisy, sigma)).all())
    assert bool((psnr(out, clean) > psnr(noisy, clean) + 1.0).all())  # measured: +1.7 dB (0.02), +3.5 dB (0.05)
    assert float(out.min()) >= 0 and float(out.max()) < 1


def test_the_noise_level_weighs_prior_against_data(prior) -> None:
    clean, noisy = noisy_pair(0.05)
    noisy = noisy.clamp(0, 0.99)
    # almost noise-free: the data term pins the result to the observation
    pinned, _ = denoise_map(prior, noisy, 1e-4, num_steps=30)
    assert bool((psnr(pinned, noisy) > 60).all())
    # hugely noisy: the prior alone, ln p rises far above that of the observation
    free, _ = denoise_map(prior, noisy, 1e3, num_steps=100)
    assert bool((prior.log_prob(free) > prior.log_prob(noisy) + 100).all())


def test_errors(prior) -> None:
    _, noisy = noisy_pair(0.05)
    for sigma in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="sigma"):
            denoise_map(prior, noisy, sigma)
    with pytest.raises(ValueError, match="init"):
        denoise_map(prior, noisy, 0.05, init=noisy[:1])
    with pytest.raises(ValueError, match="at least"):
        denoise_map(prior, noisy[..., :2, :], 0.05)
