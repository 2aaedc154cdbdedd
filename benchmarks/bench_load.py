"""Load benchmark: each main `ride` command alone and beside a second, CPU-heavy `ride` command.

    python benchmarks/bench_load.py                        # every command, quiet and busy, the CLI's defaults
    python benchmarks/bench_load.py --only sample --env OMP_WAIT_POLICY=ACTIVE --threads 2   # one variant

Each command runs in a subprocess; its wall time and CPU time (user + system, from wait4) are recorded. "busy": the
competitor (by default `ride eval --ensemble` of the 2-layer model, which keeps both cores of a 2-core machine busy
for minutes) is started first, given `--warmup` seconds to load, and killed when the measured command ends. The
table's last column is busy / quiet wall time; the goal on 2 cores is at most 2.5x.

The machine must be otherwise idle for the quiet figures (the script does not check); run it under
`flock /tmp/ride_bench.lock` where several people benchmark. Needs $RIDE_DATA for `eval` and the competitor. The
image and mask for `inpaint` are made here (a dead-leaves image, a square hole), so no data file is needed for it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL = "models/bsds300_ride1_long.pt"
COMPETITOR = "ride eval --checkpoint bsds300_ride2_long2 --data bsds300 --split test --ensemble --no-progress"


def commands(tmp: Path) -> dict[str, str]:
    """The measured commands (short runs of the README's commands), by name."""
    return {
        "sample": f"ride sample --checkpoint {MODEL} --size 128x128 --num 2 --out {tmp}/sample.png --no-progress",
        "inpaint": f"ride inpaint --checkpoint {MODEL} --image {tmp}/image.png --mask {tmp}/mask.png "
                   f"--out {tmp}/filled.png --sweeps 3 --no-progress",
        "eval": f"ride eval --checkpoint {MODEL} --data bsds300 --split test --limit 3 --no-progress",
        "demo": f"ride demo --out-dir {tmp}/demo --num-train 10 --mcgsm-iters 20 --ride-steps 20 --num-hiddens 8",
    }


def make_inpainting_inputs(tmp: Path) -> None:
    """A 128x128 dead-leaves image and a mask with a 32x32 hole in the middle (PNG files in tmp)."""
    import numpy as np
    from PIL import Image

    from ride import dead_leaves_images

    Image.fromarray(dead_leaves_images(1, 128, seed=5)[0]).save(tmp / "image.png")
    mask = np.zeros((128, 128), dtype=np.uint8)
    mask[48:80, 48:80] = 255
    Image.fromarray(mask).save(tmp / "mask.png")


def run(command: str, env: dict[str, str]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, exit status) of one command, output discarded."""
    start = time.perf_counter()
    proc = subprocess.Popen(shlex.split(command), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr.read().decode(errors="replace")[-2000:])
    return wall, usage.ru_utime + usage.ru_stime, proc.returncode


def busy(command: str, env: dict[str, str], competitor: str, warmup: float) -> tuple[float, float, int]:
    """Like `run`, beside the competitor (started `warmup` seconds before, killed after)."""
    rival = subprocess.Popen(shlex.split(competitor), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        time.sleep(warmup)
        if rival.poll() is not None:
            raise RuntimeError(f"the competitor ended early (status {rival.returncode}): {competitor}")
        return run(command, env)
    finally:
        os.killpg(rival.pid, signal.SIGKILL)
        rival.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", help="measure only these commands (sample inpaint eval demo)")
    parser.add_argument("--threads", type=int, default=None, help="pass --threads N to the measured commands")
    parser.add_argument("--env", nargs="*", default=[], metavar="K=V", help="extra environment of every process")
    parser.add_argument("--competitor", default=COMPETITOR, help="the second, CPU-heavy command")
    parser.add_argument("--warmup", type=float, default=8.0, help="seconds the competitor runs first (default 8)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per condition; the table keeps the fastest")
    parser.add_argument("--conditions", nargs="+", default=["quiet", "busy"], choices=("quiet", "busy"))
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    env = {**os.environ, **dict(item.split("=", 1) for item in args.env)}
    env.setdefault("RIDE_DATA", str(REPO.parent / "shared" / "data"))

    results = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        make_inpainting_inputs(tmp)
        todo = {k: v for k, v in commands(tmp).items() if not args.only or k in args.only}
        print(f"| command | condition | wall s | CPU s | busy / quiet |   ({' '.join(args.env) or 'default env'}"
              f"{'' if args.threads is None else f', --threads {args.threads}'})")
        print("|---|---|---|---|---|")
        for name, command in todo.items():
            if args.threads is not None:
                command += f" --threads {args.threads}"
            walls = {}
            for condition in args.conditions:
                best = None
                for _ in range(args.repeats):
                    figures = run(command, env) if condition == "quiet" else busy(command, env, args.competitor,
                                                                                  args.warmup)
                    best = figures if best is None or figures[0] < best[0] else best
                wall, cpu, status = best
                walls[condition] = wall
                ratio = f"{wall / walls['quiet']:.2f}x" if condition == "busy" and "quiet" in walls else ""
                print(f"| {name} | {condition} | {wall:.1f} | {cpu:.1f} | {ratio} |" + (f" FAILED ({status})"
                                                                                         if status else ""),
                      flush=True)
                results.append({"command": command.replace(str(tmp), "TMP"), "name": name, "condition": condition,
                                "wall_s": wall, "cpu_s": cpu, "status": status, "env": args.env,
                                "threads": args.threads})
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
