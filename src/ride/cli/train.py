"""`ride train`: the trainer (design §6) from a config file and/or flags; every config key is also a flag.

    ride train --config experiments/bsds300_ride1_64.toml --out runs/r1 --model-out models/bsds300_ride1_64.pt
    ride train --out runs/r1 --resume                      # continue a stopped or killed run exactly
    ride train --data deadleaves --patch-sizes 16 --learning-rates 1e-3 --optimizer adam --out runs/dl
    torchrun --nproc-per-node 2 -m ride train ...          # data-parallel (gloo on CPU, nccl on CUDA)

Flags override the config file; list keys take several values (`--patch-sizes 8 10 12`), booleans take
true/false (`--flip false`; `--add-layer` alone means true). The config is stored in every checkpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import typing
from collections.abc import Iterator
from dataclasses import MISSING, fields

import torch

from ..runtime import check_threads, leave_process_group
from ..train.config import TrainConfig, read_config_file, replace_checked


def _flag_values(args: argparse.Namespace) -> dict[str, object]:
    return {f.name: getattr(args, f"cfg_{f.name}") for f in fields(TrainConfig)
            if getattr(args, f"cfg_{f.name}") is not None}


def _check_budgets(flags: dict[str, object], config: TrainConfig | None) -> int:
    """The thread count (0: torch's choice) after checking it and max_seconds; ValueError for a negative one.

    A resumed run has no config yet (it comes from the checkpoint), only the flags as typed.
    """
    threads = config.threads if config else flags.get("threads", 0)
    max_seconds = config.max_seconds if config else flags.get("max_seconds", 0)
    try:
        threads, max_seconds = int(threads), float(max_seconds)
    except (TypeError, ValueError):
        raise ValueError(f"threads must be an integer and max_seconds a number, found {threads!r} and "
                         f"{max_seconds!r}") from None
    if not max_seconds >= 0:
        raise ValueError(f"max_seconds must be >= 0 (0: no limit), found {max_seconds}")
    return check_threads(threads, "threads")


def _init_distributed(device: str) -> bool:
    """Join the torchrun process group when WORLD_SIZE > 1 (nccl for CUDA, gloo otherwise)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    import torch.distributed as dist

    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    dist.init_process_group("nccl" if cuda else "gloo")
    return True


class _StopRequest:
    """SIGINT / SIGTERM ask the trainer to stop after the current step, checkpointed (a second signal kills)."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self) -> bool:
        return self.requested

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(f"\nride train: {signal.Signals(signum).name}: stopping after this step, writing a checkpoint "
              "(--resume continues; signal again to abort without one)", file=sys.stderr)

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():  # signals go to the main thread only
            yield
            return
        previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _train(args: argparse.Namespace) -> int:
    from ..train.trainer import Trainer

    flags = _flag_values(args)
    if args.resume:
        config = None
    else:
        values = read_config_file(args.config) if args.config else {}
        config = replace_checked(TrainConfig(), {**values, **flags})  # flags win; checked once, as a whole
    threads = _check_budgets(flags, config)
    if threads:
        torch.set_num_threads(threads)
    distributed = _init_distributed(str(flags.get("device") or (config.device if config else "auto")))
    stop = _StopRequest()
    ok = False
    try:
        trainer = Trainer(config, args.out, resume=args.resume, model_out=args.model_out,
                          command=" ".join(["ride", *sys.argv[1:]]), resume_overrides=flags if args.resume else None,
                          should_stop=stop)
        if args.resume and not threads and trainer.config.threads:
            # the saved config's count: a run started with 1 thread must not resume on all cores
            torch.set_num_threads(trainer.config.threads)
        with stop.installed():
            summary = trainer.run()
        ok = True
    finally:
        if distributed:
            leave_process_group(ok)
    if trainer.rank == 0:
        best = summary["best_val_bits_per_dim"]
        print(f"{summary['status']}: {summary['elapsed_s']:.0f} s of training; best validation "
              f"{'n/a' if best is None else f'{best:.4f} bit/dim'} (after stage {summary['best_stage'] + 1}); "
              f"run folder {args.out}" + (f"; model {args.model_out}" if args.model_out else ""))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `train` subcommand to the `ride` parser's subparsers."""
    p = subparsers.add_parser("train", help="train a model with the paper's curriculum (or your own schedule)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, metavar="DIR", help="run folder: state.pt, model.pt, log.csv")
    p.add_argument("--config", metavar="FILE", help="a TOML or JSON config file")
    p.add_argument("--model-out", dest="model_out", metavar="FILE", help="also write the best model here")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    hints = typing.get_type_hints(TrainConfig)
    group = p.add_argument_group("config keys (defaults: the paper's recipe)")
    for f in fields(TrainConfig):
        hint, default = hints[f.name], (f.default if f.default is not MISSING else None)
        flag = "--" + f.name.replace("_", "-")
        kwargs: dict[str, object] = {"dest": f"cfg_{f.name}", "default": None, "help": f"(default {default!r})"}
        if typing.get_origin(hint) is tuple:
            kwargs["nargs"] = "+"
        elif hint is bool:
            kwargs.update(nargs="?", const="true", metavar="true|false")
        group.add_argument(flag, **kwargs)
    p.set_defaults(func=_train)
