"""Benchmark the dual-graph encoder: seconds per training epoch, seconds to embed all users, peak memory.

    python scripts/bench_graph.py --config configs/art_office.yaml --threads 2 [graph.key=value ...]

Defaults to the reference size (graph.hidden=328, graph.max_len=30); later overrides win. Prints JSON.
``--max-steps N`` times only N training steps and extrapolates to the epoch by training users (steps of
the last batch of a fold are smaller; marked in the JSON). ``--profile FILE`` also writes a torch.profiler
table of those steps (self CPU time per operator and input shape) to FILE.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import time


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--max-steps", type=int, default=0, help="0 = a full epoch")
    p.add_argument("--out", help="also write the JSON here")
    p.add_argument("--profile", help="write a torch.profiler table of the timed steps here")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import torch
    from accelerate import Accelerator

    from urllm.config import load_config
    from urllm.data.load import load_data_from_config
    from urllm.graph.batches import training_batch
    from urllm.graph.model import DualGraphEncoder
    from urllm.graph.system import GraphSystem, build_graphs
    from urllm.graph.train import epoch_batches, optimizer, run_epoch

    torch.set_num_threads(args.threads)
    cfg = load_config(args.config, ["graph.hidden=328", "graph.max_len=30", *args.overrides])
    gcfg = cfg.graph
    data = load_data_from_config(cfg.data)
    cat = data.catalogue
    t0 = time.perf_counter()
    graphs = build_graphs(data, gcfg)
    batch = training_batch(
        data.records("train"), cat.item_domain, gcfg.max_len, gcfg.targets, gcfg.graph_folds
    )
    prep_s = time.perf_counter() - t0
    torch.manual_seed(cfg.seed)
    ranges = [(r.start, r.stop) for r in (cat.domain_range(0), cat.domain_range(1))]
    text = None
    if gcfg.semantic_dim and gcfg.text_features:  # the cached MiniLM item-text embeddings (not timed)
        from urllm.graph.semantic import item_text_embeddings

        text = torch.from_numpy(item_text_embeddings(cat.titles, cat.texts, gcfg.text_model))
    model = DualGraphEncoder(gcfg, ranges, graphs, text)
    acc = Accelerator(cpu=gcfg.device == "cpu")
    opt = optimizer(model, gcfg)
    wrapped, opt = acc.prepare(model, opt)
    prof = None
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        prof = profile(activities=[ProfilerActivity.CPU], record_shapes=True)
        prof.start()
    t0 = time.perf_counter()
    _, steps = run_epoch(wrapped, opt, acc, batch, gcfg, cfg.seed, 0, args.max_steps)
    train_s = time.perf_counter() - t0
    if prof is not None:
        prof.stop()
        table = prof.key_averages(group_by_input_shape=True).table(
            sort_by="self_cpu_time_total", row_limit=40
        )
        with open(args.profile, "w") as fh:
            fh.write(table + "\n")
    sizes = [len(b) for b in epoch_batches(batch, gcfg, cfg.seed, 0)]  # the batches run_epoch ran
    n_steps = len(sizes)
    epoch_s = train_s * sum(sizes) / sum(sizes[:steps])

    system = GraphSystem(gcfg, cfg.seed)
    system.model, system.item_domain = acc.unwrap_model(wrapped).eval(), cat.item_domain
    users = {}
    for split in ("train", "valid"):
        for r in data.records(split):
            users.setdefault(r.user, r)  # one record (history) per user
    recs = list(users.values())
    t0 = time.perf_counter()
    for d in (0, 1):
        system.user_embeddings(recs, d)
    embed_s = time.perf_counter() - t0
    out = {
        "device": str(acc.device),
        "threads": args.threads,
        "hidden": gcfg.hidden,
        "max_len": gcfg.max_len,
        "negatives": gcfg.negatives,
        "targets": gcfg.targets,
        "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "prepare_s": round(prep_s, 1),
        "epoch_s": round(epoch_s, 1),
        "epoch_extrapolated_from_steps": steps if steps < n_steps else None,
        "embed_users": len(recs),
        "embed_both_views_s": round(embed_s, 1),
        "peak_rss_GB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }
    text = json.dumps(out, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
