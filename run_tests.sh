#!/usr/bin/env bash
# The test suite: bootstraps .venv, then runs pytest (extra arguments go to pytest).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/scripts/bootstrap.sh"
exec python -m pytest -q "$@"
