#!/usr/bin/env bash
# The GPU check of neuroprobe (docs/gpu.md): on a machine with an NVIDIA GPU, in under 10 minutes,
#   1. the GPU tests: tests/test_devices.py (every run kind on device = "cuda" against the CPU run)
#      and the CUDA-only tests of the other test files (those named *cuda*);
#   2. the throughput table: benchmarks/gpu_throughput.py --device cuda -> benchmarks/gpu_results.md.
#
#   benchmarks/gpu_check.sh              # from the repository root (or anywhere: it cds there)
#   benchmarks/gpu_check.sh --dry-run    # print the plan, run nothing (tests/test_devices.py checks it)
#
# Environment (all optional):
#   PY=/path/to/python   an environment that already has neuroprobe and a CUDA torch (no install)
#   VENV=.venv-gpu       the virtual environment made with `make venv` (default: .venv when its torch
#                        sees a GPU, else .venv-gpu, so a CPU-only .venv is left alone)
#   TORCH_SPEC=...       the CUDA torch wheel `make venv` installs (default below: torch 2.13.0 for
#                        CUDA 12.8 from the PyTorch index; e.g. .../whl/cu126 for older drivers)
#   TEST_TIMEOUT=240 BENCH_TIMEOUT=240   seconds allowed to each phase (the whole check < 10 min)
#   OUT=benchmarks/gpu_results.md        where the throughput table is written
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128}"
TEST_TIMEOUT="${TEST_TIMEOUT:-240}"
BENCH_TIMEOUT="${BENCH_TIMEOUT:-240}"
OUT="${OUT:-benchmarks/gpu_results.md}"
DRY=0
[[ "${1:-}" == "--dry-run" ]] && DRY=1

# test files with tests that run only where CUDA is (skipped elsewhere); test_devices.py runs whole
mapfile -t CUDA_FILES < <(grep -lE 'not torch\.cuda\.is_available\(\)|"cuda" not in DEVICES' tests/test_*.py \
                          | grep -v '^tests/test_devices.py$' || true)
TESTS=(-m pytest -q tests/test_devices.py)
OTHER=(-m pytest -q -k cuda "${CUDA_FILES[@]}")
BENCH=(benchmarks/gpu_throughput.py --device cuda --out "$OUT")

if (( DRY )); then
  echo "venv:   make venv VENV=${VENV:-<.venv or .venv-gpu>} TORCH_SPEC=\"$TORCH_SPEC\" (unless PY is set)"
  echo "tests:  timeout $TEST_TIMEOUT python ${TESTS[*]}"
  echo "tests:  timeout $TEST_TIMEOUT python ${OTHER[*]}"
  echo "bench:  timeout $BENCH_TIMEOUT python ${BENCH[*]}"
  exit 0
fi

start=$SECONDS
say() { printf '[gpu_check %3ds] %s\n' $((SECONDS - start)) "$*"; }

if ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "gpu_check: no NVIDIA driver here (nvidia-smi not found); this check needs a GPU machine" >&2
  exit 1
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | sed 's/^/[gpu_check] GPU: /'

sees_gpu() { "$1" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; }
if [[ -z "${PY:-}" ]]; then
  if [[ -z "${VENV:-}" ]]; then
    if [[ -x .venv/bin/python ]] && sees_gpu .venv/bin/python; then VENV=.venv; else VENV=.venv-gpu; fi
  fi
  say "environment $VENV (make venv, TORCH_SPEC=\"$TORCH_SPEC\")"
  make venv VENV="$VENV" TORCH_SPEC="$TORCH_SPEC"
  PY="$VENV/bin/python"
fi
if ! sees_gpu "$PY"; then
  echo "gpu_check: $("$PY" -c 'import torch; print("torch", torch.__version__)') in $PY does not see the GPU;" \
       "install a CUDA build (TORCH_SPEC, or a fresh VENV=.venv-gpu) matching the driver" >&2
  exit 1
fi
"$PY" -c 'import torch; print("[gpu_check] torch", torch.__version__, "CUDA", torch.version.cuda, "on",
                               torch.cuda.get_device_name(0))'

status=0
say "GPU tests: tests/test_devices.py"
timeout "$TEST_TIMEOUT" "$PY" "${TESTS[@]}" || status=1
if (( ${#CUDA_FILES[@]} )); then
  say "GPU tests: the CUDA tests of ${CUDA_FILES[*]}"
  timeout "$TEST_TIMEOUT" "$PY" "${OTHER[@]}" || status=1
fi
say "throughput table (benchmarks/gpu_throughput.py --device cuda)"
timeout "$BENCH_TIMEOUT" "$PY" "${BENCH[@]}" || status=1
say "done: the throughput table is in $OUT$( (( status )) && echo '; SOME STEPS FAILED (see above)')"
exit $status
