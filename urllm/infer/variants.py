"""LLM systems and the inference runs they read.

A *variant* is one inference run (a grounding mode's LLM step and a prompt kind: with or without
similar users) and the grounder that turns its rows into LLM groups (:mod:`urllm.infer.grounders`).
Several systems can share a run: ``urllm-no-grounding`` reads the free-generation run of ``urllm-free``
with the ``exact`` grounder, which keeps only exact in-domain titles.

| system               | run (mode)            | prompts             | grounder               |
|----------------------|-----------------------|---------------------|------------------------|
| urllm                | grounding.mode (rank) | retrieval-augmented | the mode's             |
| urllm-constrained    | constrained           | retrieval-augmented | constrained (trie)     |
| urllm-free           | free                  | retrieval-augmented | free (refiner)         |
| urllm-rerank         | rerank                | retrieval-augmented | rerank (backbone top-N)|
| urllm-no-retrieval   | grounding.mode        | history only        | as urllm               |
| urllm-no-grounding   | free                  | retrieval-augmented | exact (titles only)    |
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from urllm.configuration import ConfigError, to_dict
from urllm.infer.grounders import grounder_class
from urllm.infer.setup import InferPaths, InferSetup

SYSTEM_NAMES = (
    "urllm",
    "urllm-constrained",
    "urllm-free",
    "urllm-rerank",
    "urllm-no-retrieval",
    "urllm-no-grounding",
)


@dataclass(frozen=True)
class Variant:
    """Args: mode: the run's grounding mode (its LLM step); retrieval: prompts with similar users;
    grounder: the grounding mode reading its rows ('' = ``mode``)."""

    mode: str
    retrieval: bool = True
    grounder: str = ""

    @property
    def grounding(self) -> str:
        """The name of the grounder that reads the run's rows."""
        return self.grounder or self.mode

    @property
    def run_name(self) -> str:
        """The JSONL stem; grounding is applied at scoring time, so it does not change the run."""
        return self.mode + ("" if self.retrieval else "-no-retrieval")


def variant_for(name: str, mode: str) -> Variant:
    """The inference run system ``name`` reads; ``mode``: ``grounding.mode`` (``urllm``'s mode)."""
    table = {
        "urllm": Variant(mode),
        "urllm-constrained": Variant("constrained"),
        "urllm-free": Variant("free"),
        "urllm-rerank": Variant("rerank"),
        "urllm-no-retrieval": Variant(mode, retrieval=False),
        "urllm-no-grounding": Variant("free", grounder="exact"),
    }
    if name not in table:
        raise ConfigError(f"unknown LLM system {name!r}; known: {', '.join(SYSTEM_NAMES)}")
    return table[name]


def out_path(paths: InferPaths, split: str, variant: Variant) -> Path:
    return paths.out / split / f"{variant.run_name}.jsonl"


def prompts_dir(paths: InferPaths, variant: Variant) -> Path:
    return paths.prompts if variant.retrieval else paths.prompts_no_retrieval


def file_digest(path: Path | None) -> str:
    if path is None or not path.is_file():
        return ""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def run_settings(setup: InferSetup, variant: Variant, parquet: Path | None, adapter: Path | None) -> dict:
    """What an inference run's rows depend on (stored beside its JSONL; a change means a rerun)."""
    g = setup.grounding
    llm = {k: v for k, v in to_dict(setup.llm).items() if k != "cache_dir"}
    mode_keys = grounder_class(variant.mode).settings
    settings = {
        "mode": variant.mode,
        "retrieval": variant.retrieval,
        "llm": llm,
        "adapter": str(adapter) if adapter else "",
        "adapter_digest": file_digest(adapter / "adapter_model.safetensors") if adapter else "",
        "prompts": str(parquet) if parquet else "history-only builder",
        "prompts_digest": file_digest(parquet),
        "grounding": {k: to_dict(getattr(g, k)) for k in mode_keys},
        "eval_target_shortcut": bool(getattr(setup.infer, "eval_target_shortcut", False)),
    }
    if parquet is None or variant.mode == "rank":  # rank re-renders every prompt with its candidates
        settings["prompt_config"] = to_dict(setup.prompts)
    return settings
