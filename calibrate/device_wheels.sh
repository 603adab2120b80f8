#!/usr/bin/env bash
# Wheels of the packages simfactory needs that a GPU image without a package registry may lack (checked against
# the lent H200 image's package list, 2026-11: it has torch, transformers, nvidia-ml-py, numpy, pandas, scipy,
# pyyaml, typer, rich, httpx, pyarrow, matplotlib; not these). Run it where pip reaches PyPI; it fills .whl/
# (git-ignored), which travels with the tree and which calibrate/gpu_run.sh installs with --no-index.
#
#   bash calibrate/device_wheels.sh            # for CPython 3.12 on x86-64 Linux (the lent machine's python3)
#   PYV=3.11 bash calibrate/device_wheels.sh   # another Python
set -euo pipefail
cd "$(dirname "$0")/.."
PYV="${PYV:-3.12}"
DEST="${DEST:-.whl}"
# the versions this project's CI runs with; pure-Python except pydantic-core
PKGS=(simpy==4.1.2 pydantic==2.13.4 pydantic-core==2.46.4 annotated-types==0.7.0 typing-inspection==0.4.2
      openpyxl==3.1.5 et-xmlfile==2.0.0)
mkdir -p "$DEST"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYV" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$DEST" "${PKGS[@]}"
ls -1 "$DEST"
du -sh "$DEST"
