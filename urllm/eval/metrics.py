"""Ranking metrics with ties broken uniformly at random, in expectation.

For a target whose score is beaten by ``g`` candidates and tied with ``t`` other candidates, every rank
``g+1 .. g+t+1`` is equally likely. We report the *expected* value of each metric over those ranks, so a
system that scores everything equally gets exactly the metric of a random ranking, and no system can
profit from ties (an "optimistic" rank would) or be punished for them (a "pessimistic" one would).
"""

from __future__ import annotations

import numpy as np


def greater_and_ties(scores: np.ndarray, target_col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row, how many candidates score above the target, and how many others tie with it.

    ``scores``: (B, C) float; ``target_col``: (B,) column of the target in each row.
    """
    scores = np.asarray(scores, dtype=np.float64)
    tgt = scores[np.arange(len(scores)), target_col][:, None]  # (B, 1)
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    greater = (scores > tgt).sum(axis=1)
    ties = (scores == tgt).sum(axis=1) - 1
    return greater.astype(np.int64), ties.astype(np.int64)


def _harmonic(n: np.ndarray) -> np.ndarray:
    """H(n) = sum_{r=1..n} 1/r, exact for small n, asymptotic beyond."""
    n = np.asarray(n, dtype=np.float64)
    small = n < 64
    out = np.empty_like(n)
    table = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, 64))])
    out[small] = table[n[small].astype(np.int64)]
    m = n[~small]
    out[~small] = np.log(m) + 0.5772156649015329 + 1 / (2 * m) - 1 / (12 * m**2) + 1 / (120 * m**4)
    return out


def expected_metrics(greater: np.ndarray, ties: np.ndarray, ks: list[int]) -> dict[str, np.ndarray]:
    """Per-record expected MRR, HR@k and NDCG@k given ``greater`` and ``ties`` counts."""
    g = np.asarray(greater, dtype=np.int64)
    t = np.asarray(ties, dtype=np.int64)
    n_ranks = (t + 1).astype(np.float64)
    out = {"MRR": (_harmonic(g + t + 1) - _harmonic(g)) / n_ranks}
    for k in sorted(ks):
        # ranks g+1 .. min(k, g+t+1) fall inside the cut-off
        inside = np.clip(np.minimum(k, g + t + 1) - g, 0, None)
        out[f"HR@{k}"] = inside / n_ranks
        discount = 1.0 / np.log2(np.arange(2, k + 2))  # rank r -> 1/log2(r+1), r = 1..k
        cum = np.concatenate([[0.0], np.cumsum(discount)])
        lo = np.minimum(g, k)
        hi = np.minimum(g + t + 1, k)
        out[f"NDCG@{k}"] = (cum[hi] - cum[lo]) / n_ranks
    return out


def summarize(per_record: dict[str, np.ndarray], mask: np.ndarray | None = None) -> dict[str, float]:
    """Mean of each per-record metric (over ``mask`` if given), with the count ``n``."""
    first = next(iter(per_record.values()))
    mask = np.ones(len(first), dtype=bool) if mask is None else mask
    n = int(mask.sum())
    out: dict[str, float] = {"n": n}
    for name, values in per_record.items():
        out[name] = float(values[mask].mean()) if n else float("nan")
    return out
