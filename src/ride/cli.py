"""Command-line interface: `ride demo`, `ride eval`, `ride data`, `ride fit-mcgsm[63]`; thin layers over the library."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields

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
from .runtime import keep_freed_memory


def _demo(args: argparse.Namespace) -> int:
    import torch

    from .demo import DemoConfig, run_demo

    torch.set_num_threads(args.threads) if args.threads else None
    cfg = DemoConfig(**{f.name: getattr(args, f.name) for f in fields(DemoConfig) if hasattr(args, f.name)})
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
    demo.add_argument("--seconds", dest="seconds_per_model", type=float, default=120.0,
                      help="training time per model in seconds (default 120)")
    demo.add_argument("--num-train", dest="num_train", type=int, default=60, help="training images (256x256)")
    demo.add_argument("--num-hiddens", dest="num_hiddens", type=int, default=32, help="RIDE hidden units")
    demo.add_argument("--nb-size", dest="nb_size", type=int, default=5, help="odd neighbourhood size")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keep_freed_memory()  # large tensors are reused instead of page-faulted in on every step
    try:
        return args.func(args)
    except ValueError as err:  # bad input: a clear message, no traceback
        print(f"ride {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ride {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
