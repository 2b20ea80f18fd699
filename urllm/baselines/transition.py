"""First-order transition (Markov) baseline.

Score of target-domain item ``b`` = how often ``b`` directly follows the user's most recent item of the
same domain ``a`` in the training users' same-domain sequences, plus popularity / (max popularity + 1)
so that popularity breaks ties (and ranks everything for a user with no item of that domain).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from urllm.data.schema import Record, TwoDomainData
from urllm.data.sequences import domain_sequences, item_counts


class Transition:
    def __init__(self) -> None:
        self.next_counts: dict[int, Counter] = {}
        self.pop: np.ndarray | None = None
        self.item_domain: np.ndarray | None = None
        self.ranges: list[range] = []

    def fit(self, data: TwoDomainData, run_dir: Path | None = None) -> None:
        cat = data.catalogue
        train = data.records("train")
        self.item_domain = cat.item_domain
        self.ranges = [cat.domain_range(d) for d in (0, 1)]
        self.pop = item_counts(train, cat.n_items)
        self.pop /= self.pop.max() + 1.0
        self.next_counts = {}
        for d in (0, 1):
            for seq in domain_sequences(train, cat.item_domain, d):
                for a, b in zip(seq[:-1], seq[1:], strict=False):
                    self.next_counts.setdefault(a, Counter())[b] += 1

    def score(self, records: Sequence[Record], domain: int) -> np.ndarray:
        if self.pop is None:
            raise RuntimeError("Transition.score() called before fit()")
        r = self.ranges[domain]
        out = np.broadcast_to(self.pop[r.start : r.stop], (len(records), len(r))).copy()
        for row, rec in enumerate(records):
            last = next((i for i in reversed(rec.history) if self.item_domain[i] == domain), None)
            for b, c in self.next_counts.get(last, {}).items():
                out[row, b - r.start] += c
        return out
