#!/usr/bin/env bash
# One run on a GPU machine (H100/H200), under 6 minutes: CUDA correctness checks, then the issue 6
# table (reference vs fast path side by side, peak memory, batched jobs, API end to end, the
# worker's batching through the API).
#
#   benchmarks/fetch_wheels.sh            # here, once: wheels the GPU image lacks, into .whl/
#   run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=400)   # device tool
#   benchmarks/gpu_check.sh --device cpu --quick     # rehearsal of every step on a CPU machine
#
# Results: at most 7 files (6 JSON and gpu_check.log) in $OUT (the device tool's output folder,
# which returns at most 8), or in benchmarks/results/ when OUT is unset.
# Exit status: 0 when every check passed; 1 when a correctness check, a required part or a case
# failed, was skipped or was cut off (what was measured is written all the same); 2: bad arguments.
set -uo pipefail
cd "$(dirname "$0")/.."

device=cuda
quick=0
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device="$2"; shift 2 ;;
    --quick) quick=1; shift ;;
    *) echo "usage: $0 [--device cuda|cpu] [--quick]" >&2; exit 2 ;;
  esac
done

total=330  # seconds for the whole script: the issue asks for under 6 minutes
out="${OUT:-benchmarks/results}"
mkdir -p "$out"
exec > >(tee "$out/gpu_check.log") 2>&1
tee_pid=$!
# Let tee write the last lines before the script ends (the device tool keeps what is in $OUT).
finish() {
  local rc=$?
  exec >&- 2>&-
  wait "$tee_pid" 2>/dev/null
  exit $rc
}
trap finish EXIT
export PYTHONUNBUFFERED=1
started=$(date +%s)
failures=()

step() { echo; echo "=== $1 ($(( $(date +%s) - started )) s)"; }
# Run a step under a time limit; a failed or timed-out step is recorded and the script goes on.
checked() {
  local name="$1" limit="$2"; shift 2
  timeout --signal=INT --kill-after=10 "$limit" "$@"
  local rc=$?
  if [ $rc -ne 0 ]; then failures+=("$name (exit $rc)"); echo "--- $name failed: exit $rc"; fi
}

step "packages"
if ! python3 -c "import open_clip, kornia, pydantic_settings, typer, fastapi, huey" 2>/dev/null; then
  if ls .whl/*.whl >/dev/null 2>&1; then
    # The image's torch/torchvision/timm/numpy stay; only what it lacks comes from .whl.
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl || { echo "wheel install failed"; exit 1; }
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
  else
    echo "missing packages and no .whl/: run benchmarks/fetch_wheels.sh here and carry .whl"
    exit 1
  fi
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
python3 - "$device" <<'EOF' || exit 1
import sys

import importlib

import torch

# Everything the suite touches, imported now so a missing package fails here, named, not later.
for module in ("artgen.cli", "artgen.bench", "artgen.engine.generate", "artgen.engine.batch",
               "artgen.models.loading", "artgen.api.app", "artgen.jobs.worker",
               "artgen.jobs.hosting", "artgen.jobs.job_run", "fastapi.testclient"):
    importlib.import_module(module)

device = sys.argv[1]
print("torch", torch.__version__, "cuda", torch.version.cuda)
if device.startswith("cuda"):
    if not torch.cuda.is_available():
        sys.exit("CUDA is not available")
    props = torch.cuda.get_device_properties(0)
    print(props.name, f"{props.total_memory / 2**30:.0f} GiB,", props.multi_processor_count, "SMs")
EOF
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total \
  --format=csv,noheader

step "GPU tests (pytest -m gpu)"
# Only the files that carry the marker: collecting the rest would import browser-test packages.
gpu_tests=$(grep -rl --include='*.py' "mark.gpu" tests || true)
if [ "$device" = cpu ]; then
  echo "skipped on $device"
elif [ -z "$gpu_tests" ]; then
  echo "no test carries the gpu marker"
else
  # shellcheck disable=SC2086
  timeout --kill-after=10 75 python3 -m pytest -m gpu -q -p no:cacheprovider $gpu_tests
  rc=$?
  if [ $rc -ne 0 ]; then failures+=("pytest -m gpu (exit $rc)"); fi
fi

step "agreement, engine table, peak memory, batched jobs, API end to end"
quick_flag=()
[ "$quick" = 1 ] && quick_flag=(--quick)
# The suite starts no part after --budget seconds and cuts a running one off at --hard-limit
# (then writes its summary); timeout is the backstop should Python itself hang.
elapsed=$(( $(date +%s) - started ))
checked suite $(( total - elapsed )) python3 benchmarks/gpu_suite.py --device "$device" \
  "${quick_flag[@]}" --output-dir "$out" --budget $(( total - 60 - elapsed )) \
  --hard-limit $(( total - 20 - elapsed ))

echo "total $(( $(date +%s) - started )) s"
if [ ${#failures[@]} -gt 0 ]; then
  printf 'FAILED: %s\n' "${failures[@]}"
  exit 1
fi
echo "all checks passed"
