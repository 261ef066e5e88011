# Sourced by run_all.sh and run_tests.sh: create .venv if missing and install the
# pinned requirements whenever requirements.txt changed. Needs Python >= 3.11
# (set PYTHON=/path/to/python3.11 to choose one).
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "error: Python >= 3.11 is needed; set PYTHON=/path/to/python3.11" >&2
    exit 2
  fi
  "$python" -m venv "$venv" || { echo "error: could not create $venv (install python3-venv)" >&2; exit 2; }
fi
stamp="$venv/.requirements.sha256"
wanted="$(sha256sum "$root/requirements.txt" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "installing the pinned requirements into .venv ..."
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$root/requirements.txt" \
    || { echo "error: pip could not install requirements.txt (see above)" >&2; exit 2; }
  echo "$wanted" > "$stamp"
fi
export PATH="$venv/bin:$PATH"
cd "$root"
