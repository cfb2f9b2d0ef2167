#!/usr/bin/env bash
# The GPU check on a GPU node, from the repository root, in under 10 minutes (benchmarks/GPU.md):
#
#   bash benchmarks/gpu_check.sh RESULTS_DIR [OPTIONS OF benchmarks.gpu]
#
# Installs the wheels carried in .whl/ (if any) into a folder of their own, then runs
# `python -m benchmarks.gpu` with a time limit. RESULTS_DIR receives gpu.json and gpu.md (saved as each
# check finishes, so a run cut short keeps what it measured), log.txt and environment.txt.
# PYTHON picks the interpreter (default python3), WHEELS the wheel folder (default .whl), LIMIT_S the time
# limit in seconds (default 540).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: bash benchmarks/gpu_check.sh RESULTS_DIR [OPTIONS OF benchmarks.gpu]}
shift
PYTHON=${PYTHON:-python3}
WHEELS=${WHEELS:-.whl}
LIMIT_S=${LIMIT_S:-540}
mkdir -p "$OUT"

if compgen -G "$WHEELS/*.whl" >/dev/null; then
  SITE=$(mktemp -d /tmp/hpo-gpu-site.XXXXXX)
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "$WHEELS"/*.whl || exit 1
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  "$PYTHON" -c 'import sys, torch, transformers; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__)'
} >"$OUT/environment.txt" 2>&1

export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HPO_CACHE=${HPO_CACHE:-/tmp/hpo-cache}
# SIGINT first: Python stops where it is; what the finished checks wrote stays in RESULTS_DIR.
timeout --signal=INT --kill-after=30 "$LIMIT_S" "$PYTHON" -m benchmarks.gpu --out "$OUT" "$@" 2>&1 | tee "$OUT/log.txt"
rc=${PIPESTATUS[0]}
[ "$rc" -eq 124 ] && echo "the GPU check ran past ${LIMIT_S}s and was stopped; $OUT holds the checks that finished" | tee -a "$OUT/log.txt"
exit "$rc"
