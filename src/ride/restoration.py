"""Image restoration with RIDE as the prior: MAP denoising of additive white Gaussian noise, and PSNR.

    x* = argmax_x  ln p_model(x) - |y - x|^2 / (2 sigma^2)       (y = x + N(0, sigma^2 I), [0,1) pixel scale)

The border pixels the model never predicts enter ln p only as context; the data term keeps them near y.
Library code: no I/O, no progress bars.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from .model import RIDE
from .units import ONE_BELOW


def denoise_objective(model: RIDE, images: Tensor, noisy: Tensor, sigma: float) -> Tensor:
    """ln p(x) - |y - x|^2 / (2 sigma^2) in nats per image: images x and noisy y [B, C, H, W] -> [B].

    The log-posterior up to a constant (the Gaussian's normaliser and ln p(y)); differentiable in `images`.
    """
    squared = (noisy - images).square().flatten(1).sum(1)
    return model.log_prob(images) - squared / (2 * sigma**2)


def denoise_map(model: RIDE, noisy: Tensor, sigma: float, num_steps: int = 200, lr: float = 0.005,
                init: Tensor | None = None, clamp: bool = True,
                callback: Callable[[int, Tensor], None] | None = None) -> tuple[Tensor, Tensor]:
    """MAP estimate of clean images from noisy ones [B, C, H, W] (noise std `sigma` on the [0,1) scale) by Adam.

    Starts from `init` (default: the noisy images, clamped to [0,1) when `clamp`); with `clamp` every step is
    projected back onto [0,1). Returns (images [B, C, H, W] in the model's dtype, the objective of
    `denoise_objective` in nats [num_steps + 1, B] before the first step and after each step).
    `callback(step, objective [B])` after each step.
    """
    model.check_images(noisy)
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive finite number, found {sigma!r}")
    if not isinstance(num_steps, int) or num_steps < 0:
        raise ValueError(f"num_steps must be a non-negative integer, found {num_steps!r}")
    dtype = model.preconditioner.mean_in.dtype
    noisy = noisy.to(dtype)
    start = noisy if init is None else init.to(dtype)
    if init is not None and start.shape != noisy.shape:
        raise ValueError(f"init must have the shape of noisy {tuple(noisy.shape)}, found {tuple(start.shape)}")
    if clamp:
        start = start.clamp(0, ONE_BELOW)
    x = start.detach().clone().requires_grad_()
    optimizer = torch.optim.Adam([x], lr=lr)
    num_pixels = noisy[0].numel()
    history = []
    for step in range(num_steps + 1):
        with torch.enable_grad():
            objective = denoise_objective(model, x, noisy, sigma)
        history.append(objective.detach())
        if step > 0 and callback is not None:
            callback(step, history[-1])
        if step == num_steps:
            break
        # per pixel, so that the step size does not depend on the image size
        (grad,) = torch.autograd.grad(-objective.sum() / num_pixels, [x])
        x.grad = grad
        optimizer.step()
        if clamp:
            with torch.no_grad():
                x.clamp_(0, ONE_BELOW)
    return x.detach(), torch.stack(history)


def psnr(a: Tensor, b: Tensor, peak: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio in dB, 10 log10(peak^2 / mean((a - b)^2)).

    a, b [B, C, H, W] -> [B] (one value per image); other shapes -> a scalar over all elements. inf when equal.
    """
    if not isinstance(a, Tensor) or not isinstance(b, Tensor) or a.shape != b.shape:
        found = [tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__ for t in (a, b)]
        raise ValueError(f"psnr needs two tensors of the same shape, found {found[0]} and {found[1]}")
    diff = (a.double() - b.double()).square()
    mse = diff.flatten(1).mean(1) if a.dim() == 4 else diff.mean()
    return 10 * torch.log10(peak**2 / mse)
