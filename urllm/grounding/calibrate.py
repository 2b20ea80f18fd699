"""Fusion that cannot silently lose: scale-free over the candidates, weight chosen on held-out users.

For one record with LLM-scored candidates ``C`` (groups of items; rank mode: the backbone's top K) and
backbone scores ``s`` over the whole target domain::

    fused_i = (1 - w) * [s_i / T - logsumexp_{j in C} s_j / T] + w * l_i

where ``l_i`` is the LLM's log-softmax over its groups (an item takes its best group) and, for an item
outside ``C``, the lowest ``l`` of the record. Both terms are log-probabilities over the candidates, so
the backbone's raw scale does not matter: multiplying ``s`` by 10 multiplies the fitted ``T`` by 10 and
leaves every ranking unchanged. Items outside ``C`` keep the backbone's order and never pass a
candidate with the same backbone score; at ``w = 0`` the ranking is exactly the backbone's.

``T`` maximises the held-out likelihood of the target under ``softmax(s_C / T)`` (records whose target
is a candidate); ``w`` maximises held-out MRR over a grid that includes 0. The held-out records are
training users never fine-tuned on (:func:`urllm.prompts.rank.holdout_users`), scored by the backbone
out of fold -- never the split that is reported. Since 0 is in the grid, the held-out gain is >= 0.
With ``grounding.fusion_confidence`` (default 0.95) the best weight must also show a held-out gain whose
paired bootstrap interval lies above 0, else the backbone is kept (``w = 0``): a gain on a few dozen
held-out lists that could be chance does not move the ranking.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from urllm.eval.paired import paired_bootstrap

W_MAX = 1.0 - 1e-6  # w = 1 keeps a trace of the backbone so items outside C stay ordered, not tied


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    m = x.max()
    return x - m - np.log(np.exp(x - m).sum())


def _logsumexp(x: np.ndarray) -> float:
    m = float(x.max())
    return m + float(np.log(np.exp(x - m).sum()))


def candidate_columns(groups: Sequence[Sequence[int]], llm_scores: Sequence[float], lo: int, n: int):
    """(columns, LLM log-softmax per column): each item's best group, columns relative to ``lo``."""
    if not len(groups):
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    ls = _log_softmax(np.asarray(llm_scores, dtype=np.float64))
    best: dict[int, float] = {}
    for g, v in zip(groups, ls, strict=True):
        for item in g:
            c = int(item) - lo
            if not 0 <= c < n:
                raise ValueError(f"LLM pick {list(g)} holds items outside the target domain [{lo}, {lo + n})")
            best[c] = max(v, best.get(c, -np.inf))
    cols = np.fromiter(best, dtype=np.int64, count=len(best))
    return cols, np.fromiter(best.values(), dtype=np.float64, count=len(best))


def fuse_calibrated(
    groups: Sequence[Sequence[int]],
    llm_scores: Sequence[float],
    backbone: np.ndarray,
    lo: int,
    weight: float,
    temperature: float,
) -> np.ndarray:
    """Fused scores ``(n_items_of_domain,)`` of one record (see the module docstring)."""
    b = np.asarray(backbone, dtype=np.float64) / temperature
    if not len(groups):
        return b
    cols, llm = candidate_columns(groups, llm_scores, lo, b.shape[0])
    w = min(weight, W_MAX)
    base = b - _logsumexp(b[cols])
    out = (1.0 - w) * base + w * llm.min()
    out[cols] = (1.0 - w) * base[cols] + w * llm
    return out


def reciprocal_rank(scores: np.ndarray, col: int) -> float:
    """Tie-aware expected reciprocal rank of column ``col`` (mean of 1/r over its tied ranks)."""
    s = scores[col]
    better = int(np.sum(scores > s))
    tied = int(np.sum(scores == s))  # includes col itself
    return float(np.mean(1.0 / np.arange(better + 1, better + tied + 1)))


@dataclass
class FusionFit:
    """What the held-out fit chose and how the grid did (goes into the evaluate JSON)."""

    weight: float = 0.0
    temperature: float = 1.0
    n: int = 0  # held-out records
    n_target_in_candidates: int = 0
    mrr_by_weight: dict[str, float] = field(default_factory=dict)
    holdout_mrr_backbone: float = 0.0
    holdout_mrr_fused: float = 0.0
    holdout_gain_mrr: float = 0.0
    best_weight: float = 0.0  # the best held-out MRR's weight, before the confidence test
    best_gain_lo: float | None = None  # its paired interval of the held-out gain (confidence > 0)
    best_gain_hi: float | None = None

    def to_dict(self) -> dict:
        return {f"fusion_{k}": v for k, v in asdict(self).items()}


@dataclass
class HeldOut:
    """One held-out record: its LLM groups and scores, backbone row, domain start and target."""

    groups: list
    llm_scores: list
    backbone: np.ndarray
    lo: int
    target: int


def fit_temperature(records: Sequence[HeldOut]) -> float:
    """The ``T`` of ``softmax(s_C / T)`` with the best held-out target log-likelihood (grid, scale-free)."""
    rows = []
    for r in records:
        cols, _ = candidate_columns(r.groups, r.llm_scores, r.lo, len(r.backbone))
        t = r.target - r.lo
        if t in set(cols.tolist()):
            rows.append((r.backbone[cols], int(np.flatnonzero(cols == t)[0])))
    spread = [float(np.std(s)) for s, _ in rows if np.std(s) > 0] or [
        float(np.std(r.backbone)) or 1.0 for r in records[:1]
    ]
    s0 = float(np.median(spread)) if spread else 1.0
    grid = s0 * 2.0 ** np.linspace(-6, 6, 49)
    if not rows:
        return s0
    nll = [-np.mean([_log_softmax(s / T)[i] for s, i in rows]) for T in grid]
    return float(grid[int(np.argmin(nll))])


def fit_fusion(
    records: Sequence[HeldOut], weights: Sequence[float], confidence: float = 0.0, seed: int = 0
) -> FusionFit:
    """Fit ``T`` then pick ``w`` by held-out MRR (ties: the smaller weight, so 0 wins a tie).

    ``confidence`` > 0: the best ``w`` is kept only when the paired bootstrap interval (this level,
    seeded) of its per-record held-out gain over the backbone lies above 0; else ``w = 0``. A gain seen on
    a few dozen held-out lists that could be chance does not get to move the ranking."""
    fit = FusionFit(n=len(records))
    if not records:
        return fit
    fit.temperature = fit_temperature(records)
    fit.n_target_in_candidates = sum(any(r.target in g for g in r.groups) for r in records)
    rr: dict[float, np.ndarray] = {}
    for w in sorted(weights):
        rr[w] = np.array(
            [
                reciprocal_rank(
                    fuse_calibrated(r.groups, r.llm_scores, r.backbone, r.lo, w, fit.temperature),
                    r.target - r.lo,
                )
                for r in records
            ]
        )
        fit.mrr_by_weight[f"{w:g}"] = round(float(rr[w].mean()), 6)
    best = max(sorted(weights), key=lambda w: (fit.mrr_by_weight[f"{w:g}"], -w))
    fit.best_weight = float(best)
    if best > 0 and confidence > 0:
        gain = paired_bootstrap(rr[best], rr[0.0], seed=seed, level=confidence)
        fit.best_gain_lo, fit.best_gain_hi = round(gain["lo"], 6), round(gain["hi"], 6)
        if gain["lo"] <= 0:
            best = 0.0
    fit.weight = float(best)
    fit.holdout_mrr_backbone = fit.mrr_by_weight[f"{0.0:g}"]
    fit.holdout_mrr_fused = fit.mrr_by_weight[f"{best:g}"]
    fit.holdout_gain_mrr = round(fit.holdout_mrr_fused - fit.holdout_mrr_backbone, 6)
    return fit
