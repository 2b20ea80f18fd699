"""Metrics of the LLM systems and the baselines on the same subset of records; prints a table, writes JSON.

    python scripts/eval_grounding.py --config configs/art_office.yaml --limit 10 \
        --systems transition,graph,urllm-constrained,urllm-free,urllm-rerank,urllm-no-grounding \
        --out runs/art-office/grounding/eval_valid.json [key=value ...]

The subset is ``infer.limit`` = ``--limit`` records per target domain (the first ones of the split), so
``urllm evaluate`` on a CPU can be reproduced on a documented sample; every system is scored on exactly
those records with the same full-ranking metrics. LLM systems read (or fill) the inference JSONL
under ``<run_dir>/infer/<split>/``; their per-domain results carry ``raw_ood_rate``,
``raw_valid_title_rate`` and ``ood_rate``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--split", default="valid", choices=["valid", "test"])
    p.add_argument("--limit", type=int, required=True, help="records per target domain")
    p.add_argument("--systems", required=True, help="comma-separated system names")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--out", help="write {'systems': {name: result}} JSON here")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    import torch

    from urllm.config import load_config
    from urllm.data.load import load_data_from_config
    from urllm.data.schema import TwoDomainData
    from urllm.eval.evaluate import evaluate, format_summary
    from urllm.infer.jobs import select_records
    from urllm.recommender import make_system

    cfg = load_config(args.config, [*args.overrides, f"infer.limit={args.limit}"])
    if args.threads:
        torch.set_num_threads(args.threads)
    full = load_data_from_config(cfg.data)
    subset = select_records(full.records(args.split), args.limit)
    splits = {"train": full.records("train"), args.split: subset}
    if "valid" in full.splits and args.split != "valid":
        splits["valid"] = full.records("valid")
    data = TwoDomainData(full.name, full.catalogue, splits)
    results = {}
    for name in args.systems.split(","):
        system = make_system(name, cfg)
        run_dir = cfg.run_path / ("graph" if name == "graph" else f"systems/{name}")
        run_dir.mkdir(parents=True, exist_ok=True)
        system.fit(data, run_dir)
        results[name] = evaluate(system, data, args.split, cfg.eval, name)
        results[name]["subset"] = f"first {args.limit} records per target domain of {args.split}"
    print(format_summary(results))
    cols = ("raw_ood_rate", "raw_valid_title_rate", "raw_empty_rate", "ood_rate")
    for name, res in results.items():
        for d, m in res["per_domain"].items():
            if any(c in m for c in cols):
                print(f"{name:<22}{d:<8}" + "  ".join(f"{c}={m.get(c)}" for c in cols))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"systems": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
