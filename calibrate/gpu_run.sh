#!/usr/bin/env bash
# One prepared calibration run on a GPU machine (a lab GPU, or a short lease on a lent one): check the GPU, read
# its real peaks, measure Llama-3.1-8B with the torch backend (and vLLM where it is installed), fit, write the
# profiles, and copy everything worth keeping to $OUT, flat (at most 8 files). Each backend runs under its own
# time limit so a hung engine cannot eat the whole lease.
#
#   bash calibrate/gpu_run.sh [--quick]
#
# Environment: OUT (default ./calibration-out), PYTHON (default python3), TORCH_S and VLLM_S (time limits per
# backend; default 420 and 900 s), SIMFACTORY_GIT_SHA (the commit, for provenance, where the tree has no .git).
# A machine without a package registry: run `bash calibrate/device_wheels.sh` where pip works, carry .whl/ along;
# this script then installs those wheels with --no-index and runs simfactory from the tree (no pip install -e).
# Writes hardware_profiles/<sku>/llama-3.1-8b-<engine>-bf16-tp1.{yaml,steps.csv,power.csv}, and in $OUT those
# files, peaks.json and run.log.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-./calibration-out}"
PY="${PYTHON:-python3}"
QUICK="${1:-}"
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$OUT/run.log"; }

if compgen -G ".whl/*.whl" >/dev/null; then
  log "install the carried wheels (.whl/, no index) into /tmp/site; simfactory runs from this tree"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    >>"$OUT/run.log" 2>&1 || { log "wheel install failed (see run.log)"; exit 1; }
  export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  log "install simfactory (+ nvidia-ml-py)"
  "$PY" -m pip install -q -e . nvidia-ml-py >>"$OUT/run.log" 2>&1 || { log "install failed (see run.log)"; exit 1; }
fi
export SIMFACTORY_GIT_SHA="${SIMFACTORY_GIT_SHA:-$(git rev-parse HEAD 2>/dev/null)}"
"$PY" -c "import simfactory.cli, pynvml" >>"$OUT/run.log" 2>&1 || { log "simfactory or pynvml does not import (see run.log)"; exit 1; }
nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm --format=csv 2>&1 | tee -a "$OUT/run.log"
[ "${PIPESTATUS[0]}" = 0 ] || { log "no NVIDIA GPU here (nvidia-smi failed): nothing measured"; exit 3; }

log "GPU peaks (bf16 matrix product, copy bandwidth)"
timeout 120 "$PY" calibrate/gpu_peaks.py --out "$OUT/peaks.json" 2>&1 | tee -a "$OUT/run.log"

ran=0
if "$PY" -c "import torch, transformers" 2>/dev/null; then
  log "torch backend: $("$PY" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)')"
  timeout "${TORCH_S:-420}" "$PY" -m simfactory calibrate run --backend torch --model llama-3.1-8b $QUICK --force 2>&1 | tee -a "$OUT/run.log"
  log "torch backend exit ${PIPESTATUS[0]}"
  ran=1
else
  log "torch or transformers missing: pip install 'simfactory[calibrate-torch]' for the torch backend"
fi
if "$PY" -c "import vllm" 2>/dev/null; then
  log "vllm backend: $("$PY" -c 'import vllm; print("vllm", vllm.__version__)')"
  timeout "${VLLM_S:-900}" "$PY" -m simfactory calibrate run --backend vllm --model llama-3.1-8b $QUICK --force 2>&1 | tee -a "$OUT/run.log"
  log "vllm backend exit ${PIPESTATUS[0]}"
  ran=1
else
  log "vLLM not installed here: pip install 'simfactory[calibrate]' for the vllm backend"
fi

for f in hardware_profiles/*/llama-3.1-8b-*-bf16-tp1.yaml hardware_profiles/*/llama-3.1-8b-*-bf16-tp1.*.csv; do
  [ -f "$f" ] && cp "$f" "$OUT"/
done
log "done; profiles, raw steps and NVML samples in $OUT"
[ "$ran" = 1 ]
