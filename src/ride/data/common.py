"""What every data set shares: the data root, reading 8-bit images, `describe()` dicts, file digests.

Image data sets are `torch.utils.data.Dataset`s of uint8 tensors [C, H, W] (grey: C = 1, ITU-R BT.601 luma as
Pillow's `convert("L")` computes it, design §1). Dequantisation to [0, 1) happens later, in training and evaluation
(`ride.units.dequantize`).

Data live in a data root: a folder that holds `bsds300/`, `brodatz_usc_sipi/`, `wikipedia_photos/`,
`usc_sipi_aerials/` and `cifar-10-batches-py/`, given as `root=` or, when `root` is None, by the environment
variable `RIDE_DATA`. A data set's own folder works as `root` too.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "tif", "tiff", "bmp")

# Folder of each named data set inside a data root, and what to tell a user who lacks it.
_FOLDERS = {"bsds300": "bsds300", "brodatz": "brodatz_usc_sipi", "cifar10": "cifar-10-batches-py",
            "wikipedia_photos": "wikipedia_photos", "usc_sipi_aerials": "usc_sipi_aerials"}
HINTS = {
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
           f"--data-root DIR on the command line or root=DIR in Python, {HINTS.get(name, 'or download it')}.")
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


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as img:
            width, height = img.size
    except (OSError, SyntaxError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from None
    return height, width


def describe_images(name: str, sizes: Sequence[tuple[int, int]], channels: int, **extra: Any) -> dict[str, Any]:
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


class FileImages(Dataset):
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
        return describe_images(self.name, [image_size(f) for f in self.files], 1 if self.grey else 3)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
