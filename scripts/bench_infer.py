"""Seconds per user of the one-pass listwise ranker against KV-cache candidate scoring; JSON lines.

    python scripts/bench_infer.py --config configs/art_office.yaml --users 16 --threads 1 [key=value ...]

Prints one JSON object per mode: ``mode``, ``candidates`` (K), ``s_per_user``, ``achieved_gflops``,
``peak_gflops`` and the context (prompt tokens, batch size, quantisation, threads). Modes:

- ``rank`` / ``rank-int8``: one forward pass over the listwise prompt (the backbone's top K behind
  one-token labels), fp32 or with every ``nn.Linear`` dynamically quantised to int8;
- ``rerank`` / ``rerank-int8``: the KV-cache re-ranker (the prompt once, then every candidate title).

The first ``--users`` records of the split (half per target domain) get their real prompts (neighbours of
the prompts parquet; ``infer.prompt_source=history`` for history-only) and the backbone's real top K.
``peak_gflops`` is measured in the same run: a 2048 x 2048 fp32 matmul on the same threads.
``achieved_gflops`` counts the forward FLOPs actually needed: 2 x (linear-layer parameters) per token,
attention (2 x layers x hidden x context per token for QK and AV each), and the vocabulary projection
only where logits are read (rank: 1 position; rerank: every title token). For int8 modes the same FLOP
count is divided by the time (the int8 kernels do the same multiply-adds).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time


def peak_gflops(reps: int = 10) -> float:
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    torch.mm(a, b)
    start = time.perf_counter()
    for _ in range(reps):
        torch.mm(a, b)
    return 2 * 2048**3 * reps / (time.perf_counter() - start) / 1e9


def forward_flops(model, tokens: int, context: int, logit_positions: int) -> float:
    """FLOPs of ``tokens`` new tokens attending to ``context`` tokens each on average."""
    import torch

    cfg = model.config
    linear = sum(
        m.weight.numel()
        if hasattr(m, "weight") and not callable(m.weight)
        else m.in_features * m.out_features
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear | torch.ao.nn.quantized.dynamic.Linear) and "lm_head" not in name
    )
    attention = 4 * cfg.num_hidden_layers * cfg.hidden_size * context * tokens
    vocab = 2 * cfg.hidden_size * cfg.vocab_size * logit_positions
    return 2 * linear * tokens + attention + vocab


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--split", default="valid", choices=["valid", "test"])
    p.add_argument("--users", type=int, default=16, help="users timed per mode")
    p.add_argument("--batch", type=int, default=8, help="prompts per forward pass (rank)")
    p.add_argument("--modes", default="rank,rank-int8,rerank")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--out", help="also write the JSON lines here")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    import numpy as np
    import torch

    from urllm.config import load_config
    from urllm.data.load import load_data_from_config
    from urllm.infer.engine import Engine, adapter_path, load_llm, quantize_int8
    from urllm.infer.jobs import build_jobs, build_rank_jobs, prompts_file, select_records
    from urllm.infer.variants import Variant, prompts_dir
    from urllm.systems import fitted_backbone, infer_setup

    cfg = load_config(args.config, args.overrides)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_data_from_config(cfg.data)
    cat = data.catalogue
    records = select_records(data.records(args.split), (args.users + 1) // 2)[: args.users]
    setup = infer_setup(cfg)
    adapter = adapter_path(cfg.infer, setup.paths.finetune)
    model, tok, adapter = load_llm(cfg.llm, adapter, torch.device("cpu"))
    g = cfg.grounding
    parquet = prompts_file(prompts_dir(setup.paths, Variant("rank")), args.split, cfg.infer.prompt_source)
    backbone = fitted_backbone(cfg, data)
    rank_jobs = build_rank_jobs(records, data, parquet, tok, setup, backbone)
    peak = peak_gflops()
    quantized = None
    lines = []
    for mode in args.modes.split(","):
        base, _, q = mode.partition("-")
        if q == "int8" and quantized is None:
            quantized = quantize_int8(model)
        m = quantized if q == "int8" else model
        engine = Engine(g, cat, base, m, tok)
        if base == "rank":
            jobs = rank_jobs
        else:
            jobs = build_jobs(
                records, cat, parquet, tok, cfg.prompts, cfg.llm.use_chat_template, g.top_n, backbone.score
            )
        ids = [tok(j.prompt, add_special_tokens=False)["input_ids"] for j in jobs]
        engine.run(jobs[:1])  # warm-up
        start = time.perf_counter()
        rows = []
        bs = args.batch if base == "rank" else 1
        for s in range(0, len(jobs), bs):
            rows += engine.run(jobs[s : s + bs])
        per_user = (time.perf_counter() - start) / len(jobs)
        flops = 0.0
        for j, x in zip(jobs, ids, strict=True):
            t = len(x)
            flops += forward_flops(m, t, (t + 1) / 2, 1 if base == "rank" else 0)
            if base == "rerank":
                for title in engine.title_ids(j.candidates):
                    n = len(title) + int(g.rerank_append_eos)
                    flops += forward_flops(m, n, t + n / 2, n)
        line = {
            "mode": mode,
            "candidates": g.top_n,
            "s_per_user": round(per_user, 4),
            "achieved_gflops": round(flops / len(jobs) / per_user / 1e9, 1),
            "peak_gflops": round(peak, 1),
            "gflop_per_user": round(flops / len(jobs) / 1e9, 2),
            "prompt_tokens_mean": round(float(np.mean([len(x) for x in ids])), 1),
            "users": len(jobs),
            "batch": bs,
            "threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS", ""),
            "adapter": str(adapter) if adapter else None,
            "prompts": str(parquet) if parquet else "history-only",
            "load_avg_1min": round(os.getloadavg()[0], 2),
        }
        if base == "rank":
            # agreement of the modes' scores (int8 vs fp32) is reported by the first rank mode's rows
            line["label_logprob_mass_mean"] = round(
                float(np.mean([np.exp(r["label_logprobs"]).sum() for r in rows])), 4
            )
        lines.append(line)
        print(json.dumps(line), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.writelines(json.dumps(x) + "\n" for x in lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
