"""Score a recommender on one split: metrics per target domain, overall, and by cold-start bucket."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from tqdm.auto import tqdm

from urllm.data.schema import Record, TwoDomainData, count_in_domain
from urllm.eval.config import EvalConfig
from urllm.eval.metrics import expected_metrics, greater_and_ties, summarize
from urllm.recommender import Recommender

logger = logging.getLogger(__name__)


def _ordered(summary: dict[str, float]) -> dict[str, float]:
    """``n``, ``MRR``, then NDCG@k and HR@k in increasing k."""

    def key(name: str) -> tuple[int, int]:
        if name == "n":
            return (0, 0)
        if name == "MRR":
            return (1, 0)
        kind, _, k = name.partition("@")
        return ({"NDCG": 2, "HR": 3}.get(kind, 4), int(k) if k.isdigit() else 0)

    return {k: summary[k] for k in sorted(summary, key=key)}


def cold_start_bucket(n_target_items: int, bins: Sequence[int]) -> str:
    """Name of the bucket ``n`` falls in, e.g. bins [0, 1, 3] -> "0", "1-2", "3+"."""
    i = int(np.searchsorted(bins, n_target_items, side="right")) - 1
    lo = bins[i]
    if i == len(bins) - 1:
        return f"{lo}+"
    hi = bins[i + 1] - 1
    return str(lo) if hi == lo else f"{lo}-{hi}"


def _sampled_columns(target_col: int, n_items: int, n_neg: int, seed: int, d: int, index: int) -> np.ndarray:
    """The target column followed by ``n_neg`` distinct negatives, seeded per record."""
    rng = np.random.default_rng([seed, d, index])
    n_neg = min(n_neg, n_items - 1)
    neg = rng.choice(n_items - 1, size=n_neg, replace=False)
    neg = neg + (neg >= target_col)  # skip the target
    return np.concatenate([[target_col], neg])


def rank_counts(
    system: Recommender,
    records: Sequence[Record],
    d: int,
    data: TwoDomainData,
    cfg: EvalConfig,
    desc: str = "",
) -> tuple[np.ndarray, np.ndarray]:
    """``greater`` and ``ties`` counts of each record's target (all of domain ``d``)."""
    lo = data.catalogue.domain_range(d).start
    n_items = data.catalogue.domain_size(d)
    greater, ties = [], []
    for start in tqdm(range(0, len(records), cfg.batch_size), desc=desc, leave=False, disable=None):
        batch = records[start : start + cfg.batch_size]
        scores = np.asarray(system.score(batch, d), dtype=np.float64)
        if scores.shape != (len(batch), n_items):
            raise ValueError(
                f"system returned scores of shape {scores.shape}, expected {(len(batch), n_items)}"
            )
        tcol = np.array([r.target - lo for r in batch])
        if cfg.sampled_negatives:
            cols = np.stack(
                [
                    _sampled_columns(int(t), n_items, cfg.sampled_negatives, cfg.seed, d, start + j)
                    for j, t in enumerate(tcol)
                ]
            )
            scores = np.take_along_axis(scores, cols, axis=1)
            tcol = np.zeros(len(batch), dtype=np.int64)
        g, t = greater_and_ties(scores, tcol)
        greater.append(g)
        ties.append(t)
    return np.concatenate(greater), np.concatenate(ties)


def evaluate(system: Recommender, data: TwoDomainData, split: str, cfg: EvalConfig, system_name: str) -> dict:
    """Metrics of ``system`` on ``split``, shaped as the ``urllm evaluate`` JSON."""
    records = data.records(split)
    cat = data.catalogue
    result: dict = {
        "system": system_name,
        "split": split,
        "protocol": f"sampled-{cfg.sampled_negatives}" if cfg.sampled_negatives else "full",
        "per_domain": {},
        "overall": {},
        "cold_start": {},
    }
    all_metrics: list[dict[str, np.ndarray]] = []
    for d, name in enumerate(cat.domains):
        recs = [r for r in records if r.domain == d]
        if not recs:
            continue
        g, t = rank_counts(system, recs, d, data, cfg, desc=f"{system_name} {name}")
        per = expected_metrics(g, t, cfg.ks)
        all_metrics.append(per)
        result["per_domain"][name] = _ordered(summarize(per))
        buckets = np.array(
            [
                cold_start_bucket(count_in_domain(r.history, cat.item_domain, d), cfg.cold_start_bins)
                for r in recs
            ]
        )
        result["cold_start"][name] = {
            b: _ordered(summarize(per, buckets == b))
            for b in dict.fromkeys(sorted(set(buckets), key=_bucket_lo))
        }
    if all_metrics:
        merged = {k: np.concatenate([m[k] for m in all_metrics]) for k in all_metrics[0]}
        result["overall"] = _ordered(summarize(merged))
    extra = getattr(system, "extra_metrics", None)
    if callable(extra):
        for name, values in extra().items():
            result["per_domain"].setdefault(name, {}).update(values)
    return result


def _bucket_lo(bucket: str) -> int:
    return int(bucket.split("-")[0].rstrip("+"))


def format_table(result: dict) -> str:
    """A plain-text table of the per-domain and overall metrics."""
    rows = [(name, m) for name, m in result["per_domain"].items()] + [("overall", result["overall"])]
    cols = [c for c in rows[0][1] if c != "n" and isinstance(rows[0][1][c], float)]
    head = f"{'domain':<10} {'n':>6} " + " ".join(f"{c:>8}" for c in cols)
    lines = [f"{result['system']} on {result['split']} ({result['protocol']} ranking)", head]
    for name, m in rows:
        lines.append(
            f"{name:<10} {m.get('n', 0):>6} " + " ".join(f"{m.get(c, float('nan')):>8.4f}" for c in cols)
        )
    return "\n".join(lines)


def format_summary(results: dict[str, dict], metrics: tuple[str, ...] = ("MRR", "NDCG@10", "HR@10")) -> str:
    """One line per system: the chosen metrics for each domain."""
    if not results:
        return "(no systems scored)"
    first = next(iter(results.values()))
    domains = list(first["per_domain"])
    head = f"{'system':<22}" + "".join(f"{d + ' ' + m:>16}" for d in domains for m in metrics)
    lines = [f"{first['split']} split, {first['protocol']} ranking", head]
    for name, res in results.items():
        cells = "".join(
            f"{res['per_domain'].get(d, {}).get(m, float('nan')):>16.4f}" for d in domains for m in metrics
        )
        lines.append(f"{name:<22}{cells}")
    return "\n".join(lines)
