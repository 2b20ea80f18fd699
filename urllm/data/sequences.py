"""Training sequences rebuilt from records, each interaction once and no transition invented.

A user has up to one record per target domain, and the readers make them in two ways:

* **shared history** (Art-Office / C2DSR): the user's records carry the *same* history and one target
  each, both targets coming after it. The sequence is the history followed by the distinct targets.
* **windows** (RecBole, Amazon: :func:`urllm.data.build.target_records`): each record is a window
  ``history + (target,)`` of one chronology, ending at the user's last item of its domain and holding at
  most ``max_history`` items before it. The earlier target therefore lies inside the later window unless
  the cap cut it off. Windows are merged where they overlap (the earlier target found in the later
  window with the items before it agreeing), so the sequence is the union of what the records show,
  oldest first. Windows that do not overlap (more than ``max_history`` interactions of one domain after
  the user's last item of the other) stay separate sequences: the items between them are unknown, and
  joining them would invent a transition.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from urllm.data.schema import Record

Seq = tuple[int, ...]


def _place(a: Seq, b: Seq) -> Seq | None:
    """``a`` and ``b`` merged when ``a`` ends inside ``b`` (its last item at a position of ``b`` where
    their overlap agrees; the latest such position), else None."""
    last = a[-1]
    for k in range(len(b) - 1, -1, -1):
        if b[k] != last:
            continue
        m = min(len(a), k + 1)  # overlap length
        if a[len(a) - m :] == b[k + 1 - m : k + 1]:
            return a[: len(a) - m] + b
    return None


def merge_windows(windows: Sequence[Seq]) -> list[Seq]:
    """Contiguous windows of one chronology merged into the fewest sequences (see the module doc)."""
    frags = list(dict.fromkeys(w for w in windows if w))  # distinct, in first-seen order
    merged = True
    while merged and len(frags) > 1:
        merged = False
        for i, a in enumerate(frags):
            for j, b in enumerate(frags):
                if i != j and (m := _place(a, b)) is not None:
                    frags[j] = m
                    del frags[i]
                    merged = True
                    break
            if merged:
                break
    return frags


def sequences_by_user(records: Sequence[Record]) -> dict[str, list[Seq]]:
    """User -> that user's training sequences (oldest item first), users in order of first appearance:
    one sequence, or more for windows the history cap left apart (see the module docstring)."""
    by_user: dict[str, list[Record]] = {}
    for r in records:
        by_user.setdefault(r.user, []).append(r)
    out: dict[str, list[Seq]] = {}
    for user, recs in by_user.items():
        if len({r.history for r in recs}) == 1:  # shared history, one target per domain after it
            out[user] = [(*recs[0].history, *dict.fromkeys(r.target for r in recs))]
        else:
            out[user] = merge_windows([(*r.history, r.target) for r in recs])
    return out


def user_sequences(records: Sequence[Record]) -> list[Seq]:
    """All training sequences of :func:`sequences_by_user`, user after user."""
    return [s for seqs in sequences_by_user(records).values() for s in seqs]


def domain_sequences(records: Sequence[Record], item_domain: np.ndarray, d: int) -> list[list[int]]:
    """Per training sequence, its items of domain ``d`` in order (empty ones left out)."""
    out = []
    for seq in user_sequences(records):
        sub = [i for i in seq if item_domain[i] == d]
        if sub:
            out.append(sub)
    return out


def item_counts(records: Sequence[Record], n_items: int) -> np.ndarray:
    """How often each item occurs in the training sequences (each interaction once)."""
    counts = np.zeros(n_items, dtype=np.float64)
    for seq in user_sequences(records):
        np.add.at(counts, np.asarray(seq, dtype=np.int64), 1.0)
    return counts
