#!/usr/bin/env bash
# Batch LLM inference for the urllm systems: CPU, one GPU or several.
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
BIN=""
[ -x "$VENV/bin/accelerate" ] && BIN="$VENV/bin/"
NPROC="${NUM_PROCESSES:-}"
GPUS="$("${BIN}python" -c 'import torch; print(torch.cuda.device_count())')"
if [ "$GPUS" -eq 0 ] && [ "${NPROC:-1}" -gt 1 ]; then
    exec "${BIN}torchrun" --standalone --nproc_per_node "$NPROC" -m urllm.infer.batch --config "$CONFIG" "$@"
fi
ARGS=(--config_file "${ACCELERATE_CONFIG:-configs/accelerate/cpu.yaml}")
[ -n "$NPROC" ] && ARGS+=(--num_processes "$NPROC")
exec "${BIN}accelerate" launch "${ARGS[@]}" -m urllm.infer.batch --config "$CONFIG" "$@"
