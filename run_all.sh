#!/usr/bin/env bash
# The main job: bootstraps .venv, trains the core experiment, prints the summary.
#   ./run_all.sh [--profile quick|paper|smoke] [--seeds N] [any benchmarks.train option, e.g. --data-dir DIR]
# Core experiment (issue 2): LSTM-LM, VAE and Scale-VAE(0.7, 1) on Yahoo
# (yahoo_small at CPU scale, the full yahoo set with --profile paper).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/scripts/bootstrap.sh"

profile=quick seeds=2 results=results extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    --seeds) seeds="$2"; shift 2 ;;
    --results) results="$2"; shift 2 ;;
    *) extra+=("$1"); shift ;;
  esac
done
dataset=yahoo_small
[ "$profile" = paper ] && dataset=yahoo

start=$(date +%s)
for seed in $(seq 0 $((seeds - 1))); do
  for model in lstm_lm vae scale_vae; do
    set=()
    [ "$model" = scale_vae ] && set=(--set des_std=0.7 f_epo=1)
    python -m benchmarks.train --model "$model" --dataset "$dataset" --profile "$profile" --seed "$seed" \
      --results "$results" "${set[@]}" "${extra[@]}"
  done
done
python -m benchmarks.summarize --results "$results"
echo "wall time: $(( $(date +%s) - start )) s"
