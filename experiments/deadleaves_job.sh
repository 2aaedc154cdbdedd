#!/usr/bin/env bash
# One job of experiments/deadleaves_nbsize.sh:  deadleaves_job.sh RUNS mcgsm N | ride N SEED | cont|cont2 .. cont9 N SEED | eval NAME
# (NAME: a model of models/deadleaves without .pt, e.g. ride_nb5_seed1).
# Each job skips work whose output exists and resumes a stopped one, so the driver can simply be run again.
set -euo pipefail
RUNS=$1; kind=$2; n=$3; seed=${4:-0}
case "$kind" in
  mcgsm)  # fitted to convergence: L-BFGS until 5 validations in a row (every 20 iterations) bring no gain
    [ -f "$RUNS/mcgsm_nb$n.done" ] && exit 0
    ride fit-mcgsm --data deadleaves --out "$RUNS/mcgsm_nb$n.pt" --nb-size "$n" --components 32 --scales 4 \
      --features 32 --pairs 200000 --val-pairs 50000 --max-iter 5000 --val-every 20 --patience 5 \
      --max-seconds 1500 --seed 0 --resume > "$RUNS/mcgsm_nb$n.log" 2>&1
    touch "$RUNS/mcgsm_nb$n.done" ;;
  ride)
    dir="$RUNS/ride_nb${n}_s$seed"
    [ -f "$dir/done" ] && exit 0
    # a run left for later (e.g. at the end of a session): `touch $RUNS/skip_ride_nb7_s1`; remove it to run it
    if [ -f "$RUNS/skip_ride_nb${n}_s$seed" ]; then echo "skipping ride nb $n seed $seed (skip file)" >&2; exit 0; fi
    if [ -f "$dir/state.pt" ]; then
      ride train --out "$dir" --resume > "$RUNS/ride_nb${n}_s$seed.log" 2>&1
    else
      ride train --config experiments/deadleaves_ride.toml --nb-size "$n" --seed "$seed" --out "$dir" \
        > "$RUNS/ride_nb${n}_s$seed.log" 2>&1
    fi
    touch "$dir/done" ;;
  cont|cont[2-9])  # the `ride` run continued until a stage no longer improves validation: `cont` starts
    # from the first run (experiments/deadleaves_ride_cont.toml), `cont2` from `cont`
    # (experiments/deadleaves_ride_cont2.toml), and each of `cont3` .. `cont9` from the one before with the same
    # config (a run that had stopped on its rule stops again after one stage in cont3; cont4 on do not continue it)
    first="$RUNS/ride_nb${n}_s$seed"
    case "$kind" in
      cont) prev=$first; config=experiments/deadleaves_ride_cont.toml ;;
      cont2) prev=${first}_cont; config=experiments/deadleaves_ride_cont2.toml ;;
      *) prev=${first}_cont$(( ${kind#cont} - 1 )); config=experiments/deadleaves_ride_cont2.toml ;;
    esac
    dir="${first}_$kind"
    [ -f "$dir/done" ] && exit 0
    if [ -f "$RUNS/skip_ride_nb${n}_s${seed}_$kind" ]; then
      echo "skipping $kind nb $n seed $seed (skip file)" >&2; exit 0
    fi
    if [ ! -f "$prev/done" ]; then echo "no finished run $prev to continue" >&2; exit 0; fi
    # from cont4 on, a run that has stopped on its rule stays stopped (cont2 and cont3 were run for every run, a
    # stopped one getting one more stage; the committed models are those)
    case "$kind" in
      cont[4-9]) if python experiments/deadleaves_nbsize.py stopped "$prev/model.pt"; then
        echo "$prev stopped on its rule: not continued" >&2; exit 0
      fi ;;
    esac
    if [ -f "$dir/state.pt" ]; then
      ride train --out "$dir" --resume > "$RUNS/ride_nb${n}_s${seed}_$kind.log" 2>&1
    else
      ride train --config "$config" --init "$prev/model.pt" --seed "$seed" \
        --out "$dir" > "$RUNS/ride_nb${n}_s${seed}_$kind.log" 2>&1
    fi
    touch "$dir/done" ;;
  eval)  # tiles64 on the 100 test images, run only after the models were chosen on validation
    out=$RUNS/eval_$3.json
    # an evaluation older than its model (a continuation or a new selection replaced it) is run again
    [ -f "$out" ] && [ "$out" -nt "models/deadleaves/$3.pt" ] && exit 0
    if [ ! -f "models/deadleaves/$3.pt" ]; then echo "no models/deadleaves/$3.pt to evaluate (skipped run)" >&2; exit 0; fi
    ride eval --checkpoint "models/deadleaves/$3.pt" --data deadleaves --split test --protocol tiles64 --json \
      --no-progress > "$out.tmp"
    mv "$out.tmp" "$out" ;;
  *) echo "unknown job $kind" >&2; exit 2 ;;
esac
