"""Paired 95 % intervals between two systems from two ``urllm evaluate --per-record`` files; JSON lines.

    python scripts/paired_jsonl.py A.jsonl SYSTEM_A B.jsonl SYSTEM_B

For systems scored in different runs (e.g. the backbone ``graph`` scored earlier): the records are
matched by key, every record of B must be in A; per domain and overall, MRR and NDCG@10 (a - b).
"""

from __future__ import annotations

import json
import sys

import numpy as np

from urllm.eval.paired import paired_bootstrap


def load(path: str, system: str) -> dict[str, dict]:
    out = {}
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if r["system"] == system and r["protocol"] == "standard":
                out[r["key"]] = r
    return out


def main(argv: list[str]) -> int:
    a, b = load(argv[0], argv[1]), load(argv[2], argv[3])
    missing = [k for k in b if k not in a]
    if missing or not b:
        raise SystemExit(f"{len(missing)} records of {argv[3]} missing from {argv[0]} (e.g. {missing[:1]})")
    for dom in sorted({r["domain"] for r in b.values()}) + ["overall"]:
        keys = [k for k in b if dom == "overall" or b[k]["domain"] == dom]
        for m in ("MRR", "NDCG@10"):
            r = paired_bootstrap(np.array([a[k][m] for k in keys]), np.array([b[k][m] for k in keys]), 2000, 0)
            print(json.dumps({"a": argv[1], "b": argv[3], "domain": dom, "metric": m} | r))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
