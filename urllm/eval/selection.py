"""Model selection without the reported split: a seeded fold of held-out *training* users.

Trainers choose epochs / stop early on records of training users they do not train on; ``valid`` (and
``test``) only report. The fold is drawn over users, so both records of a held-out user (one per target
domain) leave training together and nothing of theirs is seen while fitting.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from urllm.data.schema import Record


def heldout_users(records: Sequence[Record], fraction: float, seed: int) -> tuple[list[Record], list[Record]]:
    """Split training ``records`` by user: (records to fit on, records of the held-out users)."""
    if not 0 < fraction < 1:
        raise ValueError(f"the held-out fraction must be in (0, 1), got {fraction}")
    users = sorted({r.user for r in records})
    rng = np.random.default_rng([seed, 7919])
    n = max(1, round(fraction * len(users)))
    held = set(rng.choice(np.array(users, dtype=object), size=min(n, len(users) - 1), replace=False))
    return [r for r in records if r.user not in held], [r for r in records if r.user in held]
