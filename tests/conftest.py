"""Shared fixtures: single-threaded torch (the problems are tiny; thread hand-offs dominate), a seeded global
RNG per test, smooth test images and the small random RIDE and ColourRIDE models that the tests share."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image


@pytest.fixture(autouse=True)
def _single_thread():
    """torch.set_num_threads(1) for the test, restoring the previous value afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seeded_global_rng():
    """Every test starts from torch's global RNG seeded with 0, whatever ran before (tests that draw from the
    default RNG stay independent of test order); the previous RNG state is restored afterwards."""
    state = torch.get_rng_state()
    torch.manual_seed(0)
    yield
    torch.set_rng_state(state)


def use_path(path: str, kernels, monkeypatch: pytest.MonkeyPatch) -> str:  # noqa: ANN001 - a kernels module
    """Runs the calling test on one of a fast path's two implementations: "compiled" (the numba loops of `kernels`,
    `ride.sweep_kernels` or `ride.mcgsm_kernels`; skipped without numba) or "torch" (torch's element-wise passes,
    the path without numba or with several threads). Returns `path`."""
    if path == "compiled":
        pytest.importorskip("numba", reason="the compiled loops need numba")
        assert kernels.usable(torch.zeros((), dtype=torch.float64)), "one thread and numba: the loops must be used"
    else:
        monkeypatch.setattr(kernels, "usable", lambda t: False)
    return path


def make_smooth_images(num: int, channels: int, height: int, width: int, seed: int, noise: float = 0.01,
                       dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Blurred noise plus a little white noise, roughly on [0,1): strongly predictable pixels, so a fitted
    preconditioner has a small residual variance and a log-Jacobian far from zero."""
    gen = torch.Generator().manual_seed(seed)
    raw = torch.rand(num * channels, 1, height + 4, width + 4, generator=gen, dtype=dtype)
    blurred = torch.nn.functional.conv2d(raw, torch.full((1, 1, 5, 5), 1 / 25, dtype=dtype))
    blurred = blurred.view(num, channels, height, width)
    # channels share part of their structure, so multi-channel residuals are correlated
    blurred = 0.6 * blurred + 0.4 * blurred.mean(1, keepdim=True)
    return (blurred + noise * torch.randn(blurred.shape, generator=gen, dtype=dtype)).clamp(0, 0.999)


def randomize(model, seed: int, lstm_scale: float = 0.5) -> None:
    """Give a RIDE model non-trivial parameters: saturating LSTM gates, non-zero biases, a multi-modal MCGSM."""
    gen = torch.Generator().manual_seed(seed)
    scale = {"weight_in": lstm_scale, "weight_rec": lstm_scale, "bias": 0.5, "priors": 1.0, "scales": 0.3,
             "weights": 0.7, "features": 0.7, "predictors": 0.7, "cholesky_log_diag": 0.2, "cholesky_lower": 0.3}
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(scale[name.rsplit(".", 1)[1]] * torch.randn(param.shape, generator=gen, dtype=param.dtype))


def make_tiny_ride(num_layers: int = 1, num_channels: int = 1, nb_size: int = 3, num_hiddens: int = 4,
                   num_components: int = 3, num_scales: int = 2, num_features: int = 3, seed: int = 0,
                   fit: bool = True):
    """A small float64 RIDE with random parameters (`randomize`) and, with `fit`, a preconditioner fitted on smooth
    images (else the identity whitening: conditionals with a standard deviation near 1)."""
    from ride import RIDE

    torch.manual_seed(seed)
    model = RIDE(num_channels, num_hiddens, num_layers, num_components, num_scales, num_features, nb_size).double()
    randomize(model, seed)
    if fit:
        model.fit_preconditioner(make_smooth_images(8, num_channels, 16, 16, seed=seed + 1000))
    return model


def make_tiny_colour(num_layers: int = 1, nb_size: int = 3, seed: int = 0):
    """A small float64 ColourRIDE with random parameters, its preconditioners fitted on smooth RGB images whose
    chroma residuals given Y are correlated (noise shared by Cb and Cr): a non-diagonal 2-D Jacobian."""
    from ride.colour import ColourRIDE, rgb_to_ycbcr, ycbcr_to_rgb

    torch.manual_seed(seed)
    model = ColourRIDE(num_hiddens=4, num_layers=num_layers, num_components=3, num_scales=2, num_features=3,
                       nb_size=nb_size).double()
    randomize(model, seed)
    ycc = rgb_to_ycbcr(make_smooth_images(8, 3, 16, 16, seed=seed + 1000))
    noise = torch.randn(ycc[:, :1].shape, generator=torch.Generator().manual_seed(seed + 2000), dtype=ycc.dtype)
    ycc[:, 1:] += 0.02 * noise
    model.fit_preconditioner(ycbcr_to_rgb(ycc))
    return model


def make_tiny_lossless_colour(transform: str = "rgb", num_layers: int = 1, seed: int = 0, lstm_scale: float = 0.5):
    """A small float32 LosslessColourRIDE (6 units, 3 x 2 components, nb 5) with random weights (`randomize`), the
    heads' means near the linear prediction and its triangular whitening fitted on smooth correlated RGB images:
    a model that range-codes smooth images (the colour codec's tests and golden streams)."""
    from ride.colour_lossless import LosslessColourRIDE

    torch.manual_seed(seed)
    model = LosslessColourRIDE(transform, num_hiddens=6, num_layers=num_layers, num_components=3, num_scales=2,
                               num_features=3, nb_size=5).double()
    randomize(model, seed, lstm_scale)
    with torch.no_grad():
        for head in model.heads:
            head.predictors.mul_(0.05)
    model.fit_preconditioner(make_smooth_images(8, 3, 24, 24, seed=seed + 1000, noise=0.02))
    return model.float()


@pytest.fixture
def tiny_ride():
    """The `make_tiny_ride(num_layers=1, num_channels=1, nb_size=3, ..., seed=0, fit=True)` factory."""
    return make_tiny_ride


@pytest.fixture
def tiny_colour():
    """The `make_tiny_colour(num_layers=1, nb_size=3, seed=0)` factory."""
    return make_tiny_colour


@pytest.fixture
def smooth_images():
    """The `make_smooth_images(num, channels, height, width, seed, noise=0.01, dtype=float64)` helper."""
    return make_smooth_images


def run_two_ranks(argv: list[str], timeout: float, attempts: int = 3) -> tuple[list[int], list[tuple[str, str]]]:
    """Run `python -m ride *argv` as ranks 0 and 1 of a 2-process gloo group on 127.0.0.1; returns the return codes
    and (stdout, stderr) pairs. The port is chosen free and then released, so another process can take it before
    rank 0 binds it; only that failure (address in use) is retried, with a new port, so real failures still show."""
    for _ in range(attempts):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2",
               "OMP_NUM_THREADS": "1"}
        procs = [subprocess.Popen([sys.executable, "-m", "ride", *argv], env={**env, "RANK": str(r),
                                  "LOCAL_RANK": str(r)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for r in range(2)]
        try:
            outputs = [p.communicate(timeout=timeout) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        codes = [p.returncode for p in procs]
        port_taken = any("address already in use" in err.lower() or "EADDRINUSE" in err for _, err in outputs)
        if codes == [0, 0] or not port_taken:
            break
    return codes, outputs


def make_photo_root(root: Path, size: int = 32, num_bsds_train: int = 22) -> Path:
    """A data root of stand-ins for the photograph training mix: BSDS300 (`num_bsds_train` + 3 noise JPEGs of
    24x24, RGB) and the 49 wikipedia_photos PNGs (dead leaves, `size` x `size`, grey)."""
    import ride

    rng = np.random.default_rng(0)
    ids = [str(100 + k) for k in range(num_bsds_train + 3)]
    for part, part_ids in (("train", ids[:num_bsds_train]), ("test", ids[num_bsds_train:])):
        folder = root / "bsds300" / "images" / part
        folder.mkdir(parents=True)
        for i in part_ids:
            Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")
        (root / "bsds300" / f"iids_{part}.txt").write_text("\n".join(part_ids))
    wiki = root / "wikipedia_photos"
    wiki.mkdir()
    for k, img in enumerate(ride.dead_leaves_images(49, size, seed=5), start=1):
        Image.fromarray(np.asarray(img, dtype=np.uint8).reshape(size, size)).save(wiki / f"{k:03d}.png")
    return root


def repeat_image(image: np.ndarray) -> np.ndarray:
    """A grey [H >= 15, W >= 17] or RGB [H, W, 3] image with a flat block (one value or colour) pasted in: the
    codec's repeat flag hits there and misses elsewhere (the images of the format-6 and format-7 golden streams)."""
    out = image.copy()
    out[6:15, 4:17] = (200, 90, 30) if image.ndim == 3 else 90
    return out


def flag_test_images(height: int, width: int, seed: int, speckle: float) -> tuple[np.ndarray, np.ndarray]:
    """Two RGB images where the repeat flags both hit and miss: a smooth image with a flat block (`repeat_image`) and
    saturated corners (values 255 and 0), and the same with a fraction `speckle` of its pixels random colours."""
    smooth = repeat_image((make_smooth_images(1, 3, height, width, seed=seed, noise=0.02)[0].permute(1, 2, 0).numpy()
                           * 256).astype(np.uint8))
    smooth[:4, -6:] = 255
    smooth[-5:, :3] = 0
    speckled = smooth.copy()
    rng = np.random.default_rng(seed + 7)
    speckled[rng.random(smooth.shape[:2]) < speckle] = rng.integers(0, 256, 3)
    return smooth, speckled
