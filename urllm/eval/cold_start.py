"""Simulated cold start: the protocol CDSR papers use to measure users with little target-domain history.

No split here has cold users (every Art–Office history holds >= 1 office and >= 4 art items), so for each
N of ``eval.cold_start`` every record with at least N target-domain history items is copied with its
target-domain history cut to its N most recent items; the other domain's items stay, in order. Copies get
the user id ``<user>~cold<N>``: a system that looks a user up by id (a JSONL of inference results, a
trained user table) finds nothing and must work from the cut history, so no cut item can come back.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from urllm.data.schema import Catalogue, Record


def cut_history(history: Sequence[int], item_domain: np.ndarray, domain: int, keep: int) -> tuple[int, ...]:
    """``history`` with only the ``keep`` most recent items of ``domain`` (other items untouched)."""
    in_dom = [i for i, item in enumerate(history) if item_domain[item] == domain]
    drop = set(in_dom[: max(len(in_dom) - keep, 0)])
    return tuple(item for i, item in enumerate(history) if i not in drop)


def cold_start_copies(
    records: Sequence[Record], catalogue: Catalogue, keep: int
) -> tuple[list[Record], list[str]]:
    """Copies of the records having >= ``keep`` target-domain items, cut to ``keep``; and their keys."""
    copies, keys = [], []
    for r in records:
        n_target = sum(1 for item in r.history if catalogue.item_domain[item] == r.domain)
        if n_target < keep:
            continue
        user = f"{r.user}~cold{keep}"
        copies.append(
            Record(user, cut_history(r.history, catalogue.item_domain, r.domain, keep), r.target, r.domain)
        )
        keys.append(f"{user}|{catalogue.domains[r.domain]}|{r.target}")
    return copies, keys
