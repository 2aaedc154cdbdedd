"""`ride compress` / `ride decompress`: lossless coding of 8-bit grey and RGB images with a RIDE model (`ride.codec`).

    ride compress IN.png -o OUT.ride                 one image
    ride compress A.png B.png --out-dir DIR          several: DIR/A.ride, DIR/B.ride
    ride decompress IN.ride -o OUT.png               (or several with --out-dir)

Grey streams are format version 7, colour streams version 8 (the repeat flags of `ride.codec.repeat` before each
value, and for colour the adaptive probability maps of `ride.codec.apm`; portable: exact integer arithmetic, see
`ride.codec`); files of versions 1 to 6 still decode. `--checkpoint M`
names a checkpoint file or a shipped model, and may be given several times; compress codes each image with the one
that codes a sample of it smallest (`ride.codec.selection`), by default among the shipped candidates for its mode
(`model_zoo.CODEC_CANDIDATES`: photo_grey and photo_grey_nojpeg for 8-bit grey images, photo_colour and
photo_colour_nojpeg for 8-bit RGB ones); one `--checkpoint` codes with that model alone, without the sample.
Decompress uses the given model whose fingerprint the stream carries, by default the shipped one. Other images
(alpha channels, 16-bit, palettes, CMYK...) are refused, never converted silently. Prints bits/px (and bits per
sub-pixel for colour) and the time per image; a progress bar counts fronts on stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import load
from ..model_zoo import (
    CODEC_CANDIDATES,
    pretrained_models,
    resolve_checkpoint,
)
from ..runtime import check_threads

_MODES = {"RGBA": "a colour image with alpha (RGBA)", "P": "a palette image",
          "I;16": "a 16-bit image", "I;16B": "a 16-bit image", "I;16L": "a 16-bit image", "I": "a 32-bit image",
          "F": "a floating-point image", "1": "a 1-bit image", "LA": "a grey image with alpha (LA)",
          "CMYK": "a CMYK image", "YCbCr": "a YCbCr image"}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `compress` and `decompress` subcommands to the `ride` parser's subparsers."""
    for name, verb, src, dst in (("compress", "compress 8-bit grey or RGB images losslessly", "IN.png", ".ride"),
                                 ("decompress", "decode .ride streams back to PNG", "IN.ride", ".png")):
        p = subparsers.add_parser(name, help=f"{verb} with a RIDE model (range coding)",
                                  description=f"{verb.capitalize()} with a RIDE model's discrete probabilities "
                                              "and a range coder (constriction).")
        p.add_argument("inputs", nargs="+", metavar=src, help="input file(s)")
        out = p.add_mutually_exclusive_group(required=True)
        out.add_argument("-o", "--out", metavar=f"OUT{dst}", help="output file (one input)")
        out.add_argument("--out-dir", dest="out_dir", metavar="DIR", help=f"folder for the outputs (NAME{dst})")
        p.add_argument("--checkpoint", action="append", default=None, metavar="M",
                       help="model file or shipped model name, may be repeated (compress: the one that codes a "
                            "sample of the image smallest, by default among "
                            f"{', '.join(CODEC_CANDIDATES[False])} for grey images and "
                            f"{', '.join(CODEC_CANDIDATES[True])} for RGB ones; one --checkpoint: that model, no "
                            "sample; decompress: the one whose fingerprint the stream carries, by default among the "
                            "shipped models); decoding needs the model that encoded")
        p.add_argument("--threads", type=int, default=0,
                       help="torch CPU threads (default: torch's, all cores; format-2 streams do not depend on it)")
        p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar on stderr")
        if name == "compress":
            p.add_argument("--stripes", type=int, default=None, metavar="K",
                           help="code the image as K horizontal stripes side by side (default: one per ~512 rows "
                                "for RGB and for grey models with a tight cell clip (photo_grey), ~128 for other "
                                "grey models; each stripe's top rows lose the context above them)")
            p.add_argument("--exact", action="store_true",
                           help="one stripe: every pixel coded with its full causal context, exactly the model's "
                                "code length (format 2 always uses the exact integer CDF of all 256 values); "
                                "decompress reads the choice from the file")
        p.set_defaults(func=run_compress if name == "compress" else run_decompress, suffix=dst)


def read_image(path: str | Path) -> np.ndarray:
    """An 8-bit grey (uint8 [H, W]) or RGB (uint8 [H, W, 3]) image file; ValueError for other modes (alpha,
    16-bit, palette, ...) or unreadable files."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "RGB"):
                kind = _MODES.get(im.mode, f"an image of mode {im.mode!r}")
                hint = (": the alpha channel is not coded; drop it first (e.g. Pillow's convert('RGB')) if it "
                        "carries nothing" if im.mode in ("RGBA", "LA") else ", convert it first")
                raise ValueError(f"{str(path)!r} is {kind}; ride compress codes 8-bit grey (mode 'L') or 8-bit RGB "
                                 f"images{hint}")
            return np.asarray(im, dtype=np.uint8).copy()
    except FileNotFoundError:
        raise ValueError(f"{str(path)!r} does not exist") from None
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"{str(path)!r} is not a readable image: {err}") from None


def _outputs(args: argparse.Namespace) -> list[Path]:
    if args.out is not None:
        if len(args.inputs) != 1:
            raise ValueError(f"-o names one output but {len(args.inputs)} inputs were given; use --out-dir")
        return [Path(args.out)]
    return [Path(args.out_dir) / (Path(p).stem + args.suffix) for p in args.inputs]


def _set_threads(args: argparse.Namespace) -> None:
    if check_threads(args.threads):
        torch.set_num_threads(args.threads)


def _models(names: list[str], cache: dict[str, torch.nn.Module]) -> list[torch.nn.Module]:
    """The models that `names` (files or shipped names) give, each loaded once."""
    for name in names:
        if name not in cache:
            cache[name] = load(resolve_checkpoint(name))
    return [cache[name] for name in names]


def _codable(model: torch.nn.Module) -> bool:
    from ..colour_lossless import LosslessColourRIDE
    from ..model import RIDE

    if isinstance(model, LosslessColourRIDE):
        return len(model.layers) > 0 and model.config.transform in ("rgb", "grb")
    return isinstance(model, RIDE) and model.config.num_channels == 1 and len(model.layers) > 0


def _model_of(data: bytes, given: list[torch.nn.Module] | None, cache: dict[str, torch.nn.Module]) -> torch.nn.Module:
    """The model that made a stream, found by its fingerprint among `given` (one given model is used as it is: the
    codec then says what does not match) or, without any, among the shipped models (the codec's candidates first);
    ValueError naming the fix when none did."""
    from ..codec import made_with

    if given is not None and len(given) == 1:
        return given[0]
    if given is not None:
        models: Iterable[torch.nn.Module] = given
        missing = "none of the --checkpoint models made the stream (its model fingerprint matches none)"
    else:
        shipped = [e.name for e in pretrained_models()]
        first = [name for name in (*CODEC_CANDIDATES[False], *CODEC_CANDIDATES[True]) if name in shipped]
        names = first + [name for name in shipped if name not in first]
        models = (_models([name], cache)[0] for name in names)  # loaded only until one matches
        missing = ("the stream was made with a model that is not shipped with this version of ride: give it with "
                   "--checkpoint FILE")
    for model in models:
        if _codable(model) and made_with(model, data):
            return model
    raise ValueError(missing)


def _bar(args: argparse.Namespace, desc: str):  # noqa: ANN202 - a tqdm bar
    from tqdm import tqdm

    return tqdm(unit="front", file=sys.stderr, disable=not args.progress, leave=False, desc=desc)


def _progress(bar):  # noqa: ANN001, ANN202 - tqdm bar -> progress callback
    def update(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    return update


def run_compress(args: argparse.Namespace) -> int:
    """Run `ride compress`; returns the exit status."""
    from ..codec.selection import compress_best

    outputs = _outputs(args)
    images = [read_image(p) for p in args.inputs]  # every input checked before any work
    _set_threads(args)
    cache: dict[str, torch.nn.Module] = {}
    for src, dst, image in zip(args.inputs, outputs, images, strict=True):
        names = args.checkpoint or list(CODEC_CANDIDATES[image.ndim == 3])
        models = _models(names, cache)
        start = time.monotonic()
        with _bar(args, Path(src).name) as bar:
            try:
                choice = compress_best(models, image, progress=_progress(bar),
                                       stripes=1 if args.exact else args.stripes)
            except ValueError as err:
                raise ValueError(f"{src}: {err}") from None
        seconds = time.monotonic() - start
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(choice.data)
        chosen = f"model {names[choice.index]}"
        if len(names) > 1:
            where = "whole image" if choice.whole else f"sample of {choice.sample_pixels} px"
            sizes = " / ".join(f"{n} {b} bytes" for n, b in zip(names, choice.sample_bytes, strict=True))
            chosen += f" ({where}: {sizes})"
        print(f"{src} -> {dst}: {_describe(image, choice.data)}, {chosen}, {seconds:.1f} s")
    return 0


def _describe(image: np.ndarray, data: bytes) -> str:
    """Size and rate of a coded image: bits per pixel, and per sub-pixel for RGB."""
    height, width = image.shape[:2]
    rate = f"{8 * len(data) / (height * width):.3f} bits/px"
    if image.ndim == 3:
        rate = f"RGB, {rate} ({8 * len(data) / image.size:.3f} bits per sub-pixel)"
    return f"{height}x{width}, {len(data)} bytes, {rate}"


def run_decompress(args: argparse.Namespace) -> int:
    """Run `ride decompress`; returns the exit status."""
    from PIL import Image

    from ..codec import decompress

    outputs = _outputs(args)
    for dst in outputs:
        if dst.suffix.lower() != ".png":
            raise ValueError(f"outputs must be .png files, found {str(dst)!r}")
    # each stream finds the model that made it among those given (without --checkpoint: the shipped ones, the
    # codec's candidates first); one given model decodes every stream (a wrong one fails with the codec's message)
    _set_threads(args)
    cache: dict[str, torch.nn.Module] = {}
    given = _models(args.checkpoint, cache) if args.checkpoint else None
    for src, dst in zip(args.inputs, outputs, strict=True):
        try:
            data = Path(src).read_bytes()
        except OSError as err:
            raise ValueError(f"cannot read {src!r}: {err.strerror or err}") from None
        start = time.monotonic()
        with _bar(args, Path(src).name) as bar:
            try:
                model = _model_of(data, given, cache)
                image = decompress(model, data, progress=_progress(bar))
            except ValueError as err:
                raise ValueError(f"{src}: {err}") from None
        seconds = time.monotonic() - start
        dst.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, mode="RGB" if image.ndim == 3 else "L").save(dst)
        print(f"{src} -> {dst}: {_describe(image, data)}, {seconds:.1f} s")
    return 0
