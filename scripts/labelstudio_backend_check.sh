#!/usr/bin/env bash
# The Label Studio ML backend against a real Label Studio started here (scripts/labelstudio_backend_check.py,
# docs/PREDICT.md). Label Studio goes into its own environment (LS_VENV, default /tmp/ls-venv) when missing.
#   scripts/labelstudio_backend_check.sh [--work DIR] [--iters N] ...   (arguments go to the .py)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
LS_VENV=${LS_VENV:-/tmp/ls-venv}
if [ ! -x "$LS_VENV/bin/label-studio" ]; then
    python3 -m venv "$LS_VENV"
    nice -n 10 "$LS_VENV/bin/pip" install -q label-studio
fi
# the backend's server (extra `serve`; make install brings Flask and the Label Studio SDK, not waitress)
"$PYTHON" -c "import waitress" 2>/dev/null || "$PYTHON" -m pip install -q "waitress>=3"
exec nice -n 10 "$PYTHON" scripts/labelstudio_backend_check.py --label-studio "$LS_VENV/bin/label-studio" "$@"
