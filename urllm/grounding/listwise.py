"""One-pass listwise ranking (LlamaRec, arXiv 2311.02089): candidates behind one-token labels.

The prompt ends with the backbone's top-K target-domain candidates, each on its own line behind a label
(``A``, ``B``, ...); the model is asked for the label of the best one. One forward pass over the prompt
gives the next-token distribution at its last position, and the log-probabilities of the K label tokens
are the LLM's scores of the K candidates. Every score belongs to a candidate of the target domain, so
nothing can fall outside it (0 % out-of-domain by construction).

A label must be exactly one token of the tokenizer in use, and K labels must be K distinct tokens:
:func:`rank_labels` checks both. With SmolLM2's tokenizer ``A``-``Z``, ``a``-``z`` and ``0``-``9`` are
single tokens, and ``"\\nA"`` tokenises as ``"\\n"``, ``"A"``, so the label the model answers with is the
very token that stands in front of its candidate in the list.
"""

from __future__ import annotations

import string
from collections.abc import Sequence

import numpy as np
import torch

LABEL_ALPHABET = string.ascii_uppercase + string.ascii_lowercase + string.digits


def rank_labels(tokenizer, k: int) -> tuple[list[str], list[int]]:
    """The first ``k`` labels of :data:`LABEL_ALPHABET` and their token ids.

    Raises:
        ValueError: ``k`` is larger than the alphabet, or a label is not one token, or two labels share
            a token.
    """
    if not 1 <= k <= len(LABEL_ALPHABET):
        raise ValueError(f"K = {k} candidates: at most {len(LABEL_ALPHABET)} one-token labels exist")
    labels = list(LABEL_ALPHABET[:k])
    ids = []
    for lab in labels:
        enc = tokenizer.encode(lab, add_special_tokens=False)
        if len(enc) != 1:
            raise ValueError(f"rank label {lab!r} is {len(enc)} tokens with this tokenizer, not 1")
        ids.append(int(enc[0]))
    if len(set(ids)) != len(ids):
        raise ValueError(f"rank labels {labels} do not map to {k} distinct tokens")
    return labels, ids


def head_words(title: str, max_words: int) -> str:
    """The first ``max_words`` words of a title (0 = all): titles lead with their informative words."""
    if max_words <= 0:
        return title
    words = title.split()
    return " ".join(words[:max_words]) if len(words) > max_words else title


def _batches(lengths: Sequence[int], max_rows: int, max_tokens: int) -> list[list[int]]:
    """Indices grouped by length (longest first) so a batch of rows x longest <= max_tokens."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    out: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        if cur and (len(cur) + 1 > max_rows or (len(cur) + 1) * lengths[cur[0]] > max_tokens):
            out.append(cur)
            cur = []
        cur.append(i)
    if cur:
        out.append(cur)
    return out


@torch.no_grad()
def label_logprobs(
    model,
    prompts: Sequence[Sequence[int]],
    label_ids: Sequence[Sequence[int]],
    pad_id: int,
    max_rows: int = 8,
    max_tokens: int = 4096,
) -> list[np.ndarray]:
    """Per prompt, the next-token log-probabilities of its label tokens after its last token.

    Prompts are right-padded; only the last real position of each row goes through the vocabulary
    projection (``logits_to_keep`` as a boolean mask), so a batch costs one pass over its tokens.

    Args:
        prompts: token ids per prompt (already ending with the assistant opening).
        label_ids: per prompt, the token ids of its K labels (candidate order).
        pad_id: padding token (masked out).
    Returns:
        per prompt a float64 array of K log-probabilities (of the full vocabulary distribution).
    """
    device = next(model.parameters()).device
    out: list[np.ndarray] = [np.zeros(0)] * len(prompts)
    for idx in _batches([len(p) for p in prompts], max_rows, max_tokens):
        width = max(len(prompts[i]) for i in idx)
        ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        keep = torch.zeros((len(idx), width), dtype=torch.bool)
        for row, i in enumerate(idx):
            n = len(prompts[i])
            ids[row, :n] = torch.tensor(list(prompts[i]), dtype=torch.long)
            mask[row, :n] = 1
            keep[row, n - 1] = True
        logits = model(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            logits_to_keep=keep.to(device),
            use_cache=False,
        ).logits  # (B, V): one kept position per row, in row order
        logp = torch.log_softmax(logits.float().reshape(len(idx), -1), dim=-1)
        for row, i in enumerate(idx):
            out[i] = logp[row, torch.tensor(list(label_ids[i]), device=device)].double().cpu().numpy()
    return out


def shuffled(candidates: Sequence[int], rng: np.random.Generator) -> list[int]:
    """A random order of the candidates (training lists: the model must not learn position 1 = best)."""
    return [candidates[i] for i in rng.permutation(len(candidates))]
