"""Issue 33: grey models for photographs against the BSDS300-only models, on four sets of images.

Every figure is `ride eval`'s own (tiles64: 64x64 tiles, each on its own, bit/px on the [0,1) scale, ± standard
error over tiles, higher is better), run as a subprocess with the command printed beside it, so that a fresh clone
reproduces each cell with that command:

- BSDS300 test (the paper's set; JPEG pixels) and BSDS300 val (the last 20 training ids; JPEG pixels);
- the Wikimedia photographs' 10 validation images (never JPEG at their size; `ride eval --data wikipedia_photos`);
- scikit-image's 9 photographs (`pip install scikit-image`; copied into a temporary folder for `--images`).

    RIDE_DATA=../shared/data python experiments/photo_models.py photo_grey photo_mcgsm bsds300_ride2_long2 \
        bsds300_mcgsm --out experiments/photo_models.md [--threads 1] [--sets bsds300_test wikipedia_val]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SETS = {
    "bsds300_test": ["--data", "bsds300", "--split", "test"],
    "bsds300_val": ["--data", "bsds300", "--split", "val"],
    "wikipedia_val": ["--data", "wikipedia_photos", "--split", "val"],
    "skimage": None,  # --images FOLDER, made at run time
}
#: The scikit-image photographs of experiments/other_photos.py.
SKIMAGE_PHOTOS = ("astronaut.png", "camera.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg",
                  "grass.png", "gravel.png", "brick.png")


def skimage_folder(dest: Path) -> Path:
    """The scikit-image photographs copied into `dest` (their own folder holds other images too)."""
    try:
        import skimage.data
    except ImportError as err:
        raise SystemExit("the skimage set needs scikit-image: pip install scikit-image") from err
    source = Path(skimage.data.__file__).parent
    dest.mkdir(parents=True, exist_ok=True)
    for name in SKIMAGE_PHOTOS:
        shutil.copy(source / name, dest / name)
    return dest


def evaluate(checkpoint: str, data_args: list[str], threads: int) -> tuple[dict, str]:
    """`ride eval --json` of one model on one set: (its JSON, the command as typed)."""
    argv = ["ride", "eval", "--checkpoint", checkpoint, "--protocol", "tiles64", *data_args, "--json",
            "--no-progress", "--threads", str(threads)]
    done = subprocess.run([sys.executable, "-m", "ride", *argv[1:]], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stderr}")
    return json.loads(done.stdout), " ".join(argv)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", help="shipped model names or checkpoint files")
    parser.add_argument("--sets", nargs="+", choices=list(SETS), default=list(SETS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="also write the markdown table and the commands here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = {name: (SETS[name] or ["--images", str(skimage_folder(Path(tmp) / "skimage_photos"))])
                for name in args.sets}
        header = "| model | " + " | ".join(args.sets) + " |"
        rows = [header, "|---" * (len(args.sets) + 1) + "|"]
        commands = []
        for checkpoint in args.checkpoints:
            cells = []
            for name in args.sets:
                result, command = evaluate(checkpoint, data[name], args.threads)
                cells.append(f"{result['bits_per_pixel']:.3f} ± {result['stderr']:.3f}")
                commands.append(command.replace(tmp, "$SKIMAGE_COPY"))
                print(f"{checkpoint} {name}: {cells[-1]}", file=sys.stderr, flush=True)
            rows.append(f"| `{checkpoint}` | " + " | ".join(cells) + " |")
    text = "\n".join(rows + ["", "Commands (tiles64, bit/px, higher is better):", "",
                             *(f"    {c}" for c in commands)])
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
