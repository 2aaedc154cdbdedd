"""Process-level settings that make the CPU paths fast; opt-in, called by the CLI and the benchmarks.

The sweeps allocate tensors of tens to hundreds of MB per call. glibc serves such blocks with fresh mmap pages
and returns them on free, so every call pays a page fault per 4 KiB (measured: ~40% of a training step on a 2-core
CPU). Raising glibc's mmap and trim thresholds keeps freed blocks in the heap for reuse, at the cost of the process
keeping its peak memory.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

import torch

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory(threshold_bytes: int = 1 << 30) -> bool:
    """Ask glibc malloc to serve blocks below `threshold_bytes` from the heap and not to trim it.

    Returns True when applied (Linux with glibc), False elsewhere (nothing changes).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold_bytes)) and bool(mallopt(_M_TRIM_THRESHOLD, threshold_bytes))


def resolve_device(name: str) -> torch.device:
    """torch.device for a CLI's `--device cpu|cuda|auto` (auto: CUDA when available); ValueError if unavailable."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    return torch.device(name)
