#!/usr/bin/env bash
# Download the wheels that benchmarks/gpu_check.sh needs on a GPU machine into .whl/ (gitignored).
# The GPU image already has torch, torchvision, timm, numpy, pillow, pyyaml, httpx, pytest; these
# are the project's other dependencies, pinned to the versions installed here, for CPython 3.12.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  open_clip_torch ftfy wcwidth kornia kornia_rs
  pydantic pydantic_core pydantic-settings annotated-types typing-inspection typing_extensions
  python-dotenv typer click shellingham annotated-doc rich
  fastapi starlette opentelemetry-api python-multipart huey redis prometheus-fastapi-instrumentator
)
pins=()
for name in "${packages[@]}"; do
  version=$(python3 -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p')
  if [ -z "$version" ]; then
    echo "fetch_wheels: $name is not installed here; install the project first" >&2
    exit 1
  fi
  pins+=("$name==$version")
done

# The GPU image's python3 is CPython 3.12 (.library/device/KINDS.md), whatever runs here. A fresh
# folder each time: two versions of one package in .whl/ would stop the whole install there.
fresh=$(mktemp -d)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d "$fresh" "${pins[@]}"
rm -rf .whl
chmod 755 "$fresh"  # mktemp -d makes it private
mv "$fresh" .whl
ls -la .whl
du -sh .whl
