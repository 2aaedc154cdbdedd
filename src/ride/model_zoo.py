"""Models shipped inside the package (package data under `ride/weights/`), loaded by name (design §14).

A plain `pip install` has them, with no download. Each entry says what the model is, how it was made (the
repository's experiment config or command) and the figures measured on it. This is the one place where a shipped
model's figures are written: `ride models` prints them, and tests/test_model_zoo.py checks that README.md,
RESULTS.md and models/README.md state the same (RESULTS.md gives the commands that measured them). The weights are
stored once, here (the repository's models/ holds no copies). The files are checked against their SHA-256 before
loading, so a damaged installation fails with a clear error.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from .checkpoint import load


@dataclass(frozen=True)
class PretrainedModel:
    """One shipped model: its name, file, what it is and its measured figures (label -> value with units)."""

    name: str
    file: str
    sha256: str
    description: str
    use: str  # what it is the best choice for
    source: str  # how it was made: the experiment config (or models/README.md section) in the repository
    figures: dict[str, str] = field(default_factory=dict)


_ZOO: tuple[PretrainedModel, ...] = (
    PretrainedModel(
        name="bsds300_ride2",
        file="bsds300_ride2.pt",
        sha256="a058c113b4dada7e2ac32e399d65695791c560595f1fb6cdd9660b584220f5c6",
        description="RIDE, 2 spatial LSTM layers of 384 units, nb 5, MCGSM 32x4; grey natural images (BSDS300)",
        use="grey photographs: the best BSDS300 likelihoods and likelihood maps (other photographs: RESULTS.md)",
        source="experiments/bsds300_ride2_384w.toml (2 x 320 widened to 2 x 384)",
        figures={"tiles64 BSDS300 test": "3.888 ± 0.024 bit/px", "8-transform ensemble": "3.906 ± 0.024 bit/px"},
    ),
    PretrainedModel(
        name="photo_grey",
        file="photo_grey.pt",
        sha256="4afa42b48f8f3b7252711bb08d71e313f4b4ddcfdc544f05b9e0f87b4e959cd0",
        description="RIDE, 2 spatial LSTM layers of 64 units, nb 5, MCGSM 32x4, cells clipped to +-10; grey "
                    "photographs (BSDS300 train + the Wikimedia photographs' 39 training images)",
        use="lossless compression (the codec's default) and likelihoods of grey photographs that were never JPEG "
            "files; fast (64 units)",
        source="experiments/photo_grey.toml (bsds300_ride2_long2 trained further on the photograph mix)",
        figures={"tiles64 BSDS300 test": "3.769 ± 0.024 bit/px",
                 "tiles64 wikipedia_photos val": "4.408 ± 0.027 bit/px",
                 "whole wikipedia_photos val": "4.393 ± 0.262 bit/px"},
    ),
    PretrainedModel(
        name="photo_grey_nojpeg",
        file="photo_grey_nojpeg.pt",
        sha256="0b3a48cecf069f42cf423511b3128981cec540b60691bd76f6dd2702c00a33a6",
        description="photo_grey trained further on the Wikimedia photographs' 39 training images alone (never JPEG "
                    "at their size); same size and cell clip",
        use="the codec's second grey candidate: `ride compress` picks it for images that it codes smaller than "
            "photo_grey (photographs that were never JPEG files); likelihoods of such photographs",
        source="experiments/photo_grey_nojpeg.toml (photo_grey trained further on never-JPEG photographs)",
        figures={"tiles64 BSDS300 test": "3.745 ± 0.024 bit/px",
                 "tiles64 wikipedia_photos val": "4.416 ± 0.027 bit/px"},
    ),
    PretrainedModel(
        name="bsds300_ride2_long2",
        file="bsds300_ride2_long2.pt",
        sha256="7c6bcb453e271e48d840cc7acfec3078cf49cc6d3a9b1bf75f189c6e95c81bbe",
        description="RIDE, 2 spatial LSTM layers of 64 units, nb 5, MCGSM 32x4; grey natural images (BSDS300)",
        use="the codec's default before photo_grey (its streams still decode); BSDS300-like (JPEG) images when speed "
            "matters (64 units, not 384)",
        source="experiments/bsds300_ride2_long2.toml",
        figures={"tiles64 BSDS300 test": "3.780 ± 0.024 bit/px", "8-transform ensemble": "3.800 ± 0.024 bit/px"},
    ),
    PretrainedModel(
        name="bsds300_ride1",
        file="bsds300_ride1.pt",
        sha256="256d830d535d54c2f73320de5fee63ac09f5d857b5a8cf3857aaa8df490b984d",
        description="RIDE, 1 spatial LSTM layer of 256 units, nb 5, MCGSM 32x4; grey natural images (BSDS300)",
        use="the paper's 1-layer RIDE (one layer of 256 units: not a fast model; for speed: bsds300_ride2_long2)",
        source="experiments/bsds300_ride1_256w.toml (1 x 192 widened to 1 x 256)",
        figures={"tiles64 BSDS300 test": "3.811 ± 0.024 bit/px", "8-transform ensemble": "3.831 ± 0.024 bit/px"},
    ),
    PretrainedModel(
        name="bsds300_mcgsm",
        file="bsds300_mcgsm.pt",
        sha256="40c46363f428023352b44deadbaa037daa21ead272eb0b0e4568fe5c59e9eb3b",
        description="MCGSM baseline (RIDE with 0 layers), 5x9 causal window, 64 components; BSDS300",
        use="the paper's baseline, for comparisons; fastest",
        source="ride fit-mcgsm (models/README.md, bsds300_mcgsm)",
        figures={"tiles64 BSDS300 test": "3.695 ± 0.024 bit/px", "8-transform ensemble": "3.713 ± 0.024 bit/px"},
    ),
    PretrainedModel(
        name="photo_mcgsm",
        file="photo_mcgsm.pt",
        sha256="b06224bc15532d127f05adcf5e91cca3d64564f9e2d3b624d3d50600a12ca37f",
        description="MCGSM baseline (RIDE with 0 layers), 5x9 causal window, 64 components; grey photographs "
                    "(BSDS300 train + the Wikimedia photographs' 39 training images, as photo_grey)",
        use="the baseline of photo_grey on photographs, for comparisons; fastest",
        source="ride fit-mcgsm --data photos (models/README.md, photo_mcgsm)",
        figures={"tiles64 BSDS300 test": "3.665 ± 0.023 bit/px",
                 "tiles64 wikipedia_photos val": "4.377 ± 0.027 bit/px",
                 "whole wikipedia_photos val": "4.354 ± 0.265 bit/px"},
    ),
    PretrainedModel(
        name="photo_colour",
        file="photo_colour.pt",
        sha256="03f076232633dbcb372b36775804a4b33e23c0313e59d445d6933787949850ae",
        description="LosslessColourRIDE: R, then G given R, then B given R and G (exact discrete probabilities of "
                    "8-bit RGB); 2 spatial LSTM layers of 64 units over the three channels' 5x5 causal windows, "
                    "three MCGSM heads 32x4; RGB photographs (BSDS300 train + the Wikimedia photographs' 39 "
                    "training images), trained on patches of up to 128 px (whole photographs in long stripes)",
        use="8-bit RGB images: lossless compression (the codec's default for colour), exact likelihoods and maps "
            "in bits per sub-pixel",
        source="experiments/photo_colour.toml (five stages), then experiments/photo_colour_long.toml",
        figures={"tiles64 wikipedia_photos val, exact": "3.073 ± 0.019 bits per sub-pixel (lower is better)",
                 "tiles64 BSDS300 test, exact": "2.756 ± 0.011 bits per sub-pixel (lower is better)"},
    ),
    PretrainedModel(
        name="photo_colour_nojpeg",
        file="photo_colour_nojpeg.pt",
        sha256="288651de84d243ea5ae26a7f0fcdad7e04c0618f07ef402a9a7fcb8a1c6644d1",
        description="photo_colour trained further on the Wikimedia photographs' 39 training images alone (never "
                    "JPEG at their size), on patches of up to 128 px; same size",
        use="the codec's second colour candidate: `ride compress` picks it for RGB images that it codes smaller "
            "than photo_colour (photographs that were never JPEG files); exact likelihoods of such photographs",
        source="experiments/photo_colour_nojpeg.toml, then experiments/photo_colour_nojpeg_long.toml",
        figures={"tiles64 wikipedia_photos val, exact": "3.062 ± 0.019 bits per sub-pixel (lower is better)",
                 "tiles64 BSDS300 test, exact": "2.780 ± 0.011 bits per sub-pixel (lower is better)"},
    ),
    PretrainedModel(
        name="photo_colour_v1",
        file="photo_colour_v1.pt",
        sha256="0d08578ec634304c60876d1cead13973b31ac25f624bbf57932a7f47fdc16f88",
        description="the first photo_colour (2026-12-06; trained on patches of up to 48 px), kept so that the "
                    "colour files made with it still decode",
        use="decoding colour .ride files made with it (`ride decompress` finds it by the stream's fingerprint)",
        source="experiments/photo_colour.toml (the fourth stage's model)",
        figures={"tiles64 wikipedia_photos val, exact": "3.081 ± 0.019 bits per sub-pixel (lower is better)",
                 "tiles64 BSDS300 test, exact": "2.763 ± 0.011 bits per sub-pixel (lower is better)"},
    ),
    PretrainedModel(
        name="bsds300_colour",
        file="bsds300_colour.pt",
        sha256="2d9e9eec1ec8d9871048abc2e6a296f6a9384c6965f039b202a6a122dece1f2b",
        description="ColourRIDE (Y, then Cb/Cr given Y), trained on 32x32 BSDS300 RGB patches (under-trained)",
        use="RGB images: sampling and likelihoods",
        source="experiments/bsds300_colour.toml",
        figures={"32x32 BSDS300 test patches, discrete bound": "3.076 ± 0.006 bits/dim (lower is better)"},
    ),
)

DEFAULT_CODEC_MODEL = "photo_grey"
DEFAULT_COLOUR_CODEC_MODEL = "photo_colour"  # `ride compress` on RGB images
#: The models among which `ride compress` chooses, per image, the one that codes it smallest (grey: False, RGB:
#: True); the default first, so that it wins ties (`ride.codec.selection`).
CODEC_CANDIDATES: dict[bool, tuple[str, ...]] = {False: (DEFAULT_CODEC_MODEL, "photo_grey_nojpeg"),
                                                 True: (DEFAULT_COLOUR_CODEC_MODEL, "photo_colour_nojpeg")}


def pretrained_models() -> list[PretrainedModel]:
    """The shipped models, best grey model first."""
    return list(_ZOO)


def _entry(name: str) -> PretrainedModel:
    for entry in _ZOO:
        if entry.name == name:
            return entry
    raise ValueError(f"no shipped model named {name!r}; shipped: {', '.join(e.name for e in _ZOO)}")


def pretrained_path(name: str) -> Path:
    """Path of a shipped model's checkpoint file, its SHA-256 checked (ValueError if missing or damaged)."""
    entry = _entry(name)
    path = Path(str(resources.files("ride") / "weights" / entry.file))
    if not path.is_file():
        raise ValueError(f"shipped model {name!r} is missing from this installation (expected {path})")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != entry.sha256:
        raise ValueError(f"shipped model file {path} is damaged (SHA-256 {digest[:12]}..., expected "
                         f"{entry.sha256[:12]}...); reinstall ride")
    return path


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """A checkpoint path for a CLI's `--checkpoint`: an existing file, else the shipped model of that name."""
    path = Path(name_or_path)
    if path.is_file() or str(name_or_path) not in {e.name for e in _ZOO}:
        return path  # a missing file is reported by the loader, naming the path
    return pretrained_path(str(name_or_path))


def pretrained(name: str = DEFAULT_CODEC_MODEL, map_location: str | torch.device = "cpu") -> nn.Module:
    """Load a shipped model by name (see `pretrained_models()`), in eval mode."""
    return load(pretrained_path(name), map_location=map_location)

