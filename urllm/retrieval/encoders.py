"""Fitted systems by name: user encoders for retrieval and scorers for the prompt candidates.

Names come from the one system registry (:data:`urllm.recommender.REGISTRY`: ``graph``, ``sasrec``, the
built-in ``svd`` (:class:`urllm.retrieval.svd.PureSVD`) …). ``fit()`` is called with the system's
directory in the run, and by contract reuses a finished checkpoint found there.
"""

from __future__ import annotations

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


class UserEmbedder(Protocol):
    """The user-embedding port: the domain view of each record's user, from its history only."""

    def user_embeddings(self, records: Sequence[Record], domain: int) -> np.ndarray:
        """(len(records), D) float32."""


def system_dir(cfg: Config, name: str) -> Path:
    """Where a system keeps its trained state in the run (the graph stage owns ``<run_dir>/graph``)."""
    return cfg.run_path / ("graph" if name in ("graph", "graph-encoder") else f"systems/{name}")


def _factory(name: str):
    from urllm.recommender import system_factory  # the one registry (svd included)

    return system_factory(name)


def fitted_system(name: str, cfg: Config, data: TwoDomainData, from_dir: str = ""):
    """System ``name``, fitted in :func:`system_dir` (reusing a finished checkpoint), or loaded read-only
    from ``from_dir`` with the system's ``load(dir)`` classmethod."""
    factory = _factory(name)
    if from_dir:
        if not callable(getattr(factory, "load", None)):
            raise ConfigError(f"system {name!r} cannot be loaded from a folder (it has no load(dir))")
        logger.info("loading fitted system %s from %s", name, from_dir)
        return factory.load(from_dir)
    from urllm.cache import fitted_system as cached
    from urllm.run_layout import RunLayout

    # read-only from the stage that trained it when made from the same inputs, else in systems/<name>,
    # a folder keyed by all of its inputs (urllm.cache)
    layout = RunLayout.of(cfg)
    return cached(name, cfg, data, layout.cache_dir(name), shared=system_dir(cfg, name))


def fitted_embedder(cfg: Config, data: TwoDomainData) -> UserEmbedder:
    """The fitted system named by ``retrieval.encoder``; it must embed users."""
    name = cfg.retrieval.encoder
    system = fitted_system(name, cfg, data, cfg.retrieval.encoder_dir)
    if not callable(getattr(system, "user_embeddings", None)):
        raise ConfigError(f"retrieval.encoder: system {name!r} has no user_embeddings(records, domain)")
    return system
