"""`ride data`: what the data sets hold (`ride data stats`) and fetching BSDS300 (`ride data download bsds300`).

A thin layer over `ride.data`: it finds the data root, prints, and turns missing data into one line each.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from ..data import (
    BSDS300,
    BSDS300_PATCH_COUNTS,
    BSDS300_PATCH_SIZE,
    BSDS300_URL,
    CIFAR10,
    Brodatz,
    BSDS300Patches,
    DeadLeaves,
    download_bsds300,
    extract_bsds300,
)
from ..neighbourhood import causal_mask

STATS_NAMES = ("bsds300", "brodatz", "deadleaves", "bsds300-patches", "cifar10")
TILE = 64


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `data` command (with `stats` and `download`) to the main parser's subparsers."""
    data = subparsers.add_parser("data", help="inspect and fetch data sets",
                                 description="Inspect the data sets (`ride data stats`) and fetch BSDS300 "
                                             "(`ride data download bsds300`). The data root is the folder that "
                                             "holds bsds300/ and brodatz_usc_sipi/: --data-root or RIDE_DATA.")
    sub = data.add_subparsers(dest="data_command", required=True)

    stats = sub.add_parser("stats", help="print what each data set holds and the pixels each protocol counts",
                           description="For each data set: images, sizes, pixels, and the pixels counted by the "
                                       "tiles64 protocol (non-overlapping 64x64 tiles, remainder dropped, only "
                                       "pixels the model predicts: (64 - rows + 1) x (64 - cols + 1) per tile for "
                                       "the causal window of --nb-size, 62x60 for 5).")
    stats.add_argument("names", nargs="*", metavar="NAME",
                       help=f"data sets to describe (default: all): {', '.join(STATS_NAMES)}")
    stats.add_argument("--data-root", dest="data_root", default=None,
                       help="folder holding bsds300/ and brodatz_usc_sipi/ (default: $RIDE_DATA)")
    stats.add_argument("--nb-size", dest="nb_size", type=int, default=5, help="odd neighbourhood size (default 5)")
    stats.add_argument("--cache-dir", dest="cache_dir", default=None,
                       help="cache of generated patch sets (default: $RIDE_CACHE or ~/.cache/ride)")
    stats.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    stats.set_defaults(func=_stats)

    download = sub.add_parser("download", help="download, verify and extract a data set (bsds300)",
                              description="Downloads the official BSDS300 images archive, checks its size, that it "
                                          "holds the 200 training and 100 test images (and their id lists) and "
                                          "that the images are those of the official release, then extracts it "
                                          "to DATA_ROOT/bsds300 and prints the archive's sha256.")
    download.add_argument("name", choices=["bsds300"], help="data set to fetch")
    download.add_argument("--data-root", dest="data_root", default=None,
                          help="folder to extract into (it gets bsds300/; default: $RIDE_DATA)")
    download.add_argument("--url", default=BSDS300_URL, help="archive URL (default: the official one)")
    download.add_argument("--archive", default=None,
                          help="use this already downloaded BSDS300-images.tgz instead of downloading")
    download.add_argument("--force", action="store_true", help="replace an existing bsds300/ folder")
    download.add_argument("--keep-archive", dest="keep_archive", action="store_true",
                          help="keep the downloaded .tgz beside bsds300/")
    download.set_defaults(func=_download)


# ----------------------------------------------------------------------------------------------------------------
# ride data stats


def tiles64(size_counts: dict[str, int], nb_size: int) -> dict[str, Any]:
    """Tiles and counted pixels of the tiles64 protocol for images of the given sizes {"HxW": count}."""
    rows, cols = causal_mask(nb_size).shape
    per_tile = (TILE - rows + 1, TILE - cols + 1)
    tiles = 0
    for size, count in size_counts.items():
        h, w = (int(n) for n in size.split("x"))
        tiles += (h // TILE) * (w // TILE) * count
    return {"tiles": tiles, "per_tile": list(per_tile), "counted_pixels": tiles * per_tile[0] * per_tile[1]}


def _image_entry(label: str, make: Any, nb_size: int) -> dict[str, Any]:
    """describe() of the data set `make()` builds, without the long lists, plus the tiles64 counts."""
    try:
        info = make().describe()
    except (OSError, ValueError) as err:
        return {"dataset": label, "available": False, "reason": str(err)}
    info = {k: v for k, v in info.items() if k not in ("sizes", "ids", "name")}
    return {"dataset": label, "available": True, **info, "tiles64": tiles64(info["size_counts"], nb_size)}


def _patch_entries(root: str | None, cache_dir: str | None) -> list[dict[str, Any]]:
    entries = []
    for split, count in BSDS300_PATCH_COUNTS.items():
        label = f"bsds300-patches {split}"
        try:
            path, status = BSDS300Patches.cache_status(root, split, cache_dir)
        except (OSError, ValueError) as err:
            entries.append({"dataset": label, "available": False, "reason": str(err)})
            continue
        entry = {"dataset": label, "available": status == "fresh", "cache": status, "cache_file": str(path),
                 "num_patches": count, "patch_size": BSDS300_PATCH_SIZE,
                 "patches63_dims": count * 63, "patches64_pixels": count * 64}
        if status != "fresh":
            entry["reason"] = (f"not cached ({status}): generated on first use, e.g. "
                               f"ride.data.BSDS300Patches(split={split!r})")
        entries.append(entry)
    return entries


def collect_stats(names: list[str], root: str | None, nb_size: int, cache_dir: str | None) -> list[dict[str, Any]]:
    """One dict per data set (and split): what `ride data stats` prints."""
    entries: list[dict[str, Any]] = []
    for name in names:
        if name == "bsds300":
            for split in ("train", "val", "test"):
                entries.append(_image_entry(f"bsds300 {split}", lambda s=split: BSDS300(root, s), nb_size))
        elif name == "brodatz":
            for scan in ("1.1", "1.2", "1.3"):
                entries.append(_image_entry(f"brodatz {scan}", lambda s=scan: Brodatz(root, scans=(s,)),
                                            nb_size))
        elif name == "deadleaves":
            for split in ("train", "test"):
                entries.append(_image_entry(f"deadleaves {split}", lambda s=split: DeadLeaves(s), nb_size))
        elif name == "bsds300-patches":
            entries.extend(_patch_entries(root, cache_dir))
        elif name == "cifar10":
            for train in (True, False):
                label = f"cifar10 {'train' if train else 'test'}"
                entries.append(_image_entry(label, lambda t=train: CIFAR10(root, t), nb_size))
    return entries


def _format(entry: dict[str, Any]) -> str:
    label = f"{entry['dataset']:<22}"
    if not entry["available"]:
        return f"{label} not available: {entry['reason']}"
    if "num_patches" in entry:
        return (f"{label} {entry['num_patches']:,} patches of {entry['patch_size']}x{entry['patch_size']}: "
                f"patches63 {entry['patches63_dims']:,} dims, patches64 {entry['patches64_pixels']:,} px "
                f"(cached: {entry['cache_file']})")
    sizes = ", ".join(f"{size} x{count}" for size, count in sorted(entry["size_counts"].items()))
    t = entry["tiles64"]
    return (f"{label} {entry['num_images']:>6,} images ({sizes}), {entry['num_pixels']:,} px; tiles64: "
            f"{t['tiles']:,} tiles, {t['counted_pixels']:,} counted px ({t['per_tile'][0]}x{t['per_tile'][1]} "
            "per tile)")


def _root_source(root: str | None) -> str:
    if root is not None:
        return f"{root} (--data-root)"
    env = os.environ.get("RIDE_DATA")
    return f"{env} (RIDE_DATA)" if env else "none (pass --data-root DIR or set RIDE_DATA)"


def _stats(args: argparse.Namespace) -> int:
    names = args.names or list(STATS_NAMES)
    unknown = [n for n in names if n not in STATS_NAMES]
    if unknown:
        print(f"ride data stats: error: unknown data sets {unknown}; choose from {', '.join(STATS_NAMES)}",
              file=sys.stderr)
        return 2
    try:
        causal_mask(args.nb_size)
    except ValueError as err:
        print(f"ride data stats: error: {err}", file=sys.stderr)
        return 2
    entries = collect_stats(names, args.data_root, args.nb_size, args.cache_dir)
    if args.json:
        print(json.dumps({"data_root": args.data_root or os.environ.get("RIDE_DATA"), "nb_size": args.nb_size,
                          "datasets": entries}, indent=1))
        return 0
    print(f"data root: {_root_source(args.data_root)}; counted pixels for nb_size {args.nb_size}")
    previous = None
    for entry in entries:
        if not entry["available"] and entry["reason"] == previous:
            print(f"{entry['dataset']:<22} not available (as above)")
        else:
            print(_format(entry))
        previous = entry.get("reason")
    return 0


# ----------------------------------------------------------------------------------------------------------------
# ride data download


class _Progress:
    """Download progress on stderr, at most a few lines a second."""

    def __init__(self) -> None:
        self.last = 0.0

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - self.last < 0.5 and done != total:
            return
        self.last = now
        of = f" of {total / 1e6:.1f}" if total else ""
        print(f"\rdownloading: {done / 1e6:.1f}{of} MB", end="", file=sys.stderr, flush=True)


def _download(args: argparse.Namespace) -> int:
    root = args.data_root or os.environ.get("RIDE_DATA")
    if not root:
        print("ride data download: error: no data root: pass --data-root DIR or set RIDE_DATA (the folder that "
              "will hold bsds300/)", file=sys.stderr)
        return 2
    dest = Path(root).expanduser() / "bsds300"
    if dest.exists() and not args.force:
        try:
            train, test = BSDS300(dest, "train+val"), BSDS300(dest, "test")
        except (OSError, ValueError) as err:
            print(f"ride data download: error: {dest} exists but is incomplete ({err}); run again with --force to "
                  "replace it", file=sys.stderr)
            return 1
        print(f"BSDS300 is already in {dest} ({len(train)} training and {len(test)} test images); "
              "--force downloads it again")
        return 0
    try:
        if args.archive:
            info = extract_bsds300(args.archive, Path(root).expanduser(), overwrite=args.force)
        else:
            print(f"downloading {args.url}", file=sys.stderr)
            info = download_bsds300(Path(root).expanduser(), args.url, overwrite=args.force,
                                             keep_archive=args.keep_archive, progress=_Progress())
            print(file=sys.stderr)
    except (OSError, ValueError) as err:
        print(f"\nride data download: error: {err}", file=sys.stderr)
        return 1
    print(f"BSDS300: {info['num_train']} training and {info['num_test']} test images in {info['folder']}")
    built = [p for p in ("train", "test") if p not in info["iids_from_archive"]]
    if built:
        print(f"id lists built from the image names (not in the archive): {', '.join(f'iids_{p}.txt' for p in built)}")
    print(f"images match the official release (digest {info['images_sha256']})")
    print(f"archive sha256 {info['archive_sha256']} ({info['archive_bytes']:,} bytes), recorded in "
          f"{Path(info['folder']) / 'ARCHIVE.sha256'}")
    return 0
