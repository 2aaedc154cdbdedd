"""Portability of the codec's integer model (`ride.codec.fixedpoint`, format version 2):
- the torch fast path, the compiled (numba) kernels and the independent NumPy reference give identical integer CDF
  tables (all 257 bin edges of every pixel) on several images, stripe batches and models (random small ones and
  shipped ones); the kernel and torch backends write identical streams and read each other's;
- the exactness bounds of the float GEMMs hold for the shipped models;
- streams made with torch's native kernels decode under ATEN_CPU_CAPABILITY=default and vice versa, at 1 and 2
  threads, and both encoders write identical bytes;
- golden streams (tests/golden, made by tests/golden/make_golden.py) decode to their image and are re-encoded
  byte for byte, so the format cannot drift silently.
No CUDA machine was available when this was written: the GPU path is untested (the same integer definitions apply).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import repeat_image
from PIL import Image

import ride
from ride.codec import compress, decompress, integer_model, kernels
from ride.codec.fixedpoint import CELL_CLIP_INT, F32_EXACT, F64_EXACT, FrontStepper, quantise
from ride.codec.fixedpoint_ref import reference_cdf_tables
from ride.codec.format import unpack_header

GOLDEN = Path(__file__).parent / "golden"


def _canvas(im, images: np.ndarray, pad: int) -> torch.Tensor:
    """Pixel codes [B, top + H, left + W + right] of uint8 images [B, H, W] in a frame of value pad."""
    top, left, right = im.margin
    b, h, w = images.shape
    canvas = torch.full((b, top + h, left + w + right), 2 * pad + 1, dtype=torch.int64)
    canvas[:, top:, left : left + w] = 2 * torch.from_numpy(images.astype(np.int64)) + 1
    return canvas


def _front_tables(stepper, front_tables) -> np.ndarray:
    """Cq at all 257 edges of every cell [B, Hp, Wp, 257], front by front: front_tables(t) gives the front's
    [B n, 257] tables."""
    b = stepper.batch
    out = np.zeros((b, stepper.hp, stepper.wp, 257), dtype=np.int64)
    for t in range(stepper.num_fronts):
        lo, hi = stepper.rows(t)
        if lo > hi:
            continue
        rows = np.arange(lo, hi + 1)
        out[:, rows, t - stepper.skew * rows] = front_tables(t).reshape(b, hi - lo + 1, 257)
    return out


def _fast_tables(im, canvas: torch.Tensor) -> np.ndarray:
    """The tables of the torch front stepper (its `cdf_at`, checked against the codec's `cdf` path)."""
    stepper = FrontStepper(im, canvas.clone())

    def front(t: int) -> np.ndarray:
        means, weights = stepper.step(t)
        edges = torch.arange(257).expand(means.shape[0], 257)
        tables = stepper.cdf_at(means, weights, edges)
        fast = stepper.cdf(stepper.prepare(means, weights), edges[:, 1:])  # the codec's path: edges 1..256
        assert torch.equal(fast, tables[:, 1:])
        return tables.numpy()

    return _front_tables(stepper, front)


def _kernel_tables(im, canvas: torch.Tensor) -> np.ndarray:
    """The tables of the compiled (numba) front stepper (Cq(0) = 0)."""
    stepper = kernels.KernelStepper(im, canvas.numpy().astype(np.int32))

    def front(t: int) -> np.ndarray:
        mix = stepper.step(t)
        edges = np.broadcast_to(np.arange(1, 257), (mix.total.shape[0], 256))
        return np.concatenate([np.zeros((edges.shape[0], 1), dtype=np.int64), stepper.cdf(mix, edges)], 1)

    return _front_tables(stepper, front)


def _grey(smooth_images, b: int, h: int, w: int, seed: int) -> np.ndarray:
    return (smooth_images(b, 1, h, w, seed=seed, noise=0.03)[:, 0] * 256).clamp(0, 255).to(torch.uint8).numpy()


@pytest.mark.parametrize("kind", ["2 layers nb 5", "1 layer nb 3", "3 layers nb 5"])
def test_fast_path_equals_numpy_reference_small_models(tiny_ride, smooth_images, kind: str) -> None:
    layers, nb = {"2 layers nb 5": (2, 5), "1 layer nb 3": (1, 3), "3 layers nb 5": (3, 5)}[kind]
    model = tiny_ride(num_layers=layers, nb_size=nb, num_hiddens=5, num_components=4, num_scales=3, seed=layers)
    im = quantise(model.float())
    for seed, (b, h, w) in enumerate([(2, 9, 11), (1, 5, 14), (3, 7, 4)]):
        canvas = _canvas(im, _grey(smooth_images, b, h, w, seed), pad=90 + seed)
        ref = reference_cdf_tables(im, canvas.numpy())
        assert np.array_equal(_fast_tables(im, canvas), ref)
        if kernels.available():
            assert np.array_equal(_kernel_tables(im, canvas), ref)
        assert (np.diff(ref, axis=-1) >= 0).all() and (ref[..., -1] > 0).all()  # a CDF with mass


def test_fast_path_equals_numpy_reference_shipped_model(smooth_images) -> None:
    model = ride.pretrained("bsds300_ride2_long2")
    im = integer_model(model)
    golden = np.asarray(Image.open(GOLDEN / "image_24x32.png"))
    for images, pad in ((golden[None, 4:14, 6:20], 120), (_grey(smooth_images, 2, 6, 9, seed=3), 40)):
        canvas = _canvas(im, images, pad)
        ref = reference_cdf_tables(im, canvas.numpy())
        assert np.array_equal(_fast_tables(im, canvas), ref)
        if kernels.available():
            assert np.array_equal(_kernel_tables(im, canvas), ref)


@pytest.mark.skipif(not kernels.available(), reason="numba is not installed: the compiled kernels are not used")
def test_kernels_equal_numpy_reference_photo_grey(smooth_images) -> None:
    """The codec's default model on a frame with two stripes: compiled kernels against the NumPy reference."""
    im = integer_model(ride.pretrained("photo_grey"))
    canvas = _canvas(im, _grey(smooth_images, 2, 7, 12, seed=5), pad=77)
    assert np.array_equal(_kernel_tables(im, canvas), reference_cdf_tables(im, canvas.numpy()))


def test_a_tighter_cell_clip_is_format_4_and_the_stream_states_it(tiny_ride, smooth_images) -> None:
    """A model whose cells are clipped below format 2's 10^4 (RIDEConfig.cell_clip, as photo_grey's) codes with that
    clip in every path (reference, torch, kernels) and writes format 4, whose header states the clip: any model with
    the same integer tables decodes it, and format-2 streams still decode with 10^4."""
    from dataclasses import asdict

    model = tiny_ride(num_layers=2, nb_size=3, num_hiddens=5, num_components=4, num_scales=3, seed=9).float()
    with torch.no_grad():
        for layer in model.layers:
            layer.bias[3 * 5 :] = 3.0  # forget gates near 1: the cells grow along the diagonals
    clipped = ride.RIDE(**{**asdict(model.config), "cell_clip": 0.5}).float()
    clipped.load_state_dict(model.state_dict())
    im, im_clipped = quantise(model), quantise(clipped)
    assert (im.cell_clip, im_clipped.cell_clip) == (CELL_CLIP_INT, 1 << 14)
    assert im_clipped.fingerprint == im.fingerprint  # the tables; the stream states the clip
    canvas = _canvas(im_clipped, _grey(smooth_images, 2, 9, 11, seed=4), pad=100)
    ref = reference_cdf_tables(im_clipped, canvas.numpy())
    assert not np.array_equal(ref, reference_cdf_tables(im, canvas.numpy())), "the clip was never hit"
    assert np.array_equal(_fast_tables(im_clipped, canvas), ref)
    if kernels.available():
        assert np.array_equal(_kernel_tables(im_clipped, canvas), ref)
    image = _grey(smooth_images, 1, 13, 17, seed=2)[0]
    backends = ("kernels", "torch") if kernels.available() else ("torch",)
    streams = {b: compress(clipped, image, stripes=2, backend=b, repeat=False) for b in backends}
    data, plain = streams[backends[0]], compress(model, image, stripes=2, repeat=False)
    assert len(set(streams.values())) == 1 and data != plain
    assert (data[4], plain[4]) == (4, 2) and unpack_header(data)[0].cell_clip == 1 << 14
    for backend in backends:
        for decoder, stream in ((clipped, data), (model, data), (clipped, plain)):
            assert np.array_equal(decompress(decoder, stream, backend=backend), image)


@pytest.mark.skipif(not kernels.available(), reason="numba is not installed: the compiled kernels are not used")
@pytest.mark.parametrize("digit_bits", [1, 2, 4, 8])
def test_kernel_and_torch_backends_write_and_read_the_same_streams(smooth_images, digit_bits: int) -> None:
    model = ride.load(GOLDEN / "tiny.pt")
    image = _grey(smooth_images, 1, 13, 17, seed=digit_bits)[0]
    streams = {b: compress(model, image, stripes=2, digit_bits=digit_bits, backend=b) for b in ("kernels", "torch")}
    assert streams["kernels"] == streams["torch"]
    for backend in ("kernels", "torch"):
        assert np.array_equal(decompress(model, streams["kernels"], backend=backend), image)


def test_without_numba_the_torch_backend_codes(monkeypatch, smooth_images) -> None:
    model = ride.load(GOLDEN / "tiny.pt")
    image = _grey(smooth_images, 1, 9, 10, seed=1)[0]
    stream = compress(model, image, backend="torch")
    monkeypatch.setattr(kernels, "numba", None)
    assert not kernels.available()
    assert compress(model, image) == stream
    assert np.array_equal(decompress(model, stream), image)
    with pytest.raises(RuntimeError, match="numba"):
        compress(model, image, backend="kernels")
    with pytest.raises(ValueError, match="backend"):
        compress(model, image, backend="gpu")


@pytest.mark.parametrize("name", ["photo_grey", "bsds300_ride2_long2", "bsds300_ride2"])
def test_exactness_bounds_of_the_shipped_models(name: str) -> None:
    im = quantise(ride.pretrained(name))
    a = im.hidden_levels
    for w in [*im.layer_weights, im.out_weight]:  # float32 GEMMs on h in [-A, A]
        assert (a * np.abs(w).sum(0) < F32_EXACT).all()
    assert (511 * np.abs(im.in_weight).sum(0) + np.abs(im.in_bias) < F64_EXACT).all()  # float64, pixel codes
    assert ((1 << 30) * im.beta2.sum(0) < F64_EXACT).all()  # float64, squared features < 2^30


_WORKER = r"""
import json, sys
import numpy as np, torch
import ride
from ride.codec import compress, decompress
jobs = json.loads(sys.argv[1])
torch.set_num_threads(jobs[0]["threads"])
for job in jobs:
    model = ride.load(job["model"]) if job["model"].endswith(".pt") else ride.pretrained(job["model"])
    image = np.load(job["image"])
    open(job["out"], "wb").write(compress(model, image, stripes=job["stripes"]))
    np.save(job["decoded"], decompress(model, open(job["stream"], "rb").read()))
print(torch.backends.cpu.get_cpu_capability())
"""


def test_streams_cross_kernel_sets_and_threads(tmp_path) -> None:
    """Encode natively in this process (tiny model, the shipped 2 x 64 and a tiny colour model); subprocesses with
    ATEN_CPU_CAPABILITY=default and numba's kernels compiled for a generic CPU (1 and 2 threads), and native
    (2 threads) decode those streams and encode the same image, which must give the same bytes."""
    images = {"grey": np.asarray(Image.open(GOLDEN / "image_24x32.png")),
              "rgb": np.asarray(Image.open(GOLDEN / "colour" / "image_rgb_20x26.png"))}
    for kind, image in images.items():
        np.save(tmp_path / f"{kind}.npy", image)
    torch.set_num_threads(1)
    # name -> (model, image); the colour codec (format 3) with a tiny 2-layer colour model
    models = {"tiny": (str(GOLDEN / "tiny.pt"), "grey"), "long2": ("bsds300_ride2_long2", "grey"),
              "colour": (str(GOLDEN / "colour" / "tiny_colour.pt"), "rgb")}
    native = {}
    for name, (path, kind) in models.items():
        model = ride.load(path) if path.endswith(".pt") else ride.pretrained(path)
        native[name] = compress(model, images[kind], stripes=2)
        (tmp_path / f"{name}.ride").write_bytes(native[name])
    capabilities = set()
    for capability, threads in ((None, 2), ("default", 1), ("default", 2)):
        env = dict(os.environ)
        env.pop("ATEN_CPU_CAPABILITY", None)
        if capability is not None:
            env["ATEN_CPU_CAPABILITY"] = capability
            # the compiled codec kernels for a generic x86-64 / ARM CPU too (no AVX), compiled afresh
            env["NUMBA_CPU_NAME"] = "generic"
            env["NUMBA_CACHE_DIR"] = str(tmp_path / "numba_generic")
        tag = f"{capability}_{threads}"
        jobs = [{"threads": threads, "model": path, "image": str(tmp_path / f"{kind}.npy"), "stripes": 2,
                 "stream": str(tmp_path / f"{name}.ride"), "out": str(tmp_path / f"{name}_{tag}.ride"),
                 "decoded": str(tmp_path / f"{name}_{tag}.npy")} for name, (path, kind) in models.items()]
        done = subprocess.run([sys.executable, "-c", _WORKER, json.dumps(jobs)], env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        capabilities.add(done.stdout.strip())
        for name, (_, kind) in models.items():
            assert np.array_equal(np.load(tmp_path / f"{name}_{tag}.npy"), images[kind]), (name, tag)
            assert (tmp_path / f"{name}_{tag}.ride").read_bytes() == native[name], (name, tag)
    assert "DEFAULT" in capabilities and len(capabilities) == 2  # two kernel sets really ran


def _golden_cases() -> list[Path]:
    return sorted(GOLDEN.glob("*.ride"))


@pytest.mark.parametrize("path", _golden_cases(), ids=lambda p: p.name)
def test_golden_streams(path: Path) -> None:
    model = ride.load(GOLDEN / "tiny.pt") if path.name.startswith("tiny") else ride.pretrained("bsds300_ride2_long2")
    image = np.asarray(Image.open(GOLDEN / "image_24x32.png"))
    repeat = "_repeat_" in path.name  # format 7: the repeat flag, on the image with a flat block
    if repeat:
        image = repeat_image(image)
    data = path.read_bytes()
    header, _ = unpack_header(data)
    assert header.version == (7 if repeat else 2) and header.fingerprint == integer_model(model).fingerprint
    assert np.array_equal(decompress(model, data), image)
    for backend in ("kernels", "torch") if kernels.available() else ("torch",):
        assert compress(model, image, stripes=header.stripes, digit_bits=header.digit_bits, repeat=repeat,
                        backend=backend) == data


def test_golden_set_is_complete() -> None:
    assert len(_golden_cases()) == 5, "run tests/golden/make_golden.py, then --repeat"


@pytest.mark.parametrize("digit_bits", [1, 2, 4, 8])
def test_repeat_flag_grey_round_trips_on_both_backends(smooth_images, digit_bits: int) -> None:
    """Format 7: flat blocks, repeated rows and the ends of the value range round-trip on both backends with
    identical streams; a flat image costs a few hundredths of a bit per pixel; never (much) larger than format 2."""
    model = ride.load(GOLDEN / "tiny.pt")
    image = repeat_image(_grey(smooth_images, 1, 21, 25, seed=digit_bits)[0])
    image[:3, -5:] = 255
    image[-4:, :2] = 0
    image[12:14] = image[11]
    backends = ("kernels", "torch") if kernels.available() else ("torch",)
    for stripes in (1, 3):
        streams = {b: compress(model, image, stripes=stripes, digit_bits=digit_bits, backend=b) for b in backends}
        data = streams[backends[0]]
        assert len(set(streams.values())) == 1 and unpack_header(data)[0].version == 7
        for backend in backends:
            assert np.array_equal(decompress(model, data, backend=backend), image)
        plain = compress(model, image, stripes=stripes, digit_bits=digit_bits, repeat=False)
        assert len(data) < len(plain) + 8
    flat = np.full((80, 100), 17, np.uint8)
    data, plain = compress(model, flat, digit_bits=digit_bits), compress(model, flat, repeat=False)
    assert np.array_equal(decompress(model, data), flat)
    assert 8 * unpack_header(data)[0].num_bytes < 0.05 * flat.size < 8 * unpack_header(plain)[0].num_bytes
