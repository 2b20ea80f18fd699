"""Load a base model with a fine-tuned LoRA adapter and generate titles greedily.

Minimal on purpose: constrained decoding and the mapping of generations to catalogue items live in
:mod:`urllm.grounding`. The measurement below (how many greedy generations are exactly a title of the
target domain) is the fine-tuning stage's own sanity check::

    python -m urllm.llm.generate --config configs/art_office.yaml --adapter runs/art-office/finetune/adapter \
        --split valid --n 100 --out runs/art-office/finetune/generate_valid.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from urllm.llm.config import LLMConfig

logger = logging.getLogger(__name__)


def load_finetuned(llm: LLMConfig, adapter_dir: str | Path | None, device_type: str = "cpu"):
    """``(model, tokenizer)`` in eval mode: the base model, plus the adapter merged in when given.

    The tokenizer saved beside the adapter is used when present, so a run reloads exactly what it trained.
    """
    from transformers import AutoTokenizer

    from urllm.llm.model import load_model, load_tokenizer

    model = load_model(llm, device_type)
    tokenizer = load_tokenizer(llm)
    if adapter_dir is not None:
        from peft import PeftModel

        adapter_dir = Path(adapter_dir)
        if not (adapter_dir / "adapter_config.json").is_file():
            raise FileNotFoundError(f"{adapter_dir}: no adapter_config.json (not a saved LoRA adapter)")
        if (adapter_dir / "tokenizer_config.json").is_file():
            tokenizer = AutoTokenizer.from_pretrained(adapter_dir)
        # merging folds B @ A into the base weights: generation then costs what the base model costs
        model = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.use_cache = True
    return model.eval(), tokenizer


@torch.no_grad()
def greedy_generate(
    model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 48, batch_size: int = 8
) -> list[str]:
    """The greedy continuation of each prompt up to EOS, special tokens removed and stripped.

    Prompts are left-padded in batches (generation appends on the right); the chat template is assumed to
    be applied already, so no special tokens are added.
    """
    device = next(model.parameters()).device
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    outputs: list[str] = []
    try:
        for i in range(0, len(prompts), batch_size):
            enc = tokenizer(
                list(prompts[i : i + batch_size]), return_tensors="pt", padding=True, add_special_tokens=False
            ).to(device)
            gen = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )  # (B, T_prompt + T_new)
            new = gen[:, enc["input_ids"].shape[1] :]
            outputs.extend(t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True))
    finally:
        tokenizer.padding_side = side
    return outputs


def title_match_rates(generations: Sequence[str], targets: Sequence[str], domain_titles: Sequence[set[str]]):
    """Share of generations that are exactly a title of their target domain, and exactly the target's title.

    ``domain_titles[i]`` is the set of titles of record ``i``'s target domain. Exact string equality after
    stripping whitespace: the grounding stage does the forgiving matching.
    """
    n = len(generations)
    if not (n == len(targets) == len(domain_titles)):
        raise ValueError("generations, targets and domain_titles must have the same length")
    in_domain = sum(g in titles for g, titles in zip(generations, domain_titles, strict=True))
    hits = sum(g == t.strip() for g, t in zip(generations, targets, strict=True))
    return {"n": n, "exact_title_rate": in_domain / max(n, 1), "target_hit_rate": hits / max(n, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="urllm.llm.generate", description="greedy generations on prompts")
    parser.add_argument("--config", required=True, help="YAML config file (see configs/)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
    parser.add_argument("--adapter", help="LoRA adapter folder; omitted = the base model")
    parser.add_argument("--split", default="valid", choices=["train", "valid"])
    parser.add_argument("--n", type=int, default=100, help="a seeded sample of N prompts")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 = default")
    parser.add_argument("--out", help="write rates and the generations as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from urllm.config import load_config
    from urllm.data.load import load_data_from_config
    from urllm.llm.finetune import prompts_dir
    from urllm.llm.train_state import load_prompts

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.overrides)
    rows = load_prompts(prompts_dir(cfg) / f"{args.split}.parquet", args.n, cfg.seed, ("target_domain",))
    prompts, completions = rows["prompt"], rows["completion"]
    catalogue = load_data_from_config(cfg.data).catalogue
    titles = {
        name: {catalogue.titles[i].strip() for i in catalogue.domain_range(d)}
        for d, name in enumerate(catalogue.domains)
    }
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, tokenizer = load_finetuned(cfg.llm, args.adapter, device)
    model.to(device)
    gens = greedy_generate(model, tokenizer, prompts, args.max_new_tokens, args.batch_size)
    rates = title_match_rates(gens, completions, [titles[d] for d in rows["target_domain"]])
    result = {
        **rates,
        "adapter": args.adapter,
        "split": args.split,
        "torch_threads": torch.get_num_threads(),
        "samples": [{"target": c, "generation": g} for c, g in zip(completions, gens, strict=True)],
    }
    logger.info("%s", json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
