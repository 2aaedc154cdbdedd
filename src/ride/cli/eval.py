"""`ride eval`: a saved model on a data set under a named protocol of design §9, with labelled units.

Protocols:
    tiles64    whole images cut into 64x64 tiles (design §9.1); a RIDE checkpoint (num_layers=0: the MCGSM baseline),
               or a colour model: a ColourRIDE reports its rate per RGB pixel and the bound 8 - rate/3 per
               sub-pixel (design §11), a LosslessColourRIDE its exact discrete code length in bits per sub-pixel
               (-log2 P of the 8-bit RGB values / 3, also per coded channel; no dequantisation: no bound, no seed)
    whole      whole images of any size, each in one piece (every pixel the model predicts, with its whole causal
               past; one image per batch): a RIDE's rate with the tile protocol's dequantisation noise, ± over
               images; a LosslessColourRIDE's exact code length, the figure `ride map` shows (per image with
               --per-image)
    patches63  8x8 patches, centred, bottom-right pixel dropped (design §9.2); a 63-dim patch model checkpoint
    patches64  the same plus the DC model and the -ln 64 Jacobian (bit/px)
`--ensemble` averages the density over the 8 dihedral transforms (design §7) under tiles64 and the patch protocols.
Data: `--data bsds300|wikipedia_photos|usc_sipi_aerials|brodatz|deadleaves` (`--split`; the data root from
--data-root or RIDE_DATA) or `--images DIR` (a folder or glob of PNG/JPEG/TIFF files, read as grey luma for a
1-channel model, with a notice for colour files; read as RGB for a colour model, which refuses grey files).

Patch checkpoints: `ride.save(model63, path, extra={"dc_model": DCModel.to_dict()})`, where model63 has
`log_prob(z [N, 63]) -> [N]` nats (e.g. `PatchChainMCGSM`). The DC entry is plain data, format "ride-dc-gmm"
version 1: {"format", "version", "weights", "means", "variances"} with lists of K floats (a 1-D mixture of
Gaussians of the patch mean on the [0,1) scale); patches64 needs it, patches63 ignores it.

Under `torchrun` (WORLD_SIZE > 1) every process evaluates every WORLD_SIZE-th tile or patch, the sums are
all-reduced (gloo on CPU, nccl on CUDA) and rank 0 prints. The printed result does not depend on the number of
processes (up to float rounding in the order of summation).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch

from .. import protocols
from ..checkpoint import load, load_payload
from ..colour_lossless import LosslessColourRIDE
from ..model_zoo import DEFAULT_CODEC_MODEL, resolve_checkpoint
from ..runtime import check_threads, leave_process_group, resolve_device

PROTOCOLS = ("tiles64", "whole", "patches63", "patches64")
IMAGE_PROTOCOLS = ("tiles64", "whole")
DATA_SETS = ("bsds300", "wikipedia_photos", "usc_sipi_aerials", "brodatz", "deadleaves")
DC_MODEL_KEY = protocols.DC_MODEL_KEY
TILE_SIZE = 64


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `eval` subcommand to the `ride` parser's subparsers."""
    p = subparsers.add_parser(
        "eval", help="evaluate a saved model under a protocol of the paper (log-likelihood rate in bit/px)",
        description="Evaluates a saved model on a data set under a named protocol (design §9) and prints the "
                    "log-likelihood rate in bit/px (mean log2 p of the counted pixels on the [0,1) scale, higher is "
                    "better), its standard error, the counted pixels and the discrete code-length bound 8 - rate "
                    "(colour: 8 - rate/3 per sub-pixel); for patch protocols also nats per patch. --protocol whole "
                    "evaluates each image in one piece instead of 64x64 tiles. A lossless colour model "
                    "(LosslessColourRIDE) reports its exact code length in bits per sub-pixel instead, in all and "
                    "per coded channel.")
    p.add_argument("--checkpoint", required=True, metavar="M",
                   help="model file written by ride.save, or the name of a shipped model (`ride models`)")
    p.add_argument("--protocol", choices=PROTOCOLS, default="tiles64", help="evaluation protocol (default tiles64)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", choices=DATA_SETS, help="a named data set (bsds300 and brodatz under --data-root)")
    source.add_argument("--images", metavar="DIR", help="a folder (or glob) of images (tiles64 and whole only)")
    p.add_argument("--split", default="test", help="split of a named data set (default test; wikipedia_photos "
                   "and usc_sipi_aerials: train, val or all; brodatz has none)")
    p.add_argument("--data-root", dest="data_root", metavar="DIR",
                   help="folder that holds bsds300/ and brodatz_usc_sipi/ (default: $RIDE_DATA)")
    p.add_argument("--ensemble", action="store_true", help="ensemble over the 8 dihedral transforms (design §7)")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=None,
                   help="tiles (default 32) or patches (default 10000) per batch (whole: one image)")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto", help="default: cuda if available")
    p.add_argument("--seed", type=int, default=0, help="dequantisation seed of the tile protocol (default 0; a "
                   "lossless colour model's exact code length has no dequantisation)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N images or patches")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of labelled lines")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default 1)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar on stderr")
    p.add_argument("--per-image", dest="per_image", metavar="FILE",
                   help="also write each image's rate (tiles64, whole): FILE.csv as CSV, any other name as JSON "
                        "lines, '-' as JSON lines on standard output")
    p.add_argument("--strict", action="store_true",
                   help="with --images: stop at the first unreadable file (default: report it, skip it, count it)")
    p.set_defaults(func=run)


# ---------------------------------------------------------------------------------------------- pieces

def _limited(n: int, limit: int | None) -> int:
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be a positive integer, found {limit}")
    return n if limit is None else min(n, limit)


def _open(factory: Callable[[], Any]) -> Any:
    """Build a data set; missing data (FileNotFoundError) becomes a ValueError with the data set's own advice."""
    try:
        return factory()
    except FileNotFoundError as err:
        raise ValueError(str(err)) from err


def _image_source(args: argparse.Namespace, channels: int) -> tuple[Any, str]:
    """The image data set (indexable, uint8 [C, H, W] items) and a description of it."""
    from ..data import BSDS300, Brodatz, DeadLeaves, ImageFolder, USCSIPIAerials, WikipediaPhotos

    grey = channels == 1
    if args.images is not None:
        return _open(lambda: ImageFolder(args.images, grey=grey)), f"images {args.images}"
    if args.data == "bsds300":
        return _open(lambda: BSDS300(args.data_root, args.split, grey=grey)), f"bsds300 {args.split}"
    photos = {"wikipedia_photos": WikipediaPhotos, "usc_sipi_aerials": USCSIPIAerials}.get(args.data)
    if photos is not None:  # splits train / val / all (the same rule as training's data="photos")
        return _open(lambda: photos(args.data_root, args.split, grey=grey)), f"{args.data} {args.split}"
    if not grey:
        raise ValueError(f"--data {args.data} holds grey images, the model expects {channels} channels: evaluate it "
                         f"with a grey model (e.g. --checkpoint {DEFAULT_CODEC_MODEL})")
    if args.data == "brodatz":
        return _open(lambda: Brodatz(args.data_root)), "brodatz (USC-SIPI 1.1.xx, black rows cropped)"
    return _open(lambda: DeadLeaves(args.split)), f"deadleaves {args.split}"


def _patch_source(args: argparse.Namespace) -> tuple[torch.Tensor, str]:
    from ..data import BSDS300Patches

    if args.data != "bsds300":
        raise ValueError(f"--protocol {args.protocol} evaluates the fixed BSDS300 patch set of design §9.2: use --data "
                         f"bsds300 (other data sets and --images work with --protocol tiles64)")
    patches = _open(lambda: BSDS300Patches(args.data_root, args.split)).patches
    return patches[:_limited(patches.shape[0], args.limit)], f"bsds300 {args.split} 8x8 patches"


def _distributed() -> tuple[int, int]:
    """(rank, world_size) from torchrun's environment; (0, 1) for a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    return rank, world


def _all_reduce(device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    import torch.distributed as dist

    def reduce(sums: torch.Tensor) -> torch.Tensor:
        t = sums.to(device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.cpu()

    return reduce


def _load_model(path: str, device: torch.device) -> tuple[torch.nn.Module, dict[str, Any]]:
    path = str(resolve_checkpoint(path))
    payload = load_payload(path)  # a ValueError names a foreign, truncated or newer file
    return load(path, map_location=device), payload.get("extra", {})


def _progress(enabled: bool, total: int, unit: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, file=sys.stderr, disable=not enabled, dynamic_ncols=True, leave=False)


# ---------------------------------------------------------------------------------------------- protocols

def _image_name(dataset: Any, index: int) -> str:
    files = getattr(dataset, "files", None)
    return str(files[index]) if files is not None and index < len(files) else str(index)


def _refuse_grey_files(files: list[Any], model_name: str) -> None:
    """ValueError naming the grey files (Pillow mode from the header alone) among those given to a colour model."""
    from PIL import Image

    from ..data import GREY_MODES

    grey = []
    for f in files:
        try:
            with Image.open(f) as img:
                mode = img.mode
        except (OSError, SyntaxError):
            continue  # unreadable: reported (or skipped) when it is read
        if mode in GREY_MODES:
            grey.append(f"{f} (mode {mode})")
    if grey:
        # reading them as R = G = B would give a number, but not the code length anyone means for a grey image
        are = "is" if len(grey) == 1 else "are"
        raise ValueError(f"{len(grey)} of the {len(files)} images {are} grey ({', '.join(grey[:3])}"
                         f"{', ...' if len(grey) > 3 else ''}) and the checkpoint holds a {model_name} of RGB "
                         f"images: evaluate grey images with a grey model (e.g. --checkpoint {DEFAULT_CODEC_MODEL}), "
                         "or save them as RGB first to evaluate them as colour images with R = G = B")


def _eval_tiles(args: argparse.Namespace, model: torch.nn.Module, device: torch.device, shard: tuple[int, int],
                reduce: Callable | None, show: bool) -> dict[str, Any]:
    if not (hasattr(model, "log_prob_pixels") and hasattr(model, "margin")):
        raise ValueError(f"--protocol {args.protocol} needs an image model (RIDE; num_layers=0 for the MCGSM "
                         f"baseline), the checkpoint holds a {type(model).__name__}")
    channels = model.config.num_channels
    exact = isinstance(model, LosslessColourRIDE)  # exact discrete code lengths of 8-bit RGB images
    whole = args.protocol == "whole"
    if whole and args.ensemble:
        raise ValueError("--ensemble is available under --protocol tiles64 only (the transforms' common pixels are "
                         "defined per tile)")
    if exact and args.ensemble:
        raise ValueError("--ensemble: the lossless colour model's exact code length has no ensemble version")
    dataset, description = _image_source(args, channels)
    count = _limited(len(dataset), args.limit)
    if count == 0:
        raise ValueError(f"no image found ({description})")
    if channels == 3 and args.images is not None:
        _refuse_grey_files(dataset.files[:count], type(model).__name__)
    bar = _progress(show, count, "image")
    names: list[str] = []  # of the images evaluated, in order (unreadable ones skipped)
    skipped: list[str] = []

    def images() -> Iterator[torch.Tensor]:
        for k in range(count):
            try:
                image = dataset[k]
            except (OSError, ValueError) as err:  # one unreadable file: report, skip, go on (unless --strict)
                if args.strict or args.images is None:
                    raise ValueError(f"image {k}: {err}") from err
                skipped.append(_image_name(dataset, k))
                print(f"ride eval: skipping unreadable image: {err}", file=sys.stderr)
                bar.update(1)
                continue
            image = image[0] if isinstance(image, (tuple, list)) else image
            if image.dim() != 3 or image.shape[0] != channels:
                raise ValueError(f"image {k} ({description}) has shape {tuple(image.shape)}, the model expects "
                                 f"{channels} channel(s) [C, H, W]")
            names.append(_image_name(dataset, k))
            yield image
            bar.update(1)

    per_image = torch.zeros(count, 5 if exact else 3, dtype=torch.float64)
    try:
        if exact:
            sums = _exact_colour_sums(model, images(), None if whole else TILE_SIZE,
                                      args.batch_size or 32, device, shard, per_image)
        elif whole:
            sums = protocols.whole_image_sums(model, images(), args.seed, device, shard, per_image)
        else:
            sums = protocols.tile_sums(model, images(), TILE_SIZE, args.ensemble, args.seed, args.batch_size or 32,
                                       device, None, shard, per_image)
    finally:
        bar.close()
    if reduce is not None:
        sums, per_image = reduce(sums), reduce(per_image)
    # named data sets define their grey version (BSDS300: luma by the protocol); only user images get the notice
    converted = dataset.converted_to_luma() if args.images is not None else []
    if converted and shard[0] == 0:
        print(f"ride eval: note: {len(converted)} colour image(s) converted to luma (ITU-R BT.601) for the grey "
              "model (a lossless colour model, LosslessColourRIDE, gives their RGB code length)", file=sys.stderr)
    if skipped and shard[0] == 0:
        print(f"ride eval: skipped {len(skipped)} unreadable image(s) of {count} (--strict to stop at the first)",
              file=sys.stderr)
    if exact:
        return _exact_colour_result(args, model, sums, per_image[: len(names)], names, skipped, description)
    if whole:
        out = _whole_result(sums, per_image[: len(names)], names)
    else:
        pixels_per_tile = int(protocols.counted_pixels(model, TILE_SIZE, TILE_SIZE, args.ensemble).sum())
        result = protocols.tile_result(sums, pixels_per_tile, args.ensemble)
        rows = [{"image": name, "num_tiles": int(t), "num_pixels": int(n),
                 "bits_per_pixel": protocols.bits_per_pixel_from_nats(float(nats), int(n)) if n else None}
                for name, (t, n, nats) in zip(names, per_image.tolist(), strict=False)]
        out = {"bits_per_pixel": result.bits_per_pixel, "stderr": result.stderr, "num_pixels": result.num_pixels,
               "discrete_bound_bits_per_pixel": result.discrete_bound_bits_per_pixel,
               "num_tiles": result.num_tiles, "pixels_per_tile": result.pixels_per_tile, "per_image": rows}
    out.update(protocol=args.protocol, num_images=len(names), num_skipped=len(skipped), seed=args.seed,
               data=description)
    if channels == 3:
        # A ColourRIDE's rate is log2 p of a whole RGB pixel (three [0,1)-scale values), so 8 - rate bounds nothing;
        # per sub-pixel the dequantisation bound is 8 - rate/3 (design §11, `ride.colour.bits_per_dim`).
        del out["discrete_bound_bits_per_pixel"]
        out.update(rgb=True, discrete_bound_bits_per_subpixel=protocols.discrete_bound_bits_per_pixel(
            out["bits_per_pixel"] / 3))
    return out


def _whole_result(sums: torch.Tensor, per_image: torch.Tensor, names: list[str]) -> dict[str, Any]:
    """The result dict of (all shards') summed `protocols.whole_image_sums`: the rate over all predicted pixels of
    all images (bit/px), ± the standard error over images of the per-image rates."""
    num_images, num_pixels, total_nats, total_rate, total_rate_sq = (float(v) for v in sums)
    if num_images < 1:
        raise ValueError("no image has a pixel the model predicts: every image is smaller than its window")
    rate = protocols.bits_per_pixel_from_nats(total_nats, int(num_pixels))
    rows = [{"image": name, "num_pixels": int(n),
             "bits_per_pixel": protocols.bits_per_pixel_from_nats(float(nats), int(n)) if n else None}
            for name, (_, n, nats) in zip(names, per_image.tolist(), strict=True)]
    return {"bits_per_pixel": rate, "stderr": protocols._stderr_from_sums(num_images, total_rate, total_rate_sq),
            "num_pixels": int(num_pixels),
            "discrete_bound_bits_per_pixel": protocols.discrete_bound_bits_per_pixel(rate),
            "num_evaluated_images": int(num_images), "per_image": rows}


def _exact_colour_units(images: Iterable[torch.Tensor], tile_size: int | None, batch_size: int,
                        shard: tuple[int, int], window: tuple[int, int]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This shard's units in batches: uint8 [b, 3, h, w] with the index of the image each one comes from (int64
    [b]). Units: the tile_size tiles of each image (remainder dropped, batches of batch_size), or with tile_size
    None each whole image at least `window` (rows, cols) large, one per batch (their sizes differ). Of all units in
    order, every world-th one from the rank's own index is this shard's, as in `protocols.tile_sums`."""
    rank, world = shard
    pending: list[torch.Tensor] = []
    owners: list[torch.Tensor] = []
    first = 0  # global index of the image's first unit
    for index, image in enumerate(images):
        if tile_size is None:
            fits = image.shape[1] >= window[0] and image.shape[2] >= window[1]  # else no pixel is predicted
            units = image[None] if fits else image.new_empty(0, *image.shape)
        else:
            units = protocols.tiles(image, tile_size)
        mine = (torch.arange(first, first + units.shape[0]) % world) == rank
        first += units.shape[0]
        if not bool(mine.any()):
            continue
        if tile_size is None:
            yield units, torch.tensor([index])
            continue
        pending.append(units[mine])
        owners.append(torch.full((int(mine.sum()),), index, dtype=torch.int64))
        cat, own = torch.cat(pending), torch.cat(owners)
        while cat.shape[0] >= batch_size:
            yield cat[:batch_size], own[:batch_size]
            cat, own = cat[batch_size:], own[batch_size:]
        pending, owners = [cat], [own]
    if pending and pending[0].shape[0]:
        yield pending[0], owners[0]


def _exact_colour_sums(model: LosslessColourRIDE, images: Iterable[torch.Tensor], tile_size: int | None,
                       batch_size: int, device: torch.device, shard: tuple[int, int],
                       per_image: torch.Tensor) -> torch.Tensor:
    """Sums over this shard's units (see `_exact_colour_units`), float64 [7]: (units, RGB pixels, ln P of coded
    channel 0, 1, 2 in nats, sum and sum of squares of the units' code lengths in bits per sub-pixel).

    per_image, float64 [num_images, 5], receives in place each image's (units, RGB pixels, ln P of channels 0..2).
    """
    sums = torch.zeros(7, dtype=torch.float64)
    window = (model.neighbourhood.rows, model.neighbourhood.cols)
    for batch, owner in _exact_colour_units(images, tile_size, batch_size, shard, window):
        log_p = model.log_prob_discrete_pixels(batch.to(device)).double().cpu()  # [b, Hp, Wp, 3] nats
        nats = log_p.sum((1, 2))  # [b, 3]
        pixels = log_p.shape[1] * log_p.shape[2]
        bits = -nats.sum(1) / (3 * pixels * protocols.LN2)  # [b] each unit's bits per sub-pixel
        ones = torch.ones_like(bits)
        sums += torch.cat([torch.stack([ones.sum(), ones.sum() * pixels]), nats.sum(0),
                           torch.stack([bits.sum(), bits.square().sum()])])
        per_image.index_add_(0, owner, torch.cat([ones[:, None], ones[:, None] * pixels, nats], 1))
    return sums


def _exact_colour_result(args: argparse.Namespace, model: LosslessColourRIDE, sums: torch.Tensor,
                         per_image: torch.Tensor, names: list[str], skipped: list[str],
                         description: str) -> dict[str, Any]:
    """The result dict of `_exact_colour_sums` summed over all shards (per_image: one row per name)."""
    units, pixels = int(sums[0]), int(sums[1])
    tiled = args.protocol == "tiles64"
    if units == 0:
        nb = model.neighbourhood
        raise ValueError(f"no {TILE_SIZE}x{TILE_SIZE} tile in the images: every image is smaller than a tile "
                         "(--protocol whole evaluates whole images)" if tiled else
                         f"no image has a pixel the model predicts: every image is smaller than its window "
                         f"({nb.rows}x{nb.cols})")
    channel_names = model.channel_names

    def bits_per_subpixel(nats: float, subpixels: int) -> float:
        return -nats / (subpixels * protocols.LN2)

    rows = []
    for name, (u, n, *nats) in zip(names, per_image.tolist(), strict=True):
        row: dict[str, Any] = {"image": name, **({"num_tiles": int(u)} if tiled else {}), "num_pixels": int(n),
                               "code_length_bits_per_subpixel": bits_per_subpixel(sum(nats), 3 * int(n)) if n else None}
        row.update({f"code_length_bits_per_subpixel_{c}": bits_per_subpixel(v, int(n)) if n else None
                    for c, v in zip(channel_names, nats, strict=True)})
        rows.append(row)
    result: dict[str, Any] = {
        "protocol": args.protocol, "exact_discrete": True,
        "code_length_bits_per_subpixel": bits_per_subpixel(float(sums[2:5].sum()), 3 * pixels),
        "stderr": protocols._stderr_from_sums(units, float(sums[5]), float(sums[6])),
        "channels": list(channel_names),
        "code_length_bits_per_subpixel_by_channel": {c: bits_per_subpixel(float(sums[2 + k]), pixels)
                                                     for k, c in enumerate(channel_names)},
        "num_pixels": pixels, "num_subpixels": 3 * pixels}
    if tiled:
        result.update(num_tiles=units, pixels_per_tile=int(protocols.counted_pixels(model, TILE_SIZE, TILE_SIZE).sum()))
    result.update(num_images=len(names), num_skipped=len(skipped), data=description, per_image=rows)
    return result


def _write_per_image(rows: list[dict[str, Any]], target: str) -> None:
    """Each image's rate as CSV (target ends in .csv) or JSON lines (any other file; "-": standard output)."""
    import csv

    columns = tuple(rows[0]) if rows else ("image", "num_tiles", "num_pixels", "bits_per_pixel")
    out = sys.stdout if target == "-" else open(target, "w", newline="")  # noqa: SIM115 (closed below)
    try:
        if target.lower().endswith(".csv"):
            writer = csv.DictWriter(out, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        else:
            for row in rows:
                out.write(json.dumps(row) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()


def _eval_patches(args: argparse.Namespace, model: torch.nn.Module, extra: dict[str, Any], device: torch.device,
                  shard: tuple[int, int], reduce: Callable | None, show: bool) -> dict[str, Any]:
    if not hasattr(model, "log_prob") or getattr(model, "dim", None) != 63:
        raise ValueError(f"--protocol {args.protocol} needs a 63-dim patch model (e.g. PatchChainMCGSM with dim=63), "
                         f"the checkpoint holds a {type(model).__name__}")
    dc_model = None
    if args.protocol == "patches64":
        if DC_MODEL_KEY not in extra:
            raise ValueError(f"--protocol patches64 needs a DC model: the checkpoint has no extra[{DC_MODEL_KEY!r}] "
                             "(save with ride.save(model, path, extra={'dc_model': dc.to_dict()}))")
        dc_model = protocols.DCModel.from_dict(extra[DC_MODEL_KEY])
    patches, description = _patch_source(args)
    bar = _progress(show, len(range(shard[0], patches.shape[0], shard[1])), "patch")
    try:
        sums = protocols.patch_sums(model, patches, dc_model, args.ensemble, args.batch_size or 10_000, device,
                                    bar.update, shard)
    finally:
        bar.close()
    result = protocols.patch_result(reduce(sums) if reduce is not None else sums,
                                    64 if args.protocol == "patches64" else 63)
    return {"protocol": args.protocol, "bits_per_pixel": result.bits_per_pixel, "stderr": result.stderr,
            "num_pixels": result.num_pixels, "nats": result.nats, "nats_stderr": result.nats_stderr,
            "discrete_bound_bits_per_pixel": result.discrete_bound_bits_per_pixel,
            "num_patches": result.num_patches, "data": description}


def _plus_minus(stderr: float, over: str) -> tuple[str, str]:
    """(" ± 0.0123", "; ± standard error over tiles"), or none when there is one tile or image (NaN)."""
    if math.isfinite(stderr):
        return f" ± {stderr:.4f}", f"; ± standard error over {over}"
    return "", f"; one of the {over} only, so no standard error"


def _print_human(r: dict[str, Any]) -> None:
    rows = [("protocol", r["protocol"] + (" (ensemble of 8 dihedral transforms)" if r["ensemble"] else "")
             + (" (whole images, no tiling)" if r["protocol"] == "whole" else "")),
            ("checkpoint", r["checkpoint"]), ("data", r["data"])]
    if r.get("exact_discrete"):
        tiled = r["protocol"] == "tiles64"
        pm, why = _plus_minus(r["stderr"], "tiles" if tiled else "images")
        by_channel = r["code_length_bits_per_subpixel_by_channel"]
        where = (f"in {r['num_tiles']} tiles of {TILE_SIZE}x{TILE_SIZE} ({r['pixels_per_tile']} per tile)" if tiled
                 else "(every pixel the model predicts: its border rows and columns are context only)")
        rows += [
            ("exact code length", f"{r['code_length_bits_per_subpixel']:.4f}{pm} bits per sub-pixel (exact discrete, "
                                  "RGB: -log2 P of the 8-bit R, G, B values / 3 under the model's discrete "
                                  f"probabilities, not a bound; lower is better{why})"),
            ("per channel", ", ".join(f"{c} {v:.4f}" for c, v in by_channel.items())
             + " bits per sub-pixel (in the model's coding order, each given the ones before it)"),
            ("counted pixels", f"{r['num_pixels']} RGB pixels ({r['num_subpixels']} sub-pixels) {where} from "
                               f"{r['num_images']} images")]
    elif r["protocol"] == "tiles64" and r.get("rgb"):
        rows += [
            ("log-likelihood rate", f"{r['bits_per_pixel']:.4f} ± {r['stderr']:.4f} bit per RGB pixel (higher is "
                                    "better; mean log2 p of a counted pixel's three values, [0,1) scale; ± standard "
                                    "error over tiles)"),
            ("discrete code-length bound", f"8 - rate/3 = {r['discrete_bound_bits_per_subpixel']:.4f} bits per "
                                           "sub-pixel (upper bound on -log2 P of the 8-bit R, G, B values / 3; lower "
                                           "is better)"),
            ("counted pixels", f"{r['num_pixels']} RGB pixels in {r['num_tiles']} tiles of {TILE_SIZE}x{TILE_SIZE} "
                               f"({r['pixels_per_tile']} per tile) from {r['num_images']} images, seed {r['seed']}")]
    elif r["protocol"] == "whole":
        unit = "RGB pixel" if r.get("rgb") else "px"
        pm, why = _plus_minus(r["stderr"], "images")
        rows += [
            ("log-likelihood rate", f"{r['bits_per_pixel']:.4f}{pm} bit/{unit} (higher is better; mean log2 p over "
                                    f"every predicted pixel of the whole images, [0,1) scale{why})")]
        if r.get("rgb"):
            rows += [("discrete code-length bound", f"8 - rate/3 = {r['discrete_bound_bits_per_subpixel']:.4f} bits "
                                                    "per sub-pixel (upper bound; lower is better)")]
        else:
            rows += [("discrete code-length bound", f"8 - rate = {r['discrete_bound_bits_per_pixel']:.4f} bit/px "
                                                    "(upper bound on -log2 P of the 8-bit pixels; lower is better)")]
        rows += [("counted pixels", f"{r['num_pixels']} (every pixel the model predicts: its border rows and columns "
                                    f"are context only) from {r['num_evaluated_images']} images, seed {r['seed']}")]
    elif r["protocol"] == "tiles64":
        rows += [
            ("log-likelihood rate", f"{r['bits_per_pixel']:.4f} ± {r['stderr']:.4f} bit/px (higher is better; mean "
                                    "log2 p over counted pixels, [0,1) scale; ± standard error over tiles)"),
            ("discrete code-length bound", f"8 - rate = {r['discrete_bound_bits_per_pixel']:.4f} bit/px (upper bound "
                                           "on -log2 P of the 8-bit pixels; lower is better)"),
            ("counted pixels", f"{r['num_pixels']} in {r['num_tiles']} tiles of {TILE_SIZE}x{TILE_SIZE} "
                               f"({r['pixels_per_tile']} per tile) from {r['num_images']} images, seed {r['seed']}")]
    else:
        dims = 64 if r["protocol"] == "patches64" else 63
        rows += [("log-likelihood", f"{r['nats']:.3f} ± {r['nats_stderr']:.3f} nats per patch ({dims} dims; higher "
                                    "is better; ± standard error over patches)")]
        if dims == 64:
            rows += [("log-likelihood rate", f"{r['bits_per_pixel']:.4f} ± {r['stderr']:.4f} bit/px (higher is "
                                             "better; (L63 + L_DC - ln 64) / (64 ln 2))"),
                     ("discrete code-length bound", f"8 - rate = {r['discrete_bound_bits_per_pixel']:.4f} bit/px "
                                                    "(upper bound on -log2 P of the 8-bit pixels; lower is better)")]
        else:
            rows += [("log-likelihood rate", f"{r['bits_per_pixel']:.4f} ± {r['stderr']:.4f} bit per dimension of "
                                             "the 63 centred values (nats / (63 ln 2); higher is better)")]
        rows += [("counted patches", f"{r['num_patches']} ({r['num_pixels']} values)")]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def run(args: argparse.Namespace) -> int:
    """Run `ride eval` with parsed arguments; prints the result (rank 0 only) and returns the exit status."""
    if args.per_image is not None and args.protocol not in IMAGE_PROTOCOLS:
        raise ValueError("--per-image needs --protocol tiles64 or whole (the patch protocols have no images)")
    if check_threads(args.threads):
        torch.set_num_threads(args.threads)
    if args.batch_size is not None and args.batch_size < 1:
        raise ValueError(f"--batch-size must be a positive integer, found {args.batch_size}")
    device = resolve_device(args.device)
    rank, world = _distributed()
    reduce = None
    if world > 1:
        import torch.distributed as dist

        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        reduce = _all_reduce(device)
    ok = False
    try:
        model, extra = _load_model(args.checkpoint, device)
        show = args.progress and rank == 0
        with torch.no_grad():
            if args.protocol in IMAGE_PROTOCOLS:
                result = _eval_tiles(args, model, device, (rank, world), reduce, show)
            else:
                result = _eval_patches(args, model, extra, device, (rank, world), reduce, show)
        ok = True
    finally:
        if world > 1:
            leave_process_group(ok)
    result.update(ensemble=bool(args.ensemble), checkpoint=str(args.checkpoint), world_size=world,
                  device=device.type)
    per_image = result.pop("per_image", None)
    if rank == 0:
        if per_image is not None and args.per_image is not None:
            _write_per_image(per_image, args.per_image)
        if args.json:
            print(json.dumps({k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                              for k, v in result.items()}))
        else:
            _print_human(result)
    return 0
