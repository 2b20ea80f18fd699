"""The untrained transition prior: the ranking the graph system starts from, with nothing learned.

Score of target-domain item ``j`` for a user whose most recent same-domain items are ``r_1`` (the most
recent), ``r_2``, ``r_3``::

    s_j = sum_k a_k log(1 + N[r_k, j]) + sum_k b_k log(1 + N[j, r_k]) + TIE_BREAK * pop_j / (pop_max + 1)

with ``N[a, b]`` the number of times ``b`` directly follows ``a`` in a training user's same-domain
sequence, successor weights ``a = (1, 1/2, 1/4)`` and predecessor weights ``b = (1/2, 1/4, 1/8)`` (the
initial values of ``DualGraphEncoder.prior`` at ``transition_prior: 1``); repeated recent items are kept.
Popularity (training occurrences) breaks ties only: it is scaled below the smallest difference two
distinct prior scores can have, so it never reorders items the prior separates, and it ranks everything
for a user with no item of that domain. This is the row that shows what the trained encoder adds over
its own starting point (system ``transition-prior``, alias ``prior``).

**Out of fold.** ``score_out_of_fold`` scores a training user as if it had never been counted: the
counts become ``N - N_u`` with ``N_u`` the user's own transitions (and its items left out of the
popularity). For a count model that is exact leave-user-out, and free; it is what the listwise ranker's
training lists are made from when this prior is the LLM systems' backbone (docs/listwise.md).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from urllm.data.schema import Record, TwoDomainData
from urllm.data.sequences import sequences_by_user

# successor / predecessor weight of the k-th most recent same-domain item (GraphConfig.transition_prior=1)
SUCCESSOR_WEIGHTS = (1.0, 0.5, 0.25)
PREDECESSOR_WEIGHTS = (0.5, 0.25, 0.125)
# popularity / (max + 1) times this: far below the prior's resolution (log 2 / 8 ~ 0.087 per count),
# far above float64 rounding of scores of order 10
TIE_BREAK = 1e-6


class TransitionPrior:
    """Same-domain transition counts of the training users, with each user's own share kept apart."""

    def __init__(self) -> None:
        self.item_domain: np.ndarray | None = None
        self.ranges: list[range] = []
        self.succ: list[dict[int, Counter]] = [{}, {}]  # per domain: a -> Counter(b) of a -> b
        self.pred: list[dict[int, Counter]] = [{}, {}]  # per domain: b -> Counter(a) of a -> b
        self.pop = np.zeros(0)
        self.own_pairs: dict[str, Counter] = {}  # user -> Counter((a, b)) of its transitions
        self.own_items: dict[str, Counter] = {}  # user -> Counter(item) of its sequence

    def fit(self, data: TwoDomainData, run_dir: Path | None = None) -> None:
        """Count the training sequences (a few seconds on Art-Office; nothing to save)."""
        cat = data.catalogue
        self.item_domain = cat.item_domain
        self.ranges = [cat.domain_range(d) for d in (0, 1)]
        self.pop = np.zeros(cat.n_items)
        # a user has one sequence, or more where the history cap left its windows apart
        for user, seqs in sequences_by_user(data.records("train")).items():
            pairs: Counter = Counter()
            items: Counter = Counter()
            for seq in seqs:
                for d in (0, 1):
                    sub = [i for i in seq if self.item_domain[i] == d]
                    for a, b in zip(sub[:-1], sub[1:], strict=False):
                        pairs[(a, b)] += 1
                        self.succ[d].setdefault(a, Counter())[b] += 1
                        self.pred[d].setdefault(b, Counter())[a] += 1
                items.update(seq)
            for i, c in items.items():
                self.pop[i] += c
            self.own_pairs[user] = pairs
            self.own_items[user] = items

    def _row(self, rec: Record, domain: int, leave_out: bool) -> np.ndarray:
        r = self.ranges[domain]
        own_pairs = self.own_pairs.get(rec.user, Counter()) if leave_out else Counter()
        own_items = self.own_items.get(rec.user, Counter()) if leave_out else Counter()
        pop = self.pop[r.start : r.stop].copy()
        for i, c in own_items.items():
            if r.start <= i < r.stop:
                pop[i - r.start] -= c
        out = TIE_BREAK * pop / (self.pop.max(initial=0.0) + 1.0)
        recent = [i for i in reversed(rec.history) if self.item_domain[i] == domain]
        recent = recent[: len(SUCCESSOR_WEIGHTS)]  # repeats kept, as the graph's prior does
        for k, item in enumerate(recent):
            for table, weight, forward in (
                (self.succ[domain], SUCCESSOR_WEIGHTS[k], True),
                (self.pred[domain], PREDECESSOR_WEIGHTS[k], False),
            ):
                for other, c in table.get(item, {}).items():
                    own = own_pairs.get((item, other) if forward else (other, item), 0)
                    if c - own > 0:
                        out[other - r.start] += weight * np.log1p(c - own)
        return out

    def score(self, records: Sequence[Record], domain: int) -> np.ndarray:
        """(len(records), n_items_of_domain): in-sample scores (every training transition counts)."""
        return self._scores(records, domain, leave_out=False)

    def score_out_of_fold(self, records: Sequence[Record], domain: int) -> np.ndarray:
        """Scores with each record's user's own training transitions and items removed (exact)."""
        return self._scores(records, domain, leave_out=True)

    def _scores(self, records: Sequence[Record], domain: int, leave_out: bool) -> np.ndarray:
        if self.item_domain is None:
            raise RuntimeError("TransitionPrior.score() called before fit()")
        out = np.zeros((len(records), len(self.ranges[domain])))
        for row, rec in enumerate(records):
            out[row] = self._row(rec, domain, leave_out)
        return out
