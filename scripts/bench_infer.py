"""Seconds per user of each grounding mode at batch 1 and 8, and the speed-up of KV-cache re-ranking; JSON.

    python scripts/bench_infer.py --config configs/art_office.yaml --users 8 --threads 1 [key=value ...]

The first ``--users`` records of the split (half per target domain) get their real prompts (the prompts
parquet, or history-only prompts when the prompts stage has not run) and their real candidates (the
parquet's, or the backbone's top-N). Each mode runs the same code as batch inference
(:class:`urllm.infer.engine.Engine`: generation, rescoring, refiner) over all users in batches of 1 and
of 8. Re-ranking is then timed twice on ``--naive-users`` users at batch 1: with the prompt's KV cache
shared by the candidates (what the ``rerank`` mode does) and by scoring every ``prompt + title`` as a
full sequence; the two must agree (``max_abs_diff``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--split", default="valid", choices=["valid", "test"])
    p.add_argument("--users", type=int, default=8, help="users timed per mode and batch size")
    p.add_argument("--batches", default="1,8", help="batch sizes")
    p.add_argument("--modes", default="constrained,free,rerank")
    p.add_argument(
        "--naive-users", type=int, default=2, help="users for the cached vs full-sequence comparison"
    )
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--out", help="also write the JSON here")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    import numpy as np
    import torch

    from urllm.config import load_config
    from urllm.data.load import load_data_from_config
    from urllm.grounding.rerank import score_cached, score_naive
    from urllm.infer.batch import fitted_backbone, shared_title_embeddings
    from urllm.infer.engine import Engine, load_llm
    from urllm.infer.jobs import build_jobs, prompts_file, select_records
    from urllm.infer.variants import Variant, prompts_dir

    cfg = load_config(args.config, args.overrides)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = load_data_from_config(cfg.data)
    cat = data.catalogue
    records = select_records(data.records(args.split), (args.users + 1) // 2)[: args.users]
    model, tok, adapter = load_llm(cfg, device)
    g = cfg.grounding
    parquet = prompts_file(prompts_dir(cfg, Variant("rerank")), args.split, cfg.infer.prompt_source)
    backbone = fitted_backbone(cfg, data).score  # ranks the candidates the parquet lacks (or all of them)
    jobs = build_jobs(records, cat, parquet, tok, cfg.prompts, cfg.llm.use_chat_template, g.top_n, backbone)
    prompt_ids = [tok(j.prompt, add_special_tokens=False)["input_ids"] for j in jobs]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    cache_dir = Path(g.cache_dir) if g.cache_dir else cfg.run_path / "grounding"

    result: dict = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS", ""),
        "model": cfg.llm.model,
        "adapter": str(adapter) if adapter else None,
        "prompts": str(parquet) if parquet else "history-only",
        "users": len(jobs),
        "prompt_tokens_mean": float(np.mean([len(x) for x in prompt_ids])),
        "num_beams": g.num_beams,
        "top_n": g.top_n,
        "free_max_new_tokens": g.free_max_new_tokens,
        "refiner_steps": g.refiner.steps,
        "seconds_per_user": {},
    }
    model(torch.tensor([prompt_ids[0][:8]], device=device))  # warm-up: lazy initialisations
    for mode in args.modes.split(","):
        emb = shared_title_embeddings(cfg, cat.n_items) if mode == "free" else None
        engine = Engine(g, cat, mode, model, tok, cache_dir=cache_dir, title_embeddings=emb)
        per_bs = {}
        for bs in (int(b) for b in args.batches.split(",")):

            def run(bs=bs, engine=engine):
                for start in range(0, len(jobs), bs):
                    engine.run(jobs[start : start + bs])
                sync()

            per_bs[str(bs)] = round(_timed(run) / len(jobs), 4)
            logging.info("%s batch %d: %.3f s/user", mode, bs, per_bs[str(bs)])
        result["seconds_per_user"][mode] = per_bs

    n = min(args.naive_users, len(jobs))
    titles = [
        [
            ids + [tok.eos_token_id]
            for ids in tok([cat.titles[c] for c in j.candidates], add_special_tokens=False)["input_ids"]
        ]
        for j in jobs[:n]
    ]
    pad = tok.pad_token_id
    cached_out, naive_out = [], []
    t_cached = _timed(
        lambda: (
            cached_out.extend(
                score_cached(model, [prompt_ids[i]], [titles[i]], pad, g.rerank_chunk, g.rerank_chunk_tokens)[
                    0
                ]
                for i in range(n)
            )
            or sync()
        )
    )
    t_naive = _timed(
        lambda: (
            naive_out.extend(
                score_naive(model, [prompt_ids[i]], [titles[i]], pad, g.rerank_chunk)[0] for i in range(n)
            )
            or sync()
        )
    )
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(cached_out, naive_out, strict=True))
    result["rerank_kv_cache"] = {
        "users": n,
        "candidates_per_user": g.top_n,
        "title_tokens_mean": float(np.mean([len(t) for ts in titles for t in ts])),
        "cached_seconds_per_user": round(t_cached / n, 4),
        "full_sequence_seconds_per_user": round(t_naive / n, 4),
        "speedup": round(t_naive / t_cached, 2),
        "max_abs_diff": diff,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
