#!/usr/bin/env bash
# Dead leaves (spec §9.3, issue 5): MCGSM and RIDE as a function of the neighbourhood size n (3, 5, 7, 9).
# Run from the repository root:  bash experiments/deadleaves_nbsize.sh [runs/deadleaves]
# Each model is trained on the generator's 810 first training images (the last 90 validate), evaluated with the
# tiles64 protocol on the 100 test images, and the table and plot are written by deadleaves_nbsize.py.
# Every step skips work whose output already exists, so a stopped run is continued by running it again.
set -euo pipefail
RUNS=${1:-runs/deadleaves}
MODELS=models/deadleaves
mkdir -p "$RUNS" "$MODELS"
for n in 3 5 7 9; do
  if [ ! -f "$MODELS/mcgsm_nb$n.pt" ]; then
    ride fit-mcgsm --data deadleaves --out "$RUNS/mcgsm_nb$n.pt" --nb-size "$n" --components 32 --scales 4 \
      --features 32 --pairs 200000 --val-pairs 50000 --max-iter 1000 --max-seconds 240 --seed 0
    cp "$RUNS/mcgsm_nb$n.pt" "$MODELS/mcgsm_nb$n.pt"
  fi
  if [ ! -f "$MODELS/ride_nb$n.pt" ]; then
    resume=(); [ -f "$RUNS/ride_nb$n/state.pt" ] && resume=(--resume)
    ride train --config experiments/deadleaves_ride.toml --nb-size "$n" --out "$RUNS/ride_nb$n" \
      --model-out "$MODELS/ride_nb$n.pt" "${resume[@]}"
  fi
  for kind in mcgsm ride; do
    [ -f "$RUNS/eval_${kind}_nb$n.json" ] || ride eval --checkpoint "$MODELS/${kind}_nb$n.pt" --data deadleaves \
      --split test --protocol tiles64 --json --no-progress > "$RUNS/eval_${kind}_nb$n.json"
  done
done
python experiments/deadleaves_nbsize.py "$RUNS" --out-table experiments/deadleaves_nbsize.md \
  --out-plot experiments/deadleaves_nbsize.png
