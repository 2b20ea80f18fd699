"""LLM picks + backbone scores -> one complete score vector over the target domain.

Every grounding mode ends here, so LLM systems are ranked against all items of the target domain with
the same tie-aware metrics as the baselines. The LLM output is a list of *groups* (one per beam, free
output or re-ranked candidate), each a tuple of item ids that share a title, with an LLM score.

``llm_first``: groups in LLM order come first (within a group, the backbone orders items that share a
title), then every other item by backbone score, ties kept as ties.

``weighted``: each LLM-scored item gets ``w * log_softmax(llm)[group] + (1 - w) * log_softmax(backbone)[item]``;
the scored items stay above the unscored ones, which follow in backbone order. With ``w = 0`` re-ranking
reproduces the backbone ranking; with ``w = 1`` the LLM alone orders its groups.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    m = x.max()
    return x - m - np.log(np.exp(x - m).sum())


def _unit(x: np.ndarray) -> np.ndarray:
    """Min-max scale into [0, 1] (monotone, so ties stay ties)."""
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def fuse(
    groups: Sequence[Sequence[int]],
    llm_scores: Sequence[float] | None,
    backbone: np.ndarray,
    domain_start: int,
    method: str = "llm_first",
    weight: float = 0.5,
) -> np.ndarray:
    """Scores ``(n_items_of_domain,)``, higher = better, for one record.

    Args:
        groups: global item ids per LLM pick, best first when ``llm_scores`` is None.
        llm_scores: one score per group (log-probabilities; higher = better), or None.
        backbone: ``(n_items_of_domain,)`` backbone scores of the target domain.
        domain_start: global id of the domain's first item (column 0 of ``backbone``).
        method: ``llm_first`` or ``weighted``.
        weight: the LLM's weight in ``weighted`` fusion.
    """
    backbone = np.asarray(backbone, dtype=np.float64)
    n = backbone.shape[0]
    if llm_scores is not None and len(llm_scores) != len(groups):
        raise ValueError(f"{len(groups)} groups but {len(llm_scores)} LLM scores")
    cols = [np.asarray(g, dtype=np.int64) - domain_start for g in groups]
    for g, c in zip(groups, cols, strict=True):
        if c.size and (c.min() < 0 or c.max() >= n):
            raise ValueError(
                f"LLM pick {list(g)} holds items outside the target domain [{domain_start}, {domain_start + n})"
            )
    out = _unit(backbone)  # unscored items: backbone order in [0, 1]
    if not groups:
        return out
    scores = (
        np.asarray(llm_scores, dtype=np.float64)
        if llm_scores is not None
        else -np.arange(len(groups), dtype=np.float64)  # given order
    )
    if method == "llm_first":
        order = np.argsort(-scores, kind="stable")
        seen: set[int] = set()
        for rank, g in enumerate(order):
            level = 2.0 * (len(order) - rank) + 1.0  # group levels 3, 5, 7 ... never overlap
            for c in cols[g].tolist():
                if c not in seen:
                    seen.add(c)
                    out[c] = level + out[c]  # within a group: backbone order (out[c] in [0, 1])
        return out
    if method == "weighted":
        llm = _log_softmax(scores)
        base = _log_softmax(backbone)
        fused: dict[int, float] = {}
        for g, c in enumerate(cols):
            for col in c.tolist():
                value = weight * llm[g] + (1.0 - weight) * base[col]
                fused[col] = max(value, fused.get(col, -np.inf))
        idx = np.fromiter(fused, dtype=np.int64)
        vals = np.fromiter(fused.values(), dtype=np.float64)
        out[idx] = 2.0 + (vals - vals.min())  # above every unscored item, monotone in the fused value
        return out
    raise ValueError(f"unknown fusion method {method!r} (llm_first | weighted)")
