"""Paired comparison of systems scored in *different* ``urllm evaluate`` calls, from their per-record files.

``urllm evaluate --baseline`` pairs the systems of one call; an ablation or a system trained in another run
folder writes its own ``--per-record`` file. This script pairs any two (file, system) rows on the records
they share by key (it refuses when the record sets differ), per domain and overall, with the paired
bootstrap of :mod:`urllm.eval.paired` (2,000 resamples, seed 0), for the ``standard`` protocol (all valid
records, full ranking) unless ``--protocol`` says otherwise.

    python scripts/paired_runs.py A.jsonl:graph B.jsonl:graph [C.jsonl:sasrec ...] --against B.jsonl:graph

Each positional ``FILE:SYSTEM`` is compared with ``--against`` (default: the first). Prints one Markdown
row per (system, domain): ``n``, both MRRs, the difference and its 95 % interval, then the same for
NDCG@10; ``--out`` writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from urllm.eval.paired import align, paired_bootstrap, rank_outcomes
from urllm.eval.per_record import read_per_record

logger = logging.getLogger("paired_runs")


def load(spec: str, protocol: str):
    path, _, system = spec.rpartition(":")
    if not path:
        raise SystemExit(f"{spec}: give FILE.jsonl:SYSTEM")
    per = read_per_record(Path(path), system).get(protocol)
    if per is None:
        raise SystemExit(f"{path}: no rows of system {system!r} and protocol {protocol!r}")
    return per


def compare(a, b, metrics=("MRR", "NDCG@10")) -> dict[str, dict]:
    """Per domain and overall: n, means of a and b, paired difference a - b with its interval."""
    ia, ib = align(a.keys, b.keys, f"{a.system} vs {b.system}")
    domains = np.array(a.domains)[ia]
    out = {}
    for group in [*dict.fromkeys(domains.tolist()), "overall"]:
        mask = np.ones(len(ia), bool) if group == "overall" else domains == group
        entry = {"n": int(mask.sum())}
        for m in metrics:
            va, vb = a.values[m][ia][mask], b.values[m][ib][mask]
            entry[m] = {"a": float(va.mean()), "b": float(vb.mean())} | paired_bootstrap(va, vb)
        entry |= rank_outcomes(a.values["rank"][ia][mask], b.values["rank"][ib][mask])
        out[group] = entry
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="FILE.jsonl:SYSTEM")
    ap.add_argument("--against", default="", help="FILE.jsonl:SYSTEM every run is compared with")
    ap.add_argument("--protocol", default="standard", help="standard | cold-0 | cold-1 | cold-3")
    ap.add_argument("--out", default="", help="write the comparisons as JSON here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    base_spec = args.against or args.runs[0]
    base = load(base_spec, args.protocol)
    results = {}
    logger.info("| run | vs | domain | n | MRR | vs MRR | diff [95 % CI] | NDCG@10 diff [95 % CI] |")
    logger.info("|---|---|---|---|---|---|---|---|")
    for spec in args.runs:
        if spec == base_spec:
            continue
        res = compare(load(spec, args.protocol), base)
        results[spec] = res
        for group, e in res.items():
            m, nd = e["MRR"], e["NDCG@10"]
            logger.info(
                "| %s | %s | %s | %d | %.4f | %.4f | %+.4f [%+.4f, %+.4f] | %+.4f [%+.4f, %+.4f] |",
                spec, base_spec, group, e["n"], m["a"], m["b"], m["diff"], m["lo"], m["hi"],
                nd["diff"], nd["lo"], nd["hi"],
            )  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps({"against": base_spec, "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
