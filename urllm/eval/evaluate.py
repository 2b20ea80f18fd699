"""Score a recommender on one split: metrics per target domain, overall, and by cold-start bucket."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from tqdm.auto import tqdm

from urllm.data.schema import Record, TwoDomainData, count_in_domain
from urllm.eval.cold_start import cold_start_copies
from urllm.eval.config import EvalConfig
from urllm.eval.metrics import expected_metrics, greater_and_ties, summarize
from urllm.eval.paired import align, paired_section
from urllm.eval.per_record import PerRecord
from urllm.infer.jobs import record_key
from urllm.recommender import Recommender, is_llm_system

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


def rank_counts_by_domain(
    system: Recommender, records: Sequence[Record], data: TwoDomainData, cfg: EvalConfig, name: str
) -> tuple[np.ndarray, np.ndarray]:
    """``greater`` and ``ties`` of every record (in the order of ``records``), scored domain by domain."""
    g = np.zeros(len(records), dtype=np.int64)
    t = np.zeros(len(records), dtype=np.int64)
    for d, dname in enumerate(data.catalogue.domains):
        idx = [i for i, r in enumerate(records) if r.domain == d]
        if idx:
            gd, td = rank_counts(system, [records[i] for i in idx], d, data, cfg, desc=f"{name} {dname}")
            g[idx], t[idx] = gd, td
    return g, t


def per_record_scores(
    system: Recommender,
    records: Sequence[Record],
    data: TwoDomainData,
    cfg: EvalConfig,
    name: str,
    keys: Sequence[str] | None = None,
    desc: str = "",
) -> PerRecord:
    """Score ``records`` with ``system``: every record's expected rank and metrics."""
    cat = data.catalogue
    g, t = rank_counts_by_domain(system, records, data, cfg, desc or name)
    values = {"rank": g + t / 2.0 + 1.0} | expected_metrics(g, t, cfg.ks)
    return PerRecord(
        system=name,
        keys=list(keys) if keys is not None else [record_key(r, cat) for r in records],
        users=[r.user for r in records],
        domains=[cat.domains[r.domain] for r in records],
        targets=[int(r.target) for r in records],
        n_target_history=[count_in_domain(r.history, cat.item_domain, r.domain) for r in records],
        values=values,
    )


def summarise(per: PerRecord, domains: Sequence[str], bins: Sequence[int]) -> dict:
    """``per_domain``, ``overall`` and ``cold_start`` (history-length buckets) of one system."""
    dom = np.array(per.domains)
    metrics = per.metrics()
    out: dict = {"per_domain": {}, "overall": {}, "cold_start": {}}
    buckets = np.array([cold_start_bucket(n, bins) for n in per.n_target_history])
    for name in domains:
        mask = dom == name
        if not mask.any():
            continue
        out["per_domain"][name] = _ordered(summarize(metrics, mask))
        out["cold_start"][name] = {
            b: _ordered(summarize(metrics, mask & (buckets == b)))
            for b in sorted(set(buckets[mask]), key=_bucket_lo)
        }
    if len(dom):
        out["overall"] = _ordered(summarize(metrics))
    return out


def evaluate_records(
    system: Recommender, data: TwoDomainData, split: str, cfg: EvalConfig, system_name: str
) -> tuple[dict, dict[str, PerRecord]]:
    """Metrics of ``system`` on ``split`` (the ``urllm evaluate`` JSON) and its per-record results.

    The per-record results are keyed by protocol: ``"standard"`` (the split as it is) and, for every N of
    ``cfg.cold_start``, ``"cold-N"``: copies of the records with the target-domain history cut to its N
    most recent items (see :func:`urllm.eval.cold_start.cold_start_copies`).
    """
    records = data.records(split)
    cat = data.catalogue
    per = {"standard": per_record_scores(system, records, data, cfg, system_name)}
    result: dict = {
        "system": system_name,
        "split": split,
        "protocol": f"sampled-{cfg.sampled_negatives}" if cfg.sampled_negatives else "full",
    } | summarise(per["standard"], cat.domains, cfg.cold_start_bins)
    cuts = cfg.cold_start
    if cuts and is_llm_system(system_name) and not cfg.cold_start_llm:
        cuts = []  # said in the JSON, never silently: every copy is one more LLM call
        result["simulated_cold_start_skipped"] = (
            "LLM system: set eval.cold_start_llm=true to score the copies"
        )
    if cuts:
        result["simulated_cold_start"] = {}
    for n in cuts:
        copies, keys = cold_start_copies(records, cat, n)
        per[f"cold-{n}"] = per_record_scores(
            system, copies, data, cfg, system_name, keys, f"{system_name} cold-{n}"
        )
        s = summarise(per[f"cold-{n}"], cat.domains, cfg.cold_start_bins)
        result["simulated_cold_start"][str(n)] = {"per_domain": s["per_domain"], "overall": s["overall"]}
    extra = getattr(system, "extra_metrics", None)
    if callable(extra):
        for name, values in extra().items():
            result["per_domain"].setdefault(name, {}).update(values)
    return result, per


def evaluate(system: Recommender, data: TwoDomainData, split: str, cfg: EvalConfig, system_name: str) -> dict:
    """Metrics of ``system`` on ``split``, shaped as the ``urllm evaluate`` JSON."""
    return evaluate_records(system, data, split, cfg, system_name)[0]


def add_paired(
    results: dict[str, dict],
    per_record: dict[str, dict[str, PerRecord]],
    baseline: str,
    cfg: EvalConfig,
) -> None:
    """Add to every other system's result a ``paired`` section against ``baseline`` (same records).

    Per domain and overall, for MRR and NDCG@10: the mean difference (system - baseline) with a seeded
    paired bootstrap 95 % interval, and the fractions of records ranked better / worse / the same.
    Simulated cold-start protocols get theirs under ``simulated_cold_start.<N>.paired``.
    """
    if baseline not in per_record:
        raise ValueError(f"baseline {baseline!r} was not scored (scored: {', '.join(per_record)})")
    metrics = ("MRR", "NDCG@10") if 10 in cfg.ks else ("MRR",)
    for name, protocols in per_record.items():
        if name == baseline:
            continue
        for protocol, per in protocols.items():
            if protocol not in per_record[baseline]:
                continue  # the baseline did not score this protocol (an LLM baseline without cold start)
            base = per_record[baseline][protocol]
            _, ib = align(per.keys, base.keys, f"{name} vs {baseline}")
            a, b = per.metrics(), {k: v[ib] for k, v in base.metrics().items()}
            dom = np.array(per.domains)
            groups = {d: dom == d for d in dict.fromkeys(per.domains)} | {"overall": np.ones(len(dom), bool)}
            section = {"baseline": baseline, "resamples": cfg.bootstrap_resamples, "seed": cfg.seed}
            section |= paired_section(a, b, groups, metrics, cfg.bootstrap_resamples, cfg.seed)
            if protocol == "standard":
                results[name]["paired"] = section
            else:
                results[name]["simulated_cold_start"][protocol.split("-", 1)[1]]["paired"] = section


def _bucket_lo(bucket: str) -> int:
    return int(bucket.split("-")[0].rstrip("+"))


def _header(result: dict) -> str:
    head = f"{result['split']} split, {result['protocol']} ranking"
    return head + (f" — subset: {result['subset']}" if result.get("subset") else ", all records")


def format_table(result: dict) -> str:
    """A plain-text table of the per-domain and overall metrics (and the paired comparison, if any)."""
    rows = [(name, m) for name, m in result["per_domain"].items() if "n" in m] + [
        ("overall", result["overall"])
    ]
    cols = [c for c in rows[0][1] if c != "n" and isinstance(rows[0][1][c], float)]
    head = f"{'domain':<10} {'n':>6} " + " ".join(f"{c:>8}" for c in cols)
    lines = [f"{result['system']} on {_header(result)}", head]
    for name, m in rows:
        lines.append(
            f"{name:<10} {m.get('n', 0):>6} "
            + " ".join(f"{m[c]:>8.4f}" if isinstance(m.get(c), float) else f"{'-':>8}" for c in cols)
        )
    lines += _paired_lines(result)
    for n, cs in result.get("simulated_cold_start", {}).items():
        cells = ", ".join(f"{d} MRR {m['MRR']:.4f} (n={m['n']})" for d, m in cs["per_domain"].items())
        lines.append(f"simulated cold start, {n} target-domain items: {cells}")
        lines += ["  " + x for x in _paired_lines(cs)]
    return "\n".join(lines)


def _interval(p: dict) -> str:
    return f"{p['diff']:+.4f} [{p['lo']:+.4f}, {p['hi']:+.4f}]"


def _paired_lines(result: dict) -> list[str]:
    """``vs <baseline>`` lines: mean difference with its paired 95 % interval, per domain and overall."""
    paired = result.get("paired")
    if not paired:
        return []
    lines = [f"vs {paired['baseline']} (paired bootstrap 95 % interval, {paired['resamples']} resamples):"]
    for group, p in paired.items():
        if not isinstance(p, dict):
            continue
        metrics = "  ".join(f"{m} {_interval(p[m])}" for m in ("MRR", "NDCG@10") if m in p)
        lines.append(
            f"  {group:<10} n={p['n']:<5} {metrics}  better {p['better']:.0%} / worse {p['worse']:.0%}"
            f" / same {p['same']:.0%}"
        )
    return lines


def format_summary(results: dict[str, dict], metrics: tuple[str, ...] = ("MRR", "NDCG@10", "HR@10")) -> str:
    """One line per system: ``n`` and the chosen metrics for each domain; then the paired comparisons."""
    if not results:
        return "(no systems scored)"
    first = next(iter(results.values()))
    domains = [d for d, m in first["per_domain"].items() if "n" in m]
    head = f"{'system':<22}" + "".join(
        f"{d + ' n':>10}" + "".join(f"{d + ' ' + m:>16}" for m in metrics) for d in domains
    )
    lines = [_header(first), head]
    for name, res in results.items():
        cells = ""
        for d in domains:
            m = res["per_domain"].get(d, {})
            cells += f"{m.get('n', 0):>10}" + "".join(f"{m.get(k, float('nan')):>16.4f}" for k in metrics)
        lines.append(f"{name:<22}{cells}")
    for name, res in results.items():
        if res.get("paired"):
            lines += [f"{name} " + x if i == 0 else x for i, x in enumerate(_paired_lines(res))]
    return "\n".join(lines)
