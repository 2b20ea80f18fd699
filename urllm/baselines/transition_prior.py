"""The untrained transition prior: the ranking the graph system starts from, with nothing learned.

Score of target-domain item ``i`` for a user whose most recent same-domain items are ``l_0`` (the most
recent), ``l_1``, ``l_2``::

    sum_j  0.5**j * log(1 + #(l_j -> i))  +  0.5 * 0.5**j * log(1 + #(i -> l_j))

with ``#(a -> b)`` the number of times ``b`` directly follows ``a`` in a training user's same-domain
sequence (successor weights 1, 1/2, 1/4; predecessor weights 1/2, 1/4, 1/8: the initial values of
``DualGraphEncoder.prior`` at ``transition_prior: 1``). Popularity (training occurrences) breaks ties
only: it is scaled below the smallest difference two distinct prior scores can have, so it never
reorders items the prior separates, and it ranks everything for a user with no item of that domain.

This is the row that shows what the trained encoder adds over its own starting point.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from urllm.data.schema import Record, TwoDomainData
from urllm.data.sequences import domain_sequences, item_counts

# successor / predecessor weight of the j-th most recent same-domain item (GraphConfig.transition_prior=1)
SUCCESSOR_WEIGHTS = (1.0, 0.5, 0.25)
PREDECESSOR_WEIGHTS = (0.5, 0.25, 0.125)
# popularity / (max + 1) times this: far below the prior's resolution (log 2 / 8 ~ 0.087 per count),
# far above float64 rounding of scores of order 10
TIE_BREAK = 1e-6


def recent_items(history: Sequence[int], item_domain: np.ndarray, domain: int, k: int) -> list[int]:
    """The ``k`` most recent items of ``domain`` in ``history`` (most recent first; repeats kept)."""
    out = []
    for i in reversed(history):
        if item_domain[i] == domain:
            out.append(int(i))
            if len(out) == k:
                break
    return out


class TransitionPrior:
    """Recommender: the untrained prior formula above (no parameters fitted beyond counting)."""

    def __init__(self) -> None:
        self.succ: dict[int, Counter] = {}
        self.pred: dict[int, Counter] = {}
        self.pop: np.ndarray | None = None
        self.item_domain: np.ndarray | None = None
        self.ranges: list[range] = []

    def fit(self, data: TwoDomainData, run_dir: Path | None = None) -> None:
        cat = data.catalogue
        train = data.records("train")
        self.item_domain = cat.item_domain
        self.ranges = [cat.domain_range(d) for d in (0, 1)]
        pop = item_counts(train, cat.n_items)
        self.pop = TIE_BREAK * pop / (pop.max() + 1.0)
        self.succ, self.pred = {}, {}
        for d in (0, 1):
            for seq in domain_sequences(train, cat.item_domain, d):
                for a, b in zip(seq[:-1], seq[1:], strict=False):
                    self.succ.setdefault(a, Counter())[b] += 1
                    self.pred.setdefault(b, Counter())[a] += 1

    def prior_scores(self, history: Sequence[int], domain: int) -> dict[int, float]:
        """The nonzero prior terms of one history: global item id -> score (no tie-break)."""
        out: dict[int, float] = {}
        recent = recent_items(history, self.item_domain, domain, len(SUCCESSOR_WEIGHTS))
        for j, last in enumerate(recent):
            for table, w in ((self.succ, SUCCESSOR_WEIGHTS[j]), (self.pred, PREDECESSOR_WEIGHTS[j])):
                for b, c in table.get(last, {}).items():
                    out[b] = out.get(b, 0.0) + w * float(np.log1p(c))
        return out

    def score(self, records: Sequence[Record], domain: int) -> np.ndarray:
        if self.pop is None:
            raise RuntimeError("TransitionPrior.score() called before fit()")
        r = self.ranges[domain]
        out = np.broadcast_to(self.pop[r.start : r.stop], (len(records), len(r))).copy()
        for row, rec in enumerate(records):
            for b, s in self.prior_scores(rec.history, domain).items():
                out[row, b - r.start] += s
        return out
