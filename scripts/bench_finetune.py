"""Training throughput and peak memory of LoRA fine-tuning at several prompt lengths; prints JSON.

    python scripts/bench_finetune.py --config configs/art_office.yaml --threads 2 [key=value ...]

Each length runs in its own subprocess so its peak memory (max RSS on CPU, max allocated on CUDA) is its
own. A step is one forward + backward + AdamW update of a batch of ``--batch-size`` examples of
``length`` prompt tokens + ``--completion`` labelled tokens, with the LoRA and precision settings of the
config's ``finetune`` section; tokens/s counts prompt and completion tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def one(args) -> dict:
    import torch

    from urllm.config import load_config
    from urllm.llm.collate import IGNORE, completion_loss_sum
    from urllm.llm.finetune import build_lora_model, mixed_precision

    cfg = load_config(args.config, args.overrides)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_lora_model(cfg.finetune, cfg.llm, device.type).to(device).train()
    rss_loaded = _peak_mb(device)
    total = args.length + args.completion
    vocab = model.config.vocab_size
    ids = torch.randint(3, vocab, (args.batch_size, total), device=device)  # no special tokens
    labels = ids.clone()
    labels[:, : args.length] = IGNORE
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed_precision(cfg.finetune.mixed_precision))
    times = []
    for step in range(args.warmup + args.steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss_sum, count = completion_loss_sum(model, batch)
        (loss_sum / count).backward()
        opt.step()
        opt.zero_grad()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    sec = sorted(times)[len(times) // 2]  # median step: robust to other processes on a shared machine
    return {
        "prompt_tokens": args.length,
        "tokens_per_example": total,
        "batch_size": args.batch_size,
        "gradient_checkpointing": cfg.finetune.gradient_checkpointing,
        "seconds_per_step_median": round(sec, 3),
        "tokens_per_s": round(args.batch_size * total / sec, 1),
        "peak_memory_mb": round(_peak_mb(device), 1),
        "memory_after_load_mb": round(rss_loaded, 1),
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "torch_threads": torch.get_num_threads(),
        "dtype": str(next(model.parameters()).dtype),
        "autocast": str(dtype),
    }


def _peak_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/art_office.yaml")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--lengths", type=int, nargs="+", default=[256, 512, 1024], help="prompt tokens")
    p.add_argument("--completion", type=int, default=32, help="labelled tokens after the prompt")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--steps", type=int, default=3, help="timed steps (the median is reported)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--length", type=int, help=argparse.SUPPRESS)  # internal: one length, in a subprocess
    args = p.parse_args()
    if args.length is not None:
        print(json.dumps(one(args)))
        return 0
    results = []
    for length in args.lengths:
        cmd = [sys.executable, __file__, "--config", args.config, *args.overrides, "--length", str(length)]
        for flag in ("completion", "batch_size", "steps", "warmup", "threads"):
            cmd += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), file=sys.stderr)
    print(json.dumps({"runs": results, "load_average": os.getloadavg()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
