#!/usr/bin/env bash
# LoRA fine-tuning through `accelerate launch`: the same command on CPU, one GPU or several.
#   scripts/finetune.sh CONFIG [key=value ...]
#   ACCELERATE_CONFIG=configs/accelerate/multi_gpu.yaml scripts/finetune.sh configs/art_office_gpu.yaml
# Reads <run_dir>/prompts/{train,valid}.parquet, writes <run_dir>/finetune/ (log, checkpoint, adapter).
# Rerunning after a kill resumes from the last checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then
    echo "usage: $0 CONFIG [key=value ...]" >&2
    exit 2
fi
CONFIG="$1"
shift
VENV="${VENV:-.venv}"
ACCELERATE="accelerate"
[ -x "$VENV/bin/accelerate" ] && ACCELERATE="$VENV/bin/accelerate"
exec "$ACCELERATE" launch --config_file "${ACCELERATE_CONFIG:-configs/accelerate/cpu.yaml}" \
    -m urllm.llm.finetune --config "$CONFIG" "$@"
