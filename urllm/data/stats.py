"""Dataset statistics for ``urllm data stats``."""

from __future__ import annotations

import numpy as np

from urllm.data.schema import TwoDomainData, count_in_domain
from urllm.data.sequences import sequences_by_user


def _dist(values: list[int]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    if not len(a):
        return {}
    return {
        "min": float(a.min()),
        "mean": round(float(a.mean()), 2),
        "median": float(np.median(a)),
        "p95": float(np.percentile(a, 95)),
        "max": float(a.max()),
    }


def data_stats(data: TwoDomainData) -> dict:
    cat = data.catalogue
    out: dict = {
        "name": data.name,
        "items": {name: cat.domain_size(d) for d, name in enumerate(cat.domains)},
        "splits": {},
    }
    for split, recs in data.splits.items():
        by_user = sequences_by_user(recs)
        seqs = [s for ss in by_user.values() for s in ss]
        dom = [cat.item_domain[np.asarray([i for s in ss for i in s])] for ss in by_user.values()]
        out["splits"][split] = {
            "users": len(by_user),
            "sequences": len(seqs),
            "records": len(recs),
            "records_per_target_domain": {
                name: sum(r.domain == d for r in recs) for d, name in enumerate(cat.domains)
            },
            "interactions": int(sum(len(s) for s in seqs)),
            "interactions_per_domain": {
                name: int(sum((x == d).sum() for x in dom)) for d, name in enumerate(cat.domains)
            },
            "users_in_both_domains": int(sum(bool((x == 0).any() and (x == 1).any()) for x in dom)),
            "history_length": _dist([len(r.history) for r in recs]),
            "target_domain_history_length": _dist(
                [count_in_domain(r.history, cat.item_domain, r.domain) for r in recs]
            ),
        }
    users = [set(r.user for r in recs) for recs in data.splits.values()]
    out["user_overlap_between_splits"] = sum(len(a & b) for i, a in enumerate(users) for b in users[i + 1 :])
    return out


def format_stats(stats: dict) -> str:
    lines = [f"dataset {stats['name']}: items " + ", ".join(f"{k} {v}" for k, v in stats["items"].items())]
    for split, s in stats["splits"].items():
        lines.append(
            f"  {split}: {s['users']} users, {s['records']} records "
            f"({', '.join(f'{k} {v}' for k, v in s['records_per_target_domain'].items())} targets), "
            f"{s['interactions']} interactions in {s.get('sequences', s['users'])} sequences "
            f"({', '.join(f'{k} {v}' for k, v in s['interactions_per_domain'].items())}), "
            f"{s['users_in_both_domains']} users in both domains"
        )
        h = s["history_length"]
        lines.append(
            f"    history length min {h['min']:.0f} mean {h['mean']} median {h['median']:.0f} "
            f"p95 {h['p95']:.0f} max {h['max']:.0f}"
        )
        t = s["target_domain_history_length"]
        lines.append(
            f"    target-domain history length min {t['min']:.0f} mean {t['mean']} median {t['median']:.0f} "
            f"max {t['max']:.0f}"
        )
    lines.append(f"  users shared between splits: {stats['user_overlap_between_splits']}")
    return "\n".join(lines)
