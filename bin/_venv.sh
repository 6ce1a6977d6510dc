# Sourced by bin/demo and bin/test: make .venv if missing and install the package into it.
# torch==2.13.0 first when no torch is present: that pin takes the CPU build on disk, while the package's
# own torch range (kept open for GPU users) would otherwise pull a multi-GB CUDA build.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
EXTRAS=${1:-}
if [ ! -x "$VENV/bin/python" ]; then
  echo "autopilot: creating $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  echo "autopilot: installing torch==2.13.0 (CPU build)"
  "${PIP[@]}" torch==2.13.0
fi
stamp="$VENV/.autopilot-installed${EXTRAS:+-$EXTRAS}"
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
  echo "autopilot: installing the package${EXTRAS:+ with [$EXTRAS]}"
  "${PIP[@]}" -e "$ROOT${EXTRAS:+[$EXTRAS]}"
  touch "$stamp"
fi
export PATH="$VENV/bin:$PATH"
