#!/usr/bin/env bash
# Batch LLM inference for the urllm systems (`urllm infer`): CPU, one GPU or several.
#   scripts/infer.sh CONFIG [--split valid] [--systems urllm,urllm-no-grounding] [key=value ...]
#   ACCELERATE_CONFIG=configs/accelerate/multi_gpu.yaml scripts/infer.sh configs/art_office.yaml
#   NUM_PROCESSES=2 scripts/infer.sh configs/art_office.yaml     (CPU: 2 processes via torchrun + gloo)
# GPUs go through `accelerate launch` (default config configs/accelerate/cpu.yaml); accelerate's launcher
# starts several CPU processes only through MPI, so NUM_PROCESSES > 1 without CUDA uses torchrun.
# Prompts are split across the processes; rows are gathered and appended to
# <run_dir>/infer/<split>/<mode>[-no-retrieval].jsonl as they finish. Rerunning after a kill resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then
    echo "usage: $0 CONFIG [--split S] [--systems A,B] [key=value ...]" >&2
    exit 2
fi
CONFIG="$1"
shift
VENV="${VENV:-.venv}"
URLLM="urllm"
[ -x "$VENV/bin/urllm" ] && URLLM="$VENV/bin/urllm"
ARGS=()
[ -n "${NUM_PROCESSES:-}" ] && ARGS+=(--num-processes "$NUM_PROCESSES")
exec "$URLLM" infer --config "$CONFIG" "${ARGS[@]}" "$@"
