"""What the LLM systems ask of their backbone beyond ``score``: scores of training users *out of fold*
(the candidate lists the listwise ranker is fine-tuned on, and the held-out lists its fusion is fit on,
must come from the process that makes the valid / test lists) and which training users it never saw.

A backbone may have ``score_out_of_fold(records, domain)`` (the count prior: exact leave-user-out; the
graph: without the user's fold) and ``unseen_users()`` (the graph: its held-out fold 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from urllm.data.schema import Record


def out_of_fold_scores(backbone, records: Sequence[Record], domain: int) -> tuple[np.ndarray, bool]:
    """``(scores, out_of_fold)``: the backbone's out-of-fold scores when it has them, else in-sample ones."""
    oof = getattr(backbone, "score_out_of_fold", None)
    if callable(oof):
        return np.asarray(oof(records, domain), dtype=np.float64), True
    return np.asarray(backbone.score(records, domain), dtype=np.float64), False


def unseen_users(backbone) -> set[str] | None:
    """Training users whose out-of-fold scores are exact (the backbone never trained on them), or None
    when all are (the count prior) or the backbone does not say."""
    f = getattr(backbone, "unseen_users", None)
    return f() if callable(f) else None
