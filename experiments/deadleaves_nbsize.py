"""The dead-leaves neighbourhood-size experiment's two last steps (experiments/deadleaves_nbsize.sh).

    python experiments/deadleaves_nbsize.py select runs/deadleaves     # choose each n's RIDE seed on validation
    python experiments/deadleaves_nbsize.py restore runs/deadleaves    # a new checkout: run folders from models/
    python experiments/deadleaves_nbsize.py table runs/deadleaves --out-table experiments/deadleaves_nbsize.md \
        --out-plot experiments/deadleaves_nbsize.png

`select` reads each run's best validation rate (log.csv; a run continued by the `cont` .. `cont9` jobs
is read from its last finished continuation, ride_nb{n}_s{seed}_cont .. _cont9) and copies the better seed's
model and learning curve (first run and continuations in one CSV) to models/deadleaves/ride_nb{n}.pt, the other to
ride_nb{n}_seed1.pt, and records the choice in selection.json; the test set plays no part in it. `table` reads the
`ride eval --json` files.

Rates are log-likelihood rates in bit/px on the [0,1) scale (tiles64 protocol on the 100 test images), and on
unit-variance data: rate + log2(std of the test pixels) (design §9.3).
"""

from __future__ import annotations

import argparse
import csv
import filecmp
import json
import math
import shutil
from pathlib import Path

import torch
from plot_training import read_chain, read_log  # experiments/, this script's folder

from ride.data import DeadLeaves
from ride.train.trainer import stages_without_improvement


def test_pixel_std() -> float:
    """Standard deviation of the dequantised test pixels, (v + 1/2)/256 plus uniform noise of variance 1/12/256^2."""
    values = torch.stack([DeadLeaves("test")[k] for k in range(len(DeadLeaves("test")))]).double()
    return math.sqrt(((values + 0.5) / 256).var().item() + 1 / 12 / 256**2)


def write_log(path: Path, rows: list[dict[str, str]]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def num_stages(rows: list[dict[str, str]]) -> int:
    """Stages a log covers (stage -1 is the initial validation)."""
    return 1 + max(int(r["stage"]) for r in rows)


def best_validation(run: Path) -> float:
    """The best validation rate [bit/px] a `ride train` run logged (the model it kept, as it rolls back)."""
    return max(float(r["val_bits_per_dim"]) for r in read_log(run / "log.csv") if r["val_bits_per_dim"])


# The continuations of a first run, in order: `cont` (experiments/deadleaves_ride_cont.toml) starts from the first
# run's model, `cont2` (experiments/deadleaves_ride_cont2.toml) from `cont`'s, and each of `cont3` .. `cont9` (the
# same config) from the one before.
CONTINUATIONS = ("_cont",) + tuple(f"_cont{k}" for k in range(2, 10))


def run_chain(runs: Path, n: int, seed: int) -> list[Path]:
    """Seed `seed`'s first run followed by each continuation that finished (a chain stops at the first unfinished)."""
    chain = [runs / f"ride_nb{n}_s{seed}"]
    for suffix in CONTINUATIONS:
        cont = runs / f"ride_nb{n}_s{seed}{suffix}"
        if not (cont / "done").exists():
            break
        chain.append(cont)
    return chain


def final_run(runs: Path, n: int, seed: int) -> Path:
    """The run folder holding seed `seed`'s final model: the last finished continuation, else the first run."""
    return run_chain(runs, n, seed)[-1]


def learning_curve(runs: Path, n: int, seed: int) -> list[dict[str, str]]:
    """The first run's log.csv rows followed by each finished continuation's, stages and seconds counted on from the
    run before (a continuation's initial validation, a re-measurement of the model it starts from, is left out)."""
    return read_chain([run / "log.csv" for run in run_chain(runs, n, seed)])


def stages_per_run(runs: Path, n: int, seed: int) -> list[int]:
    """How many stages each run of seed `seed`'s chain trained (what `restore` needs to split a learning curve)."""
    return [num_stages(read_log(run / "log.csv")) for run in run_chain(runs, n, seed)]


def stopped_on_rule(model: Path) -> bool:
    """Whether the run that wrote `model` ended on its stopping rule (`patience` stages in a row without an
    improvement), judged by the trainer's own count on the history the model file carries."""
    extra = torch.load(model, weights_only=True, map_location="cpu")["extra"]
    patience = extra["config"].get("patience", 0)
    return bool(patience) and stages_without_improvement(extra["history"]) >= patience


def select(runs: Path, models: Path = Path("models/deadleaves")) -> None:
    """Per n: the seed with the better validation rate becomes ride_nb{n}.pt, the other ride_nb{n}_seed1.pt."""
    choice = {}
    for n in (3, 5, 7, 9):
        seeds = sorted(int(p.name.rsplit("_s", 1)[1]) for p in runs.glob(f"ride_nb{n}_s*")
                       if p.is_dir() and p.name.rsplit("_s", 1)[1].isdigit())
        if not seeds:
            continue
        val = {s: best_validation(final_run(runs, n, s)) for s in seeds}
        first = {s: best_validation(runs / f"ride_nb{n}_s{s}") for s in seeds}
        ranked = sorted(seeds, key=lambda s: -val[s])
        for seed, name in zip(ranked, (f"ride_nb{n}", f"ride_nb{n}_seed1"), strict=False):
            source, target = final_run(runs, n, seed) / "model.pt", models / f"{name}.pt"
            # an unchanged model keeps its file time, so the eval job (which redoes an evaluation older than its
            # model) does not evaluate it again
            if not (target.exists() and filecmp.cmp(source, target, shallow=False)):
                shutil.copyfile(source, target)
            write_log(models / f"{name}.csv", learning_curve(runs, n, seed))
        choice[n] = {"validation_bits_per_pixel": val, "first_run_validation_bits_per_pixel": first,
                     "chosen_seed": ranked[0], "stages_per_run": {s: stages_per_run(runs, n, s) for s in seeds}}
        rates = ", ".join(f"seed {s} {first[s]:.4f} -> {val[s]:.4f}" for s in seeds)
        print(f"n = {n}: validation (first run -> continued) {rates}; chose seed {ranked[0]}")
    (runs / "selection.json").write_text(json.dumps(choice, indent=1) + "\n")


def restore(runs: Path, models: Path = Path("models/deadleaves"),
            evals: Path = Path("experiments/deadleaves_eval")) -> None:
    """Rebuild the run folders from the committed models and learning curves (a new checkout has no runs/), so
    that a further continuation can start from them and `select` reads them as if they had been trained here.

    Each committed model is its seed's final run (the last continuation); its learning curve is split back into the
    first run and the continuations by the stage counts that `select` recorded in selection.json, and the split is
    checked by rebuilding the committed curve from it."""
    selection = json.loads((evals / "selection.json").read_text())
    for n in (3, 5, 7, 9):
        for name in (f"ride_nb{n}", f"ride_nb{n}_seed1"):
            extra = torch.load(models / f"{name}.pt", weights_only=True, map_location="cpu")["extra"]
            seed = extra["config"]["seed"]
            rows = read_log(models / f"{name}.csv")
            total = num_stages(rows)
            folders = [runs / f"ride_nb{n}_s{seed}"] + [runs / f"ride_nb{n}_s{seed}{c}" for c in CONTINUATIONS]
            lengths = selection[str(n)]["stages_per_run"][str(seed)]
            if sum(lengths) != total:
                raise SystemExit(f"{name}: cannot split {total} stages into runs of {lengths}")
            first_stage, offset = 0, 0.0
            for folder, length in zip(folders, lengths, strict=False):
                part = [r for r in rows if first_stage <= int(r["stage"]) < first_stage + length
                        or (first_stage == 0 and int(r["stage"]) < 0)]
                if first_stage:  # a continuation's initial check re-measures the best model before it
                    best = max(float(r["val_bits_per_dim"]) for r in rows
                               if r["val_bits_per_dim"] and int(r["stage"]) < first_stage)
                    part.insert(0, {**{k: "" for k in rows[0]}, "elapsed_s": str(offset), "stage": "-1",
                                    "event": "val", "val_bits_per_dim": f"{best:g}"})
                folder.mkdir(parents=True, exist_ok=True)
                write_log(folder / "log.csv", [
                    {**r, "stage": str(int(r["stage"]) - first_stage) if int(r["stage"]) >= 0 else r["stage"],
                     "elapsed_s": f"{float(r['elapsed_s']) - offset:g}"} for r in part])
                (folder / "done").touch()
                first_stage += length
                offset = max(float(r["elapsed_s"]) for r in part)
            shutil.copy2(models / f"{name}.pt", folder / "model.pt")
            rebuilt = learning_curve(runs, n, seed)
            same = len(rebuilt) == len(rows) and all(
                a["stage"] == b["stage"] and a["val_bits_per_dim"] == b["val_bits_per_dim"]
                and abs(float(a["elapsed_s"]) - float(b["elapsed_s"])) < 0.01
                for a, b in zip(rebuilt, rows, strict=True))
            if not same:
                raise SystemExit(f"{name}: the rebuilt runs do not give back {models / name}.csv")
            print(f"{name}: seed {seed}, runs of {lengths} stages -> {folder}")
        for ext in ("pt", "csv"):
            shutil.copy2(models / f"mcgsm_nb{n}.{ext}", runs / f"mcgsm_nb{n}.{ext}")
        (runs / f"mcgsm_nb{n}.done").touch()
    for result in [*evals.glob("eval_*.json"), evals / "selection.json"]:  # after the models: none is redone
        shutil.copyfile(result, runs / result.name)


def mcgsm_stop(n: int, models: Path = Path("models/deadleaves")) -> str:
    """Why the MCGSM's L-BFGS stopped and after how many iterations, from its checkpoint."""
    extra = torch.load(models / f"mcgsm_nb{n}.pt", weights_only=True, map_location="cpu").get("extra", {})
    reason, iterations = extra.get("stop_reason"), extra.get("iterations_done", extra.get("iterations"))
    return "n/a" if reason is None else f"{reason.replace('_', ' ')}, {iterations} it."


def validation_text(final: float, first: float | None, kept: bool) -> str:
    """A seed's validation rate for the table, "5.703 → 5.741" when a continuation changed it, bold if kept."""
    text = (f"{first:.3f} → " if first is not None and abs(first - final) > 5e-4 else "") + f"{final:.3f}"
    return f"**{text}**" if kept else text


def table(args: argparse.Namespace) -> None:
    """Markdown table and plot of the test rates (and the validation rates the seeds were chosen on)."""
    sizes = sorted({int(p.stem.split("_nb")[1].split("_")[0]) for p in args.runs.glob("eval_*_nb*.json")})
    kinds = ("mcgsm", "ride", "ride_seed1")

    def path(kind: str, n: int) -> Path:  # kind "ride_seed1" -> eval_ride_nb{n}_seed1.json
        model, _, suffix = kind.partition("_")
        return args.runs / f"eval_{model}_nb{n}{'_' + suffix if suffix else ''}.json"

    results = {kind: {n: json.loads(path(kind, n).read_text()) for n in sizes if path(kind, n).exists()}
               for kind in kinds}
    selection_file = args.runs / "selection.json"
    selection = json.loads(selection_file.read_text()) if selection_file.exists() else {}
    shift = math.log2(test_pixel_std())

    def rate(kind: str, n: int, unit_variance: bool = False) -> str:
        r = results[kind].get(n)
        if r is None:
            return "n/a"
        if unit_variance:
            return f"{r['bits_per_pixel'] + shift:.3f}"
        return f"{r['bits_per_pixel']:.3f} ± {r['stderr']:.3f}"

    lines = ["| n | MCGSM | RIDE (seed kept) | RIDE (other seed) | RIDE - MCGSM | MCGSM, unit var. | RIDE, unit var. "
             "| RIDE validation (first run → continued), seed 0 / 1 | MCGSM stopped |",
             "|---|---|---|---|---|---|---|---|---|"]
    for n in sizes:
        chosen = selection.get(str(n), {})
        val = chosen.get("validation_bits_per_pixel", {})
        kept = chosen.get("chosen_seed")
        first = chosen.get("first_run_validation_bits_per_pixel", {})
        val_cell = " / ".join(validation_text(v, first.get(s), int(s) == kept)
                              for s, v in sorted(val.items())) or "n/a"
        lead = ("n/a" if n not in results["ride"] or n not in results["mcgsm"] else
                f"{results['ride'][n]['bits_per_pixel'] - results['mcgsm'][n]['bits_per_pixel']:+.3f}")
        cells = [rate("mcgsm", n), rate("ride", n), rate("ride_seed1", n), lead, rate("mcgsm", n, True),
                 rate("ride", n, True), val_cell, mcgsm_stop(n)]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Test rates in bit/px on the [0,1) scale, tiles64 protocol on the 100 test images, ± standard error "
                 "over tiles. Unit-variance rate = rate + log2(std), std of the test pixels = "
                 f"{2**shift:.4f} (log2 = {shift:.4f}). The seed kept (bold) has the better validation rate; the "
                 "test set played no part in any choice.")
    args.out_table.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.8, 3.6))
    for kind, label, style in (("mcgsm", "MCGSM", dict(marker="s")),
                               ("ride", "RIDE, 1 layer (seed kept on validation)", dict(marker="o")),
                               ("ride_seed1", "RIDE, the other seed", dict(marker="o", mfc="none", ls=":"))):
        ns = sorted(results[kind])
        if ns:
            ax.errorbar(ns, [results[kind][n]["bits_per_pixel"] for n in ns],
                        yerr=[results[kind][n]["stderr"] for n in ns], label=label, capsize=3, **style)
    ax.set_xlabel("neighbourhood size n (n x n window, causal half)")
    ax.set_ylabel("log-likelihood rate [bit/px], [0,1) scale")
    ax.set_xticks(sizes)
    ax.set_title("Dead leaves, test set (tiles64)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out_plot, dpi=120)
    print(f"wrote {args.out_table} and {args.out_plot}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("select").add_argument("runs", type=Path)
    sub.add_parser("restore").add_argument("runs", type=Path)
    sub.add_parser("stopped", help="exit status 0 if the run of this model.pt stopped on its rule, else 1"
                   ).add_argument("model", type=Path)
    p = sub.add_parser("table")
    p.add_argument("runs", type=Path)
    p.add_argument("--out-table", type=Path, required=True)
    p.add_argument("--out-plot", type=Path, required=True)
    args = parser.parse_args()
    if args.command == "select":
        select(args.runs)
    elif args.command == "stopped":
        raise SystemExit(0 if stopped_on_rule(args.model) else 1)
    elif args.command == "restore":
        args.runs.mkdir(parents=True, exist_ok=True)
        restore(args.runs)
    else:
        table(args)


if __name__ == "__main__":
    main()
