#!/usr/bin/env bash
# The GPU path, checked on one GPU in at most about 8 minutes, with no network:
#   scripts/device_check.sh OUTDIR [--ladder]
# Needs a CUDA build of torch (requirements.txt's version) and the data of yahoo_small
# ($VAEBENCH_DATA_DIR with yahoo_data/yahoo.valid.txt and yahoo.test.txt: docs/data.md).
# Writes everything to OUTDIR: the CUDA-marked tests, what a bfloat16 LSTM step really computes in,
# memory and time per training step at paper sizes (VAE, Scale-VAE, BN-VAE, SA-VAE, Agg-VAE at
# lengths 80 and 200, as rows for benchmarks/memory.csv), the runner on `smoke` with 2 runs per
# GPU, and `benchmarks.perf --profile paper --device cuda`. Each part has its own time limit; a
# part that runs out leaves its log (and the runs' histories) and the next part goes on.
# --ladder adds the ladder study's top rung at paper sizes for the time that is left (docs/ladder.md).
set -uo pipefail
out="${1:?usage: scripts/device_check.sh OUTDIR [--ladder]}"
ladder="${2:-}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
python="${PYTHON_BIN:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"
export PYTHONUNBUFFERED=1 VAEBENCH_CACHE_DIR="${VAEBENCH_CACHE_DIR:-$out/cache}"
started=$(date +%s)

part() {  # part NAME SECONDS COMMAND...: run one part with a time limit, its output in OUTDIR/NAME.log
  local name=$1 limit=$2; shift 2
  echo "== $name (limit ${limit} s)"
  local t0=$(date +%s)
  timeout --signal=INT --kill-after=20 "$limit" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  echo "$name: exit $rc after $(( $(date +%s) - t0 )) s" | tee -a "$out/summary.txt"
  tail -n 5 "$out/$name.log"
}

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi: none"
  "$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(), "gpus", torch.cuda.device_count())'
} > "$out/summary.txt" 2>&1
cat "$out/summary.txt"

part tests 150 "$python" -m pytest -q -rs tests/test_device_precision.py tests/test_machine_faults.py tests/test_scheduler.py
part bf16_lstm 30 "$python" -m benchmarks.devices --report "$out/bf16_lstm.json"
part memory 150 "$python" -m benchmarks.memory --device cuda --profile paper --lengths 80,200 --out "$out/memory.csv"
part runner_smoke 90 "$python" -m benchmarks.run --profile smoke --only core --seeds 2 --runs-per-device 2 \
  --results "$out/smoke" --offline
part perf 120 "$python" -m benchmarks.perf --profile paper --device cuda --json "$out/perf.json"
if [ "$ladder" = "--ladder" ]; then
  left=$(( 480 - ($(date +%s) - started) ))
  [ "$left" -gt 60 ] && part ladder_paper "$left" "$python" -m benchmarks.run --profile paper --only ladder \
    --seeds 1 --runs-per-device 5 --results "$out/ladder" --offline
fi
# the histories of every run, finished or cut short, beside the logs (OUTDIR/histories/RUN.csv)
mkdir -p "$out/histories"
for f in "$out"/*/runs/*/history.csv "$out"/*/runs/.partial/*/history.csv; do
  [ -f "$f" ] && cp "$f" "$out/histories/$(basename "$(dirname "$f")").csv"
done
echo "total: $(( $(date +%s) - started )) s" | tee -a "$out/summary.txt"
