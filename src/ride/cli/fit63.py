"""`ride fit-mcgsm63`: the MCGSM baseline of the 63-dim BSDS300 patch benchmark (design §9.2), plus its DC model.

The model is a `PatchChainMCGSM`: value k of the centred patch (bottom-right pixel dropped) is predicted by its
own MCGSM from values 0..k-1, behind its own conditional whitening. Each conditional is fitted on the training
patches (`--patches`, BSDS300 split "train") with the MCGSM's L-BFGS and early stopping on the validation patches
(`--val-patches`, split "val"); the 1-D mixture of Gaussians of the patch mean (the DC model) is fitted on the
training patch means. Both go into ONE checkpoint (the DC model under extra["dc_model"]), so that

    ride eval --protocol patches63|patches64 --checkpoint OUT --data bsds300 --split test

evaluates it. The conditionals are fitted one after another by `ride.train.chain63.fit_chain` (this command adds
the data, the checkpoints, the CSV log and --resume), as `PatchChainMCGSM.fit` does (same whitening, same
`MCGSM.fit`); each conditional draws its random initialisation from its own generator, seeded by (--seed, k), so
a resumed run gives the same model as an uninterrupted one (without --max-seconds).

Checkpoints are written atomically every --save-every seconds (at the end of an L-BFGS iteration or of a
conditional), on Ctrl-C and at the end. extra["conditionals_done"] lists the finished conditionals; a save
during a conditional also records extra["in_progress"] = {"conditional", "iterations"} (its whitening and its
parameters at that iteration; the conditionals after it are still unfitted). `--resume` skips the finished
conditionals and continues an in-progress one from its saved parameters (L-BFGS's curvature history and the
early-stopping counter restart), or refits the interrupted one from the start when no snapshot of it was saved;
the data and model options (--patches, --val-patches, --seed, --components, --scales, --features,
--dc-components) are then those of the checkpoint. A CSV beside the checkpoint (OUT with suffix .csv) gets one row
per finished conditional: NLL of value k given values 0..k-1 in nats (Jacobian of the whitening included), on the
training and validation patches; their sums over k are the NLL of the 63 values in nats per patch.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from .. import protocols
from ..checkpoint import load, load_payload, save
from ..patch_models import PatchChainMCGSM
from ..runtime import resolve_device
from ..train.chain63 import DIM, fit_chain

#: Options that define the data or the model: on --resume they come from the checkpoint.
RESUMED_OPTIONS = ("patches", "val_patches", "seed", "components", "scales", "features", "dc_components")
CSV_COLUMNS = ("conditional", "iterations", "stop_reason", "train_nll_nats", "val_nll_nats",
               "val_nll_nats_cumulative", "seconds", "elapsed_s")


# ---------------------------------------------------------------------------------------------- pieces

def _check_args(args: argparse.Namespace) -> None:
    for name, minimum in (("patches", 2), ("val_patches", 1), ("max_iter", 0), ("val_every", 1), ("patience", 1),
                          ("components", 1), ("scales", 1), ("dc_components", 1)):
        value = getattr(args, name)
        if value < minimum:
            raise ValueError(f"--{name.replace('_', '-')} must be an integer >= {minimum}, found {value}")
    if args.features is not None and args.features < 1:
        raise ValueError(f"--features must be a positive integer, found {args.features}")
    if args.refit and not args.resume:
        raise ValueError("--refit needs --resume (it refits conditionals of an existing checkpoint)")
    if any(not 0 <= k < DIM for k in args.refit):
        raise ValueError(f"--refit takes conditionals 0..{DIM - 1}, found {args.refit}")
    if args.chunk is not None and args.chunk < 1:
        raise ValueError(f"--chunk must be a positive integer, found {args.chunk}")
    if args.max_seconds is not None and not args.max_seconds > 0:
        raise ValueError(f"--max-seconds must be positive, found {args.max_seconds}")
    if not args.save_every >= 0:
        raise ValueError(f"--save-every must be >= 0 seconds, found {args.save_every}")


def _patches(args: argparse.Namespace, split: str, count: int) -> torch.Tensor:
    """BSDS300 8x8 patches of `split`, float32 [count, 64]; missing data becomes a one-line ValueError."""
    from ..data import BSDS300Patches

    try:
        return BSDS300Patches(args.data_root, split, cache_dir=args.cache_dir, num_patches=count).patches
    except FileNotFoundError as err:
        raise ValueError(str(err)) from err


def _resume_state(out: Path, args: argparse.Namespace) -> tuple[PatchChainMCGSM, dict[str, Any]]:
    """The model and extra of a checkpoint written by this command; data/model options taken from it."""
    payload = load_payload(out)
    extra = payload.get("extra", {})
    if payload["model"] != "PatchChainMCGSM" or payload["config"].get("dim") != DIM \
            or "conditionals_done" not in extra or protocols.DC_MODEL_KEY not in extra:
        raise ValueError(f"{out} was not written by `ride fit-mcgsm63` (expected a 63-dim PatchChainMCGSM with "
                         "extra 'conditionals_done' and 'dc_model'); remove it or choose another --out")
    saved = extra.get("config", {})
    for name in RESUMED_OPTIONS:
        if name in saved and saved[name] != getattr(args, name):
            print(f"resume: using the checkpoint's --{name.replace('_', '-')} {saved[name]} "
                  f"(command line: {getattr(args, name)})", file=sys.stderr)
            setattr(args, name, saved[name])
    return load(out), extra


# ---------------------------------------------------------------------------------------------- the command

def _fit(args: argparse.Namespace) -> int:
    _check_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    out = Path(args.out)
    log_path = out.with_suffix(".csv")
    resuming = bool(args.resume and out.exists())
    if resuming:
        model, extra = _resume_state(out, args)
        done_s = float(extra.get("elapsed_s", 0.0))
        records: dict[int, dict[str, Any]] = {int(r["conditional"]): r for r in extra.get("conditionals", [])}
        done = {int(k) for k in extra["conditionals_done"]}
        in_progress = extra.get("in_progress")
        dc_model = protocols.DCModel.from_dict(extra[protocols.DC_MODEL_KEY])
        print(f"resuming {out}: {len(done)} of {DIM} conditionals fitted"
              + (f", conditional {in_progress['conditional']} in progress at iteration {in_progress['iterations']}"
                 if in_progress else "") + f" ({done_s:.0f} s of fitting so far)", file=sys.stderr)
        if args.refit:  # fit these again from scratch, e.g. conditionals that a time budget cut short
            done -= set(args.refit)
            in_progress = None
            print(f"refitting conditionals {sorted(set(args.refit))}", file=sys.stderr)
        if len(done) == DIM:
            print(f"all {DIM} conditionals of {out} are fitted; nothing to do")
            return 0
    else:
        model = PatchChainMCGSM(args.components, args.scales, args.features, dim=DIM)
        done_s, records, done, in_progress, dc_model = 0.0, {}, set(), None, None
    model = model.to(device)
    start = time.monotonic()

    train = _patches(args, "train", args.patches)
    val = _patches(args, "val", args.val_patches)
    z, dc = protocols.patches_to_63(train.double())  # centring in float64, as the evaluation does
    zv, dcv = protocols.patches_to_63(val.double())
    dtype = model.preconditioners[0].mean_in.dtype
    z, zv = z.to(device=device, dtype=dtype), zv.to(device=device, dtype=dtype)
    del train, val
    if dc_model is None:
        dc_model = protocols.DCModel.fit(dc, num_components=args.dc_components)
    dc_val_nats = float(dc_model.log_prob(dcv).mean())
    print(f"{z.shape[0]} training and {zv.shape[0]} validation patches (63 centred values each); DC model: "
          f"{dc_model.num_components} Gaussians, validation log-likelihood {dc_val_nats:.4f} nats per patch",
          file=sys.stderr)

    config = {k: v for k, v in vars(args).items() if k != "func"}
    command = " ".join(sys.argv)
    out.parent.mkdir(parents=True, exist_ok=True)
    new_log = not (resuming and log_path.exists())
    log_file = log_path.open("w" if new_log else "a", newline="")
    writer = csv.writer(log_file)
    if new_log:
        writer.writerow(CSV_COLUMNS)
        log_file.flush()

    def checkpoint(status: str, current: dict[str, int] | None = None, **more: Any) -> None:
        save(model, out, extra={protocols.DC_MODEL_KEY: dc_model.to_dict(), "command": command, "config": config,
                                "elapsed_s": done_s + time.monotonic() - start, "status": status,
                                "conditionals_done": sorted(done), "in_progress": current,
                                "conditionals": [records[k] for k in sorted(records)], **more})

    bar = tqdm(total=DIM, initial=len(done), desc="MCGSM chain", unit="cond", file=sys.stderr, dynamic_ncols=True)
    last_save = time.monotonic()
    saved_done = frozenset(done)  # the finished conditionals that the file on disk records

    def on_iteration(k: int, iterations: int, info: dict[str, Any], log_jacobian: float) -> None:
        nonlocal last_save, saved_done
        val = info.get("val_nll_nats")
        bar.set_postfix_str(f"k={k} it={iterations} train {info['train_nll_nats'] - log_jacobian:.4f}"
                            + ("" if val is None else f" val {val - log_jacobian:.4f}") + " nats")
        if time.monotonic() - last_save >= args.save_every:
            checkpoint("fitting", {"conditional": k, "iterations": iterations})
            last_save, saved_done = time.monotonic(), frozenset(done)

    def on_conditional(k: int, r: dict[str, Any]) -> None:
        nonlocal last_save, saved_done
        cumulative = sum(records[j]["val_nll_nats"] for j in range(k + 1) if j in records)
        writer.writerow([k, r["iterations"], r["stop_reason"], f"{r['train_nll_nats']:.6f}",
                         f"{r['val_nll_nats']:.6f}", f"{cumulative:.6f}", f"{r['seconds']:.2f}",
                         f"{done_s + time.monotonic() - start:.1f}"])
        log_file.flush()
        bar.update(1)
        if time.monotonic() - last_save >= args.save_every:
            checkpoint("fitting")
            last_save, saved_done = time.monotonic(), frozenset(done)

    try:
        fit_chain(model, z, zv, done, records, in_progress, seed=args.seed, max_iter=args.max_iter,
                  val_every=args.val_every, patience=args.patience, chunk=args.chunk, max_seconds=args.max_seconds,
                  start=start, on_iteration=on_iteration, on_conditional=on_conditional)
    except KeyboardInterrupt:
        # The current conditional may be in the middle of an L-BFGS step: record only the finished ones (it is
        # refitted on --resume), unless the file already does, possibly with a snapshot of the current one.
        if done != saved_done:
            checkpoint("interrupted")
        raise
    finally:
        bar.close()
        log_file.close()

    train_nll = sum(r["train_nll_nats"] for r in records.values())
    val_nll = sum(r["val_nll_nats"] for r in records.values())
    val_rate64 = (-val_nll + dc_val_nats - protocols.LN64) / (64 * protocols.LN2)
    checkpoint("done", None, train_nll_nats=train_nll, val_nll_nats=val_nll, val_dc_log_likelihood_nats=dc_val_nats,
               val_bits_per_pixel_64=val_rate64)
    print(f"fitted {DIM} conditionals; validation log-likelihood {-val_nll:.3f} nats per patch (63 dims; "
          f"training {-train_nll:.3f}); with the DC model {val_rate64:.4f} bit/px (64 dims); saved {out}, "
          f"log {log_path}. Test: ride eval --protocol patches63 --checkpoint {out} --data bsds300 --split test")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `fit-mcgsm63` subcommand to the `ride` parser's subparsers."""
    p = subparsers.add_parser("fit-mcgsm63", help="fit the 63-dim patch baseline (a chain of MCGSMs) and its DC model",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="checkpoint to write (a CSV log goes beside it, suffix .csv)")
    p.add_argument("--data-root", default=None, help="folder holding bsds300/ (default: $RIDE_DATA)")
    p.add_argument("--cache-dir", default=None, help="patch cache folder (default: $RIDE_CACHE or ~/.cache/ride)")
    p.add_argument("--patches", type=int, default=1_000_000, help="training patches (BSDS300 train split)")
    p.add_argument("--val-patches", type=int, default=50_000, help="validation patches (BSDS300 val split)")
    p.add_argument("--components", type=int, default=32, help="MCGSM components per conditional")
    p.add_argument("--scales", type=int, default=4)
    p.add_argument("--features", type=int, default=None, help="features per conditional (default: its inputs)")
    p.add_argument("--dc-components", type=int, default=10, help="Gaussians of the DC model")
    p.add_argument("--max-iter", type=int, default=3000, help="L-BFGS iterations per conditional")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="time budget of this run, shared among the remaining conditionals by cost")
    p.add_argument("--val-every", type=int, default=10)
    p.add_argument("--patience", type=int, default=5)
    p.add_argument("--chunk", type=int, default=200_000, help="rows per chunk of the objective (memory)")
    p.add_argument("--save-every", type=float, default=300.0,
                   help="seconds between checkpoints (0: after every L-BFGS iteration)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initialisations")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto", help="default: cuda if available")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--resume", action="store_true", help="continue from --out if it exists")
    p.add_argument("--refit", type=int, nargs="+", default=[], metavar="K",
                   help="with --resume: fit conditionals K ... again from scratch (e.g. ones a time budget cut short)")
    p.set_defaults(func=_fit)
