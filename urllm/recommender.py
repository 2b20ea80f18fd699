"""The port every recommender implements, and the registry of systems by name."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from urllm.configuration import ConfigError
from urllm.data.schema import Record, TwoDomainData

if TYPE_CHECKING:
    from urllm.config import Config


class Recommender(Protocol):
    """Scores every item of a target domain for a batch of records (higher = better)."""

    def fit(self, data: TwoDomainData, run_dir: Path) -> None:
        """Train on ``data.records("train")`` (and select on ``valid``); may cache under ``run_dir``."""

    def score(self, records: Sequence[Record], domain: int) -> np.ndarray:
        """(len(records), n_items_of_domain) scores, columns in catalogue order of ``domain``."""


# name -> "module:factory"; a factory takes the resolved Config and returns an unfitted Recommender.
SYSTEMS: dict[str, str] = {
    "popularity": "urllm.baselines.popularity:Popularity",
    "transition": "urllm.baselines.transition:Transition",
    "transition-prior": "urllm.baselines.transition_prior:TransitionPrior",
    "sasrec": "urllm.baselines.sasrec:SASRecSystem",
    "graph": "urllm.graph.system:GraphSystem",
    "graph-encoder": "urllm.graph.system:GraphEncoderSystem",
    "urllm": "urllm.infer.system:URLLM",
    "urllm-constrained": "urllm.infer.system:URLLM_CONSTRAINED",
    "urllm-free": "urllm.infer.system:URLLM_FREE",
    "urllm-rerank": "urllm.infer.system:URLLM_RERANK",
    "urllm-no-retrieval": "urllm.infer.system:URLLM_NO_RETRIEVAL",
    "urllm-no-grounding": "urllm.infer.system:URLLM_NO_GROUNDING",
}


def make_system(name: str, cfg: Config) -> Recommender:
    if name not in SYSTEMS:
        raise ConfigError(f"unknown system {name!r}; known systems: {', '.join(sorted(SYSTEMS))}")
    module, attr = SYSTEMS[name].split(":")
    factory: Callable[[Config], Recommender] = getattr(importlib.import_module(module), attr)
    return factory(cfg)
