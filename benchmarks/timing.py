"""Timing helpers shared by the benchmark scripts (run as `python benchmarks/<script>.py`, so this folder is on
sys.path): the best of several repeats after a warm-up for fast paths, one run for slow references."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def sync() -> None:
    """Wait for queued GPU work, so that a timer measures it."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Seconds of the fastest of `repeats` calls, after one warm-up call (allocations, layout caches)."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return min(times)


def once(fn: Callable[[], object]) -> float:
    """Seconds of a single call (the slow references)."""
    t = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t
