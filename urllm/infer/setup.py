"""What the LLM side reads: its config sections, the run's paths, and the systems it builds on.

The inference runs (:mod:`urllm.infer.batch`), the LLM systems (:mod:`urllm.infer.system`) and live
inference (:mod:`urllm.infer.live`) take an :class:`InferSetup` instead of the root config;
:func:`urllm.systems.infer_setup` makes it from the root config and the run's
:class:`urllm.run_layout.RunLayout`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from urllm.data.schema import TwoDomainData
from urllm.grounding.config import GroundingConfig
from urllm.infer.config import InferConfig
from urllm.llm.config import LLMConfig
from urllm.prompts.config import PromptConfig
from urllm.retrieval.config import RetrievalConfig


@dataclass(frozen=True)
class InferPaths:
    """The folders the LLM side reads and writes (every one from ``RunLayout``).

    Args:
        out: inference JSONL, one folder per split (``infer.out_dir``, else ``<run_dir>/infer``).
        prompts: the retrieval-augmented prompts (``infer.prompts_dir``, else ``<run_dir>/prompts``).
        prompts_no_retrieval: the history-only prompts (``infer.prompts_dir_no_retrieval``).
        finetune: where the fine-tune wrote its adapter (``finetune.output_dir``, else ``finetune/``).
        grounding_cache: title embeddings of the refiner (``grounding.cache_dir``, else ``grounding/``).
        graph: the graph stage's folder (its title embeddings are reused when they match).
    """

    out: Path
    prompts: Path
    prompts_no_retrieval: Path
    finetune: Path
    grounding_cache: Path
    graph: Path


@dataclass(frozen=True)
class InferSetup:
    """The sections, paths and system makers of LLM inference.

    Args:
        backbone: ``backbone(data)`` returns the fitted ``grounding.backbone`` (first use only).
        embedder: ``embedder(data)`` returns the fitted ``retrieval.encoder`` (live neighbours).
        graph_text_model: ``graph.text_model``: the graph's title embeddings are reused by the refiner
            when it is the refiner's model.
    """

    llm: LLMConfig
    prompts: PromptConfig
    grounding: GroundingConfig
    infer: InferConfig
    retrieval: RetrievalConfig
    seed: int
    graph_text_model: str
    paths: InferPaths
    backbone: Callable[[TwoDomainData], Any]
    embedder: Callable[[TwoDomainData], Any]
