"""Process-level settings that make the CPU paths fast; opt-in, called by the CLI and the benchmarks.

Threads. torch's CPU wheel runs its intra-op threads on GNU OpenMP, whose idle threads spin for a while before they
sleep. With another busy process on the cores, a spinning thread takes the core from the thread it waits for, and
loops of many small operations (the sampling front, the inpainting sweeps, evaluation batches) then ran 10-40x
slower (measured on 2 cores beside a second `ride` command). Two remedies, both measured: one thread (no OpenMP team,
nothing to spin; as fast as two for those loops on 2 cores), and for work that does use several threads the PASSIVE
wait policy (threads sleep when idle). libgomp reads OMP_WAIT_POLICY once, when torch is imported, so
`reexec_with_passive_wait` restarts the interpreter with it set.

Memory. The sweeps allocate tensors of tens to hundreds of MB per call. glibc serves such blocks with fresh mmap pages
and returns them on free, so every call pays a page fault per 4 KiB (measured: ~40% of a training step on a 2-core
CPU). Raising glibc's mmap and trim thresholds keeps freed blocks in the heap for reuse, at the cost of the process
keeping its peak memory.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Sequence

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


def check_threads(threads: object, name: str = "--threads") -> int:
    """`threads` as an int >= 0 (0: the command's default); ValueError naming `name` otherwise."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise ValueError(f"{name} must be an integer >= 0 (0: the default), found {threads!r}")
    return threads


def set_threads(threads: int) -> None:
    """Use `threads` intra-op threads (>= 1) for torch's CPU operations."""
    torch.set_num_threads(check_threads(threads) or 1)


def leave_process_group(ok: bool) -> None:
    """Leave torch.distributed's default process group (every rank calls this once, at the end of the command).

    After a successful run the ranks first meet at a barrier: rank 0 hosts the rendezvous store, and a rank still
    tearing down its gloo connections when rank 0 has already exited can abort ("terminate called without an active
    exception", exit status -6). After a failure there is no barrier: the other ranks may never arrive.
    """
    import torch.distributed as dist

    if ok:
        dist.barrier()
    dist.destroy_process_group()


def passive_wait_in_effect() -> bool:
    """True when the user or a restart chose the OpenMP wait policy (OMP_WAIT_POLICY or GOMP_SPINCOUNT is set)."""
    return "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ


def reexec_with_passive_wait(argv: Sequence[str]) -> None:
    """Restart this command line (`python -m ride ARGV`) with OMP_WAIT_POLICY=PASSIVE; does not return.

    For multi-threaded runs only: the restart costs one more interpreter start and torch import (about 1 s here).
    A value the user set is respected: call this only when `passive_wait_in_effect()` is False.
    """
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "ride", *argv])
