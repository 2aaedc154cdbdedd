"""Command-line interface: `ride COMMAND`, one module per command (`ride.cli.eval` is `ride eval`); thin layers over
the library. `main` parses, sets the threads, runs the command and turns bad input into one line and exit status 2."""

from __future__ import annotations

import argparse
import sys

import torch

from .. import __version__
from ..runtime import check_threads, keep_freed_memory, passive_wait_in_effect, reexec_with_passive_wait, set_threads
from .codec import register as register_codec
from .data import register as register_data
from .demo import register as register_demo
from .eval import register as register_eval
from .fit import register as register_fit
from .fit63 import register as register_fit63
from .inpaint import register as register_inpaint
from .map import register as register_map
from .models import register as register_models
from .sample import register as register_sample
from .train import register as register_train

# Commands whose work is loops of small operations (sampling fronts, inpainting sweeps, tile batches): one thread by
# default. Measured on 2 cores: as fast as two threads when quiet, and 1.3-2x (not 10-40x) slower beside a second
# busy command, because a lone thread has no OpenMP team spinning against it. The long full-batch fits (train,
# fit-mcgsm[63]) keep torch's thread count and run with the PASSIVE OpenMP wait policy instead (see ride.runtime),
# and so do compress / decompress, whose compiled kernels split each front's cells over the threads (RESULTS.md).
ONE_THREAD_COMMANDS = frozenset({"demo", "sample", "inpaint", "eval", "map", "models", "data"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ride", description="RIDE: recurrent image density estimator.")
    parser.add_argument("--version", action="version", version=f"ride {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    register_demo(sub)
    register_data(sub)
    register_fit(sub)
    register_fit63(sub)
    register_eval(sub)
    register_sample(sub)
    register_inpaint(sub)
    register_train(sub)
    register_map(sub)
    register_models(sub)
    register_codec(sub)
    return parser


def _setup_threads(args: argparse.Namespace, argv: list[str] | None) -> None:
    """Thread count and OpenMP wait policy of this run (see ONE_THREAD_COMMANDS); ValueError for a bad --threads.

    A multi-threaded run from the command line (argv None) restarts itself with OMP_WAIT_POLICY=PASSIVE unless
    the user set a policy; called from Python (argv given) it never restarts.
    """
    threads = check_threads(getattr(args, "threads", 0) or 0)
    if threads:
        set_threads(threads)  # the subcommands set it again; harmless
    elif args.command in ONE_THREAD_COMMANDS:
        set_threads(1)
    if argv is None and torch.get_num_threads() > 1 and not passive_wait_in_effect():
        reexec_with_passive_wait(sys.argv[1:])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keep_freed_memory()  # large tensors are reused instead of page-faulted in on every step
    try:
        _setup_threads(args, argv)
        return args.func(args)
    except ValueError as err:  # bad input: a clear message, no traceback
        print(f"ride {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ride {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into a reader that stopped (`ride models | head`): not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 0


if __name__ == "__main__":
    sys.exit(main())
