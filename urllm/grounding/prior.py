"""A count-based transition prior that can score training users *out of fold* (leave-user-out).

The listwise ranker is fine-tuned on candidate lists of training users and applied to lists of valid /
test users; both must come from the same process (LlamaRec, arXiv 2311.02089). A model fitted on the
training users has seen their targets, so its in-sample lists are too good. For a count model,
leave-user-out is exact and free: the counts of user ``u`` are ``N - N_u``, where ``N_u`` holds ``u``'s
own transitions. Art-Office's splits are user-disjoint, so a valid user's lists come from ``N`` without
its transitions too: the training lists are drawn from exactly the test-time process.

Score of item ``j`` of target domain ``d`` (the untrained prior of docs/graph.md): with ``r_1, r_2, r_3``
the user's most recent items of ``d`` (most recent first),

    s_j = sum_k a_k log(1 + N[r_k, j]) + sum_k b_k log(1 + N[j, r_k]) + eps * pop_j / (pop_max + 1)

with successor weights ``a = (1, 1/2, 1/4)``, predecessor weights ``b = (1/2, 1/4, 1/8)``, ``N`` the
same-domain transition counts of the training sequences and ``eps = 1e-6`` (popularity breaks ties only);
repeated recent items are kept. In-sample it is the ``transition-prior`` baseline's ranking.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from urllm.data.schema import Record, TwoDomainData
from urllm.data.sequences import sequences_by_user

SUCCESSOR_WEIGHTS = (1.0, 0.5, 0.25)
PREDECESSOR_WEIGHTS = (0.5, 0.25, 0.125)
POP_EPS = 1e-6  # popularity breaks ties only (far below log(2)/8)


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
        out = POP_EPS * pop / (self.pop[r.start : r.stop].max(initial=0.0) + 1.0)
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


def out_of_fold_scores(backbone, records: Sequence[Record], domain: int) -> tuple[np.ndarray, bool]:
    """``(scores, exact)``: the backbone's leave-user-out scores when it has them, else in-sample ones."""
    oof = getattr(backbone, "score_out_of_fold", None)
    if callable(oof):
        return np.asarray(oof(records, domain), dtype=np.float64), True
    return np.asarray(backbone.score(records, domain), dtype=np.float64), False


def unseen_users(backbone) -> set[str] | None:
    """Training users whose out-of-fold scores are exact (the backbone never trained on them), or None
    when all are (the count prior) or the backbone does not say."""
    f = getattr(backbone, "unseen_users", None)
    return f() if callable(f) else None
