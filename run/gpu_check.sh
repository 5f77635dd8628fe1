#!/usr/bin/env bash
# GPU readiness in one command, offline, in a few minutes on one GPU (README "GPU check"):
#   1. data: the bundled Wikidata samples through the preprocessing stages (no download);
#   2. the tests marked `gpu` (tests/plugin/test_gpu.py): the tiny and the base-size KMLM_R (models built from the
#      configs, no pretrained weights) for a few updates in fp16 and in bf16 on one GPU, a resume from
#      checkpoint_last.pt, two processes with NCCL when two GPUs are present, an export to Hugging Face;
#   3. bench/train_step.py: the base model at length 128 (XLM-R's 250,002-symbol dictionary, 100 sequences per
#      stream as the recipe's per-GPU batch, fp16 as the GPU configs): tokens/s per GPU of the multi-stream update
#      against stock masked_lm on the same GPU and sequences (goal: <= 1.05x its step time).
# Where torch sees no CUDA GPU it says so and exits 0 without running anything.
#   bash run/gpu_check.sh
# Environment: KMLM_VENV (default .venv, made by run/install.sh with a CUDA build of torch), KMLM_GPU_CHECK_DIR (where
# the data goes; default a new temporary directory), KMLM_GPU_CHECK_PRECISION (benchmark precision, default fp16).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${KMLM_VENV:-$ROOT/.venv}"
PYTHON="$VENV/bin/python"
STARTED=$SECONDS
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

say() { printf '\n==== run/gpu_check.sh: %s\n' "$*"; }

if [[ ! -x "$PYTHON" ]]; then
    echo "run/gpu_check.sh: FAILED: $PYTHON does not exist: run bash run/install.sh (or set KMLM_VENV)" >&2
    exit 1
fi
NO_GPU="$("$PYTHON" -c '
import torch
if not torch.cuda.is_available():
    build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
    print(f"torch {torch.__version__} ({build}) sees no CUDA GPU")
')"
if [[ -n "$NO_GPU" ]]; then
    echo "run/gpu_check.sh: SKIPPED: $NO_GPU; nothing was run (the GPU tests and the GPU benchmark need one)"
    exit 0
fi
"$PYTHON" -c '
import torch
print("GPUs:", ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())),
      "| torch", torch.__version__, "CUDA", torch.version.cuda, "| bf16:", torch.cuda.is_bf16_supported())
'
WORK="${KMLM_GPU_CHECK_DIR:-$(mktemp -d -t kmlm-gpu-check-XXXXXX)}"
DATA="$WORK/DATA"
mkdir -p "$WORK"

say "1/3 data from the bundled samples -> $DATA"
if ! "$PYTHON" -c "
import sys
from tests.conftest import build_training_data
build_training_data(sys.argv[1], ('en', 'de', 'ja'))
" "$WORK" >"$WORK/data.log" 2>&1; then
    tail -n 30 "$WORK/data.log" >&2
    echo "run/gpu_check.sh: FAILED: building the data (log: $WORK/data.log)" >&2
    exit 1
fi
tail -n 2 "$WORK/data.log"

FAILED=()
say "2/3 the GPU tests (pytest -m gpu)"
KMLM_GPU_CHECK_DATA="$DATA" "$PYTHON" -m pytest -p no:cacheprovider -q -rs -m gpu tests/plugin/test_gpu.py \
    || FAILED+=("the GPU tests")

say "3/3 benchmark: base model, length 128, one GPU"
"$PYTHON" bench/train_step.py --device cuda --model base --precision "${KMLM_GPU_CHECK_PRECISION:-fp16}" \
    --data "$DATA" --vocab-size 250002 --batch-size 100 --tokens-per-sample 128 --updates 20 --rounds 3 \
    || FAILED+=("the benchmark")

if (( ${#FAILED[@]} )); then
    printf -v WHAT '%s, ' "${FAILED[@]}"
    say "FAILED: ${WHAT%, } (after $((SECONDS - STARTED)) s; data in $WORK)"
    exit 1
fi
say "done in $((SECONDS - STARTED)) s (data in $WORK)"
