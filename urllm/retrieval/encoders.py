"""Fitted systems by name: user encoders for retrieval and scorers for the prompt candidates.

``svd`` is built in (:class:`urllm.retrieval.svd.PureSVD`); any other name comes from the Recommender
registry (:data:`urllm.recommender.SYSTEMS`: ``graph``, ``sasrec`` …). ``fit()`` is called with the
system's directory in the run, and by contract reuses a finished checkpoint found there.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from urllm.configuration import ConfigError
from urllm.data.schema import Record, TwoDomainData

if TYPE_CHECKING:
    from urllm.config import Config

logger = logging.getLogger(__name__)

# name -> "module:factory" for encoders that are not (yet) registered recommenders
ENCODERS: dict[str, str] = {"svd": "urllm.retrieval.svd:PureSVD"}


class UserEmbedder(Protocol):
    """The user-embedding port: the domain view of each record's user, from its history only."""

    def user_embeddings(self, records: Sequence[Record], domain: int) -> np.ndarray:
        """(len(records), D) float32."""


def system_dir(cfg: Config, name: str) -> Path:
    """Where a system keeps its trained state in the run (the graph stage owns ``<run_dir>/graph``)."""
    return cfg.run_path / ("graph" if name in ("graph", "graph-encoder") else f"systems/{name}")


def _factory(name: str):
    if name in ENCODERS:
        module, attr = ENCODERS[name].split(":")
    else:
        from urllm.recommender import SYSTEMS

        if name not in SYSTEMS:
            raise ConfigError(
                f"unknown system {name!r}; known systems: {', '.join(sorted({*SYSTEMS, *ENCODERS}))}"
            )
        module, attr = SYSTEMS[name].split(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"system {name!r} is registered but its module is missing: {exc}") from None


def fitted_system(name: str, cfg: Config, data: TwoDomainData, from_dir: str = ""):
    """System ``name``, fitted in :func:`system_dir` (reusing a finished checkpoint), or loaded read-only
    from ``from_dir`` with the system's ``load(dir)`` classmethod."""
    factory = _factory(name)
    if from_dir:
        if not callable(getattr(factory, "load", None)):
            raise ConfigError(f"system {name!r} cannot be loaded from a folder (it has no load(dir))")
        logger.info("loading fitted system %s from %s", name, from_dir)
        return factory.load(from_dir)
    system = factory(cfg)
    logger.info("fitting (or loading) system %s in %s", name, system_dir(cfg, name))
    system.fit(data, system_dir(cfg, name))
    return system


def fitted_embedder(cfg: Config, data: TwoDomainData) -> UserEmbedder:
    """The fitted system named by ``retrieval.encoder``; it must embed users."""
    name = cfg.retrieval.encoder
    system = fitted_system(name, cfg, data, cfg.retrieval.encoder_dir)
    if not callable(getattr(system, "user_embeddings", None)):
        raise ConfigError(f"retrieval.encoder: system {name!r} has no user_embeddings(records, domain)")
    return system
