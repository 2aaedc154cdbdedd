"""Tests for ride.deadleaves: shapes, seeding, coverage, radius law, occlusion order, grey levels, errors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from ride import deadleaves as dl
from ride.deadleaves import DEAD_LEAVES_TEST_SEED, DEAD_LEAVES_TRAIN_SEED, dead_leaves, dead_leaves_images


def test_dtype_and_shape() -> None:
    img = dead_leaves(32, rng=0)
    assert img.dtype == np.uint8 and img.shape == (32, 32)
    img = dead_leaves((20, 30), r_min=1.0, r_max=8.0, rng=0)
    assert img.shape == (20, 30)
    imgs = dead_leaves_images(3, (16, 24), seed=1, r_max=8.0)
    assert imgs.dtype == np.uint8 and imgs.shape == (3, 16, 24)
    assert dead_leaves_images(0, 8).shape == (0, 8, 8)


def test_determinism_and_seeds_differ() -> None:
    a = dead_leaves(48, r_max=16.0, rng=5)
    b = dead_leaves(48, r_max=16.0, rng=np.random.default_rng(5))
    c = dead_leaves(48, r_max=16.0, rng=6)
    np.testing.assert_array_equal(a, b)
    assert (a != c).mean() > 0.5
    x = dead_leaves_images(2, 32, seed=3, r_max=16.0)
    np.testing.assert_array_equal(x, dead_leaves_images(2, 32, seed=3, r_max=16.0))
    assert (x != dead_leaves_images(2, 32, seed=4, r_max=16.0)).mean() > 0.5
    assert (x[0] != x[1]).mean() > 0.5  # images of one set are not copies of each other


def test_image_k_independent_of_num_images() -> None:
    few = dead_leaves_images(2, 32, seed=11, r_max=16.0)
    many = dead_leaves_images(5, 32, seed=11, r_max=16.0)
    np.testing.assert_array_equal(few, many[:2])
    # Image k is the k-th spawned child of SeedSequence(seed).
    child = np.random.SeedSequence(11).spawn(5)[4]
    np.testing.assert_array_equal(many[4], dead_leaves(32, r_max=16.0, rng=np.random.default_rng(child)))


def test_train_and_test_seeds_distinct() -> None:
    assert DEAD_LEAVES_TRAIN_SEED != DEAD_LEAVES_TEST_SEED
    assert (dl.DEAD_LEAVES_NUM_TRAIN, dl.DEAD_LEAVES_NUM_TEST, dl.DEAD_LEAVES_SIZE) == (900, 100, 256)


@pytest.mark.parametrize("size, r_min, r_max", [(64, 1.0, 64.0), ((17, 40), 0.5, 6.0), (5, 2.0, 2.0)])
def test_full_coverage(size: int | tuple[int, int], r_min: float, r_max: float) -> None:
    h, w = dl._check_size(size)
    labels, greys = dl._dead_leaves_labels(h, w, r_min, r_max, np.random.default_rng(0))
    assert labels.shape == (h, w)
    assert labels.min() >= 0  # -1 would mark a pixel no disk painted
    assert labels.max() < greys.size


def test_batching_does_not_change_image() -> None:
    ref, _ = dl._dead_leaves_labels(24, 20, 1.0, 8.0, np.random.default_rng(2), batch_size=4096)
    for batch_size in (1, 7, 300):
        labels, _ = dl._dead_leaves_labels(24, 20, 1.0, 8.0, np.random.default_rng(2), batch_size=batch_size)
        np.testing.assert_array_equal(labels, ref)


def test_fast_painter_matches_reference() -> None:
    rng = np.random.default_rng(0)
    n, h, w = 600, 40, 50
    cy, cx = rng.uniform(-12, h + 12, n), rng.uniform(-12, w + 12, n)
    r = dl._radii_from_uniform(rng.random(n), 0.3, 12.0)
    ref = dl._paint_reference(cy, cx, r, h, w)
    assert (ref < 0).any() and (ref >= 0).any()  # the finite list leaves gaps: both outcomes are exercised
    for bs in (1, 13, 128, n):
        batches = [(cy[i : i + bs], cx[i : i + bs], r[i : i + bs]) for i in range(0, n, bs)]
        np.testing.assert_array_equal(dl._paint(batches, h, w), ref)


def test_occlusion_first_drawn_in_front() -> None:
    # Two overlapping disks on a 9 x 12 image: A centred at pixel (4, 4), B at pixel (4, 7), both radius 2.5.
    cy = np.array([4.5, 4.5])
    cx = np.array([4.5, 7.5])
    r = np.array([2.5, 2.5])

    def paint_fast(cy: np.ndarray, cx: np.ndarray, r: np.ndarray, h: int, w: int) -> np.ndarray:
        return dl._paint([(cy, cx, r)], h, w)

    for paint in (paint_fast, dl._paint_reference):
        ab = paint(cy, cx, r, 9, 12)
        ba = paint(cy[::-1].copy(), cx[::-1].copy(), r[::-1].copy(), 9, 12)
        # Pixels (4, 5) and (4, 6) lie in both disks: the first one drawn owns them.
        assert ab[4, 5] == 0 and ab[4, 6] == 0
        assert ba[4, 5] == 0 and ba[4, 6] == 0  # in `ba`, disk 0 is B
        # Pixels only one disk covers show it whatever the order.
        assert ab[4, 2] == 0 and ab[4, 9] == 1
        assert ba[4, 2] == 1 and ba[4, 9] == 0
        assert ab[0, 0] == -1 and ba[0, 0] == -1
        # The front disk keeps its whole area, as if drawn alone.
        area = (ab == 0).sum()
        assert area == (ba == 0).sum() == (dl._paint_reference(cy[:1], cx[:1], r[:1], 9, 12) == 0).sum()


def test_pixel_membership_rule() -> None:
    # Pixel (i, j) is the point (i + 0.5, j + 0.5): a radius-1 disk centred on a pixel covers it and its
    # 4 neighbours (at distance exactly 1), not the diagonal ones.
    labels = dl._paint_reference(np.array([3.5]), np.array([3.5]), np.array([1.0]), 7, 7)
    expected = np.full((7, 7), -1)
    expected[3, 2:5] = 0
    expected[2:5, 3] = 0
    np.testing.assert_array_equal(labels, expected)


def test_radius_distribution() -> None:
    r_min, r_max = 1.0, 64.0
    rng = np.random.default_rng(1234)
    _, _, r, _ = dl._draw_disks(rng, 20000, 64, 64, r_min, r_max)
    assert r.min() >= r_min and r.max() <= r_max
    result = stats.kstest(r, lambda x: dl._radius_cdf(np.asarray(x), r_min, r_max))
    assert result.pvalue > 0.01
    # And against a wrong law (density proportional to r^-2) it must fail.
    wrong = stats.kstest(r, lambda x: (1 - 1 / np.asarray(x)) / (1 - 1 / r_max))
    assert wrong.pvalue < 1e-6


def test_centres_on_padded_canvas() -> None:
    cy, cx, _, _ = dl._draw_disks(np.random.default_rng(0), 20000, 30, 50, 1.0, 10.0)
    assert cy.min() >= -10 and cy.max() < 40 and cx.min() >= -10 and cx.max() < 60
    assert stats.kstest(cy, stats.uniform(-10, 50).cdf).pvalue > 0.01
    assert stats.kstest(cx, stats.uniform(-10, 70).cdf).pvalue > 0.01


def test_grey_levels_uniform() -> None:
    _, _, _, grey = dl._draw_disks(np.random.default_rng(7), 25600, 8, 8, 1.0, 4.0)
    counts = np.bincount(grey, minlength=256)
    assert counts.size == 256
    assert stats.chisquare(counts).pvalue > 0.01
    # Over many images, visible grey levels reach both ends and fill the range about evenly.
    imgs = dead_leaves_images(40, 64, seed=0, r_max=16.0)
    assert imgs.min() <= 2 and imgs.max() >= 253
    assert np.unique(imgs).size >= 250
    frac = np.bincount(imgs.ravel() // 32, minlength=8) / imgs.size
    assert np.all(np.abs(frac - 1 / 8) < 0.04)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": 0},
        {"size": -3},
        {"size": (4, 0)},
        {"size": (4, 4, 4)},
        {"size": 2.5},
        {"r_min": 0.0},
        {"r_min": -1.0},
        {"r_min": 4.0, "r_max": 2.0},
        {"r_max": float("inf")},
    ],
)
def test_errors(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        dead_leaves(**kwargs)
    with pytest.raises(ValueError):
        dead_leaves_images(1, **kwargs)


def test_errors_num_images_and_seed() -> None:
    with pytest.raises(ValueError, match="num_images"):
        dead_leaves_images(-1, 8)
    with pytest.raises(ValueError, match="seed"):
        dead_leaves_images(1, 8, seed=-2)
    with pytest.raises(ValueError, match="found 0"):
        dead_leaves(0)
