#!/usr/bin/env bash
# Build and install detectron2 0.6 from the PyPI sdist `pb1-detectron2==0.6` into the current Python.
#
# Why: detectron2 is not on PyPI under its own name, and that sdist ships no C++ sources, so it cannot
# be pip-installed as is (see README "Install"). We add our own placeholder `_C` module
# (scripts/d2_placeholder_C/vision.cpp), move the model-zoo configs to where its setup.py looks for them,
# build a wheel and install it. No detectron2 file is edited. The wheel is cached in $WHEEL_CACHE.
#
# Usage: PYTHON=.venv/bin/python scripts/install_detectron2.sh
set -euo pipefail
PYTHON=$(realpath -s "$(command -v "${PYTHON:-python}")")  # absolute: the build below runs in another folder
HERE=$(cd "$(dirname "$0")" && pwd)
WHEEL_CACHE=${WHEEL_CACHE:-$HERE/../.cache/wheels}
SDIST=pb1-detectron2-0.6.tar.gz
SHA256=5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29

if "$PYTHON" -c "import detectron2, detectron2._C, detectron2.modeling" 2>/dev/null; then
  echo "[install_detectron2] detectron2 already importable: nothing to do"
  exit 0
fi
mkdir -p "$WHEEL_CACHE"
wheel=$(ls "$WHEEL_CACHE"/pb1_detectron2-0.6-*.whl 2>/dev/null | head -n 1 || true)
if [ -z "$wheel" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  # --no-build-isolation: the sdist's setup.py imports torch to compute its metadata.
  "$PYTHON" -m pip download --quiet --no-deps --no-build-isolation -d "$work" pb1-detectron2==0.6
  echo "$SHA256  $work/$SDIST" | sha256sum -c --quiet -
  tar -xzf "$work/$SDIST" -C "$work"
  src="$work/pb1-detectron2-0.6"
  mkdir -p "$src/detectron2/layers/csrc"
  cp "$HERE/d2_placeholder_C/vision.cpp" "$src/detectron2/layers/csrc/vision.cpp"
  # setup.py packages the model-zoo YAMLs from ./configs only.
  if [ -d "$src/detectron2/model_zoo/configs" ] && [ ! -e "$src/configs" ]; then
    mv "$src/detectron2/model_zoo/configs" "$src/configs"
  fi
  (cd "$src" && FORCE_CUDA=0 "$PYTHON" -m pip wheel --quiet --no-build-isolation --no-deps -w "$work/dist" .)
  tmp="$WHEEL_CACHE/.tmp-$$"
  mkdir -p "$tmp"
  cp "$work"/dist/pb1_detectron2-0.6-*.whl "$tmp/"
  mv "$tmp"/*.whl "$WHEEL_CACHE/"   # atomic within one file system
  rmdir "$tmp"
  wheel=$(ls "$WHEEL_CACHE"/pb1_detectron2-0.6-*.whl | head -n 1)
fi
# --no-deps: its dependencies are installed, with the pins it needs today, from requirements.txt.
"$PYTHON" -m pip install --quiet --no-deps --force-reinstall "$wheel"
"$PYTHON" -c "import detectron2.modeling, detectron2._C as C; print('[install_detectron2] detectron2 OK,', C.get_compiler_version())"
