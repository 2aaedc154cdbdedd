"""CIFAR-10 from its Python pickles, read with an unpickler that only builds numpy arrays.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .common import describe_images, resolve_root

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
        return describe_images(self.name, [(32, 32)] * len(self), 3, split="train" if self.train else "test")
