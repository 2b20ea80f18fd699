# Common targets. `make test` and `make demo` set everything up first.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup test test-slow demo lint format clean clean-cache

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh $(VENV)

test: setup  ## fast offline suite (the CI target)
	$(PY) -m pytest -q

test-slow: setup  ## real data and real models (minutes)
	$(PY) -m pytest -q -m slow

demo: setup  ## the main job end to end on MovieLens-1M + SmolLM2 (small subset)
	$(VENV)/bin/urllm pipeline --config configs/movielens.yaml

lint: setup
	$(VENV)/bin/ruff check urllm tests scripts
	$(VENV)/bin/ruff format --check urllm tests scripts

format: setup
	$(VENV)/bin/ruff format urllm tests scripts

clean:  ## the venv, run folders and fetched data; the converted model in $(URLLM_CACHE) stays (clean-cache)
	rm -rf $(VENV) runs .cache

URLLM_CACHE ?= $(HOME)/.cache/urllm
clean-cache:  ## the converted SmolLM2 folder (converted again from the GGUF wheel on next use)
	rm -rf $(URLLM_CACHE)
