#!/usr/bin/env bash
# LoRA fine-tuning through `accelerate launch` (`urllm finetune`): the same command on CPU, one GPU or several.
#   scripts/finetune.sh CONFIG [key=value ...]
#   ACCELERATE_CONFIG=configs/accelerate/multi_gpu.yaml scripts/finetune.sh configs/art_office_gpu.yaml
# Reads <run_dir>/prompts/{train,valid}.parquet, writes <run_dir>/finetune/ (log, checkpoint, adapter).
# Rerunning after a kill resumes from the last checkpoint. = urllm finetune --config CONFIG [key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then
    echo "usage: $0 CONFIG [key=value ...]" >&2
    exit 2
fi
CONFIG="$1"
shift
VENV="${VENV:-.venv}"
URLLM="urllm"
[ -x "$VENV/bin/urllm" ] && URLLM="$VENV/bin/urllm"
exec "$URLLM" finetune --config "$CONFIG" "$@"
