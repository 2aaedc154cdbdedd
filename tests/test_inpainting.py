"""Tests for ride.inpainting and `ride inpaint`: the Metropolis-within-Gibbs chain reaches the exact conditional of
a 2x2 hole (grid enumeration) and wrong acceptance rules fail the same check; the acceptance ratio, the block plan,
observed pixels, MAP, the baselines; CLI errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

import ride
from ride import RIDE
from ride import inpainting as inp
from ride.cli import main

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def hole_mask(h: int, w: int, rows: slice, cols: slice) -> torch.Tensor:
    mask = torch.zeros(h, w, dtype=torch.bool)
    mask[rows, cols] = True
    return mask


# ---------------------------------------------------------------------------------------------- exactness

def features(values: torch.Tensor) -> torch.Tensor:
    """The statistics compared: the 4 pixel values and their 10 products x_k x_l (k <= l): [N, 4] -> [N, 14]."""
    iu = torch.triu_indices(4, 4)
    return torch.cat([values, (values[:, :, None] * values[:, None, :])[:, iu[0], iu[1]]], 1)


@torch.no_grad()
def exact_expectations(model: RIDE, image: torch.Tensor, mask: torch.Tensor, points: int = 14,
                       limit: float = 6.0) -> torch.Tensor:
    """E[features] under p(x_hole | x_observed) for a 4-pixel hole, by enumerating a points^4 grid on
    [-limit, limit]^4 (the trapezoid rule: spectrally accurate for these smooth, quickly decaying densities; 14 and
    20 points agree to 1e-4) and weighting each grid image by the model's exp ln p(x) of the WHOLE image."""
    values = torch.linspace(-limit, limit, points, dtype=F64)
    grid = torch.cartesian_prod(*[values] * 4)  # (G^4, 4)
    log_probs = []
    for start in range(0, grid.shape[0], 20_000):
        chunk = grid[start : start + 20_000]
        x = image.expand(chunk.shape[0], -1, -1, -1).clone()
        x[:, 0, mask] = chunk
        log_probs.append(model.log_prob(x))
    weights = torch.softmax(torch.cat(log_probs), 0)
    edge = (grid.abs() == limit).any(1)
    assert float(weights[edge].sum()) < 1e-3  # the grid covers the mass
    return weights @ features(grid)


def z_scores(samples: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    """(sample mean - exact) / standard error for each statistic; samples [N, 4] from independent chains."""
    f = features(samples)
    return (f.mean(0) - expected) / (f.std(0) / math.sqrt(f.shape[0]))


CASES = {
    # LSTM model, single-pixel blocks (4 Gibbs sites); the 19x19 window covers the 5x5 image: exact for any model
    "lstm_sites": dict(num_layers=1, seed=2, shape=(5, 5), rows=slice(1, 3), cols=slice(1, 3), block_size=1,
                       window=None),
    # one block holds the whole hole: an independence sampler with the ancestral proposal
    "lstm_block": dict(num_layers=1, seed=2, shape=(5, 5), rows=slice(1, 3), cols=slice(1, 3), block_size=2,
                       window=None),
    # finite window (num_layers=0) with 5x5 windows inside a 7x9 image: the window ratio is the whole-image ratio
    "mcgsm_windows": dict(num_layers=0, seed=3, shape=(7, 9), rows=slice(3, 5), cols=slice(3, 5), block_size=1,
                          window=5),
}
NUM_CHAINS, NUM_SWEEPS = 2000, 8


def case_setup(name: str) -> tuple[RIDE, torch.Tensor, torch.Tensor, dict]:
    from conftest import make_tiny_ride

    case = CASES[name]
    model = make_tiny_ride(num_layers=case["num_layers"], seed=case["seed"], fit=False)
    h, w = case["shape"]
    image = 0.5 * torch.randn(1, 1, h, w, generator=gen(5), dtype=F64)
    return model, image, hole_mask(h, w, case["rows"], case["cols"]), case


@pytest.fixture(scope="module")
def expectations() -> dict[str, torch.Tensor]:
    """Exact expectations per model/image (the two LSTM cases share one)."""
    torch.set_num_threads(1)
    cache: dict[tuple, torch.Tensor] = {}
    result = {}
    for name, case in CASES.items():
        key = (case["num_layers"], case["seed"], case["shape"])
        if key not in cache:
            model, image, mask, _ = case_setup(name)
            cache[key] = exact_expectations(model, image, mask)
        result[name] = cache[key]
    return result


def run_chains(name: str, seed: int = 1) -> tuple[torch.Tensor, list[inp.SweepStats]]:
    model, image, mask, case = case_setup(name)
    out, stats = inp.inpaint_mcmc(model, image.expand(NUM_CHAINS, -1, -1, -1), mask, NUM_SWEEPS, gen(seed),
                                  block_size=case["block_size"], stride=1, window=case["window"])
    assert torch.equal(out[..., ~mask], image.expand_as(out)[..., ~mask])
    return out[:, 0, mask], stats


@pytest.mark.parametrize("name", list(CASES))
def test_chain_reaches_the_exact_conditional(expectations, name: str) -> None:
    samples, stats = run_chains(name)
    z = z_scores(samples, expectations[name])
    assert float(z.abs().max()) < 4.5, z  # 14 statistics of 2000 independent chains after 8 sweeps
    assert 0.2 < stats[-1].acceptance_rate < 0.95  # a real Metropolis step: neither always nor never accepted


def test_the_check_has_power(expectations) -> None:
    # the initial distribution (ancestral sampling, no look at the pixels after the hole) is far from the target
    model, image, mask, _ = case_setup("lstm_block")
    drawn = model.sample(image.expand(NUM_CHAINS, -1, -1, -1), mask=mask, generator=gen(0))[:, 0, mask]
    assert float(z_scores(drawn, expectations["lstm_block"]).abs().max()) > 10


@pytest.mark.parametrize("rule", ["always_accept", "no_proposal_correction", "reversed"])
def test_wrong_acceptance_rules_fail_the_check(expectations, monkeypatch, rule: str) -> None:
    wrong = {
        "always_accept": lambda p_new, p_old, q_new, q_old: torch.full_like(p_new, math.inf),
        "no_proposal_correction": lambda p_new, p_old, q_new, q_old: p_new - p_old,
        "reversed": lambda p_new, p_old, q_new, q_old: (p_new - p_old) + (q_new - q_old),
    }[rule]
    monkeypatch.setattr(inp, "log_acceptance", wrong)
    samples, _ = run_chains("lstm_block")
    assert float(z_scores(samples, expectations["lstm_block"]).abs().max()) > 8


# ---------------------------------------------------------------------------------------------- acceptance ratio

def test_log_acceptance_formula() -> None:
    p_new, p_old, q_new, q_old = (torch.tensor([v], dtype=F64) for v in (-3.0, -5.0, -1.5, -0.25))
    expected = (-3.0 - -5.0) - (-1.5 - -0.25)
    assert float(inp.log_acceptance(p_new, p_old, q_new, q_old)) == pytest.approx(expected, abs=1e-15)


def test_block_holding_every_dependent_pixel_is_always_accepted(tiny_ride, smooth_images) -> None:
    # the hole is the last two predicted rows, all predicted columns: nothing after it depends on it, so the
    # ancestral proposal is the exact conditional and the ratio is exactly 1
    model = tiny_ride(num_layers=2, seed=4)
    image = smooth_images(3, 1, 6, 7, seed=4)
    mask = hole_mask(6, 7, slice(4, 6), slice(1, 6))
    _, stats = inp.inpaint_mcmc(model, image, mask, 4, gen(0), block_size=5)
    assert all(s.acceptance_rate == 1.0 for s in stats)
    # one row higher, the last row depends on the block: some proposals are rejected
    mask = hole_mask(6, 7, slice(3, 5), slice(1, 6))
    _, stats = inp.inpaint_mcmc(model, image, mask, 4, gen(0), block_size=5)
    assert min(s.acceptance_rate for s in stats) < 1.0


def whole_image_log_ratio(model: RIDE, old: torch.Tensor, new: torch.Tensor, drawn: torch.Tensor) -> torch.Tensor:
    """ln p(x') - ln p(x) - ln q(x') + ln q(x) on whole images [N, C, H, W]; drawn bool [N, H, W]."""
    lp_old, lp_new = model.log_prob_pixels(old), model.log_prob_pixels(new)
    top, left, _ = model.margin
    hp, wp = lp_old.shape[-2:]
    grid = drawn[:, top : top + hp, left : left + wp]
    q_old, q_new = (torch.where(grid, lp, 0).flatten(1).sum(1) for lp in (lp_old, lp_new))
    return (lp_new.flatten(1).sum(1) - lp_old.flatten(1).sum(1)) - (q_new - q_old)


@pytest.mark.parametrize("num_layers", [0, 1])
def test_window_ratio_against_the_whole_image(smooth_images, tiny_ride, num_layers: int) -> None:
    model = tiny_ride(num_layers=num_layers, nb_size=5, seed=7)
    h, w = 30, 32
    image = smooth_images(2, 1, h, w, seed=7)
    mask = hole_mask(h, w, slice(9, 20), slice(10, 22))
    plan = inp._make_plan(model, mask, block_size=5, stride=3, window=19)
    wh, ww = plan.crop_shape
    assert (wh, ww) == (19, 19) and len(plan.groups) > 1
    for group in plan.groups[:3]:
        n = len(group.crop_rows)
        crops = torch.stack([image[:, :, r : r + wh, c : c + ww] for r, c in zip(group.crop_rows, group.crop_cols,
                                                                                   strict=True)], 1)
        crops = crops.reshape(2 * n, 1, wh, ww)
        proposal = model.sample(crops, mask=group.drawn.repeat(2, 1, 1), generator=gen(3))
        crop_ratio = inp._log_ratio(model, crops, proposal, group)
        # the same moves on whole images
        flat_old = image.repeat_interleave(n, 0).reshape(2 * n, 1, h * w).clone()
        flat_new = flat_old.clone()
        ids = torch.arange(2 * n) % n
        for k in range(2 * n):
            sel = group.block_id == ids[k]
            flat_new[k, 0, group.dst[sel]] = proposal[k, 0].flatten()[group.src[sel]]
        drawn = torch.zeros(2 * n, h * w, dtype=torch.bool)
        for k in range(2 * n):
            drawn[k, group.dst[group.block_id == ids[k]]] = True
        full_ratio = whole_image_log_ratio(model, flat_old.view(-1, 1, h, w), flat_new.view(-1, 1, h, w),
                                           drawn.view(-1, h, w))
        if num_layers == 0:  # finite window: the window's ratio is the exact one
            torch.testing.assert_close(crop_ratio, full_ratio, atol=1e-9, rtol=1e-9)
        else:  # the LSTM restarts at the window's edge: an approximation
            assert not torch.allclose(crop_ratio, full_ratio, atol=1e-6)


# ---------------------------------------------------------------------------------------------- plan, flips, init

def test_plan_covers_the_hole_and_groups_do_not_interact(tiny_ride) -> None:
    model = tiny_ride(num_layers=1, nb_size=5, seed=1)
    h, w = 60, 50
    mask = torch.zeros(h, w, dtype=torch.bool)
    mask[2:58, 3:40] = torch.rand(56, 37, generator=gen(0)) < 0.7  # ragged, touching the predicted edges
    plan = inp._make_plan(model, mask, block_size=5, stride=3, window=19)
    wh, ww = plan.crop_shape
    covered = torch.zeros(h * w, dtype=torch.long)
    for group in plan.groups:
        covered.index_add_(0, group.dst, torch.ones_like(group.dst))
        writes = [set(group.dst[group.block_id == k].tolist()) for k in range(len(group.crop_rows))]
        for k, (r, c) in enumerate(zip(group.crop_rows, group.crop_cols, strict=True)):
            assert 0 <= r <= h - wh and 0 <= c <= w - ww
            crop = {i * w + j for i in range(r, r + wh) for j in range(c, c + ww)}
            assert all(not (writes[m] & crop) for m in range(len(writes)) if m != k)
        # drawn pixels are predicted inside their crop
        top, left, right = model.margin
        assert not group.drawn[:, :top].any() and not group.drawn[:, :, :left].any()
        assert not group.drawn[:, :, ww - right :].any()
    assert bool((covered.view(h, w)[mask] >= 1).all()) and bool((covered.view(h, w)[~mask] == 0).all())
    # batched: far fewer steps than blocks (16 for a hole away from the edges; windows moved inside the image at
    # its edges overlap more)
    assert sum(len(g.crop_rows) for g in plan.groups) > 200 and len(plan.groups) <= 40


def test_observed_pixels_never_change_with_flips(tiny_ride, smooth_images) -> None:
    model = tiny_ride(num_layers=1, nb_size=5, seed=2)
    image = smooth_images(2, 1, 20, 22, seed=2)
    mask = hole_mask(20, 22, slice(6, 12), slice(5, 13))
    out, stats = inp.inpaint_mcmc(model, image, mask, 4, gen(1), flips=True)
    assert torch.equal(out[..., ~mask], image[..., ~mask])
    assert bool((out[..., mask] != image[..., mask]).any())
    assert len({s.flip for s in stats}) > 1
    log_prob, hole_log_prob = inp.region_log_probs(model, out, mask)
    torch.testing.assert_close(stats[-1].log_prob_nats, log_prob)
    torch.testing.assert_close(stats[-1].hole_log_prob_nats, hole_log_prob)
    # reproducible from the generator
    again, _ = inp.inpaint_mcmc(model, image, mask, 4, gen(1), flips=True)
    assert torch.equal(out, again)


def test_initialize_keeps_the_best_of_the_candidates(tiny_ride, smooth_images) -> None:
    model = tiny_ride(num_layers=1, seed=3)
    image = smooth_images(2, 1, 8, 9, seed=3)
    mask = hole_mask(8, 9, slice(2, 6), slice(2, 6))
    best = inp.initialize(model, image, mask, num_candidates=4, generator=gen(2))
    candidates = model.sample(image.repeat(4, 1, 1, 1), mask=mask, generator=gen(2)).view(4, 2, 1, 8, 9)
    scores = model.log_prob(candidates.view(8, 1, 8, 9)).view(4, 2)
    for i in range(2):
        assert torch.equal(best[i], candidates[int(scores[:, i].argmax()), i])


def test_progress_counts_the_initial_fill_and_the_sweeps(tiny_ride, smooth_images) -> None:
    model = tiny_ride(num_layers=1, seed=3)
    image = smooth_images(1, 1, 8, 9, seed=3)
    mask = hole_mask(8, 9, slice(2, 6), slice(2, 6))
    calls: list[tuple[str, int, int]] = []
    out, _ = inp.inpaint_mcmc(model, image, mask, 3, gen(1), progress=lambda *call: calls.append(call))
    init = [c for c in calls if c[0] == "init"]
    assert init and [c[1] for c in init] == list(range(1, init[0][2] + 1))  # every front, in order
    assert [c for c in calls if c[0] == "sweep"] == [("sweep", k, 3) for k in range(4)]
    assert calls.index(init[-1]) < calls.index(("sweep", 0, 3))
    again, _ = inp.inpaint_mcmc(model, image, mask, 3, gen(1))  # watching changes nothing
    assert torch.equal(out, again)


def test_mask_errors(tiny_ride, smooth_images) -> None:
    model = tiny_ride(num_layers=1, nb_size=5, seed=0)
    image = smooth_images(1, 1, 12, 12, seed=0)
    with pytest.raises(ValueError, match=r"shape \(12, 12\)"):
        inp.inpaint_mcmc(model, image, torch.ones(12, 11, dtype=torch.bool))
    with pytest.raises(ValueError, match="no pixel"):
        inp.inpaint_mcmc(model, image, torch.zeros(12, 12, dtype=torch.bool))
    with pytest.raises(ValueError, match="border"):
        inp.inpaint_mcmc(model, image, hole_mask(12, 12, slice(1, 5), slice(4, 8)))
    with pytest.raises(ValueError, match="window"):
        inp.inpaint_mcmc(model, image, hole_mask(12, 12, slice(4, 8), slice(4, 8)), window=9)


# ---------------------------------------------------------------------------------------------- MAP and baselines

def test_map_raises_the_log_likelihood(tiny_ride, smooth_images) -> None:
    model = tiny_ride(num_layers=1, nb_size=5, seed=5)
    image = smooth_images(2, 1, 16, 16, seed=5)
    mask = hole_mask(16, 16, slice(0, 9), slice(4, 12))  # border pixels are allowed for MAP (context only)
    steps = []
    out, history = inp.inpaint_map(model, image, mask, num_steps=40, lr=0.02,
                                   callback=lambda step, lp: steps.append(step))
    assert history.shape == (41, 2) and steps == list(range(1, 41))
    assert bool((history[-1] > history[0] + 1).all())
    torch.testing.assert_close(history[-1], model.log_prob(out).detach())
    assert torch.equal(out[..., ~mask], image[..., ~mask])
    assert float(out[..., mask].min()) >= 0 and float(out[..., mask].max()) < 1


def test_map_works_inside_no_grad(tiny_ride, smooth_images) -> None:
    # callers (evaluation scripts) often run under torch.no_grad(); MAP needs gradients internally
    model = tiny_ride(num_layers=1, nb_size=5, seed=5)
    image = smooth_images(1, 1, 16, 16, seed=6)
    mask = hole_mask(16, 16, slice(4, 10), slice(4, 12))
    with torch.no_grad():
        _, history = inp.inpaint_map(model, image, mask, num_steps=10, lr=0.02)
    assert float(history[-1, 0]) > float(history[0, 0])


def test_harmonic_fill_solves_laplace() -> None:
    h, w = 20, 23
    i, j = torch.meshgrid(torch.arange(h, dtype=F64), torch.arange(w, dtype=F64), indexing="ij")
    ramp = (0.1 + 0.02 * i + 0.01 * j)[None, None]  # harmonic: reproduced exactly inside a closed boundary
    mask = hole_mask(h, w, slice(4, 15), slice(3, 19))
    filled = inp.harmonic_fill(ramp + 0 * ramp, mask)
    torch.testing.assert_close(filled, ramp, atol=1e-7, rtol=0)
    # a hole touching the image edge: each hole pixel is the mean of its in-image neighbours
    noise = torch.rand(2, 1, h, w, generator=gen(0), dtype=F64)
    mask = hole_mask(h, w, slice(0, 12), slice(5, 23))
    filled = inp.harmonic_fill(noise, mask)
    padded = torch.nn.functional.pad(filled, (1, 1, 1, 1))
    count = torch.nn.functional.pad(torch.ones(1, 1, h, w, dtype=F64), (1, 1, 1, 1))
    shifts = [(0, 1), (2, 1), (1, 0), (1, 2)]
    total = sum(padded[..., a : a + h, b : b + w] for a, b in shifts)
    num = sum(count[..., a : a + h, b : b + w] for a, b in shifts)
    torch.testing.assert_close((total / num)[..., mask], filled[..., mask], atol=1e-6, rtol=0)
    assert torch.equal(filled[..., ~mask], noise[..., ~mask])
    with pytest.raises(ValueError, match="observed"):
        inp.harmonic_fill(noise, torch.ones(h, w, dtype=torch.bool))


def test_mean_fill() -> None:
    images = torch.rand(2, 2, 6, 7, generator=gen(1), dtype=F64)
    mask = hole_mask(6, 7, slice(1, 4), slice(2, 5))
    filled = inp.mean_fill(images, mask)
    torch.testing.assert_close(filled[..., 2, 3], images[..., ~mask].mean(-1))
    assert torch.equal(filled[..., ~mask], images[..., ~mask])


# ---------------------------------------------------------------------------------------------- CLI

@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    """A tiny float32 RIDE checkpoint (nb_size 5), a 24x26 grey image and masks."""
    from conftest import randomize

    folder = tmp_path_factory.mktemp("inpaint")
    torch.manual_seed(0)
    model = RIDE(num_hiddens=4, num_components=2, num_scales=2, num_features=3, nb_size=5)
    randomize(model, 0)
    with torch.no_grad():
        model.preconditioner.mean_out.fill_(0.5)
        model.preconditioner.colour_out.fill_(0.1)
        model.preconditioner.whiten_out.fill_(10.0)
        model.preconditioner.log_jacobian.fill_(math.log(10.0))
    ride.save(model, folder / "model.pt")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (24, 26), dtype=np.uint8)
    Image.fromarray(image).save(folder / "image.png")
    mask = np.zeros((24, 26), dtype=np.uint8)
    mask[8:16, 7:18] = 255
    Image.fromarray(mask).save(folder / "mask.png")
    Image.fromarray(mask[:, :20]).save(folder / "narrow_mask.png")
    Image.fromarray(image[:2, :4]).save(folder / "tiny.png")
    Image.fromarray(np.full((2, 4), 255, dtype=np.uint8)).save(folder / "tiny_mask.png")
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    return {"dir": folder, "image": image, "mask": mask > 0}


def inpaint(files: dict, *args: str, image: str = "image.png", mask: str = "mask.png") -> int:
    d = files["dir"]
    return main(["inpaint", "--checkpoint", str(d / "model.pt"), "--image", str(d / image), "--mask",
                 str(d / mask), "--no-progress", "--device", "cpu", *args])


@pytest.mark.parametrize("method", ["mcmc", "map", "harmonic", "mean"])
def test_cli_inpaint_writes_the_filled_image(files, capsys, method: str) -> None:
    out = files["dir"] / f"out_{method}.png"
    assert inpaint(files, "--out", str(out), "--method", method, "--sweeps", "2", "--steps", "5") == 0
    result = np.array(Image.open(out))
    assert result.shape == files["image"].shape and result.dtype == np.uint8
    assert np.array_equal(result[~files["mask"]], files["image"][~files["mask"]])
    assert "log-likelihood of the filled region" in capsys.readouterr().out


def test_cli_inpaint_is_reproducible(files) -> None:
    outs = [files["dir"] / f"seed_{k}.png" for k in range(3)]
    for out, seed in zip(outs, ("4", "4", "5"), strict=True):
        assert inpaint(files, "--out", str(out), "--sweeps", "1", "--seed", seed) == 0
    a, b, c = (np.array(Image.open(o)) for o in outs)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"mask": "narrow_mask.png"}, "--mask is 24x20 but --image is 24x26"),
    ({"image": "tiny.png", "mask": "tiny_mask.png"}, "smaller than the model's 3x5 neighbourhood"),
    ({"image": "broken.png"}, "--image: cannot read image"),
    ({"mask": "broken.png"}, "--mask: cannot read image"),
    ({"image": "missing.png"}, "does not exist"),
])
def test_cli_inpaint_errors(files, capsys, kwargs: dict, message: str) -> None:
    assert inpaint(files, "--out", str(files["dir"] / "never.png"), **kwargs) == 2
    assert message in capsys.readouterr().err
    assert not (files["dir"] / "never.png").exists()


def test_cli_inpaint_rejects_a_foreign_checkpoint(files, capsys) -> None:
    d = files["dir"]
    assert main(["inpaint", "--checkpoint", str(d / "image.png"), "--image", str(d / "image.png"), "--mask",
                 str(d / "mask.png"), "--out", str(d / "never.png"), "--no-progress"]) == 2
    assert "not a readable ride checkpoint" in capsys.readouterr().err
