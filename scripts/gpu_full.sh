#!/usr/bin/env bash
# Full-size listwise ranker on ONE GPU: fine-tune on every training user's out-of-fold list, then score
# all valid records (and a test file when given) with the pipeline's systems (graph, urllm: rank, calibrated fusion).
#   scripts/gpu_full.sh [TEST_FILE] [key=value ...]
# configs/art_office_gpu.yaml = configs/art_office.yaml + sizes only (tests/test_config.py checks it).
# Budget: <= 10 min on one H100/H200-class GPU for SmolLM2-135M (estimate, NOT yet measured: no GPU was
# lent to the session that wrote it). Resumable: every stage skips what is finished.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
[ -x "$VENV/bin/urllm" ] && export PATH="$VENV/bin:$PATH"
CFG=configs/art_office_gpu.yaml
TEST=""
if [ $# -ge 1 ] && [[ "$1" != *=* ]]; then TEST="$1"; shift; fi
OUT="${OUT:-runs/gpu_full}"
mkdir -p "$OUT"
log() { echo "$(date -u +%H:%M:%S) $*" | tee -a "$OUT/times.log"; }
log "prompts"
urllm prompts build --config "$CFG" "$@"
log "finetune (rank task, out-of-fold lists, bf16)"
ACCELERATE_CONFIG="${ACCELERATE_CONFIG:-configs/accelerate/single_gpu.yaml}" scripts/finetune.sh "$CFG" "$@"
log "evaluate valid (all records)"
urllm evaluate --config "$CFG" --split valid --system graph,transition-prior,urllm,urllm-no-retrieval --baseline graph \
    --per-record "$OUT/valid_per_record.jsonl" --out "$OUT/valid.json" infer.batch_size=64 "$@"
if [ -n "$TEST" ]; then
    log "pipeline on the test file $TEST"
    urllm pipeline --config "$CFG" data.test_file="$TEST" --split test --out "$OUT/test.json" infer.batch_size=64 "$@"
fi
log "done"
