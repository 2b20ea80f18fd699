"""Load a base model with a fine-tuned LoRA adapter and generate titles greedily.

Minimal on purpose: constrained decoding and the mapping of generations to catalogue items live in
:mod:`urllm.grounding`. The measurement below (how many greedy generations are exactly a title of the
target domain) is the fine-tuning stage's own sanity check::

    urllm generate --config configs/art_office.yaml --adapter runs/art-office/finetune/adapter \
        --split valid --n 100 --out runs/art-office/finetune/generate_valid.json
"""

from __future__ import annotations

import logging
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
