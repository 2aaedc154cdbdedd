"""Texture synthesis and inpainting on the 13 Brodatz plates (issue 4; design §8): one RIDE and one MCGSM per plate.

Run from the repository root; every step skips work whose output exists, so a stopped run continues where it
stopped (a RIDE run stopped mid-training resumes from its checkpoint):

    RIDE_DATA=../shared/data python experiments/textures.py --runs runs/textures
    RIDE_DATA=../shared/data python experiments/textures.py --runs runs/textures --plates 1.1.01 1.1.07

Per plate (USC-SIPI name 1.1.01 ... 1.1.13, `ride.data.Brodatz`, black bottom rows cropped):
  1. split   the cropped 1.1 image is cut into a 4x4 grid of equal tiles, H // 4 rows by 128 columns (127 x 128
             from the 510 rows; 121 x 128 from the 486 rows of 1.1.11), the leftover bottom rows (2) dropped. Tile
             r3c3 (bottom right) is held out (`<runs>/<plate>/heldout/`); tile r0c0 validates; the other 14 train,
             together with the 1.3 scan of the same class downsampled 2x (box filter, 1024 -> 512: the 1.3 scans
             show the textures at about twice the scale of 1.1) and cut into 16 tiles of 128 x 128. The same class
             is the same number except for 1.1.04 and 1.1.05, whose 1.3 scans are swapped (1.3.05 shows the
             herringbone weave of 1.1.04, 1.3.04 the woolen cloth of 1.1.05). Files are named
             so that the validation images sort last (`z_`): the last N // 10 files validate, for both trainers
             (the r0c0 tile and the last two 1.3 tiles). The 1.2 scans are never used.
  2. RIDE    `ride train` (1 layer, 32 hidden units, nb_size 5, Adam, patch sizes 16 24 32, flips, L-BFGS
             fine-tuning of the MCGSM after each stage) -> models/texture_<plate>_ride.pt
  3. MCGSM   `ride fit-mcgsm` (nb_size 5: the same causal window, 32 components) -> models/texture_<plate>_mcgsm.pt
             Both model files get the 8-bit histogram of the plate's 15 non-held-out 1.1 tiles as
             extra["marginal_histogram"], the boundary distribution of `ride sample`.
  4. eval    log-likelihood rates on the held-out tile, bit/px on the [0,1) scale: the whole tile as one image
             (dequantisation seed `protocols.image_seed(0, tile)`, the tiles64 protocol's noise), standard error over
             the 4 x 4 blocks of its counted pixels; and `ride eval --protocol tiles64` (only 2 tiles fit).
  5. sample  `ride sample --size 256x256 --seed 0 --border 16` from both models.
  6. inpaint a 71 x 71 hole in the middle of the held-out tile, filled by the mean of the observed pixels, harmonic
             (diffusion) fill, Metropolis-within-Gibbs with the MCGSM and with RIDE (ancestral initialisation best of
             5, 5x5 blocks on a stride-3 grid, 19x19 windows, no flips, `--sweeps` sweeps) and MAP with RIDE
             (`--map-steps` Adam steps from the harmonic fill); scored by the RIDE model of the plate. Observed
             pixels at their bin centres (v + 1/2)/256.
Then experiments/textures.{md,png} and experiments/inpainting.{md,png} are written from every plate done so far.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import ride
from ride import inpainting, protocols
from ride.checkpoint import load_payload
from ride.data import Brodatz, load_image
from ride.marginal import MARGINAL_KEY, marginal_histogram
from ride.units import ONE_BELOW, dequantize, quantize

PLATES = [f"1.1.{k:02d}" for k in range(1, 14)]
NAMES = {"1.1.01": "grass D9", "1.1.02": "bark D12", "1.1.03": "straw D15", "1.1.04": "herringbone weave D16",
         "1.1.05": "woolen cloth D19", "1.1.06": "pressed calf leather D24", "1.1.07": "beach sand D29",
         "1.1.08": "water D38", "1.1.09": "wood grain D68", "1.1.10": "raffia D84", "1.1.11": "pigskin D92",
         "1.1.12": "brick wall D94", "1.1.13": "plastic bubbles D112"}
GRID = 4  # the 1.1 image is cut into GRID x GRID tiles
HELDOUT = (3, 3)  # bottom right
VAL = (0, 0)  # top left
SCAN13_SWAPPED = {"1.1.04": "1.3.05", "1.1.05": "1.3.04"}
HOLE = 71
LN2 = math.log(2)
METHODS = ("mean", "harmonic", "mcgsm_mwg", "ride_mwg", "ride_map")
METHOD_LABELS = {"mean": "mean fill", "harmonic": "harmonic fill", "mcgsm_mwg": "MCGSM MwG", "ride_mwg": "RIDE MwG",
                 "ride_map": "RIDE MAP", "truth": "truth"}

RIDE_FLAGS = ["--num-layers", "1", "--num-hiddens", "32", "--num-components", "16", "--num-scales", "4",
              "--num-features", "16", "--nb-size", "5", "--optimizer", "adam", "--patch-sizes", "16", "24", "32",
              "--learning-rates", "1e-3", "5e-4", "2.5e-4", "--batch-size", "50", "--epochs-per-stage", "20",
              "--max-steps-per-epoch", "20", "--flip", "true", "--precondition-pairs", "200000",
              "--finetune-pixels", "60000", "--finetune-val-pixels", "20000", "--finetune-iter", "30",
              "--val-tile", "32", "--seed", "0", "--threads", "1", "--tensorboard", "false", "--max-seconds", "300"]
MCGSM_FLAGS = ["--nb-size", "5", "--components", "32", "--scales", "4", "--features", "24", "--pairs", "150000",
               "--val-pairs", "40000", "--max-iter", "1000", "--max-seconds", "50", "--seed", "0"]


# ---------------------------------------------------------------------------------------------- helpers

def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def add_timing(folder: Path, step: str, seconds: float) -> None:
    """Accumulate the compute seconds of a step in <plate>/timing.json."""
    path = folder / "timing.json"
    timing = read_json(path) or {}
    timing[step] = timing.get(step, 0.0) + seconds
    write_json(path, timing)


def run_ride(args: list[str], log_path: Path, stdout_path: Path | None = None) -> None:
    """Run `ride <args>` in a subprocess (one torch thread); stderr to log_path, stdout to stdout_path or log."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    log(f"  $ ride {shlex.join(args)}")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a") as err, (stdout_path.open("w") if stdout_path else log_path.open("a")) as out:
        result = subprocess.run([sys.executable, "-m", "ride", *args], stdout=out, stderr=err, env=env)
    if result.returncode:
        raise RuntimeError(f"`ride {shlex.join(args)}` failed with exit status {result.returncode}; see {log_path}")


def save_png(path: Path, values: np.ndarray) -> None:
    """uint8 [H, W] -> grey PNG."""
    Image.fromarray(np.ascontiguousarray(values)).save(path)


def grey_png(path: Path) -> None:
    """Rewrite a matplotlib PNG (RGBA) of grey panels and black text as an 8-bit grey PNG (a third of the size)."""
    with Image.open(path) as img:
        grey = img.convert("L")
    grey.save(path, optimize=True)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """[0,1) floats [..., H, W] -> uint8 (clipped, times 256, floored), as `ride sample`/`ride inpaint` write them."""
    return quantize(x).numpy()


# ---------------------------------------------------------------------------------------------- 1. split

def plate_tiles(image: torch.Tensor) -> tuple[dict[tuple[int, int], torch.Tensor], tuple[int, int]]:
    """uint8 [1, H, W] -> {(row, col): uint8 [1, th, tw]} of the GRID x GRID tiles, and (th, tw)."""
    _, h, w = image.shape
    th, tw = h // GRID, w // GRID
    return {(i, j): image[:, i * th : (i + 1) * th, j * tw : (j + 1) * tw].clone()
            for i in range(GRID) for j in range(GRID)}, (th, tw)


def scan13_of(plate: str) -> str:
    """The 1.3 scan that shows the plate's texture: the same number, except that 1.3.04 and 1.3.05 are swapped (by
    eye: 1.3.05 is the herringbone weave of 1.1.04, 1.3.04 the woolen cloth of 1.1.05)."""
    return SCAN13_SWAPPED.get(plate, "1.3" + plate[3:])


def scan13_tiles(plate: str, root: str | None) -> dict[tuple[int, int], torch.Tensor]:
    """The 1.3 scan of the plate's class, 2x box-downsampled to 512 x 512, cut into 4 x 4 tiles of 128 x 128."""
    big = Brodatz(root, plates=[scan13_of(plate)])[0][0].numpy()  # (1024, 1024) uint8
    half = np.asarray(Image.fromarray(big).resize((big.shape[1] // 2, big.shape[0] // 2), Image.BOX))
    tiles, _ = plate_tiles(torch.from_numpy(half.copy())[None])
    return tiles


def split(plate: str, root: str | None, folder: Path) -> dict:
    """Write the training, validation and held-out tiles of a plate as PNG files; returns the split record."""
    record_path = folder / "split.json"
    record = read_json(record_path)
    if record is not None:
        return record
    image = Brodatz(root, plates=[plate])[0]  # black bottom rows cropped
    tiles, (th, tw) = plate_tiles(image)
    train_dir, held_dir = folder / "train", folder / "heldout"
    train_dir.mkdir(parents=True, exist_ok=True)
    held_dir.mkdir(parents=True, exist_ok=True)
    for (i, j), t in tiles.items():
        if (i, j) == HELDOUT:
            save_png(held_dir / f"{plate}_r{i}c{j}.png", t[0].numpy())
        elif (i, j) == VAL:
            save_png(train_dir / f"z_{plate}_r{i}c{j}.png", t[0].numpy())
        else:
            save_png(train_dir / f"a_{plate}_r{i}c{j}.png", t[0].numpy())
    plate13 = scan13_of(plate)
    for (i, j), t in scan13_tiles(plate, root).items():
        save_png(train_dir / f"b_{plate13}_half_r{i}c{j}.png", t[0].numpy())
    files = sorted(p.name for p in train_dir.glob("*.png"))
    n_val = len(files) // 10  # what `ride fit-mcgsm` validates on; `ride train` gets --val-fraction n_val / N
    non_held = torch.stack([t for k, t in tiles.items() if k != HELDOUT])
    record = {"plate": plate, "cropped_shape": list(image.shape[1:]), "tile_shape": [th, tw],
              "dropped_bottom_rows": int(image.shape[1] - GRID * th), "heldout": f"r{HELDOUT[0]}c{HELDOUT[1]}",
              "num_files": len(files), "val_files": files[-n_val:], "train_files": files[:-n_val],
              "marginal_histogram": marginal_histogram(non_held)}
    write_json(record_path, record)
    return record


def heldout_tile(folder: Path) -> torch.Tensor:
    """uint8 [1, th, tw] of the held-out tile."""
    (path,) = sorted((folder / "heldout").glob("*.png"))
    return load_image(path)


# ---------------------------------------------------------------------------------------------- 2, 3. models

def add_marginal(path: Path, record: dict) -> None:
    """Store the histogram of the plate's 15 non-held-out 1.1 tiles as the model's marginal (the boundary of
    `ride sample`), once; it replaces the trainer's histogram of all training files (which include the 1.3 tiles)."""
    payload = load_payload(path)
    extra = payload["extra"]
    if "texture_split" in extra:
        return
    extra[MARGINAL_KEY] = record["marginal_histogram"]
    extra["texture_split"] = {k: record[k] for k in ("plate", "tile_shape", "heldout", "val_files")}
    ride.save(ride.load(path), path, extra=extra)


def train_ride(plate: str, folder: Path, record: dict, models: Path) -> list[str]:
    """`ride train` for the plate (resumed if stopped); returns the command."""
    out_dir, model_path = folder / "ride", models / f"texture_{plate}_ride.pt"
    n_val, n = len(record["val_files"]), record["num_files"]
    command = ["train", "--data", "images", "--images", str(folder / "train" / "*.png"),
               "--val-fraction", f"{n_val / n:.6f}", *RIDE_FLAGS, "--out", str(out_dir), "--model-out",
               str(model_path)]
    state = out_dir / "state.pt"
    status = load_payload(state)["extra"]["trainer"]["status"] if state.exists() else None
    done = status not in (None, "training") if state.exists() else model_path.exists()
    if done and not model_path.exists():  # trained, but the model file was removed: the run folder has the best
        ride.save(ride.load(out_dir / "model.pt"), model_path, extra=load_payload(out_dir / "model.pt")["extra"])
    if not done:
        start = time.monotonic()
        if status == "training":
            run_ride(["train", "--out", str(out_dir), "--model-out", str(model_path), "--resume"],
                     folder / "logs" / "ride_train.log")
        else:
            run_ride(command, folder / "logs" / "ride_train.log")
        add_timing(folder, "ride_train", time.monotonic() - start)
    add_marginal(model_path, record)
    return command


def fit_mcgsm(plate: str, folder: Path, record: dict, models: Path) -> list[str]:
    """`ride fit-mcgsm` for the plate; returns the command."""
    run_path, model_path = folder / "mcgsm.pt", models / f"texture_{plate}_mcgsm.pt"
    command = ["fit-mcgsm", "--images", str(folder / "train" / "*.png"), *MCGSM_FLAGS, "--out", str(run_path)]
    if not model_path.exists():
        if not (run_path.exists() and load_payload(run_path)["extra"].get("status") == "done"):
            start = time.monotonic()
            run_ride(command, folder / "logs" / "mcgsm_fit.log")
            add_timing(folder, "mcgsm_fit", time.monotonic() - start)
        ride.save(ride.load(run_path), model_path, extra=load_payload(run_path)["extra"])
    add_marginal(model_path, record)
    return command


# ---------------------------------------------------------------------------------------------- 4. evaluation

@torch.no_grad()
def whole_tile_rates(models: dict[str, torch.nn.Module], tile: torch.Tensor) -> dict:
    """Rates of each model on the whole held-out tile (uint8 [1, H, W]): mean log2 p over its counted pixels, and
    the standard error over the 4 x 4 blocks of those pixels (also of the paired difference RIDE - MCGSM)."""
    x = dequantize(tile, torch.Generator().manual_seed(protocols.image_seed(0, tile)))[None]  # (1, 1, H, W)
    per_pixel = {k: m.log_prob_pixels(x)[0].double() / LN2 for k, m in models.items()}  # bit, (Hp, Wp)

    def blocks(values: torch.Tensor) -> torch.Tensor:
        return torch.stack([b.mean() for rows in values.tensor_split(4, 0) for b in rows.tensor_split(4, 1)])

    result = {}
    for kind, values in per_pixel.items():
        b = blocks(values)
        result[kind] = {"bits_per_pixel": float(values.mean()), "stderr": float(b.std() / math.sqrt(len(b))),
                        "num_pixels": values.numel()}
    d = blocks(per_pixel["ride"] - per_pixel["mcgsm"])
    result["ride_minus_mcgsm"] = {"bits_per_pixel": float((per_pixel["ride"] - per_pixel["mcgsm"]).mean()),
                                  "stderr": float(d.std() / math.sqrt(len(d)))}
    return result


def evaluate(plate: str, folder: Path, models_dir: Path) -> dict:
    path = folder / "eval.json"
    result = read_json(path)
    if result is not None:
        return result
    start = time.monotonic()
    paths = {k: models_dir / f"texture_{plate}_{k}.pt" for k in ("mcgsm", "ride")}
    models = {k: ride.load(p) for k, p in paths.items()}
    result = {"whole_tile": whole_tile_rates(models, heldout_tile(folder)), "tiles64": {}, "commands": {}}
    for kind, p in paths.items():
        out = folder / f"eval_tiles64_{kind}.json"
        command = ["eval", "--checkpoint", str(p), "--images", str(folder / "heldout"), "--protocol", "tiles64",
                   "--json", "--threads", "1", "--no-progress"]
        run_ride(command, folder / "logs" / "eval.log", out)
        result["tiles64"][kind] = json.loads(out.read_text())
        result["commands"][kind] = command
    add_timing(folder, "eval", time.monotonic() - start)
    write_json(path, result)
    return result


# ---------------------------------------------------------------------------------------------- 5. samples

def sample_command(plate: str, folder: Path, models_dir: Path, size: int, kind: str) -> list[str]:
    out = folder / f"sample_{kind}.png"
    return ["sample", "--checkpoint", str(models_dir / f"texture_{plate}_{kind}.pt"), "--size", f"{size}x{size}",
            "--seed", "0", "--border", "16", "--out", str(out), "--npy", str(out.with_suffix(".npy")), "--threads",
            "1", "--no-progress"]


def sample(plate: str, folder: Path, models_dir: Path, size: int) -> dict:
    commands = {}
    for kind in ("mcgsm", "ride"):
        out = folder / f"sample_{kind}.png"
        command = sample_command(plate, folder, models_dir, size, kind)
        commands[kind] = command
        if not out.exists():
            start = time.monotonic()
            run_ride(command, folder / "logs" / "sample.log")
            add_timing(folder, f"sample_{kind}", time.monotonic() - start)
    return commands


# ---------------------------------------------------------------------------------------------- 6. inpainting

def hole_mask(height: int, width: int) -> torch.Tensor:
    """bool [H, W]: the HOLE x HOLE square in the middle."""
    mask = torch.zeros(height, width, dtype=torch.bool)
    r, c = (height - HOLE) // 2, (width - HOLE) // 2
    mask[r : r + HOLE, c : c + HOLE] = True
    return mask


@torch.no_grad()
def inpaint(plate: str, folder: Path, models_dir: Path, sweeps: int, map_steps: int) -> dict:
    """Fill the held-out tile's hole with every method; results (scores under the plate's RIDE) in inpaint.json."""
    path = folder / "inpaint.json"
    result = read_json(path)
    if result is not None:
        return result
    ride_model = ride.load(models_dir / f"texture_{plate}_ride.pt")
    mcgsm_model = ride.load(models_dir / f"texture_{plate}_mcgsm.pt")
    values = heldout_tile(folder)  # (1, H, W) uint8
    h, w = values.shape[1:]
    mask = hole_mask(h, w)
    truth = ((values.double() + 0.5) / 256)[None]  # (1, 1, H, W) bin centres
    fills, seconds, extra = {}, {}, {}
    start = time.monotonic()
    fills["mean"] = inpainting.mean_fill(truth, mask)
    seconds["mean"] = time.monotonic() - start
    start = time.monotonic()
    fills["harmonic"] = inpainting.harmonic_fill(truth, mask)
    seconds["harmonic"] = time.monotonic() - start
    for kind, model in (("mcgsm_mwg", mcgsm_model), ("ride_mwg", ride_model)):
        generator = torch.Generator().manual_seed(0)
        x = truth.to(model.preconditioner.mean_in.dtype)
        start = time.monotonic()
        init = inpainting.initialize(model, x, mask, num_candidates=5, generator=generator)
        init_s = time.monotonic() - start
        times = []

        def tick(_stats: inpainting.SweepStats, times: list = times) -> None:
            times.append(time.monotonic())

        start = time.monotonic()
        filled, stats = inpainting.inpaint_mcmc(model, x, mask, sweeps, generator, block_size=5, stride=3, window=19,
                                                init=init, callback=tick)
        sweep_s = time.monotonic() - start
        fills[kind] = filled.double()
        seconds[kind] = init_s + sweep_s
        init_hole = float(inpainting.region_log_probs(ride_model, init.to(torch.float32), mask)[1][0])
        extra[kind] = {"init_seconds": init_s, "seconds_per_sweep": sweep_s / max(sweeps, 1), "sweeps": sweeps,
                       "acceptance_rates": [s.acceptance_rate for s in stats],
                       "proposals_per_sweep": stats[0].num_proposals if stats else 0,
                       "init_hole_log_prob_nats_ride": init_hole,
                       "own_model_hole_log_prob_nats": [float(s.hole_log_prob_nats[0]) for s in stats]}
        log(f"  {kind}: init {init_s:.1f} s, {sweeps} sweeps {sweep_s:.1f} s, acceptance "
            f"{[round(s.acceptance_rate, 3) for s in stats]}")
    if map_steps:
        start = time.monotonic()
        filled, _ = inpainting.inpaint_map(ride_model, truth.float(), mask, num_steps=map_steps)
        fills["ride_map"] = filled.double()
        seconds["ride_map"] = time.monotonic() - start
        extra["ride_map"] = {"steps": map_steps, "lr": 0.01}
    fills["truth"] = truth
    top, left, right = ride_model.margin
    counted = int(mask[top:, left : w - right].sum())
    log_p_truth = None
    scores = {}
    for kind, x in fills.items():
        x = torch.where(mask, x, truth)
        log_p, hole = inpainting.region_log_probs(ride_model, x.float(), mask)
        log_p, hole = float(log_p[0]), float(hole[0])
        if kind == "truth":
            log_p_truth = log_p
        err = (x.clamp(0, ONE_BELOW) * 256 - (values.double() + 0.5)[None])[..., mask]
        scores[kind] = {"hole_log_prob_nats": hole, "hole_bits_per_pixel": hole / counted / LN2,
                        "image_log_prob_nats": log_p, "mse_8bit": float(err.square().mean()),
                        "seconds": seconds.get(kind), **extra.get(kind, {})}
    for kind in scores:
        scores[kind]["delta_image_log_prob_nats"] = scores[kind]["image_log_prob_nats"] - log_p_truth
    np.savez_compressed(folder / "inpaint_fills.npz", **{k: to_uint8(v[0, 0]) for k, v in fills.items()},
                        mask=mask.numpy())
    result = {"plate": plate, "hole": [HOLE, HOLE], "tile_shape": [h, w], "counted_hole_pixels": counted,
              "scores": scores}
    add_timing(folder, "inpaint", sum(v for v in seconds.values()))
    write_json(path, result)
    return result


# ---------------------------------------------------------------------------------------------- reports

def fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def write_textures_report(runs: Path, plates: list[str], models: Path, out_md: Path, out_png: Path,
                          root: str | None) -> None:
    rows = []
    commands = None
    total = {}
    for plate in plates:
        folder = runs / plate
        ev, record = read_json(folder / "eval.json"), read_json(folder / "split.json")
        if ev is None or record is None:
            continue
        rows.append((plate, ev, record))
        for step, s in (read_json(folder / "timing.json") or {}).items():
            total[step] = total.get(step, 0.0) + s
        if commands is None:
            commands = plate
    lines = ["# Brodatz textures: held-out log-likelihood rates and samples (issue 4)", "",
             "Produced by `RIDE_DATA=../shared/data python experiments/textures.py --runs runs/textures` (see the "
             "docstring of `experiments/textures.py`). Rates: mean log2 p(x_ij | x_<ij) in **bit/px on the [0,1) "
             "scale, higher is better** (8 − rate bounds the 8-bit code length). MCGSM and RIDE use the same "
             "5x5 causal window (nb_size 5, 12 inputs).", "",
             "## Split", "",
             "Each 1.1 plate (black bottom rows cropped: 510 x 512, 486 x 512 for 1.1.11) is cut into a 4 x 4 grid "
             "of equal tiles of (H // 4) x 128 pixels: 127 x 128 (the last 2 of the 510 rows dropped), and 121 x 128 "
             "for 1.1.11 (the last 2 of its 486 rows dropped). Tile r3c3 (bottom right) is **held out** and used "
             "only for the numbers below and the inpainting; tile r0c0 validates (rollback, early stopping); the "
             "other 14 tiles train. The 1.3 scan of the same class is added to training and validation after a 2x "
             "box downsampling (1024 -> 512: the 1.3 scans show the textures at about twice the scale of the 1.1 "
             "plates, see the probe below), cut into 16 tiles of 128 x 128. **1.3.04 and 1.3.05 are swapped** "
             "relative to 1.1.04 and 1.1.05: 1.3.05 shows the herringbone weave of 1.1.04 and 1.3.04 the woolen "
             "cloth of 1.1.05 (by eye; the data README says only that the 1.3 scans show the same 13 classes). "
             "A first run that paired them by number gave RIDE samples of 1.1.04 that switched half-way to the "
             "dark woolen cloth, and RIDE scored 0.029 ± 0.005 bit/px below the MCGSM on 1.1.05; both plates were "
             "redone with the scans paired by content. Validation set of both trainers: the "
             "last N // 10 = 3 files in name order, the r0c0 tile and two of the 1.3 tiles. The "
             "brightness-remapped 1.2 copies are never used.", "",
             "Why downsampled: a probe before the runs (an ad-hoc script, not part of this driver) fitted an MCGSM "
             "(nb_size 5, 16 components, 150,000 pairs, 25 s of L-BFGS) on the first 14 tiles of a plate in raster "
             "order (r0c0 ... r3c1), alone or with the 1.3 scan added, and scored it on tile r3c2 (a training "
             "tile of the final split, never the held-out r3c3), bit/px:", "",
             "| plate | 1.1 tiles only | + 1.3 at half resolution | + 1.3 at full resolution |", "|---|---|---|---|",
             "| 1.1.01 | 2.337 | 2.339 | 2.309 |", "| 1.1.04 (with 1.3.04, the wrong scan) | 2.428 | 2.427 | not run |",
             "| 1.1.07 | 2.492 | 2.492 | 2.490 |", "| 1.1.09 | 3.853 | 3.853 | not run |",
             "| 1.1.12 | 2.737 | 2.742 | 2.740 |", "",
             "At full resolution the 1.3 scan can hurt (1.1.01); at half resolution it is neutral for the MCGSM "
             "(within 0.005 bit/px). It is kept at half resolution as more data for RIDE, whose effect on RIDE was "
             "not measured separately.", "",
             "## Held-out rates", "",
             "Whole tile: the held-out tile evaluated as one image (zero LSTM states at its edges; dequantisation "
             "seed as in the tiles64 protocol); the counted pixels are all predicted pixels (125 x 124, 119 x 124 "
             "for 1.1.11); ± is the standard error over the 4 x 4 blocks of the counted pixels (a batch-means "
             "estimate: neighbouring pixels are correlated, single pixels would understate it). "
             "Δ = RIDE − MCGSM per block, paired. tiles64: `ride eval --protocol tiles64` on the same tile, which "
             "holds only 2 tiles of 64 x 64 (± over 2 tiles: indicative only).", "",
             "| plate | texture | MCGSM, whole tile | RIDE, whole tile | Δ RIDE − MCGSM | MCGSM, tiles64 | "
             "RIDE, tiles64 |",
             "|---|---|---|---|---|---|---|"]
    means = {"mcgsm": [], "ride": [], "d": []}
    for plate, ev, _ in rows:
        wt, t64 = ev["whole_tile"], ev["tiles64"]
        cells = [f"{wt[k]['bits_per_pixel']:.3f} ± {wt[k]['stderr']:.3f}"
                 for k in ("mcgsm", "ride", "ride_minus_mcgsm")]
        cells += [f"{t64[k]['bits_per_pixel']:.3f} ± {t64[k]['stderr']:.3f}" for k in ("mcgsm", "ride")]
        lines.append(f"| {plate} | {NAMES[plate]} | " + " | ".join(cells) + " |")
        means["mcgsm"].append(wt["mcgsm"]["bits_per_pixel"])
        means["ride"].append(wt["ride"]["bits_per_pixel"])
        means["d"].append(wt["ride_minus_mcgsm"]["bits_per_pixel"])
    if rows:
        n = len(rows)
        d = np.array(means["d"])
        lines.append(f"| mean of {n} | | {np.mean(means['mcgsm']):.3f} | {np.mean(means['ride']):.3f} | "
                     f"{d.mean():.3f} ± {d.std(ddof=1) / math.sqrt(n) if n > 1 else float('nan'):.3f} "
                     f"(over plates) | | |")
        wins = int((d > 0).sum())
        lines += ["", f"RIDE scores higher than the MCGSM on {wins} of {n} plates (whole tile)."]
    missing = [p for p in plates if p not in {r[0] for r in rows}]
    if missing:
        lines += ["", f"Not done yet: {', '.join(missing)}."]
    lines += ["", "## Fitting", "",
              "RIDE: training seconds, the stage whose model was kept (3 stages: patch sizes 16, 24, 32), its "
              "validation rate (tiles of 32 x 32 of the 3 validation files). MCGSM: L-BFGS iterations, why it "
              "stopped (max_seconds: the 50 s limit, so not converged; early_stopping: validation stopped "
              "improving), best validation rate of the validation pairs (not the tiles protocol).", "",
              "| plate | RIDE s | RIDE best stage | RIDE val [bit/px] | MCGSM iterations | MCGSM stop | "
              "MCGSM val [bit/px] |", "|---|---|---|---|---|---|---|"]
    for plate, _, _ in rows:
        r = load_payload(models / f"texture_{plate}_ride.pt")["extra"]
        m = load_payload(models / f"texture_{plate}_mcgsm.pt")["extra"]
        lines.append(f"| {plate} | {r['training_seconds']:.0f} | {r['best_stage'] + 1} | {r['val_bits_per_dim']:.3f} | "
                     f"{m['iterations_done']} | {m['stop_reason']} | {m['best_val_bits_per_pixel']:.3f} |")
    lines += ["", "## Commands (plate 1.1.01; the others alike)", "", "```bash"]
    if commands is not None:
        f = runs / commands
        rec = read_json(f / "split.json")
        train_cmd = ["ride", "train", "--data", "images", "--images", str(f / "train" / "*.png"), "--val-fraction",
                     f"{len(rec['val_files']) / rec['num_files']:.6f}", *RIDE_FLAGS, "--out", str(f / "ride"),
                     "--model-out", str(models / f"texture_{commands}_ride.pt")]
        fit_cmd = ["ride", "fit-mcgsm", "--images", str(f / "train" / "*.png"), *MCGSM_FLAGS, "--out",
                   str(f / "mcgsm.pt")]
        lines += [shlex.join(train_cmd), shlex.join(fit_cmd),
                  f"# then copied to {models / f'texture_{commands}_mcgsm.pt'}; both model files get the plate's "
                  "extra['marginal_histogram']"]
        for kind in ("mcgsm", "ride"):
            lines.append(shlex.join(["ride", *read_json(f / "eval.json")["commands"][kind]]))
        for kind in ("mcgsm", "ride"):
            lines.append(shlex.join(["ride", *sample_command(commands, f, models, 256, kind)]))
    lines += ["```", "", "All commands ran with `OMP_NUM_THREADS=1` on a shared 2-core CPU (two other training jobs "
              "running). Compute time summed over the plates above, seconds:", "",
              "| step | seconds |", "|---|---|"]
    for step, s in sorted(total.items()):
        lines.append(f"| {step} | {s:.0f} |")
    lines.append(f"| total | {sum(total.values()):.0f} |")
    lines += ["", "## Samples", "", "`textures.png`: per plate, the real texture (the top-left 256 x 256 pixels of the "
              "cropped 1.1 plate: training and validation tiles), a 256 x 256 sample of the MCGSM and one of RIDE "
              "(`ride sample --seed 0 --border 16`: boundary pixels i.i.d. from the plate's 8-bit histogram, "
              "cropped off with 16 more pixels). All panels at the same scale, 8-bit grey values shown as they are "
              "(no contrast stretch). The samples are larger than any training tile (128 x 128).", "",
              "What the committed figure (seed 0, one sample per model) shows, by eye: RIDE's samples keep elongated "
              "and oriented structure that the MCGSM's samples break into blotches (straw 1.1.03, bark cracks "
              "1.1.02, herringbone 1.1.04, raffia 1.1.10, wood grain 1.1.09, the bubble walls of 1.1.13 in part). "
              "Neither model draws the brick layout of 1.1.12 (RIDE: long vertical mortar-like streaks, no "
              "horizontal joints). Several RIDE samples drift: a dark region in the lower right of 1.1.01, lighter "
              "diagonal bands in 1.1.07, 1.1.08 and 1.1.13. Both models' 1.1.05 samples are darker than the real "
              "plate: half of their training pixels come from the 1.3.04 scan, whose mean grey level is 83 against "
              "146 for 1.1.05 (the 1.3 scans differ in brightness from the 1.1 plates for most classes)."]
    out_md.write_text("\n".join(lines) + "\n")
    log(f"wrote {out_md}")
    texture_figure(runs, [r[0] for r in rows], out_png, root)


def texture_figure(runs: Path, plates: list[str], out_png: Path, root: str | None) -> None:
    plates = [p for p in plates if all((runs / p / f"sample_{k}.png").exists() for k in ("mcgsm", "ride"))]
    if not plates:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(plates), 3, figsize=(6.3, 2.12 * len(plates)), squeeze=False)
    for row, plate in enumerate(plates):
        real = Brodatz(root, plates=[plate])[0][0, :256, :256].numpy()
        panels = [real, np.asarray(Image.open(runs / plate / "sample_mcgsm.png")),
                  np.asarray(Image.open(runs / plate / "sample_ride.png"))]
        for col, (ax, panel) in enumerate(zip(axes[row], panels, strict=True)):
            ax.imshow(panel, cmap="gray", vmin=0, vmax=255, interpolation="antialiased")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(("real (top-left 256x256)", "MCGSM sample", "RIDE sample")[col], fontsize=9)
            if col == 0:
                ax.set_ylabel(f"{plate}\n{NAMES[plate]}", fontsize=8)
    fig.tight_layout(pad=0.3, h_pad=0.3, w_pad=0.3)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    grey_png(out_png)
    log(f"wrote {out_png}")


def write_inpainting_report(runs: Path, plates: list[str], out_md: Path, out_png: Path, sweeps: int) -> None:
    results = [(p, read_json(runs / p / "inpaint.json")) for p in plates]
    results = [(p, r) for p, r in results if r is not None]
    if not results:
        return
    kinds = [k for k in (*METHODS, "truth") if all(k in r["scores"] for _, r in results)]
    lines = ["# Brodatz textures: inpainting a 71 x 71 hole (issue 4)", "",
             "Produced by `RIDE_DATA=../shared/data python experiments/textures.py --runs runs/textures`. The hole is "
             "the 71 x 71 square in the middle of each plate's held-out tile (127 x 128, 121 x 128 for 1.1.11; "
             "rows and columns from (H − 71) // 2 and (W − 71) // 2); observed pixels enter at their bin centres "
             "(v + 1/2)/256; the models are the committed `models/texture_<plate>_{ride,mcgsm}.pt`.", "",
             "Methods: mean fill (mean of the tile's observed pixels); harmonic fill (Laplace's equation with the "
             "observed pixels as boundary); Metropolis-within-Gibbs (MwG, design §8, `ride.inpainting.inpaint_mcmc`) "
             f"with the plate's MCGSM and with its RIDE: ancestral initialisation best of 5, {sweeps} sweeps of 5x5 "
             "blocks on a stride-3 grid with 19x19 windows, no flips (so the MCGSM chain targets exactly "
             "p(hole | observed); RIDE's crop windows restart the LSTM states, the local approximation of the "
             "original); a single chain per plate, seed 0" + ("; MAP: Adam ascent of ln p(x) under RIDE from the "
                                                                "harmonic fill" if "ride_map" in kinds else "") + ".",
             "", "Scores, all under the plate's **RIDE** model (nb_size 5), continuous density on the [0,1) scale: "
             "hole ln p = sum over the hole pixels of ln p(x_ij | x_<ij) in nats (all 71 x 71 = 5041 hole pixels "
             "are predicted), and the same as a rate in bit/px; Δ ln p(x) = ln p(filled tile) − ln p(true tile) in "
             "nats, which also counts the pixels after the hole whose context the fill changes (= ln p(filled hole "
             "| observed) − ln p(true hole | observed)). MSE against the true 8-bit values on the **8-bit scale** "
             "(filled values clipped to [0,1), times 256, against v + 1/2). Seconds: the whole fill on one CPU "
             "thread (MwG: initialisation plus sweeps); s/sweep: MwG sweeps only.", "",
             "Reading the numbers: MSE favours smooth fills. The mean fill's MSE is about the variance of the texture "
             "in the hole, and an exact sample of p(hole | observed) that is independent of the truth has an "
             "expected MSE of about twice that, so the samplers cannot win on MSE. Likewise a smooth fill can have "
             "a higher density than the truth (a flat patch is very predictable pixel by pixel), so a higher hole "
             "ln p is not a better fill; what a sampler should match is the truth's hole ln p, not exceed it.", "",
             "## Mean over plates", "",
             "| method | hole ln p [nats] | hole rate [bit/px] | Δ ln p(x) vs truth [nats] | MSE (8-bit) | "
             "seconds | s/sweep | acceptance |", "|---|---|---|---|---|---|---|---|"]
    for kind in kinds:
        s = [r["scores"][kind] for _, r in results]

        def mean(key: str, s: list = s) -> float | None:
            values = [v[key] for v in s if v.get(key) is not None]
            return float(np.mean(values)) if values else None

        acc = [np.mean(v["acceptance_rates"]) for v in s if v.get("acceptance_rates")]
        lines.append(f"| {METHOD_LABELS[kind]} | {fmt(mean('hole_log_prob_nats'), 0)} | "
                     f"{fmt(mean('hole_bits_per_pixel'))} | {fmt(mean('delta_image_log_prob_nats'), 0)} | "
                     f"{fmt(mean('mse_8bit'), 0)} | {fmt(mean('seconds'), 1)} | {fmt(mean('seconds_per_sweep'), 1)} | "
                     f"{fmt(float(np.mean(acc)) if acc else None, 3)} |")
    for title, key, digits in (("Hole rate under RIDE [bit/px], per plate", "hole_bits_per_pixel", 3),
                               ("Δ ln p(x) vs truth under RIDE [nats], per plate", "delta_image_log_prob_nats", 0),
                               ("MSE against the truth (8-bit scale), per plate", "mse_8bit", 0)):
        lines += ["", f"## {title}", "", "| plate | " + " | ".join(METHOD_LABELS[k] for k in kinds) + " |",
                  "|---|" + "---|" * len(kinds)]
        for plate, r in results:
            lines.append(f"| {plate} | " + " | ".join(fmt(r["scores"][k][key], digits) for k in kinds) + " |")
    lines += ["", "## Acceptance rates per sweep (MwG)", "", "| plate | MCGSM | RIDE |", "|---|---|---|"]
    for plate, r in results:
        cells = [", ".join(f"{a:.2f}" for a in r["scores"][k]["acceptance_rates"]) for k in ("mcgsm_mwg", "ride_mwg")]
        lines.append(f"| {plate} | " + " | ".join(cells) + " |")
    missing = [p for p in plates if p not in {q for q, _ in results}]
    if missing:
        lines += ["", f"Not inpainted: {', '.join(missing)}."]
    lines += ["", "`inpainting.png`: per plate the tile with the hole (black), the fills and the truth, 8-bit values "
              "as filled, same scale."]
    out_md.write_text("\n".join(lines) + "\n")
    log(f"wrote {out_md}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = ["hole", *kinds]
    fig, axes = plt.subplots(len(results), len(cols), figsize=(1.3 * len(cols), 1.36 * len(results)), squeeze=False)
    for row, (plate, _) in enumerate(results):
        data = np.load(runs / plate / "inpaint_fills.npz")
        holed = np.where(data["mask"], 0, data["truth"])
        for col, kind in enumerate(cols):
            ax = axes[row, col]
            ax.imshow(holed if kind == "hole" else data[kind], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(METHOD_LABELS.get(kind, kind), fontsize=8)
            if col == 0:
                ax.set_ylabel(plate, fontsize=8)
    fig.tight_layout(pad=0.2, h_pad=0.2, w_pad=0.2)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    grey_png(out_png)
    log(f"wrote {out_png}")


# ---------------------------------------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=Path("runs/textures"), help="working folder (default %(default)s)")
    parser.add_argument("--models", type=Path, default=Path("models"), help="model folder (default %(default)s)")
    parser.add_argument("--experiments", type=Path, default=Path("experiments"),
                        help="where the tables and figures go (default %(default)s)")
    parser.add_argument("--data-root", default=None, help="folder holding brodatz_usc_sipi/ (default: $RIDE_DATA)")
    parser.add_argument("--plates", nargs="+", default=PLATES, choices=PLATES, help="default: all 13")
    parser.add_argument("--inpaint-plates", nargs="*", default=None,
                        help="plates to inpaint (default: the same as --plates; none: skip inpainting)")
    parser.add_argument("--sweeps", type=int, default=5, help="MwG sweeps per inpainting (default %(default)s)")
    parser.add_argument("--map-steps", type=int, default=100,
                        help="RIDE MAP inpainting steps (default %(default)s; 0: no MAP)")
    parser.add_argument("--sample-size", type=int, default=256)
    parser.add_argument("--report-only", action="store_true", help="only rewrite the tables and figures")
    args = parser.parse_args()
    torch.set_num_threads(1)
    inpaint_plates = args.plates if args.inpaint_plates is None else args.inpaint_plates
    start = time.monotonic()
    if not args.report_only:
        for plate in args.plates:
            folder = args.runs / plate
            log(f"{plate} ({NAMES[plate]})")
            record = split(plate, args.data_root, folder)
            train_ride(plate, folder, record, args.models)
            fit_mcgsm(plate, folder, record, args.models)
            ev = evaluate(plate, folder, args.models)["whole_tile"]
            log(f"  held-out whole tile: MCGSM {ev['mcgsm']['bits_per_pixel']:.3f}, RIDE "
                f"{ev['ride']['bits_per_pixel']:.3f} bit/px")
            sample(plate, folder, args.models, args.sample_size)
        for plate in inpaint_plates:
            log(f"{plate}: inpainting")
            scores = inpaint(plate, args.runs / plate, args.models, args.sweeps, args.map_steps)["scores"]
            log("  MSE " + ", ".join(f"{k} {v['mse_8bit']:.0f}" for k, v in scores.items()))
    all_plates = [p for p in PLATES if (args.runs / p).is_dir()]
    write_textures_report(args.runs, all_plates, args.models, args.experiments / "textures.md",
                          args.experiments / "textures.png", args.data_root)
    write_inpainting_report(args.runs, all_plates, args.experiments / "inpainting.md",
                            args.experiments / "inpainting.png", args.sweeps)
    log(f"done in {time.monotonic() - start:.0f} s")


if __name__ == "__main__":
    main()
