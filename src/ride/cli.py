"""Command-line interface: `ride demo`, `ride eval`, `ride data`, `ride fit-mcgsm[63]`; thin layers over the library."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields

import torch

from . import __version__
from .cli_codec import register as register_codec
from .cli_data import register as register_data
from .cli_eval import register as register_eval
from .cli_fit import register as register_fit
from .cli_fit63 import register as register_fit63
from .cli_inpaint import register as register_inpaint
from .cli_map import register as register_map
from .cli_models import register as register_models
from .cli_sample import register as register_sample
from .cli_train import register as register_train
from .runtime import check_threads, keep_freed_memory, passive_wait_in_effect, reexec_with_passive_wait, set_threads

# Commands whose work is loops of small operations (sampling fronts, inpainting sweeps, tile batches): one thread by
# default. Measured on 2 cores: as fast as two threads when quiet, and 1.3-2x (not 10-40x) slower beside a second
# busy command, because a lone thread has no OpenMP team spinning against it. The long full-batch fits (train,
# fit-mcgsm[63]) keep torch's thread count and run with the PASSIVE OpenMP wait policy instead (see ride.runtime).
ONE_THREAD_COMMANDS = frozenset({"demo", "sample", "inpaint", "eval", "map", "compress", "decompress", "models",
                                 "data"})


_DEMO_FLAGS = {"mcgsm_iterations": "--mcgsm-iters", "ride_steps": "--ride-steps", "ride_mcgsm_iterations":
               "--ride-mcgsm-iters", "seconds_per_model": "--seconds", "num_train": "--num-train",
               "num_hiddens": "--num-hiddens"}


def _demo(args: argparse.Namespace) -> int:
    from .demo import DemoConfig, check_budgets, run_demo

    cfg = DemoConfig(**{f.name: getattr(args, f.name) for f in fields(DemoConfig) if hasattr(args, f.name)})
    try:
        check_budgets(cfg)
    except ValueError as err:  # name the flag, not the config field
        field, rest = str(err).split(" ", 1)
        raise ValueError(f"{_DEMO_FLAGS.get(field, field)} {rest}") from None
    run_demo(cfg)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ride", description="RIDE: recurrent image density estimator.")
    parser.add_argument("--version", action="version", version=f"ride {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="fit an MCGSM and a small RIDE on dead leaves; compare; draw samples",
                          description="Fits an MCGSM baseline and a small RIDE on freshly generated dead-leaves "
                                      "images (no download), prints held-out log-likelihood rates in bit/px and "
                                      "writes a PNG of real and sampled images.")
    demo.add_argument("--out-dir", dest="out_dir", default="demo_out", help="folder for the PNG and the models")
    demo.add_argument("--mcgsm-iters", dest="mcgsm_iterations", type=int, default=500,
                      help="L-BFGS iterations of the MCGSM baseline (default 500; early stopping may end it sooner)")
    demo.add_argument("--ride-steps", dest="ride_steps", type=int, default=1800,
                      help="Adam steps of RIDE on random crops (default 1800)")
    demo.add_argument("--ride-mcgsm-iters", dest="ride_mcgsm_iterations", type=int, default=150,
                      help="L-BFGS iterations of RIDE's MCGSM after the Adam steps (default 150)")
    demo.add_argument("--seconds", dest="seconds_per_model", type=float, default=None,
                      help="a time budget per model instead of the step counts (the figures then depend on the "
                           "machine's speed and load)")
    demo.add_argument("--num-train", dest="num_train", type=int, default=60, help="training images (256x256)")
    demo.add_argument("--num-hiddens", dest="num_hiddens", type=int, default=32, help="RIDE hidden units")
    demo.add_argument("--nb-size", dest="nb_size", type=int, default=5, help="odd neighbourhood size")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--threads", type=int, default=0,
                      help="torch threads (default 1: the same figures on every machine; others may differ by "
                           "rounding)")
    demo.set_defaults(func=_demo)
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
