"""Tests for ride.neighbourhood: causal masks, the Neighbourhood checks and extract_pairs against a naive loop."""

from __future__ import annotations

import pytest
import torch

from ride.neighbourhood import Neighbourhood, causal_mask, extract_pairs


@pytest.mark.parametrize(("nb_size", "count"), [(3, 4), (5, 12), (7, 24), (9, 40)])
def test_causal_mask_input_counts(nb_size: int, count: int) -> None:
    mask = causal_mask(nb_size)
    r = (nb_size - 1) // 2
    assert mask.dtype == torch.bool
    assert tuple(mask.shape) == (r + 1, nb_size)
    assert int(mask.sum()) == count
    nb = Neighbourhood.square(nb_size)
    assert nb.num_inputs == count
    assert (nb.rows, nb.cols, nb.column, nb.right) == (r + 1, nb_size, r, r)


def test_causal_mask_pattern_for_5() -> None:
    expected = torch.tensor([
        [1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1],
        [1, 1, 0, 0, 0],
    ], dtype=torch.bool)
    assert torch.equal(causal_mask(5), expected)


@pytest.mark.parametrize("bad", [0, 1, 2, 4, 6, -3, 5.0, "5", None])
def test_causal_mask_rejects_bad_sizes(bad) -> None:
    with pytest.raises(ValueError, match="nb_size") as err:
        causal_mask(bad)
    assert repr(bad) in str(err.value)


def test_neighbourhood_rejects_non_causal_masks() -> None:
    mask = causal_mask(5)
    Neighbourhood(mask, 2)  # the valid default
    marks_pixel = mask.clone()
    marks_pixel[2, 2] = True
    with pytest.raises(ValueError, match="not causal"):
        Neighbourhood(marks_pixel, 2)
    marks_right = mask.clone()
    marks_right[2, 4] = True
    with pytest.raises(ValueError, match="not causal"):
        Neighbourhood(marks_right, 2)
    # the default mask is not causal if the predicted pixel is placed left of its last-row inputs
    with pytest.raises(ValueError, match="not causal"):
        Neighbourhood(mask, 1)
    with pytest.raises(ValueError, match="column"):
        Neighbourhood(mask, 5)
    with pytest.raises(ValueError, match="column"):
        Neighbourhood(mask, -1)
    with pytest.raises(ValueError, match="no input"):
        Neighbourhood(torch.zeros(2, 3, dtype=torch.bool), 1)
    with pytest.raises(ValueError, match="bool"):
        Neighbourhood(mask.float(), 2)
    with pytest.raises(ValueError, match="2-D"):
        Neighbourhood(mask.flatten(), 2)


def naive_pairs(images: torch.Tensor, mask: torch.Tensor, column: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference: a double loop over predicted pixels, reading the masked window channel by channel."""
    b, c, h, w = images.shape
    rows, cols = mask.shape
    hp, wp = h - rows + 1, w - cols + 1
    positions = [(u, v) for u in range(rows) for v in range(cols) if mask[u, v]]
    inputs = torch.empty(b, hp, wp, c * len(positions), dtype=images.dtype)
    outputs = torch.empty(b, hp, wp, c, dtype=images.dtype)
    for i in range(hp):
        for j in range(wp):
            # the window's top-left corner is (i, j); the predicted pixel sits at (i + rows - 1, j + column)
            values = [images[:, ch, i + u, j + v] for ch in range(c) for (u, v) in positions]
            inputs[:, i, j] = torch.stack(values, dim=1)
            outputs[:, i, j] = images[:, :, i + rows - 1, j + column]
    return inputs, outputs


CUSTOM_MASKS = [
    (causal_mask(3), 1),
    (causal_mask(5), 2),
    # 2 x 4, predicted pixel at column 1: holes in the upper row, one input left of the pixel
    (torch.tensor([[1, 0, 1, 1], [1, 0, 0, 0]], dtype=torch.bool), 1),
    # 3 x 6, reaching 1 column right of the pixel in the rows above, sparse
    (torch.tensor([[0, 1, 0, 1, 0, 1], [1, 1, 1, 1, 1, 0], [1, 0, 1, 1, 0, 0]], dtype=torch.bool), 4),
    # a single row: only pixels to the left
    (torch.tensor([[1, 1, 0]], dtype=torch.bool), 2),
]


@pytest.mark.parametrize("channels", [1, 2, 3])
@pytest.mark.parametrize("mask_column", CUSTOM_MASKS, ids=lambda mc: f"{tuple(mc[0].shape)}c{mc[1]}")
def test_extract_pairs_matches_naive_loop(channels: int, mask_column) -> None:
    mask, column = mask_column
    nb = Neighbourhood(mask, column)
    gen = torch.Generator().manual_seed(channels)
    images = torch.rand(2, channels, 7, 10, generator=gen, dtype=torch.float64)
    inputs, outputs = extract_pairs(images, nb)
    ref_in, ref_out = naive_pairs(images, mask, column)
    hp, wp = nb.grid_shape(7, 10)
    assert tuple(inputs.shape) == (2, hp, wp, channels * nb.num_inputs)
    assert tuple(outputs.shape) == (2, hp, wp, channels)
    assert torch.equal(inputs, ref_in)
    assert torch.equal(outputs, ref_out)


def test_extract_pairs_tall_image_and_window_sized_image() -> None:
    nb = Neighbourhood.square(5)
    gen = torch.Generator().manual_seed(1)
    tall = torch.rand(1, 2, 11, 6, generator=gen)
    inputs, outputs = extract_pairs(tall, nb)
    ref_in, ref_out = naive_pairs(tall, nb.input_mask, nb.column)
    assert torch.equal(inputs, ref_in) and torch.equal(outputs, ref_out)
    exact = torch.rand(3, 1, 3, 5, generator=gen)  # exactly the window: one predicted pixel
    inputs, outputs = extract_pairs(exact, nb)
    assert tuple(inputs.shape) == (3, 1, 1, 12) and tuple(outputs.shape) == (3, 1, 1, 1)
    assert torch.equal(inputs[:, 0, 0], torch.cat([exact[:, 0, :2].flatten(1), exact[:, 0, 2, :2]], dim=1))
    assert torch.equal(outputs[:, 0, 0, 0], exact[:, 0, 2, 2])


def test_grid_shape_and_offsets() -> None:
    nb = Neighbourhood.square(5)
    assert nb.grid_shape(64, 64) == (62, 60)
    assert nb.grid_shape(3, 5) == (1, 1)
    assert nb.grid_shape(10, 7) == (8, 3)
    custom = Neighbourhood(CUSTOM_MASKS[3][0], 4)
    assert custom.grid_shape(7, 10) == (5, 5)
    assert custom.right == 1
    offsets = Neighbourhood.square(3).offsets()
    assert offsets.tolist() == [[-1, -1], [-1, 0], [-1, 1], [0, -1]]
    # every offset precedes the pixel in raster order
    off = custom.offsets()
    assert bool(((off[:, 0] < 0) | ((off[:, 0] == 0) & (off[:, 1] < 0))).all())
