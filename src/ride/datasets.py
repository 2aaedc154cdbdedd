"""Data sets: BSDS300, image folders, Brodatz textures, the Wikimedia photographs and USC-SIPI aerials, CIFAR-10,
dead leaves and the 63-dim BSDS300 patches.

Image data sets are `torch.utils.data.Dataset`s of uint8 tensors [C, H, W] (grey: C = 1, ITU-R BT.601 luma as
Pillow's `convert("L")` computes it, spec §1). Dequantisation to [0, 1) happens later, in training and evaluation
(`ride.units.dequantize`). The exception is `BSDS300Patches`, whose stored patches are already dequantised with a
fixed seed, as the 63-dim benchmark prescribes (spec §9.2).

Data live in a data root: a folder that holds `bsds300/`, `brodatz_usc_sipi/`, `wikipedia_photos/`,
`usc_sipi_aerials/` and `cifar-10-batches-py/`, given
as `root=` or, when `root` is None, by the environment variable `RIDE_DATA`. A data set's own folder works as
`root` too. Generated patch sets are cached under `$RIDE_CACHE` (default `~/.cache/ride`).

Every data set has `describe()`: a dict of what it holds (number of images, their sizes, pixel count).
"""

from __future__ import annotations

import glob as globlib
import hashlib
import http.client
import io
import json
import os
import pickle
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from .deadleaves import (
    DEAD_LEAVES_NUM_TEST,
    DEAD_LEAVES_NUM_TRAIN,
    DEAD_LEAVES_SIZE,
    DEAD_LEAVES_TEST_SEED,
    DEAD_LEAVES_TRAIN_SEED,
    dead_leaves,
)
from .protocols import tiles as texture_tiles  # noqa: F401  (re-exported: tiling of texture images)
from .units import dequantize

IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "tif", "tiff", "bmp")

# Folder of each named data set inside a data root, and what to tell a user who lacks it.
_FOLDERS = {"bsds300": "bsds300", "brodatz": "brodatz_usc_sipi", "cifar10": "cifar-10-batches-py",
            "wikipedia_photos": "wikipedia_photos", "usc_sipi_aerials": "usc_sipi_aerials"}
_HINTS = {
    "bsds300": "or run `ride data download bsds300 --data-root DIR`",
    "brodatz": "or put the USC-SIPI texture TIFFs (1.1.01.tiff ...) from https://sipi.usc.edu/database/ into "
               "DIR/brodatz_usc_sipi",
    "wikipedia_photos": "or put the 49 photographs 001.png ... 049.png (Wikimedia Commons, downscaled; see "
                        "the project's docs) into DIR/wikipedia_photos",
    "usc_sipi_aerials": "or put the USC-SIPI aerial photographs (2.1.01.png ... 3.2.25.png, volume 2 of "
                        "https://sipi.usc.edu/database/ as PNG) into DIR/usc_sipi_aerials",
    "cifar10": "or extract cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html into DIR "
               "(it makes DIR/cifar-10-batches-py)",
}


# ----------------------------------------------------------------------------------------------------------------
# Locating data and reading images


def _looks_like(folder: Path, name: str) -> bool:
    """Whether `folder` is itself the folder of data set `name` (rather than a data root holding it)."""
    if folder.name == _FOLDERS.get(name, name):
        return True
    if name == "bsds300":
        return (folder / "images" / "train").is_dir() or (folder / "iids_train.txt").is_file()
    if name == "brodatz":
        return any(folder.glob("1.[0-9].[0-9][0-9].tif*"))
    if name == "cifar10":
        return (folder / "data_batch_1").is_file() or (folder / "test_batch").is_file()
    if name == "wikipedia_photos":
        return (folder / "001.png").is_file()
    if name == "usc_sipi_aerials":
        return any(folder.glob("[23].[12].[0-9][0-9].png"))
    return False


def resolve_root(root: str | os.PathLike | None, name: str) -> Path:
    """The folder of data set `name` ("bsds300", "brodatz", "cifar10"): `root`/<its folder>, or `root` itself
    when it is that folder. `root` None means the environment variable RIDE_DATA.

    Raises FileNotFoundError saying what was looked for, where, and how to fix it.
    """
    folder_name = _FOLDERS.get(name, name)
    fix = (f"Set RIDE_DATA to the folder that holds {folder_name}/ (export RIDE_DATA=/path/to/data), pass "
           f"--data-root DIR on the command line or root=DIR in Python, {_HINTS.get(name, 'or download it')}.")
    source = "the root argument"
    if root is None:
        env = os.environ.get("RIDE_DATA")
        if not env:
            raise FileNotFoundError(f"data set '{name}': no data root given and RIDE_DATA is not set. {fix}")
        root, source = env, "RIDE_DATA"
    base = Path(root).expanduser()
    if not base.is_dir():
        raise FileNotFoundError(f"data set '{name}': data root {base} (from {source}) is not a folder. {fix}")
    if (base / folder_name).is_dir():
        return base / folder_name
    if _looks_like(base, name):
        return base
    raise FileNotFoundError(f"data set '{name}' not found: looked for {base / folder_name}/ and for the data set's "
                            f"own files in {base} (data root from {source}). {fix}")


def load_image(path: str | os.PathLike, grey: bool = True) -> Tensor:
    """Read an 8-bit image file: uint8 [1, H, W] (luma, Pillow `convert("L")`) if `grey`, else uint8 [3, H, W].

    Raises ValueError naming the file when it cannot be decoded or is not an 8-bit image.
    """
    return read_image(path, grey)[0]


#: Pillow modes that hold one 8-bit grey channel (with or without alpha); anything else is converted.
GREY_MODES = ("L", "LA", "1")


def read_image(path: str | os.PathLike, grey: bool = True) -> tuple[Tensor, str]:
    """`load_image` plus the file's Pillow mode ("L", "RGB", "P", ...), to tell when a conversion happened."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
                raise ValueError(f"cannot use image {path}: mode {img.mode} (16-bit or float), expected 8 bits")
            mode = img.mode
            img = img.convert("L" if grey else "RGB")
            array = np.array(img, dtype=np.uint8)  # (H, W) or (H, W, 3), a copy
    except FileNotFoundError:
        raise
    except (OSError, SyntaxError, Image.DecompressionBombError) as err:  # Pillow's "cannot identify", truncation
        raise ValueError(f"cannot read image {path}: {err}") from None
    tensor = torch.from_numpy(array)
    return (tensor.unsqueeze(0) if grey else tensor.permute(2, 0, 1).contiguous()), mode


def _image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as img:
            width, height = img.size
    except (OSError, SyntaxError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from None
    return height, width


def _describe(name: str, sizes: Sequence[tuple[int, int]], channels: int, **extra: Any) -> dict[str, Any]:
    """The common `describe()` dict: sizes [(H, W), ...] -> counts, a size summary {"HxW": count} and pixels."""
    return {
        "name": name,
        "num_images": len(sizes),
        "channels": channels,
        "sizes": [list(s) for s in sizes],
        "size_counts": dict(Counter(f"{h}x{w}" for h, w in sizes)),
        "num_pixels": int(sum(h * w for h, w in sizes)),
        **extra,
    }


class _FileImages(Dataset):
    """Images read from a list of files, uint8 [C, H, W] each."""

    name = "images"
    files: list[Path]
    grey: bool

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Tensor:
        image, mode = read_image(self.files[index], self.grey)
        if self.grey and mode not in GREY_MODES:
            # callers tell the user (not silently) that a grey model saw the colour image's luma
            self.__dict__.setdefault("_converted", set()).add(index)
        return image

    def converted_to_luma(self) -> list[int]:
        """Indices of the colour images read so far that were converted to luma for a grey model."""
        return sorted(self.__dict__.get("_converted", ()))

    def describe(self) -> dict[str, Any]:
        """Number of images, their sizes ([H, W] each, and counts per size), channels and pixel count."""
        return _describe(self.name, [_image_size(f) for f in self.files], 1 if self.grey else 3)


# ----------------------------------------------------------------------------------------------------------------
# BSDS300


BSDS300_NUM_TRAIN = 200
BSDS300_NUM_TEST = 100
#: The validation set is the last 20 training images in numeric id order; training keeps the first 180.
BSDS300_NUM_VAL = 20
BSDS300_SPLITS = ("train", "val", "train+val", "test")
BSDS300_URL = "https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/bsds/BSDS300-images.tgz"
#: Digest of the 300 official images (see `bsds300_images_sha256`), from a byte-identical copy of the release.
BSDS300_IMAGES_SHA256 = "373d1ffde559b00ac79bdbff2b47886874b323400652723c762cf2b665fe7c69"
#: Plausible size of the official archive (its JPEGs alone are 22.2 MB): catches error pages and truncation.
BSDS300_ARCHIVE_MIN_BYTES = 15_000_000
BSDS300_ARCHIVE_MAX_BYTES = 100_000_000


def _read_ids(path: Path) -> list[str]:
    """Image ids of an iids_*.txt file, sorted numerically (never trust the file's line order)."""
    ids: list[str] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        token = line.strip()
        if not token:
            continue
        if not token.isdigit():
            raise ValueError(f"{path}, line {number}: expected a numeric image id, found {token!r}")
        ids.append(token)
    duplicates = sorted({i for i in ids if ids.count(i) > 1}, key=int)
    if duplicates:
        raise ValueError(f"{path}: duplicate image ids {duplicates[:5]}")
    return sorted(ids, key=int)


def bsds300_split_ids(train_ids: Sequence[str], test_ids: Sequence[str], split: str) -> list[str]:
    """Ids of a BSDS300 split, sorted numerically: "train" = all training ids but the last BSDS300_NUM_VAL (the
    first 180 of 200), "val" = the last 20, "train+val" = all training ids, "test" = all test ids."""
    if split not in BSDS300_SPLITS:
        raise ValueError(f"BSDS300 split must be one of {BSDS300_SPLITS}, found {split!r}")
    train = sorted(train_ids, key=int)
    if split == "test":
        return sorted(test_ids, key=int)
    if split == "train+val":
        return train
    if len(train) <= BSDS300_NUM_VAL:
        raise ValueError(f"BSDS300 split {split!r} needs more than {BSDS300_NUM_VAL} training ids, found {len(train)}")
    return train[:-BSDS300_NUM_VAL] if split == "train" else train[-BSDS300_NUM_VAL:]


class BSDS300(_FileImages):
    """BSDS300 images, uint8 [1, H, W] (luma) or [3, H, W] (`grey=False`); H x W is 321 x 481 or 481 x 321.

    `split`: "train" (the first 180 of the 200 training ids in numeric order), "val" (the last 20), "train+val"
    (all 200) or "test" (the 100 test ids). Ids come from iids_train.txt / iids_test.txt, sorted numerically.
    Attributes: `ids` (list of str, numeric order), `files` (paths, same order), `folder`.
    """

    name = "bsds300"

    def __init__(self, root: str | os.PathLike | None = None, split: str = "test", grey: bool = True) -> None:
        if split not in BSDS300_SPLITS:
            raise ValueError(f"BSDS300 split must be one of {BSDS300_SPLITS}, found {split!r}")
        self.folder = resolve_root(root, "bsds300")
        self.split, self.grey = split, grey
        lists = {}
        for part in ("train", "test"):
            path = self.folder / f"iids_{part}.txt"
            if not path.is_file():
                raise FileNotFoundError(f"BSDS300 in {self.folder} lacks {path.name}: incomplete data set; "
                                        "re-run `ride data download bsds300`")
            lists[part] = _read_ids(path)
        self.ids = bsds300_split_ids(lists["train"], lists["test"], split)
        subfolder = self.folder / "images" / ("test" if split == "test" else "train")
        self.files = [subfolder / f"{i}.jpg" for i in self.ids]
        missing = [f.name for f in self.files if not f.is_file()]
        if missing:
            raise FileNotFoundError(f"BSDS300 is incomplete: {len(missing)} of the {len(self.files)} images of split "
                                    f"{split!r} are missing from {subfolder} (first: {missing[0]}); re-run "
                                    "`ride data download bsds300`")

    def describe(self) -> dict[str, Any]:
        """Number of images, sizes ([H, W] each and counts per size), channels, pixels, split and ids."""
        return {**super().describe(), "split": self.split, "ids": list(self.ids)}


def bsds300_images_sha256(folder: str | os.PathLike) -> str:
    """Digest of a BSDS300 folder's images: sha256 of the lines "<sha256 of file>  images/<split>/<id>.jpg\\n"
    over all images/*/*.jpg sorted by that relative path (the lines of a `sha256sum` manifest)."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for rel in sorted(p.relative_to(folder).as_posix() for p in folder.glob("images/*/*.jpg")):
        digest.update(f"{_file_sha256(folder / rel)}  {rel}\n".encode())
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


_ARCHIVE_IMAGE = re.compile(r"^(\d+)\.jpg$")


def extract_bsds300(archive: str | os.PathLike, root: str | os.PathLike, *, overwrite: bool = False,
                    verify_images: bool = True) -> dict[str, Any]:
    """Verify the BSDS300 images archive (BSDS300-images.tgz) and extract it to `root`/bsds300 as images/train,
    images/test, iids_train.txt and iids_test.txt (built from the file names when the archive lacks them).

    Checks: archive size within [BSDS300_ARCHIVE_MIN_BYTES, BSDS300_ARCHIVE_MAX_BYTES]; a gzip tar; exactly 200
    training and 100 test JPEGs named by numeric id, disjoint; iid files, if present, listing the same ids; the
    images' digest equal to BSDS300_IMAGES_SHA256 (if `verify_images`). Extraction goes to a temporary
    folder that is renamed into place only when every check passed. The archive's sha256 is written to
    bsds300/ARCHIVE.sha256. Returns {"folder", "archive_sha256", "archive_bytes", "num_train", "num_test",
    "iids_from_archive", "images_sha256"}. Raises ValueError on a bad archive, FileExistsError when the folder
    exists and not `overwrite`.
    """
    archive, root = Path(archive), Path(root)
    size = archive.stat().st_size
    if not BSDS300_ARCHIVE_MIN_BYTES <= size <= BSDS300_ARCHIVE_MAX_BYTES:
        raise ValueError(f"{archive} has {size} bytes, expected {BSDS300_ARCHIVE_MIN_BYTES}.."
                         f"{BSDS300_ARCHIVE_MAX_BYTES} for the BSDS300 images archive (an error page or a truncated "
                         "download?)")
    dest = root / "bsds300"
    if dest.exists() and not overwrite:
        raise FileExistsError(f"{dest} already exists; remove it or overwrite it (--force)")
    archive_sha256 = _file_sha256(archive)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".bsds300-", dir=root))
    try:
        found, iids = _extract_members(archive, tmp)
        for part, expected in (("train", BSDS300_NUM_TRAIN), ("test", BSDS300_NUM_TEST)):
            if len(found[part]) != expected:
                raise ValueError(f"{archive}: expected {expected} images in images/{part}/, found {len(found[part])}")
        overlap = set(found["train"]) & set(found["test"])
        if overlap:
            raise ValueError(f"{archive}: ids in both images/train and images/test: {sorted(overlap, key=int)[:5]}")
        for part in ("train", "test"):
            if part in iids and sorted(iids[part], key=int) != sorted(found[part], key=int):
                raise ValueError(f"{archive}: iids_{part}.txt does not list the ids of images/{part}/")
            if part not in iids:  # build the list from the images, in numeric order
                (tmp / f"iids_{part}.txt").write_text("".join(f"{i}\n" for i in sorted(found[part], key=int)))
        images_sha256 = bsds300_images_sha256(tmp)
        if verify_images and images_sha256 != BSDS300_IMAGES_SHA256:
            raise ValueError(f"{archive}: the images differ from the official BSDS300 release (digest "
                             f"{images_sha256}, expected {BSDS300_IMAGES_SHA256})")
        (tmp / "ARCHIVE.sha256").write_text(f"{archive_sha256}  {archive.name}\n")
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=".bsds300-old-", dir=root))
            os.replace(dest, old / "bsds300")
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return {"folder": str(dest), "archive_sha256": archive_sha256, "archive_bytes": size,
            "num_train": len(found["train"]), "num_test": len(found["test"]),
            "iids_from_archive": sorted(iids), "images_sha256": images_sha256}


def _extract_members(archive: Path, dest: Path) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Copy .../images/{train,test}/<id>.jpg and .../iids_{train,test}.txt out of the tar archive into `dest`
    (output paths are built from the matched names, never from the archive's paths). Returns the image ids and
    the iid lists found, per split."""
    found: dict[str, list[str]] = {"train": [], "test": []}
    iids: dict[str, list[str]] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                parts = PurePosixPath(member.name).parts
                match = _ARCHIVE_IMAGE.match(parts[-1])
                if match and len(parts) >= 3 and parts[-3] == "images" and parts[-2] in found:
                    part = parts[-2]
                    if match.group(1) in found[part]:
                        raise ValueError(f"{archive}: image {parts[-1]} appears twice in images/{part}/")
                    found[part].append(match.group(1))
                    out = dest / "images" / part / parts[-1]
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with tar.extractfile(member) as src, open(out, "wb") as dst:  # type: ignore[union-attr]
                        shutil.copyfileobj(src, dst)
                elif parts[-1] in ("iids_train.txt", "iids_test.txt"):
                    part = parts[-1][5:-4]
                    data = tar.extractfile(member).read()  # type: ignore[union-attr]
                    (dest / parts[-1]).write_bytes(data)
                    iids[part] = _read_ids(dest / parts[-1])
    except (tarfile.TarError, EOFError, OSError) as err:
        raise ValueError(f"{archive} is not a readable .tgz archive: {err}") from None
    return found, iids


def download_bsds300(root: str | os.PathLike, url: str = BSDS300_URL, *, overwrite: bool = False,
                     keep_archive: bool = False, timeout: float = 60.0,
                     progress: Callable[[int, int | None], None] | None = None) -> dict[str, Any]:
    """Download the official BSDS300 images archive into `root`, verify and extract it (`extract_bsds300`).

    `progress(bytes_done, bytes_total_or_None)` is called as the download proceeds. The archive is deleted after
    a successful extraction unless `keep_archive`. Returns `extract_bsds300`'s dict plus "url". Raises
    ConnectionError (an OSError) with the URL and the reason when the download fails.
    """
    root = Path(root)
    if (root / "bsds300").exists() and not overwrite:
        raise FileExistsError(f"{root / 'bsds300'} already exists; remove it or overwrite it (--force)")
    root.mkdir(parents=True, exist_ok=True)
    archive = root / "BSDS300-images.tgz"
    part = root / "BSDS300-images.tgz.part"
    hint = ("Check the internet connection (or the proxy in https_proxy), or download the file with a browser and "
            "run `ride data download bsds300 --archive FILE`")
    with open(part, "wb") as out:  # a local error here (permissions, disk) is not a network error
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                headers = getattr(response, "headers", None)
                length = headers.get("Content-Length") if headers is not None else None
                total = int(length) if length and str(length).isdigit() else None
                done = 0
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
        except (urllib.error.URLError, http.client.HTTPException, OSError) as err:  # OSError: sockets, timeouts
            out.close()
            part.unlink(missing_ok=True)
            raise ConnectionError(f"cannot download {url}: {getattr(err, 'reason', err)}. {hint}") from None
    if total is not None and done != total:
        part.unlink(missing_ok=True)
        raise ConnectionError(f"download of {url} was cut short: got {done} of {total} bytes. {hint}")
    os.replace(part, archive)
    try:
        info = extract_bsds300(archive, root, overwrite=overwrite)
    finally:
        if not keep_archive:
            archive.unlink(missing_ok=True)
    return {**info, "url": url}


# ----------------------------------------------------------------------------------------------------------------
# Image folders and textures


class ImageFolder(_FileImages):
    """The images of a folder (non-recursive), a glob pattern or one file, sorted by path: uint8 [C, H, W] each
    (C = 1 luma if `grey`, else 3). Files are chosen by extension (case-insensitive); dot files are skipped.
    With `grey`, `converted_to_luma()` lists the colour files read so far (converted to luma).

    Raises FileNotFoundError when the folder is missing or holds no image; reading an unreadable file raises
    ValueError naming it. Attribute `files`: the paths.
    """

    name = "images"

    def __init__(self, root: str | os.PathLike, grey: bool = True,
                 extensions: Sequence[str] = IMAGE_EXTENSIONS) -> None:
        self.grey = grey
        exts = {e.lower().lstrip(".") for e in extensions}
        pattern = str(root)
        single = Path(root).expanduser()
        if single.is_file():  # one image file (any extension Pillow reads: the user named it)
            candidates = [single]
            exts = {single.suffix.lower().lstrip(".")}
            where = f"at {single}"
        elif any(c in pattern for c in "*?["):
            candidates = [Path(p) for p in globlib.glob(os.path.expanduser(pattern))]
            where = f"matching {pattern!r}"
        else:
            folder = Path(root).expanduser()
            if not folder.is_dir():
                raise FileNotFoundError(f"image folder {folder} does not exist (or is not a folder)")
            candidates = list(folder.iterdir())
            where = f"in {folder}"
        self.files = sorted(p for p in candidates if p.is_file() and not p.name.startswith(".")
                            and p.suffix.lower().lstrip(".") in exts)
        if not self.files:
            raise FileNotFoundError(f"no image files ({', '.join(sorted(exts))}) {where}")
        self.name = str(root)


def black_bottom_rows(image: Tensor) -> int:
    """Number of all-zero rows at the bottom of an image [C, H, W] (the USC-SIPI scans' black border)."""
    if image.dim() != 3:
        raise ValueError(f"expected an image [C, H, W], found shape {tuple(image.shape)}")
    nonzero = (image != 0).any(dim=2).any(dim=0).nonzero()  # row indices holding a non-zero pixel
    return image.shape[1] if nonzero.numel() == 0 else image.shape[1] - 1 - int(nonzero[-1])


class Brodatz(Dataset):
    """USC-SIPI Brodatz textures (volume 1), uint8 [1, H, W], with the black rows at the bottom cropped off.

    `scans`: which scans to use ("1.1" the 13 plates at 512 x 512, "1.2" their brightness-remapped copies,
    "1.3" larger 1024 x 1024 scans); `plates`: explicit names like ["1.1.01", "1.3.05"] (then `scans` is not
    used). The crop removes all-zero bottom rows, detected per image: on the USC-SIPI files 2 rows on the 512 x 512
    scans (26 on 1.1.11 and 1.2.11), none on the 1.3 scans, giving 510 x 512 (486 x 512) images. Attributes:
    `names`, `files`. Never put 1.1.k and 1.2.k on different sides of a train/test split (same texture).
    """

    name = "brodatz"

    def __init__(self, root: str | os.PathLike | None = None, plates: Sequence[str] | None = None,
                 scans: Sequence[str] = ("1.1",), crop: bool = True) -> None:
        self.folder = resolve_root(root, "brodatz")
        self.crop = crop
        available = {p.stem: p for p in sorted(self.folder.iterdir())
                     if p.is_file() and p.suffix.lower() in (".tif", ".tiff")}
        if not available:
            raise FileNotFoundError(f"no texture TIFFs (.tif, .tiff) in {self.folder}")
        if plates is not None:
            if isinstance(plates, str):
                plates = [plates]
            unknown = [p for p in plates if p not in available]
            if unknown:
                raise ValueError(f"unknown Brodatz plates {unknown} in {self.folder}; available: "
                                 f"{', '.join(sorted(available))}")
            self.names = list(plates)
        else:
            if isinstance(scans, str):
                scans = [scans]
            self.names = sorted(n for n in available if n.rsplit(".", 1)[0] in scans)
            if not self.names:
                present = sorted({n.rsplit(".", 1)[0] for n in available})
                raise FileNotFoundError(f"no Brodatz plates of scans {list(scans)} in {self.folder}; scans present: "
                                        f"{present}")
        self.files = [available[n] for n in self.names]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Tensor:
        image = load_image(self.files[index], grey=True)
        if not self.crop:
            return image
        rows = black_bottom_rows(image)
        if rows == image.shape[1]:
            raise ValueError(f"texture {self.files[index]} is entirely black")
        return image[:, : image.shape[1] - rows]

    def describe(self) -> dict[str, Any]:
        """Number of images, sizes after cropping, pixels, plate names and cropped rows per plate."""
        sizes, cropped = [], []
        for index, path in enumerate(self.files):
            image = self[index]
            sizes.append(tuple(image.shape[1:]))
            cropped.append(_image_size(path)[0] - image.shape[1])
        return _describe(self.name, sizes, 1, names=list(self.names), cropped_rows=cropped)


# ----------------------------------------------------------------------------------------------------------------
# Photographs that were never JPEG-compressed at their final size


PHOTO_SPLITS = ("train", "val", "all")
#: Wikimedia photographs: validation holds every fifth image from 003 (003, 008, ..., 048: 10 of 49), spread over
#: the numbering so that no run of similar scenes decides it; training holds the other 39.
WIKIPEDIA_VAL_EVERY, WIKIPEDIA_VAL_FIRST = 5, 3
#: USC-SIPI aerials: validation holds every fifth image in name order from the third (7 of 37).
AERIALS_VAL_EVERY, AERIALS_VAL_FIRST = 5, 3


def every_kth_split(names: Sequence[str], split: str, every: int, first: int) -> list[int]:
    """Indices of `split` ("train", "val" or "all") in `names` (sorted): validation holds positions first-1,
    first-1+every, ... (1-based `first`), training the rest."""
    if split not in PHOTO_SPLITS:
        raise ValueError(f"split must be one of {PHOTO_SPLITS}, found {split!r}")
    val = set(range(first - 1, len(names), every))
    if split == "all":
        return list(range(len(names)))
    return [k for k in range(len(names)) if (k in val) == (split == "val")]


class _PhotoFolder(_FileImages):
    """Numbered PNG photographs in a data set folder, split by a fixed every-k-th rule (`every_kth_split`)."""

    pattern = "*.png"
    val_every, val_first = 5, 3

    def __init__(self, root: str | os.PathLike | None = None, split: str = "val", grey: bool = True) -> None:
        self.folder = resolve_root(root, self.name)
        self.split, self.grey = split, grey
        files = sorted(p for p in self.folder.glob(self.pattern) if p.is_file())
        if not files:
            raise FileNotFoundError(f"data set '{self.name}' in {self.folder} holds no image matching "
                                    f"{self.pattern}: {_HINTS[self.name]}")
        keep = every_kth_split([f.name for f in files], split, self.val_every, self.val_first)
        self.files = [files[k] for k in keep]
        self.ids = [f.stem for f in self.files]
        if not self.files:
            raise FileNotFoundError(f"data set '{self.name}' in {self.folder}: split {split!r} is empty "
                                    f"({len(files)} images in all)")

    def describe(self) -> dict[str, Any]:
        """Number of images, sizes, channels, pixels, split and ids."""
        return {**super().describe(), "split": self.split, "ids": list(self.ids)}


class WikipediaPhotos(_PhotoFolder):
    """The 49 downscaled Wikimedia Commons photographs (001.png ... 049.png, about 1.1 Mpx each), uint8
    [1, H, W] (luma as for BSDS300, Pillow `convert("L")`) or [3, H, W] with `grey=False`.

    `split`: "train" (39 images), "val" (every fifth from 003: 003, 008, ..., 048, 10 images) or "all".
    Their pixels behave like those of lossless photographs (the originals' JPEG blocks are averaged away by the
    large downscaling), unlike BSDS300's.
    """

    name = "wikipedia_photos"
    pattern = "[0-9][0-9][0-9].png"
    val_every, val_first = WIKIPEDIA_VAL_EVERY, WIKIPEDIA_VAL_FIRST


class USCSIPIAerials(_PhotoFolder):
    """The 37 USC-SIPI aerial photographs (volume 2; 2.1.xx 512 x 512, 2.2.xx and 3.2.25 1024 x 1024), scanned
    film, never JPEG-compressed: uint8 [1, H, W] luma or [3, H, W] with `grey=False` (3.2.25 is grey; as RGB its
    channels are equal). `split`: "train" (30), "val" (every fifth in name order from the third, 7) or "all".
    """

    name = "usc_sipi_aerials"
    pattern = "[23].[12].[0-9][0-9].png"
    val_every, val_first = AERIALS_VAL_EVERY, AERIALS_VAL_FIRST


# ----------------------------------------------------------------------------------------------------------------
# CIFAR-10


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{k}" for k in range(1, 6))
CIFAR10_TEST_FILES = ("test_batch",)

# The globals a CIFAR-10 batch pickle may refer to (numpy arrays; bytes as written by protocol 2 on Python 3).
# Anything else is refused: pickles can run code, and these files come from the internet.
_PICKLE_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PICKLE_ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        if module.startswith("numpy.core.") and np.lib.NumpyVersion(np.__version__) >= "2.0.0":
            module = "numpy._core." + module[len("numpy.core."):]  # the old name warns on NumPy 2
        return super().find_class(module, name)


def read_cifar10_batch(path: str | os.PathLike) -> tuple[Tensor, Tensor]:
    """Read a CIFAR-10 python batch file: images uint8 [N, 3, 32, 32] and labels int64 [N].

    The file is a pickled dict with b"data" (uint8 [N, 3072]: the red, green and blue 32 x 32 planes, each in
    row-major order) and b"labels" (N ints in 0..9). Raises ValueError naming the file when it is not in that
    format.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            batch = _BatchUnpickler(f, encoding="bytes").load()
    except FileNotFoundError:
        raise
    except Exception as err:  # any unpickling failure means the same thing: not a batch file
        raise ValueError(f"{path} is not a CIFAR-10 python batch (a pickled dict): {err}") from None
    if not isinstance(batch, dict):
        raise ValueError(f"{path} is not a CIFAR-10 python batch: expected a dict, found {type(batch).__name__}")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        found = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"{path} is not a CIFAR-10 python batch: expected b'data' uint8 [N, 3072], found {found}")
    labels = np.asarray(labels) if labels is not None else None
    if labels is None or labels.shape != (len(data),) or labels.dtype.kind not in "iu":
        raise ValueError(f"{path} is not a CIFAR-10 python batch: expected b'labels' with {len(data)} ints")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{path}: labels must lie in 0..9, found {labels.min()}..{labels.max()}")
    images = torch.from_numpy(np.ascontiguousarray(data).reshape(-1, 3, 32, 32).copy())
    return images, torch.from_numpy(labels.astype(np.int64))


def write_cifar10_batch(path: str | os.PathLike, images: Tensor | np.ndarray, labels: Sequence[int]) -> None:
    """Write images uint8 [N, 3, 32, 32] and labels (N ints in 0..9) in CIFAR-10's python batch format."""
    data = np.asarray(images)
    if data.dtype != np.uint8 or data.ndim != 4 or data.shape[1:] != (3, 32, 32):
        raise ValueError(f"images must be uint8 [N, 3, 32, 32], found {data.dtype} {data.shape}")
    labels = [int(y) for y in labels]
    if len(labels) != len(data):
        raise ValueError(f"expected {len(data)} labels, found {len(labels)}")
    batch = {b"batch_label": Path(path).name.encode(), b"labels": labels,
             b"data": np.ascontiguousarray(data.reshape(len(data), 3072)),
             b"filenames": [f"image_{k}.png".encode() for k in range(len(data))]}
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=2)  # the protocol of the original (Python 2) files


class CIFAR10(Dataset):
    """CIFAR-10 from its python batches (data_batch_1..5 or test_batch): items (uint8 [3, 32, 32], int label).

    `root`: the cifar-10-batches-py folder or the data root holding it (None: RIDE_DATA). All batches are read
    into memory at construction. Attributes: `images` uint8 [N, 3, 32, 32], `labels` int64 [N], `classes`.
    """

    name = "cifar10"
    classes = CIFAR10_CLASSES

    def __init__(self, root: str | os.PathLike | None = None, train: bool = True) -> None:
        self.folder = resolve_root(root, "cifar10")
        self.train = train
        names = CIFAR10_TRAIN_FILES if train else CIFAR10_TEST_FILES
        missing = [n for n in names if not (self.folder / n).is_file()]
        if missing:
            raise FileNotFoundError(f"CIFAR-10 batch files {missing} are missing from {self.folder} (expected "
                                    f"{', '.join(names)}): extract cifar-10-python.tar.gz from "
                                    "https://www.cs.toronto.edu/~kriz/cifar.html there")
        parts = [read_cifar10_batch(self.folder / n) for n in names]
        self.images = torch.cat([p[0] for p in parts])
        self.labels = torch.cat([p[1] for p in parts])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.images[index], int(self.labels[index])

    def describe(self) -> dict[str, Any]:
        """Number of images, sizes (all 32 x 32), channels, pixels and the split."""
        return _describe(self.name, [(32, 32)] * len(self), 3, split="train" if self.train else "test")


# ----------------------------------------------------------------------------------------------------------------
# Dead leaves


class DeadLeaves(Dataset):
    """Dead-leaves images of spec §9.3, uint8 [1, size, size], generated on demand from fixed seeds.

    `split` "train" (900 images, DEAD_LEAVES_TRAIN_SEED) or "test" (100, DEAD_LEAVES_TEST_SEED); `num_images`
    overrides the count (image k does not depend on it). Item k equals
    `dead_leaves_images(k + 1, size, seed=...)[k]`. `cache=True` keeps generated images in memory.
    """

    name = "deadleaves"

    def __init__(self, split: str = "train", size: int = DEAD_LEAVES_SIZE, num_images: int | None = None,
                 cache: bool = False) -> None:
        if split not in ("train", "test"):
            raise ValueError(f"DeadLeaves split must be 'train' or 'test', found {split!r}")
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise ValueError(f"size must be a positive int, found {size!r}")
        default = DEAD_LEAVES_NUM_TRAIN if split == "train" else DEAD_LEAVES_NUM_TEST
        num_images = default if num_images is None else num_images
        if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 0:
            raise ValueError(f"num_images must be an int >= 0, found {num_images!r}")
        self.split, self.size, self.num_images = split, size, num_images
        self.seed = DEAD_LEAVES_TRAIN_SEED if split == "train" else DEAD_LEAVES_TEST_SEED
        self._cache: dict[int, Tensor] | None = {} if cache else None

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int) -> Tensor:
        if not -self.num_images <= index < self.num_images:
            raise IndexError(f"index {index} out of range for {self.num_images} images")
        index %= self.num_images
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        # Image k's own stream, as in dead_leaves_images: SeedSequence(seed).spawn(k + 1)[k].
        rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(index,)))
        image = torch.from_numpy(dead_leaves(self.size, rng=rng)).unsqueeze(0)
        if self._cache is not None:
            self._cache[index] = image
        return image

    def describe(self) -> dict[str, Any]:
        """Number of images, sizes, pixels, split and seed (nothing is generated)."""
        return _describe(self.name, [(self.size, self.size)] * self.num_images, 1, split=self.split,
                         seed=self.seed)


# ----------------------------------------------------------------------------------------------------------------
# BSDS300 patches (the 63-dim benchmark, spec §9.2)


BSDS300_PATCH_SIZE = 8
BSDS300_PATCH_COUNTS = {"train": 1_000_000, "val": 50_000, "test": 250_000}
#: One seed per split drives a torch.Generator: patch positions (image by image), then the shuffle, then the
#: dequantisation noise u.
BSDS300_PATCH_SEEDS = {"train": 20150630, "val": 20150631, "test": 20150632}
#: Version of the cached file format and of the generation procedure; bump it when either changes.
PATCHES_FORMAT_VERSION = 1


def default_cache_dir() -> Path:
    """`$RIDE_CACHE`, else ~/.cache/ride."""
    env = os.environ.get("RIDE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ride"


def random_patches(images: Sequence[Tensor], num_patches: int, generator: torch.Generator,
                   patch_size: int = BSDS300_PATCH_SIZE) -> tuple[Tensor, Tensor]:
    """Random patch_size x patch_size patches, as equal in number per image as possible, in random order.

    `images`: uint8 [1, H, W] each. Image k gives num_patches // len(images) patches, plus one for the first
    num_patches % len(images) images; positions are uniform over the patch positions inside the image. Returns
    the pixel values uint8 [N, patch_size**2] (raster order) and their origins int64 [N, 3] (image index, top
    row, left column), both shuffled by one random permutation.
    """
    if not images:
        raise ValueError("random_patches needs at least one image")
    if isinstance(num_patches, bool) or not isinstance(num_patches, int) or num_patches < 0:
        raise ValueError(f"num_patches must be an int >= 0, found {num_patches!r}")
    share, extra = divmod(num_patches, len(images))
    offsets = torch.arange(patch_size)
    values, origins = [], []
    for k, image in enumerate(images):
        if image.dim() != 3 or image.shape[0] != 1:
            raise ValueError(f"images must be grey [1, H, W], found shape {tuple(image.shape)} at index {k}")
        _, h, w = image.shape
        if h < patch_size or w < patch_size:
            raise ValueError(f"image {k} of size {h}x{w} is smaller than a {patch_size}x{patch_size} patch")
        count = share + (k < extra)
        top = torch.randint(0, h - patch_size + 1, (count,), generator=generator)
        left = torch.randint(0, w - patch_size + 1, (count,), generator=generator)
        rows = (top[:, None] + offsets)[:, :, None]  # (n, p, 1)
        cols = (left[:, None] + offsets)[:, None, :]  # (n, 1, p)
        values.append(image.reshape(-1)[(rows * w + cols).reshape(count, patch_size * patch_size)])  # (n, p*p)
        origins.append(torch.stack([torch.full_like(top, k), top, left], dim=1))
    order = torch.randperm(num_patches, generator=generator)
    return torch.cat(values)[order], torch.cat(origins)[order]


def _patch_cache_paths(cache_dir: Path, split: str, num_patches: int) -> tuple[Path, Path]:
    stem = cache_dir / "bsds300_patches" / f"{split}_{num_patches}"
    return stem.with_suffix(".npy"), stem.with_suffix(".json")


def _patch_params(source: BSDS300, split: str, num_patches: int) -> dict[str, Any]:
    """What the cached file depends on; a sidecar that differs in any of these is stale."""
    digest = hashlib.sha256()
    for image_id, path in zip(source.ids, source.files, strict=True):
        digest.update(f"{image_id}:{_file_sha256(path)}\n".encode())
    return {"format": "ride.bsds300_patches", "version": PATCHES_FORMAT_VERSION, "split": split,
            "num_patches": num_patches, "patch_size": BSDS300_PATCH_SIZE, "seed": BSDS300_PATCH_SEEDS[split],
            "dequantization": "x = (v + u) / 256, u ~ U[0,1) from the same generator", "luma": "PIL convert('L')",
            "ids": list(source.ids), "inputs_sha256": digest.hexdigest()}


def _atomic_write(path: Path, write: Callable[[io.BufferedWriter], None]) -> None:
    """Write a file through `write(f)` into a temporary file beside it, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a cache is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_sidecar(path: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


class BSDS300Patches(Dataset):
    """The 63-dim BSDS300 benchmark's patches (spec §9.2): items float32 [64], one 8 x 8 patch in raster order,
    dequantised: x = (v + u) / 256 on [0, 1). The 63-dim vector (patch mean subtracted, bottom-right pixel
    dropped) is derived by the evaluation code, not stored.

    Images (grey, numeric id order) of split "train" (the first 180 training images), "val" (the last 20) or
    "test" (the 100 test images) give `num_patches` random patches (default 1,000,000 / 50,000 / 250,000), as
    equal in number per image as possible (`random_patches`), shuffled, with noise u; a torch.Generator seeded
    with BSDS300_PATCH_SEEDS[split] drives all of it. Generated once and cached in `cache_dir` (default
    `default_cache_dir()`) as bsds300_patches/<split>_<num_patches>.npy plus a JSON sidecar (format version,
    parameters, source ids, sha256 of the source images); regenerated when absent, stale or `regenerate`.
    Attributes: `patches` float32 [N, 64], `cache_file`, `generated` (whether this construction generated it).
    """

    name = "bsds300-patches"

    def __init__(self, root: str | os.PathLike | None = None, split: str = "train",
                 cache_dir: str | os.PathLike | None = None, regenerate: bool = False, *,
                 num_patches: int | None = None) -> None:
        if split not in BSDS300_PATCH_COUNTS:
            raise ValueError(f"BSDS300Patches split must be one of {tuple(BSDS300_PATCH_COUNTS)}, found {split!r}")
        num_patches = BSDS300_PATCH_COUNTS[split] if num_patches is None else num_patches
        if isinstance(num_patches, bool) or not isinstance(num_patches, int) or num_patches <= 0:
            raise ValueError(f"num_patches must be a positive int, found {num_patches!r}")
        self.split, self.num_patches = split, num_patches
        source = BSDS300(root, split, grey=True)
        self.ids = list(source.ids)
        cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        self.cache_file, self.meta_file = _patch_cache_paths(cache, split, num_patches)
        params = _patch_params(source, split, num_patches)
        self.patches = None if regenerate else self._load(params)
        self.generated = self.patches is None
        if self.patches is None:
            self.patches = self._generate(source, params)

    def _load(self, params: dict[str, Any]) -> Tensor | None:
        """The cached patches if the sidecar matches `params` and the array has the right shape, else None."""
        meta = _read_sidecar(self.meta_file)
        if meta is None or any(meta.get(k) != v for k, v in params.items()) or not self.cache_file.is_file():
            return None
        try:
            array = np.load(self.cache_file, allow_pickle=False)
        except (OSError, ValueError):
            return None
        if array.dtype != np.float32 or array.shape != (self.num_patches, BSDS300_PATCH_SIZE**2):
            return None
        return torch.from_numpy(array)

    def _generate(self, source: BSDS300, params: dict[str, Any]) -> Tensor:
        generator = torch.Generator().manual_seed(params["seed"])
        images = [source[k] for k in range(len(source))]
        values, _ = random_patches(images, self.num_patches, generator)
        patches = dequantize(values, generator=generator)  # (N, 64) float32 on [0, 1)
        # Drop the old sidecar first: a crash between the two writes then leaves no sidecar (stale), never an
        # old sidecar vouching for a new array.
        self.meta_file.unlink(missing_ok=True)
        _atomic_write(self.cache_file, lambda f: np.save(f, patches.numpy(), allow_pickle=False))
        meta = {**params, "shape": list(patches.shape), "dtype": "float32",
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "torch": torch.__version__, "numpy": np.__version__, "pillow": Image.__version__}
        _atomic_write(self.meta_file, lambda f: f.write(json.dumps(meta, indent=1).encode()))
        return patches

    @staticmethod
    def cache_status(root: str | os.PathLike | None = None, split: str = "train",
                     cache_dir: str | os.PathLike | None = None, num_patches: int | None = None) -> tuple[Path, str]:
        """(cache file, "fresh" | "stale" | "absent") for a split, without generating anything."""
        num_patches = BSDS300_PATCH_COUNTS[split] if num_patches is None else num_patches
        cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        npy, sidecar = _patch_cache_paths(cache, split, num_patches)
        meta = _read_sidecar(sidecar)
        if meta is None or not npy.is_file():
            return npy, "absent"
        params = _patch_params(BSDS300(root, split), split, num_patches)
        return npy, "fresh" if all(meta.get(k) == v for k, v in params.items()) else "stale"

    def __len__(self) -> int:
        return self.num_patches

    def __getitem__(self, index: int) -> Tensor:
        return self.patches[index]

    def describe(self) -> dict[str, Any]:
        """Number of patches, patch size, source images, pixels (N * 64) and the cache file."""
        return {"name": self.name, "split": self.split, "num_patches": self.num_patches,
                "patch_size": BSDS300_PATCH_SIZE, "num_images": len(self.ids),
                "num_pixels": self.num_patches * BSDS300_PATCH_SIZE**2, "seed": BSDS300_PATCH_SEEDS[self.split],
                "cache_file": str(self.cache_file)}
