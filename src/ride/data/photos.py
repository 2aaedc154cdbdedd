"""Photographs that were never JPEG-compressed at their final size: the Wikimedia Commons photographs and the
USC-SIPI aerials, split by a fixed every-k-th rule.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from .common import HINTS, FileImages, resolve_root

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


class _PhotoFolder(FileImages):
    """Numbered PNG photographs in a data set folder, split by a fixed every-k-th rule (`every_kth_split`)."""

    pattern = "*.png"
    val_every, val_first = 5, 3

    def __init__(self, root: str | os.PathLike | None = None, split: str = "val", grey: bool = True) -> None:
        self.folder = resolve_root(root, self.name)
        self.split, self.grey = split, grey
        files = sorted(p for p in self.folder.glob(self.pattern) if p.is_file())
        if not files:
            raise FileNotFoundError(f"data set '{self.name}' in {self.folder} holds no image matching "
                                    f"{self.pattern}: {HINTS[self.name]}")
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
