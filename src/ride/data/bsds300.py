"""BSDS300: 200 training (the last 20 of them the validation split) and 100 test photographs, 481x321.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .common import FileImages, resolve_root

BSDS300_NUM_TRAIN = 200
BSDS300_NUM_TEST = 100
#: The validation set is the last 20 training images in numeric id order; training keeps the first 180.
BSDS300_NUM_VAL = 20
BSDS300_SPLITS = ("train", "val", "train+val", "test")


def read_ids(path: Path) -> list[str]:
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


class BSDS300(FileImages):
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
            lists[part] = read_ids(path)
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
