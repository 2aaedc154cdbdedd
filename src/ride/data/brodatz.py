"""The Brodatz textures of the USC-SIPI database (1.1.01 ... 1.1.13), black bottom rows cropped.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from torch import Tensor
from torch.utils.data import Dataset

from .common import describe_images, image_size, load_image, resolve_root


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
            cropped.append(image_size(path)[0] - image.shape[1])
        return describe_images(self.name, sizes, 1, names=list(self.names), cropped_rows=cropped)
