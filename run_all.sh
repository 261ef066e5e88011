#!/usr/bin/env bash
# The main job: bootstraps .venv, runs every experiment over 5 seeds, then makes the tables,
# figures and report (results/tables, results/figures, results/REPORT.md) of the runs it was asked
# for (its --only, --seeds and --models go to make_tables too).
#   ./run_all.sh                      profile quick on a machine without a GPU, paper with one
#   ./run_all.sh --profile paper      the published setting on every visible GPU
#   ./run_all.sh --only core --seeds 2 --jobs 2 ...   any option of python -m benchmarks.run
# Data: --data-dir DIR or $VAEBENCH_DATA_DIR (default ./data; missing files are downloaded).
# Your corpus: --datasets DIR [--corpus-like yahoo|yelp] runs the experiments on it (docs/your-corpus.md).
# Before the first run it prints the plan, its estimated wall time on this machine and how to cut it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/scripts/bootstrap.sh"

for arg in "$@"; do  # a dry run prints the plan and its estimate: nothing to tabulate
  [ "$arg" = --dry-run ] && exec python -m benchmarks.run "$@"
done

results=results
tables=()  # the options that say which runs the tables are made of
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  [ "${args[$i]}" = --results ] && results="${args[$((i + 1))]}"
  case "${args[$i]}" in --results=*) results="${args[$i]#--results=}" ;; esac
  case "${args[$i]}" in  # what was asked, so that the report counts those runs (make_tables takes them alike)
    --profile|--datasets|--corpus-like|--only|--seeds|--models) tables+=("${args[$i]}" "${args[$((i + 1))]:-}") ;;
    --profile=*|--datasets=*|--corpus-like=*|--only=*|--seeds=*|--models=*) tables+=("${args[$i]}") ;;
  esac
done

start=$(date +%s)
status=0
python -m benchmarks.run "$@" || status=$?
[ "$status" -eq 2 ] && exit 2  # bad input: the runner said why
[ "$status" -ge 128 ] && exit "$status"  # interrupted: the same command goes on from here
python -m benchmarks.summarize --results "$results" || true
python analysis/make_tables.py --results "$results" ${tables[@]+"${tables[@]}"} || status=$?
echo "wall time: $(( $(date +%s) - start )) s"
exit "$status"
