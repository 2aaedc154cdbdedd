"""Tests for ride.slstm and ride.wavefront: the anti-diagonal sweep equals the raster reference (values and
gradients), gradcheck of the hand-written backward, and the packed layout."""

from __future__ import annotations

import pytest
import torch
from conftest import use_path
from torch import nn

from ride import sweep_kernels
from ride.slstm import SpatialLSTM, run_layers
from ride.wavefront import CELL_CLIP, DiagonalLayout, DiagonalSweep

F64 = torch.float64
SHAPES = [(5, 9), (9, 4), (1, 7), (6, 1), (1, 1), (3, 3)]


@pytest.fixture(params=["compiled", "torch"])
def cell_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The sweep's cell updates in the compiled loops (`ride.sweep_kernels`) or in torch's passes."""
    return use_path(request.param, sweep_kernels, monkeypatch)


def make_layers(num_layers: int, input_size: int, hidden: int, seed: int) -> nn.ModuleList:
    """Layers with weights large enough for saturating gates and non-zero biases (the default init is tiny)."""
    torch.manual_seed(seed)
    layers = nn.ModuleList(SpatialLSTM(input_size if k == 0 else hidden, hidden, init_scale=0.6)
                           for k in range(num_layers)).to(F64)
    gen = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for layer in layers:
            layer.bias.copy_(0.5 * torch.randn(layer.bias.shape, generator=gen, dtype=F64))
    return layers


def reference_cell_loop(layer: SpatialLSTM, inputs: torch.Tensor) -> torch.Tensor:
    """The equations of design §4 written out per pixel, independent of both implementations."""
    b, height, width, _ = inputs.shape
    d = layer.hidden_size
    h = inputs.new_zeros(b, height + 1, width + 1, d)  # row 0 and column 0: zero boundary states
    c = inputs.new_zeros(b, height + 1, width + 1, d)
    w_in, w_up, w_left = layer.weight_in, layer.weight_rec[:d], layer.weight_rec[d:]
    for i in range(height):
        for j in range(width):
            pre = inputs[:, i, j] @ w_in + h[:, i, j + 1] @ w_up + h[:, i + 1, j] @ w_left + layer.bias
            g = torch.tanh(pre[:, :d])
            o, ig, f_r, f_c = torch.sigmoid(pre[:, d:]).split(d, dim=1)
            c[:, i + 1, j + 1] = g * ig + c[:, i + 1, j] * f_c + c[:, i, j + 1] * f_r
            h[:, i + 1, j + 1] = torch.tanh(c[:, i + 1, j + 1] * o)
    return h[:, 1:, 1:]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_raster_matches_spec_equations(shape: tuple[int, int]) -> None:
    layer = make_layers(1, 3, 4, seed=1)[0]
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, *shape, 3, generator=gen, dtype=F64)
    with torch.no_grad():
        expected = reference_cell_loop(layer, x)
        torch.testing.assert_close(layer(x, impl="raster"), expected, atol=1e-12, rtol=0)
        torch.testing.assert_close(layer(x, impl="sweep"), expected, atol=1e-12, rtol=0)
    assert expected.abs().max() > 0.1  # non-trivial states


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_sweep_equals_raster_values_and_gradients(num_layers: int, shape: tuple[int, int], cell_path: str) -> None:
    layers = make_layers(num_layers, 3, 4, seed=num_layers)
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(3, *shape, 3, generator=gen, dtype=F64, requires_grad=True)
    weight = torch.randn(3, *shape, 4, generator=gen, dtype=F64)  # a random linear read-out of all states
    params = list(layers.parameters())
    results = {}
    for impl in ("sweep", "raster"):
        h = run_layers(layers, x, impl=impl)
        grads = torch.autograd.grad((h * weight).sum(), [x, *params])
        results[impl] = (h.detach(), grads)
    h_sweep, g_sweep = results["sweep"]
    h_raster, g_raster = results["raster"]
    assert h_sweep.shape == (3, *shape, 4)
    torch.testing.assert_close(h_sweep, h_raster, atol=1e-12, rtol=0)
    names = ["inputs"] + [name for name, _ in layers.named_parameters()]
    for name, a, b in zip(names, g_sweep, g_raster, strict=True):
        torch.testing.assert_close(a, b, atol=1e-11, rtol=1e-10, msg=f"gradient of {name}")
    # the gradients are not trivially zero (a 1 x 1 grid has no recurrence, so weight_rec gets none)
    for name, g in zip(names, g_raster, strict=True):
        assert float(g.abs().max()) > 0 or (shape == (1, 1) and name.endswith("weight_rec")), name


def test_single_layer_forward_impls_agree_in_float32() -> None:
    torch.manual_seed(0)
    layer = SpatialLSTM(5, 6, init_scale=0.5)
    x = torch.randn(2, 7, 8, 5)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), layer(x, impl="raster"), atol=2e-6, rtol=1e-5)


class Stack(nn.Module):
    """Stacked layers behind one forward, so torch.func.functional_call can swap every parameter."""

    def __init__(self, layers: nn.ModuleList) -> None:
        super().__init__()
        self.layers = layers

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return run_layers(self.layers, inputs, impl="sweep")


def test_gradcheck_sweep_inputs_and_parameters(cell_path: str) -> None:
    stack = Stack(make_layers(2, 2, 2, seed=3))
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 4, 2, generator=gen, dtype=F64, requires_grad=True)
    names = [name for name, _ in stack.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for p in stack.parameters()]

    def sweep(inputs: torch.Tensor, *values: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(stack, dict(zip(names, values, strict=True)), (inputs,))

    assert torch.autograd.gradcheck(sweep, (x, *params), eps=1e-6, atol=1e-8)


def test_gradcheck_diagonal_sweep_function(cell_path: str) -> None:
    gen = torch.Generator().manual_seed(5)
    layout = DiagonalLayout.get(4, 3)
    dim, k = 2, 3
    grid = torch.randn(2, 4, 3, k, generator=gen, dtype=F64)
    x = layout.pack(grid).requires_grad_(True)  # zero pads, as the layer produces them
    w_in = (0.7 * torch.randn(k, 5 * dim, generator=gen, dtype=F64)).requires_grad_(True)
    bias = (0.5 * torch.randn(5 * dim, generator=gen, dtype=F64)).requires_grad_(True)
    w_rec = (0.7 * torch.randn(2 * dim, 5 * dim, generator=gen, dtype=F64)).requires_grad_(True)

    def f(*args: torch.Tensor) -> torch.Tensor:
        return layout.unpack(DiagonalSweep.apply(*args, layout, CELL_CLIP))

    assert torch.autograd.gradcheck(f, (x, w_in, bias, w_rec), eps=1e-6, atol=1e-8)
    # the pads of the output hold the zero states outside the grid, and so do those of the input's gradient
    h = DiagonalSweep.apply(x, w_in, bias, w_rec, layout, CELL_CLIP)
    pads = torch.ones(layout.length, dtype=torch.bool)
    pads[layout.cell_index(torch.device("cpu"))] = False
    assert torch.equal(h[pads], torch.zeros_like(h[pads]))
    (dx,) = torch.autograd.grad(h.sum(), x)
    assert torch.equal(dx[pads], torch.zeros_like(dx[pads]))


@pytest.mark.parametrize("shape", [*SHAPES, (2, 6), (7, 2)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_diagonal_layout_pack_unpack_round_trip(shape: tuple[int, int]) -> None:
    height, width = shape
    layout = DiagonalLayout(height, width)
    assert layout.length == height * width + 2 * (height + width)
    assert layout.num_diagonals == height + width - 1
    assert sum(n for _, n, _ in layout.steps) == height * width
    index = layout.cell_index(torch.device("cpu"))
    assert index.unique().numel() == height * width
    gen = torch.Generator().manual_seed(height * 10 + width)
    grid = torch.randn(3, height, width, 2, generator=gen)
    packed = layout.pack(grid)
    assert packed.shape == (layout.length, 3, 2)
    assert torch.equal(layout.unpack(packed), grid)
    # everything that is not a cell is a zero pad
    pads = torch.ones(layout.length, dtype=torch.bool)
    pads[index] = False
    assert int(pads.sum()) == 2 * (height + width)
    assert torch.equal(packed[pads], torch.zeros_like(packed[pads]))
    # cells of one diagonal are contiguous and ordered by row: the slot of (i, j) is increasing in (i + j, i)
    cells = sorted(((i + j, i), int(index[i * width + j])) for i in range(height) for j in range(width))
    slots = [slot for _, slot in cells]
    assert slots == sorted(slots)
    assert DiagonalLayout.get(height, width) is DiagonalLayout.get(height, width)


def test_layout_neighbour_slots() -> None:
    # for every step, slot up + k holds the up neighbour and up + k + 1 the left neighbour of the k-th cell
    height, width = 4, 6
    layout = DiagonalLayout(height, width)
    index = layout.cell_index(torch.device("cpu")).view(height, width)
    slot_of = {int(index[i, j]): (i, j) for i in range(height) for j in range(width)}
    for cur, n, up in layout.steps:
        for k in range(n):
            i, j = slot_of[cur + k]
            assert slot_of.get(up + k) == ((i - 1, j) if i > 0 else None)
            assert slot_of.get(up + k + 1) == ((i, j - 1) if j > 0 else None)


def test_bad_impl_raises() -> None:
    layer = SpatialLSTM(2, 3)
    with pytest.raises(ValueError, match="'diagonal'"):
        layer(torch.zeros(1, 2, 2, 2), impl="diagonal")


@pytest.mark.parametrize("clip", [2.0, 1e4])
def test_cell_clip_is_the_same_in_both_implementations(clip: float, cell_path: str) -> None:
    # Forget biases of +3 make f_r + f_c ~ 1.9, so the cells grow geometrically along the diagonals; a small clip
    # is hit on a small grid, the default one on a larger grid. Values and gradients must agree where clipped.
    size = 12 if clip < 10 else 40
    layers = make_layers(1, 3, 4, seed=11)
    with torch.no_grad():
        layers[0].bias[3 * 4 :] = 3.0
        layers[0].bias[:4] = 1.0
    x = torch.randn(2, size, size + 3, 3, dtype=F64, generator=torch.Generator().manual_seed(2))
    x.requires_grad_(True)
    layers[0].cell_clip = float("inf")
    unclipped = run_layers(layers, x).detach()
    layers[0].cell_clip = clip
    fast, ref = run_layers(layers, x), run_layers(layers, x, impl="raster")
    if clip < 10:  # a clip this small is hit and changes h
        assert not torch.allclose(fast, unclipped), "the clip was never hit: the test would not test it"
    else:  # the default clip acts only where tanh(c * o) has saturated: h is unchanged
        torch.testing.assert_close(fast.detach(), unclipped)
    assert torch.isfinite(fast).all()
    torch.testing.assert_close(fast, ref, rtol=1e-10, atol=1e-12)
    params = [x, *layers.parameters()]
    weights = torch.randn(fast.shape, dtype=F64, generator=torch.Generator().manual_seed(3))
    for a, b in zip(torch.autograd.grad((fast * weights).sum(), params),
                    torch.autograd.grad((ref * weights).sum(), params), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("shape", [(7, 5), (3, 11), (1, 4)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_inference_sweep_equals_training_sweep(shape: tuple[int, int], cell_path: str) -> None:
    # Without gradients the sweep keeps only one diagonal's gates (a different code path).
    layers = make_layers(2, 3, 5, seed=21)
    x = torch.randn(3, *shape, 3, dtype=F64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        inference = run_layers(layers, x)
    training = run_layers(layers, x.requires_grad_(True))
    assert training.requires_grad
    torch.testing.assert_close(inference, training.detach(), rtol=0, atol=0)


def test_compiled_cell_updates_are_as_accurate_as_torch_passes_in_float32(monkeypatch: pytest.MonkeyPatch) -> None:
    """At the trainer's dtype and a realistic size both paths stay as close to the float64 result as float32 allows
    (the recurrence amplifies the last bit's differences to ~1e-5 for either), values and gradients."""
    pytest.importorskip("numba", reason="the compiled cell updates need numba")
    torch.manual_seed(8)
    layers = nn.ModuleList([SpatialLSTM(12, 16, init_scale=0.5), SpatialLSTM(16, 16, init_scale=0.5)])
    x = torch.randn(6, 13, 17, 12)
    w = torch.randn(6, 13, 17, 16)

    def run(dtype: torch.dtype) -> tuple[torch.Tensor, list[torch.Tensor]]:
        layers.to(dtype)
        inputs = x.to(dtype).requires_grad_(True)
        params = [inputs, *layers.parameters()]
        h = run_layers(layers, inputs)
        return h.detach().double(), [g.double() for g in torch.autograd.grad((h * w.to(dtype)).sum(), params)]

    h_ref, g_ref = run(F64)
    errors = {}
    for path, usable in (("compiled", sweep_kernels.usable), ("torch", lambda t: False)):
        monkeypatch.setattr(sweep_kernels, "usable", usable)
        h, grads = run(torch.float32)
        errors[path] = [float((h - h_ref).abs().max())] + [
            float((a - b).abs().max() / b.abs().max()) for a, b in zip(grads, g_ref, strict=True)]
    for fast, slow in zip(errors["compiled"], errors["torch"], strict=True):
        assert fast < 1e-4 and slow < 1e-4, errors
        assert fast < 3 * slow + 1e-6, errors  # not measurably less accurate than the torch passes
