"""Any folder, glob or list of image files as a data set.
"""

from __future__ import annotations

import glob as globlib
import os
from collections.abc import Sequence
from pathlib import Path

from .common import IMAGE_EXTENSIONS, FileImages


class ImageFolder(FileImages):
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
