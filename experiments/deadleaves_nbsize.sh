#!/usr/bin/env bash
# Dead leaves (design §9.3, issues 5 and 10): MCGSM and RIDE as a function of the neighbourhood size n (3, 5, 7, 9).
# Run from the repository root:  PARALLEL=2 bash experiments/deadleaves_nbsize.sh [runs/deadleaves]
# For each n: an MCGSM fitted to convergence (early stopping on validation pairs) and a 1-layer RIDE
# (experiments/deadleaves_ride.toml) with seeds 0 and 1, on the generator's first 810 training images (the last 90
# validate), each then continued until a stage no longer improves validation (experiments/deadleaves_ride_cont.toml,
# then experiments/deadleaves_ride_cont2.toml, twice for every run and then again, up to three more times, for the
# runs that have not stopped on their rule).
# The seed with the better validation rate becomes models/deadleaves/ride_nb{n}.pt, the other
# ride_nb{n}_seed1.pt; only then are the models evaluated (tiles64, 100 test images) and the table and plot written.
# PARALLEL jobs run at once (one torch thread each). Every job skips finished work and resumes a stopped one, so a
# stopped run is continued by running the script again.
set -euo pipefail
RUNS=${1:-runs/deadleaves}
PARALLEL=${PARALLEL:-1}
JOB="bash experiments/deadleaves_job.sh $RUNS"
mkdir -p "$RUNS" models/deadleaves
{
  for n in 3 5 7 9; do echo "ride $n 0"; echo "ride $n 1"; done
  for n in 3 5 7 9; do echo "mcgsm $n"; done
} | xargs -P "$PARALLEL" -L 1 $JOB
for kind in cont cont2 cont3 cont4 cont5 cont6; do
  for n in 3 5 7 9; do echo "$kind $n 0"; echo "$kind $n 1"; done | xargs -P "$PARALLEL" -L 1 $JOB
done
for n in 3 5 7 9; do
  cp -p "$RUNS/mcgsm_nb$n.pt" models/deadleaves/mcgsm_nb$n.pt  # -p: the fit's time, so its evaluation is kept
  cp -p "$RUNS/mcgsm_nb$n.csv" models/deadleaves/mcgsm_nb$n.csv
done
python experiments/deadleaves_nbsize.py select "$RUNS"
{
  for n in 3 5 7 9; do echo "eval mcgsm_nb$n"; echo "eval ride_nb$n"; echo "eval ride_nb${n}_seed1"; done
} | xargs -P "$PARALLEL" -L 1 $JOB
python experiments/deadleaves_nbsize.py table "$RUNS" --out-table experiments/deadleaves_nbsize.md \
  --out-plot experiments/deadleaves_nbsize.png
