"""Configuration of the evaluation protocol."""

from __future__ import annotations

from dataclasses import dataclass

from urllm.configuration import opt


@dataclass
class EvalConfig:
    """Full ranking over the target domain (default) or N sampled negatives."""

    ks: list[int] = opt(factory=lambda: [1, 5, 10], help="cut-offs of HR@k and NDCG@k")
    sampled_negatives: int = opt(
        0, "0 = rank against all target-domain items; N = against N seeded negatives"
    )
    seed: int = opt(0, "seed of the sampled negatives")
    cold_start_bins: list[int] = opt(
        factory=lambda: [0, 1, 3, 5, 8, 13],
        help="lower edges of the cold-start buckets (number of target-domain items in the history)",
    )
    cold_start: list[int] = opt(
        factory=list,
        help="simulated cold start: also score copies of each record with its target-domain history cut "
        "to its last N items, for each N here (e.g. [0, 1, 3]); [] = off",
    )
    cold_start_llm: bool = opt(
        False, "LLM systems score the simulated cold-start copies too (one more LLM call per copy)"
    )
    bootstrap_resamples: int = opt(2000, "resamples of the paired bootstrap intervals (seeded by eval.seed)")
    batch_size: int = opt(256, "records scored per call of a system", runtime=True)

    def __post_init__(self) -> None:
        if not self.ks or any(k < 1 for k in self.ks):
            raise ValueError(f"ks must be positive cut-offs, got {self.ks}")
        if self.sampled_negatives < 0:
            raise ValueError("sampled_negatives must be >= 0")
        if self.cold_start_bins != sorted(set(self.cold_start_bins)) or self.cold_start_bins[:1] != [0]:
            raise ValueError(f"cold_start_bins must be increasing and start at 0, got {self.cold_start_bins}")
        if any(n < 0 for n in self.cold_start) or len(set(self.cold_start)) != len(self.cold_start):
            raise ValueError(f"cold_start must be distinct counts >= 0, got {self.cold_start}")
        if self.bootstrap_resamples < 100:
            raise ValueError("bootstrap_resamples must be >= 100")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
