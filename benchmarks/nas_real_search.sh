#!/usr/bin/env bash
# A MnasNet-style search with REAL child training (not the proxy): issue 8, item 5.
#
# The LSTM controller and random search take turns, the same budget of samples each; every
# child is trained briefly on 1,000 CIFAR-10 training images per class and scored on 500
# other training images per class (the test set is never used by the search). No new child
# starts after LIMIT seconds (default 420), so one run fits in 8 minutes on one GPU with
# time to spare for start-up and figures; rerun the same command to continue where it
# stopped (nothing is trained twice). The logs, figures and a README with provenance go to
# OUT (default results/nas/cifar10-train-seed0).
#
#   bash benchmarks/nas_real_search.sh                       # on the GPU machine
#   bash benchmarks/nas_real_search.sh --data PATH/TO/cifar10-jpeg.tar.gz
#   STEPS=2 LIMIT=300 OUT=runs/nas/tiny bash benchmarks/nas_real_search.sh --quick   # CPU smoke test
#
# Extra arguments go to `python -m effnet_lab nas` (see its --help).
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS="${STEPS:-60}"
LIMIT="${LIMIT:-420}"
OUT="${OUT:-results/nas/cifar10-train-seed0}"
PYTHON="${PYTHON:-python}"
exec "$PYTHON" -m effnet_lab nas --policy both --evaluator train --seed 0 \
    --steps "$STEPS" --time-limit "$LIMIT" --out "$OUT" "$@"
