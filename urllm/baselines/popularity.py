"""Popularity: score each target-domain item by how often it occurs in the training sequences."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from urllm.data.schema import Record, TwoDomainData
from urllm.data.sequences import item_counts


class Popularity:
    def __init__(self) -> None:
        self.counts: np.ndarray | None = None
        self.ranges: list[range] = []

    def fit(self, data: TwoDomainData, run_dir: Path | None = None) -> None:
        self.counts = item_counts(data.records("train"), data.catalogue.n_items)
        self.ranges = [data.catalogue.domain_range(d) for d in (0, 1)]

    def score(self, records: Sequence[Record], domain: int) -> np.ndarray:
        if self.counts is None:
            raise RuntimeError("Popularity.score() called before fit()")
        r = self.ranges[domain]
        return np.broadcast_to(self.counts[r.start : r.stop], (len(records), len(r))).copy()
