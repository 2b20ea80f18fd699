"""Training sequences derived from records, without double counting.

A user may have several records that share one history (Art-Office has one line per target domain).
These helpers rebuild each training user's sequence once: the shared history followed by the user's
distinct targets.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from urllm.data.schema import Record


def user_sequences(records: Sequence[Record]) -> list[tuple[int, ...]]:
    """One mixed sequence per user: the longest history, then that user's distinct targets."""
    hist: dict[str, tuple[int, ...]] = {}
    targets: dict[str, list[int]] = {}
    for r in records:
        if len(r.history) > len(hist.get(r.user, ())):
            hist[r.user] = r.history
        t = targets.setdefault(r.user, [])
        if r.target not in t:
            t.append(r.target)
    return [(*hist[u], *targets[u]) for u in hist]


def domain_sequences(records: Sequence[Record], item_domain: np.ndarray, d: int) -> list[list[int]]:
    """Per user, the items of domain ``d`` in order (history first, then the user's ``d`` targets)."""
    out = []
    for seq in user_sequences(records):
        sub = [i for i in seq if item_domain[i] == d]
        if sub:
            out.append(sub)
    return out


def item_counts(records: Sequence[Record], n_items: int) -> np.ndarray:
    """How often each item occurs in the users' training sequences."""
    counts = np.zeros(n_items, dtype=np.float64)
    for seq in user_sequences(records):
        np.add.at(counts, np.asarray(seq, dtype=np.int64), 1.0)
    return counts
