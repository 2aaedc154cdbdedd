"""The cached 8x8 BSDS300 patches of the 63-dim benchmark (design §9.2), dequantised with fixed seeds.

Generated patch sets are cached under `$RIDE_CACHE` (default `~/.cache/ride`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from ..units import dequantize
from .bsds300 import BSDS300
from .common import file_sha256

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
        digest.update(f"{image_id}:{file_sha256(path)}\n".encode())
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
    """The 63-dim BSDS300 benchmark's patches (design §9.2): items float32 [64], one 8 x 8 patch in raster order,
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
