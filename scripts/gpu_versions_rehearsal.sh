#!/usr/bin/env bash
# Rehearse the GPU work list under the GPU machine's own versions, on this CPU.
#
# The lent GPU machine runs the project from the working tree under its own Python and
# packages (Python 3.12, torch 2.11.0, torchvision 0.26.0, timm, pandas, seaborn; no
# torchinfo, no ipywidgets), not under this project's pins. tests/test_gpu_jobs.py rehearses
# the list under the development pins; this script does it under those versions, so that a
# version mismatch costs CPU minutes here, not GPU minutes there:
#   1. a virtual environment of Python 3.12 with only what the GPU machine has (made once,
#      kept in $VENV; PyTorch's CUDA build from PyPI, a few GB);
#   2. `benchmarks/gpu_jobs.py next --rehearse` over every item, from this working tree, with
#      the CIFAR archive and the Lite0 checkpoint in a carried folder as on the GPU machine;
#   3. with --compile, also one torch.compile of the three B0s (the rehearsal skips it: minutes
#      on a CPU).
#
# Usage: scripts/gpu_versions_rehearsal.sh [--compile]
# Environment: VENV (default /tmp/effnet-lab-gpu-versions), WORK (default a new temporary folder),
#   PYTHON312 (default python3.12), CIFAR (default ../shared/data/cifar10-jpeg.tar.gz).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-/tmp/effnet-lab-gpu-versions}
work=${WORK:-$(mktemp -d /tmp/gpu-rehearsal.XXXXXX)}
cifar=${CIFAR:-$repo/../shared/data/cifar10-jpeg.tar.gz}
compile=0
for arg in "$@"; do
    case "$arg" in
        --compile) compile=1 ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "unknown option $arg (see --help)" >&2; exit 2 ;;
    esac
done
[ -f "$cifar" ] || { echo "no CIFAR-10 archive at $cifar (set CIFAR)" >&2; exit 2; }

if [ ! -x "$venv/bin/python" ]; then
    "${PYTHON312:-python3.12}" -m venv "$venv"
    # The GPU machine's versions (device tool, KINDS.md); timm, pandas, seaborn as released.
    "$venv/bin/pip" install -q torch==2.11.0 torchvision==0.26.0 timm pandas seaborn matplotlib tqdm pillow
fi
"$venv/bin/python" -c "import torch, torchvision, timm, sys; print('python', sys.version.split()[0], '| torch', torch.__version__, '| torchvision', torchvision.__version__, '| timm', timm.__version__)"

# The Lite0 checkpoint comes from the development environment's pretrained extra.
lite0=$("$repo/.venv/bin/python" -c 'from effnet_lab.pretrained import lite0_checkpoint_path as p; print(p())')
mkdir -p "$work/carried"
ln -sf "$(realpath "$cifar")" "$work/carried/cifar10-jpeg.tar.gz"
ln -sf "$lite0" "$work/carried/efficientnet-lite0-57934424.pth"

cd "$work"
start=$(date +%s)
env -u EFFNET_LAB_DATA PYTHONPATH="$repo" OMP_NUM_THREADS=1 EFFNET_LAB_RESULTS="$work/runs" EFFNET_LAB_CACHE="$work/cache" \
    "$venv/bin/python" "$repo/benchmarks/gpu_jobs.py" next --rehearse --minutes 15 \
    --results "$work/results" --out "$work/OUT" --files "$work/carried"
seconds=$(( $(date +%s) - start ))
if "$venv/bin/python" "$repo/benchmarks/gpu_jobs.py" status --rehearse --results "$work/results" | grep -v '^done'; then
    echo "rehearsal: the items above are not done ($work/OUT/gpu_jobs.log)" >&2
    exit 1
fi
echo "rehearsal: every item done in $seconds s ($work)"

if [ "$compile" = 1 ]; then
    start=$(date +%s)
    PYTHONPATH="$repo" "$venv/bin/python" "$repo/benchmarks/throughput.py" --config cifar --compile --device cpu \
        --rounds 1 --steps 1 --warmup 1 --batch-size 4
    echo "torch.compile of the three B0s: $(( $(date +%s) - start )) s"
fi
