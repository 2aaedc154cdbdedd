"""`ride demo` budgets work, not seconds: a small configuration run twice with the same seed gives the same figures
(and the same samples), and the step counts it reports are the ones asked for."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
from PIL import Image

from ride.cli import main
from ride.demo import DemoConfig, run_demo


def small_config(out_dir: str, **changes) -> DemoConfig:
    """A few seconds on one thread: small images, a tiny RIDE, a handful of iterations."""
    values = dict(out_dir=out_dir, mcgsm_iterations=4, ride_steps=5, ride_mcgsm_iterations=3, num_train=4,
                  num_test=2, image_size=64, tile_size=32, patch_size=16, batch_size=4, num_hiddens=4, nb_size=3,
                  num_samples=2, sample_size=16, seed=3)
    return DemoConfig(**{**values, **changes})


def test_same_seed_same_figures(tmp_path) -> None:
    first = run_demo(small_config(str(tmp_path / "a")))
    second = run_demo(small_config(str(tmp_path / "b")))
    assert first == second  # exact: the budgets are counts, so nothing depends on the machine's speed
    assert first["work"] == {"mcgsm_iterations": 4, "ride_steps": 5, "ride_mcgsm_iterations": 3}
    grids = [np.array(Image.open(tmp_path / d / "demo_samples.png")) for d in ("a", "b")]
    assert np.array_equal(*grids)
    other = run_demo(small_config(str(tmp_path / "c"), seed=4))
    assert other["RIDE"]["bits_per_pixel"] != first["RIDE"]["bits_per_pixel"]


def test_a_slow_clock_changes_nothing(tmp_path, monkeypatch) -> None:
    """A busy machine is one whose clock runs fast against the work done: with every reading 1,000 s after the last
    (a fit that would have stopped on any time budget), the figures and samples are still those of a normal run."""
    normal = run_demo(small_config(str(tmp_path / "a")))
    readings = itertools.count(0.0, 1000.0)
    clock = SimpleNamespace(monotonic=lambda: next(readings))
    monkeypatch.setattr("ride.demo.time", clock)
    monkeypatch.setattr("ride.mcgsm.time", clock)
    busy = run_demo(small_config(str(tmp_path / "b")))
    assert next(readings) > 1000.0  # the patched clock was read
    assert busy == normal
    grids = [np.array(Image.open(tmp_path / d / "demo_samples.png")) for d in ("a", "b")]
    assert np.array_equal(*grids)


def test_zero_steps_is_allowed(tmp_path) -> None:
    results = run_demo(small_config(str(tmp_path), mcgsm_iterations=0, ride_steps=0, ride_mcgsm_iterations=0))
    assert results["work"] == {"mcgsm_iterations": 0, "ride_steps": 0, "ride_mcgsm_iterations": 0}


def test_cli_demo_passes_the_budgets(tmp_path, monkeypatch, capsys) -> None:
    seen = {}
    monkeypatch.setattr("ride.demo.run_demo", lambda cfg: seen.setdefault("cfg", cfg))
    assert main(["demo", "--out-dir", str(tmp_path), "--mcgsm-iters", "7", "--ride-steps", "8",
                 "--ride-mcgsm-iters", "9"]) == 0
    cfg = seen["cfg"]
    assert (cfg.mcgsm_iterations, cfg.ride_steps, cfg.ride_mcgsm_iterations, cfg.seconds_per_model) == (7, 8, 9, None)
    seen.clear()
    assert main(["demo", "--out-dir", str(tmp_path), "--seconds", "2.5"]) == 0
    assert seen["cfg"].seconds_per_model == 2.5
    seen.clear()
    assert main(["demo"]) == 0  # the command's defaults are DemoConfig's (README states their figures)
    assert seen["cfg"] == DemoConfig()
