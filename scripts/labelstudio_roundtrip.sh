#!/usr/bin/env bash
# The Label Studio round trip of docs/DATA.md, once, against a real Label Studio:
#   1. label-studio in its OWN venv ($LS_VENV, default /tmp/ls-venv; created and pip-installed if missing),
#      never the project's;
#   2. started on 127.0.0.1 with everything that phones home off (Sentry, analytics / telemetry, version check);
#   3. scripts/labelstudio_roundtrip.py (the project's Python): project with our labeling config, task file
#      imported through the API, predictions copied into annotations, both exported back, masks compared.
# Usage: scripts/labelstudio_roundtrip.sh [OUTPUT_DIR]   (default output/labelstudio_roundtrip)
set -euo pipefail
cd "$(dirname "$0")/.."
LS_VENV=${LS_VENV:-/tmp/ls-venv}
LS_VERSION=${LS_VERSION:-1.23.2}
PY=${PY:-.venv/bin/python}
OUT=${1:-output/labelstudio_roundtrip}
PORT=${PORT:-8089}
TOKEN=wssisd2roundtrip0123456789
mkdir -p "$OUT"
if [ ! -x "$LS_VENV/bin/label-studio" ]; then
  python3 -m venv "$LS_VENV"
  nice -n 10 "$LS_VENV/bin/pip" install --quiet "label-studio==$LS_VERSION"
fi
export LABEL_STUDIO_BASE_DATA_DIR="$OUT/ls-data" SENTRY_DSN="" FRONTEND_SENTRY_DSN="" COLLECT_ANALYTICS=false \
  LATEST_VERSION_CHECK=false LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true \
  LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT="$(cd "$OUT" && pwd)"
nice -n 10 "$LS_VENV/bin/label-studio" start --no-browser --internal-host 127.0.0.1 --port "$PORT" \
  --username roundtrip@localhost --password roundtrip-local-only --user-token "$TOKEN" --enable-legacy-api-token \
  > "$OUT/label-studio.log" 2>&1 &
LS_PID=$!
trap 'kill $LS_PID 2>/dev/null || true; wait $LS_PID 2>/dev/null || true' EXIT
nice -n 10 "$PY" scripts/labelstudio_roundtrip.py --url "http://127.0.0.1:$PORT" --token "$TOKEN" --output "$OUT" \
  --ls-version "$("$LS_VENV/bin/python" -c 'import label_studio; print(label_studio.__version__)')"
