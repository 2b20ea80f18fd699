"""Configuration of the end-to-end pipeline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from urllm.configuration import opt


@dataclass
class PipelineConfig:
    """Which stages and systems ``urllm pipeline`` runs."""

    stages: list[str] = opt(
        factory=lambda: ["prepare", "graph", "index", "prompts", "finetune", "infer", "evaluate"],
        help="stages to run, in order (a stage's upstream stages run first when needed)",
    )
    systems: list[str] = opt(
        factory=lambda: [
            "popularity",
            "transition",
            "sasrec",
            "graph",
            "urllm",
            "urllm-no-retrieval",
            "urllm-no-grounding",
        ],
        help="systems scored by the evaluate stage (names of urllm.recommender.REGISTRY, checked at load)",
    )
    split: Literal["valid", "test"] = opt("valid", "split the infer and evaluate stages score (valid | test)")
    baseline: str = opt(
        "",
        "system every other one is compared to (paired bootstrap intervals in the evaluate JSON); "
        "'' = the backbone of the urllm systems (grounding.backbone) when it is scored, else none",
    )

    def __post_init__(self) -> None:
        if self.split not in ("valid", "test"):
            raise ValueError(f"split must be valid or test, got {self.split!r}")
        if len(set(self.systems)) != len(self.systems):
            raise ValueError(f"systems: a system is listed twice: {self.systems}")
        if self.baseline and self.baseline not in self.systems:
            raise ValueError(f"baseline {self.baseline!r} is not one of systems {self.systems}")
