"""`ride demo`: fit an MCGSM and a small RIDE on freshly generated dead-leaves images, compare, draw samples."""

from __future__ import annotations

import argparse
from dataclasses import fields

from ..demo import DemoConfig

_DEMO_FLAGS = {"mcgsm_iterations": "--mcgsm-iters", "ride_steps": "--ride-steps", "ride_mcgsm_iterations":
               "--ride-mcgsm-iters", "seconds_per_model": "--seconds", "num_train": "--num-train",
               "num_hiddens": "--num-hiddens"}


def _demo(args: argparse.Namespace) -> int:
    from ..demo import check_budgets, run_demo

    cfg = DemoConfig(**{f.name: getattr(args, f.name) for f in fields(DemoConfig) if hasattr(args, f.name)})
    try:
        check_budgets(cfg)
    except ValueError as err:  # name the flag, not the config field
        field, rest = str(err).split(" ", 1)
        raise ValueError(f"{_DEMO_FLAGS.get(field, field)} {rest}") from None
    run_demo(cfg)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `demo` subcommand to the `ride` parser's subparsers; its defaults are `DemoConfig`'s."""
    d = DemoConfig()
    demo = subparsers.add_parser("demo", help="fit an MCGSM and a small RIDE on dead leaves; compare; draw samples",
                                 description="Fits an MCGSM baseline and a small RIDE on freshly generated dead-leaves "
                                             "images (no download), prints held-out log-likelihood rates in bit/px and "
                                             "writes a PNG of real and sampled images.")
    demo.add_argument("--out-dir", dest="out_dir", default=d.out_dir, help="folder for the PNG and the models")
    demo.add_argument("--mcgsm-iters", dest="mcgsm_iterations", type=int, default=d.mcgsm_iterations,
                      help=f"L-BFGS iterations of the MCGSM baseline (default {d.mcgsm_iterations}; early stopping may "
                           "end it sooner)")
    demo.add_argument("--ride-steps", dest="ride_steps", type=int, default=d.ride_steps,
                      help=f"Adam steps of RIDE on random crops (default {d.ride_steps})")
    demo.add_argument("--ride-mcgsm-iters", dest="ride_mcgsm_iterations", type=int, default=d.ride_mcgsm_iterations,
                      help=f"L-BFGS iterations of RIDE's MCGSM after the Adam steps (default "
                           f"{d.ride_mcgsm_iterations})")
    demo.add_argument("--seconds", dest="seconds_per_model", type=float, default=None,
                      help="a time budget per model instead of the step counts (the figures then depend on the "
                           "machine's speed and load)")
    demo.add_argument("--num-train", dest="num_train", type=int, default=d.num_train,
                      help=f"training images ({d.image_size}x{d.image_size})")
    demo.add_argument("--num-hiddens", dest="num_hiddens", type=int, default=d.num_hiddens, help="RIDE hidden units")
    demo.add_argument("--nb-size", dest="nb_size", type=int, default=d.nb_size, help="odd neighbourhood size")
    demo.add_argument("--seed", type=int, default=d.seed)
    demo.add_argument("--threads", type=int, default=0,
                      help="torch threads (default 1: the same figures on every machine; others may differ by "
                           "rounding)")
    demo.set_defaults(func=_demo)
