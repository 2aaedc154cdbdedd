"""The dead-leaves data set: fixed train and test images from the seeded generator `ride.deadleaves`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..deadleaves import (
    DEAD_LEAVES_NUM_TEST,
    DEAD_LEAVES_NUM_TRAIN,
    DEAD_LEAVES_SIZE,
    DEAD_LEAVES_TEST_SEED,
    DEAD_LEAVES_TRAIN_SEED,
    dead_leaves,
)
from .common import describe_images


class DeadLeaves(Dataset):
    """Dead-leaves images of design §9.3, uint8 [1, size, size], generated on demand from fixed seeds.

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
        return describe_images(self.name, [(self.size, self.size)] * self.num_images, 1, split=self.split,
                         seed=self.seed)
