"""Turn (prompt, completion) pairs into training batches whose loss covers the completion only.

The prompt already carries the chat template and ends with the assistant-turn opening, so it is encoded
without adding special tokens. Prompt and completion are encoded separately: that is exactly the token
boundary a model sees when it generates after the prompt. The EOS token closes the completion so the
model learns to stop after a title.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch

logger = logging.getLogger(__name__)

IGNORE = -100  # label of positions without a loss (the prompt and the padding)


@dataclass(frozen=True)
class Example:
    """One tokenised training example: ``input_ids`` and ``labels`` have the same length."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool = False


def _token_ids(tokenizer, prompt: str, completion: str, eos: bool = True) -> tuple[list[int], list[int]]:
    """Prompt ids and completion ids (+ EOS when ``eos``), each encoded without added special tokens.

    A listwise completion (``eos=False``) is one label token: the loss is the cross-entropy of the
    target's label at the prompt's last position, exactly the distribution read at inference.
    """
    if eos and tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token; the completion could not be closed")
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    c = tokenizer(completion, add_special_tokens=False)["input_ids"] + (
        [tokenizer.eos_token_id] if eos else []
    )
    if not c:
        raise ValueError(f"empty completion after prompt {prompt[-60:]!r}")
    return p, c


def _example(p: list[int], c: list[int], max_length: int, completion: str) -> Example:
    if len(c) >= max_length:
        raise ValueError(
            f"completion of {len(c)} tokens does not fit max_length={max_length}: {completion[:80]!r}"
        )
    truncated = len(p) + len(c) > max_length
    if truncated:
        p = p[len(p) + len(c) - max_length :]
    return Example(input_ids=p + c, labels=[IGNORE] * len(p) + c, truncated=truncated)


def encode_example(tokenizer, prompt: str, completion: str, max_length: int, eos: bool = True) -> Example:
    """Tokens of ``prompt + completion + EOS`` with the prompt masked out of the labels.

    An example longer than ``max_length`` keeps its newest tokens: the prompt loses its oldest tokens
    (the completion is never cut) and is flagged ``truncated``; a completion that alone needs
    ``max_length`` tokens is an error, since no prompt token would be left to condition on.
    """
    return _example(*_token_ids(tokenizer, prompt, completion, eos), max_length, completion)


def encode_all(
    tokenizer,
    prompts: Sequence[str],
    completions: Sequence[str],
    max_length: int,
    overflow: str = "drop",
    eos: bool = True,
) -> list[Example]:
    """Encode every pair; examples over ``max_length`` are dropped or truncated (``overflow``), and counted.

    Dropping is the default: cutting a prompt's head removes its chat header and instruction, which
    would teach the model on text it never sees at inference time.
    """
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    if overflow not in ("drop", "truncate"):
        raise ValueError(f"overflow must be drop or truncate, got {overflow!r}")
    examples = []
    n_over = 0
    for prompt, completion in zip(prompts, completions, strict=True):
        p, c = _token_ids(tokenizer, prompt, completion, eos)
        if len(p) + len(c) > max_length:
            n_over += 1
            if overflow == "drop":
                continue
        examples.append(_example(p, c, max_length, completion))
    if n_over:
        logger.warning(
            "%d of %d examples exceed max_length=%d tokens and were %s",
            n_over,
            len(prompts),
            max_length,
            "dropped" if overflow == "drop" else "cut at the start of the prompt",
        )
    return examples


@dataclass(frozen=True)
class Collator:
    """Right-pads a list of :class:`Example` into tensors.

    Returns ``input_ids`` (B, T) padded with ``pad_id``, ``attention_mask`` (B, T) with 0 on padding and
    ``labels`` (B, T) with :data:`IGNORE` on the prompt and the padding.
    """

    pad_id: int

    def __call__(self, batch: Sequence[Example]) -> dict[str, torch.Tensor]:
        width = max(len(e.input_ids) for e in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, e in enumerate(batch):
            n = len(e.input_ids)
            ids[i, :n] = torch.tensor(e.input_ids)
            labels[i, :n] = torch.tensor(e.labels)
            mask[i, :n] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def completion_loss_sum(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed next-token cross-entropy over the labelled positions, and their count.

    Logits are computed only where a label follows (``logits_to_keep`` as a boolean mask): the vocabulary
    projection of the ~90 % of positions that are prompt or padding is skipped, which saves about a fifth
    of a SmolLM2 training step and most of the logits memory (needs transformers >= 5).
    """
    labels = batch["labels"]  # (B, T)
    keep = labels[:, 1:] != IGNORE  # (B, T-1): position t predicts token t+1
    keep_mask = torch.nn.functional.pad(keep, (0, 1), value=False)  # (B, T)
    out = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        logits_to_keep=keep_mask,
        use_cache=False,
    )
    logits = out.logits.float()  # (N, V), N = number of labelled positions, row-major over (B, T)
    targets = labels[:, 1:][keep]  # (N,)
    loss_sum = torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
    return loss_sum, keep.sum()
