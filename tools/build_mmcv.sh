#!/usr/bin/env bash
# Build mmcv 2.1.0 (with compiled ops) for the pinned torch and install mmdet 3.3.0 into a venv.
# mmdet 3.3 accepts mmcv >=2.0.0rc4,<2.2.0 and PyPI has no mmcv 2.1 wheel for torch 2.14, so we build it
# from its sdist once per machine and keep the wheel in a cache (ZOO_WHEEL_CACHE, ~/.cache/zoo/wheels).
# Usage: tools/build_mmcv.sh [VENV]   (default .venv; about 8 minutes on an idle 2-core machine)
set -euo pipefail
VENV=${1:-.venv}
PY="$(cd "$VENV" && pwd)/bin/python"
CACHE=${ZOO_WHEEL_CACHE:-$HOME/.cache/zoo/wheels}
MMCV_VERSION=2.1.0
TORCH_TAG=$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')
mkdir -p "$CACHE"

# mmcv 2.1's setup.py builds only with setuptools < 70; put back a version torch accepts (>= 77) that
# still ships pkg_resources (removed in 81), which mmengine imports, once the wheel is built.
"$PY" -m pip install --quiet "setuptools<70" wheel ninja "mmengine>=0.10,<0.11"
trap '"$PY" -m pip install --quiet "setuptools>=77,<81"' EXIT

WHEEL_DIR="$CACHE/mmcv-$MMCV_VERSION-torch$TORCH_TAG"
if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
    WORK=$(mktemp -d)
    trap 'rm -rf "$WORK"; "$PY" -m pip install --quiet "setuptools>=77,<81"' EXIT
    "$PY" -m pip download --quiet --no-deps --no-binary :all: -d "$WORK" "mmcv==$MMCV_VERSION"
    tar -xzf "$WORK"/mmcv-$MMCV_VERSION.tar.gz -C "$WORK"
    SRC="$WORK/mmcv-$MMCV_VERSION"
    # torch >= 2.6 headers use C++20 features; mmcv's setup.py hard-codes -std=c++14/17.
    sed -i -e 's/-std=c++14/-std=c++20/g' -e 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
    (cd "$SRC" && MMCV_WITH_OPS=1 FORCE_CUDA=0 CFLAGS="-g0" CXXFLAGS="-g0" MAX_JOBS=${MAX_JOBS:-2} \
        "$PY" -m pip wheel --no-build-isolation --no-deps -w "$WORK/dist" . )
    mkdir -p "$WHEEL_DIR"
    mv "$WORK"/dist/mmcv-*.whl "$WHEEL_DIR"/
fi
"$PY" -m pip install --quiet --no-deps "$WHEEL_DIR"/mmcv-*.whl
"$PY" -m pip install --quiet addict yapf "mmdet==3.3.0"
"$PY" -m pip install --quiet "setuptools>=77,<81"
"$PY" -c 'import mmcv, mmcv.ops, mmdet; print("mmcv", mmcv.__version__, "mmdet", mmdet.__version__)'
