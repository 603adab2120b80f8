#!/usr/bin/env bash
# One prepared calibration run for a lab GPU (or a short-lived device lease): install, check the GPU,
# measure Llama-3.1-8B with the torch backend (and vLLM when it installs), fit, write the profiles, and
# copy everything worth keeping to $OUT (default ./calibration-out). Each step has its own time limit so a
# hung engine cannot eat the whole lease.
#
#   bash calibrate/gpu_run.sh [--quick]
#
# Writes hardware_profiles/<sku>/llama-3.1-8b-<engine>-bf16-tp1.{yaml,steps.csv,power.csv} and a log.
set -uo pipefail
OUT="${OUT:-./calibration-out}"
QUICK="${1:-}"
mkdir -p "$OUT"
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$OUT/run.log"; }

log "install simfactory (+ nvidia-ml-py)"
pip install -q -e . nvidia-ml-py >>"$OUT/run.log" 2>&1 || { log "install failed"; exit 1; }
nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv | tee -a "$OUT/run.log"

if python -c "import torch, transformers" 2>/dev/null; then
  log "torch backend"
  timeout 900 simfactory calibrate run --backend torch --model llama-3.1-8b $QUICK --force 2>&1 | tee -a "$OUT/run.log"
else
  log "torch/transformers missing: pip install torch transformers for the torch backend"
fi

if python -c "import vllm" 2>/dev/null || timeout 600 pip install -q vllm >>"$OUT/run.log" 2>&1; then
  log "vllm backend"
  timeout 1200 simfactory calibrate run --backend vllm --model llama-3.1-8b $QUICK --force 2>&1 | tee -a "$OUT/run.log"
else
  log "vLLM did not install here: only the torch profile"
fi

cp -r hardware_profiles/*/llama-3.1-8b-* "$OUT"/ 2>/dev/null || true
log "done; profiles and raw measurements in $OUT"
