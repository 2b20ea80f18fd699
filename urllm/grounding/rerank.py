"""Log-likelihood of candidate titles after a prompt, with the prompt's KV cache computed once.

Re-ranking N candidates naively runs N sequences ``prompt + title`` through the model: N x (P + L)
token positions. Here the (left-padded) prompts run once with ``use_cache=True``; each candidate row
then starts from a copy of its prompt's key/value states (``DynamicCache`` built from the prompt cache
indexed by row) and only its L title tokens are computed: P + N x L positions.

Positions are explicit (``cumsum(mask) - 1``) so left padding never shifts the rotary positions, and
the title tokens continue at the prompt's true length. The prompt pass (:class:`PromptState`) is also
handed to ``generate`` by :mod:`urllm.grounding.decode`, so generating and scoring outputs share it. :func:`score_naive` computes the same numbers
from full sequences; it is the oracle in the tests and the baseline in ``scripts/bench_infer.py``.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

Tokens = Sequence[int]


def left_pad(seqs: Sequence[Tokens], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, mask)`` of shape (B, T), padded on the left (the layout generation expects)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if len(s):
            ids[i, width - len(s) :] = torch.as_tensor(list(s), dtype=torch.long)
            mask[i, width - len(s) :] = 1
    return ids.to(device), mask.to(device)


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that ignore left padding: (B, T)."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def _cache_kwarg(model) -> str:
    """transformers 5.x calls the forward argument ``cache``; 4.x called it ``past_key_values``."""
    params = inspect.signature(type(model).forward).parameters
    return "past_key_values" if "past_key_values" in params and "cache" not in params else "cache"


def _chunks(rows: list[tuple[int, int]], lengths: dict, max_rows: int, max_tokens: int) -> Iterator[list]:
    """Consecutive rows, at most ``max_rows`` and ``rows x longest title <= max_tokens`` (one row at least)."""
    chunk: list = []
    longest = 0
    for row in rows:
        n = lengths[row]
        if chunk and (len(chunk) >= max_rows or (len(chunk) + 1) * max(longest, n) > max_tokens):
            yield chunk
            chunk, longest = [], 0
        chunk.append(row)
        longest = max(longest, n)
    if chunk:
        yield chunk


def _rows(titles: Sequence[Sequence[Tokens]]) -> tuple[list[tuple[int, int]], dict]:
    rows = [(b, j) for b, ts in enumerate(titles) for j in range(len(ts))]
    lengths = {(b, j): len(titles[b][j]) for b, j in rows}
    if any(n == 0 for n in lengths.values()):
        raise ValueError("a candidate title has no tokens")
    rows.sort(key=lambda r: lengths[r])  # similar lengths share a chunk: less padding
    return rows, lengths


def _right_pad(seqs: Sequence[Tokens], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids.to(device), mask.to(device)


@dataclass
class PromptState:
    """One pass over a left-padded prompt batch: what every continuation of these prompts reuses."""

    ids: torch.Tensor  # (B, P) left-padded prompt tokens
    mask: torch.Tensor  # (B, P) 1 on real tokens
    kv: list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys and values (B, H_kv, P, D)
    first: torch.Tensor  # (B, V) log p(next token | prompt)
    cache_kw: str  # name of the forward/generate argument that takes a cache

    @property
    def lengths(self) -> torch.Tensor:
        return self.mask.sum(1)  # (B,) true prompt lengths

    def cache(self, rows: torch.Tensor, model, drop_last: bool = False):
        """A new ``DynamicCache`` holding the prompt states of ``rows`` (a batch index, repeats allowed).

        ``drop_last`` leaves the last prompt token out, as ``generate`` expects: it recomputes that
        token to get the first step's logits.
        """
        from transformers import DynamicCache

        end = -1 if drop_last else None
        data = [(k[rows, :, :end], v[rows, :, :end]) for k, v in self.kv]
        return DynamicCache(ddp_cache_data=data, config=model.config)


@torch.inference_mode()
def encode_prompts(model, prompts: Sequence[Tokens], pad_id: int) -> PromptState:
    """Run the prompts once with ``use_cache=True``; positions skip the left padding."""
    kw = _cache_kwarg(model)
    ids, mask = left_pad(prompts, pad_id, model.device)  # (B, P)
    out = model(
        input_ids=ids, attention_mask=mask, position_ids=positions(mask), use_cache=True, logits_to_keep=1
    )
    first = out.logits[:, -1].float().log_softmax(-1)  # (B, V): the distribution of each title's first token
    kv = [(layer[0], layer[1]) for layer in getattr(out, kw)]
    return PromptState(ids, mask, kv, first, kw)


@torch.inference_mode()
def score_cached(
    model,
    prompts: Sequence[Tokens] | PromptState,
    titles: Sequence[Sequence[Tokens]],
    pad_id: int,
    max_rows: int = 16,
    max_tokens: int = 2048,
) -> list[np.ndarray]:
    """Sum of log p(title tokens | prompt) for each prompt's titles, via one shared prompt pass.

    Args:
        prompts: B prompt token lists, or their :func:`encode_prompts` state (reused, not modified).
        titles: per prompt, its candidate token lists (with eos appended if eos should count).
        max_rows / max_tokens: bound the rows and ``rows x title length`` of one candidate pass.
    Returns:
        B arrays, ``out[b][j]`` for ``titles[b][j]`` (float64).
    """
    state = prompts if isinstance(prompts, PromptState) else encode_prompts(model, prompts, pad_id)
    device = model.device
    results = [np.zeros(len(t), dtype=np.float64) for t in titles]
    rows, lengths = _rows(titles)
    for chunk in _chunks(rows, lengths, max_rows, max_tokens):
        b_idx = torch.tensor([b for b, _ in chunk], device=device)
        toks, tmask = _right_pad([titles[b][j] for b, j in chunk], pad_id, device)  # (R, L)
        # a fresh cache per chunk: the forward pass appends the title keys to it in place
        pos = state.lengths[b_idx, None] + torch.arange(toks.shape[1], device=device)[None]  # (R, L)
        logits = model(
            input_ids=toks,
            attention_mask=torch.cat([state.mask[b_idx], tmask], dim=1),
            position_ids=pos,
            use_cache=True,
            **{state.cache_kw: state.cache(b_idx, model)},
        ).logits  # (R, L, V)
        lp_first = state.first[b_idx].gather(1, toks[:, :1])  # (R, 1)
        lp_rest = logits[:, :-1].float().log_softmax(-1).gather(2, toks[:, 1:, None]).squeeze(-1)  # (R, L-1)
        total = (torch.cat([lp_first, lp_rest], dim=1) * tmask).sum(1).double().cpu().numpy()
        for (b, j), value in zip(chunk, total, strict=True):
            results[b][j] = value
    return results


@torch.inference_mode()
def score_naive(
    model,
    prompts: Sequence[Tokens],
    titles: Sequence[Sequence[Tokens]],
    pad_id: int,
    max_rows: int = 16,
    max_tokens: int = 1 << 30,
) -> list[np.ndarray]:
    """The same sums as :func:`score_cached`, from full ``prompt + title`` sequences (no cache reuse)."""
    device = model.device
    results = [np.zeros(len(t), dtype=np.float64) for t in titles]
    rows, lengths = _rows(titles)
    for chunk in _chunks(rows, lengths, max_rows, max_tokens):
        seqs = [list(prompts[b]) + list(titles[b][j]) for b, j in chunk]
        ids, mask = left_pad(seqs, pad_id, device)  # (R, T); each title ends its row
        width = max(lengths[r] for r in chunk)
        logits = model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions(mask),
            use_cache=False,
            logits_to_keep=width + 1,
        ).logits  # (R, width + 1, V): positions T-width-1 .. T-1
        tgt = torch.full((len(chunk), width), pad_id, dtype=torch.long, device=device)
        tmask = torch.zeros((len(chunk), width), device=device)
        for r, (b, j) in enumerate(chunk):
            n = lengths[(b, j)]
            tgt[r, width - n :] = torch.as_tensor(list(titles[b][j]), device=device)
            tmask[r, width - n :] = 1.0
        lp = logits[:, :-1].float().log_softmax(-1).gather(2, tgt[..., None]).squeeze(-1)  # (R, width)
        total = (lp * tmask).sum(1).double().cpu().numpy()
        for (b, j), value in zip(chunk, total, strict=True):
            results[b][j] = value
    return results


def normalise(sums: np.ndarray, lengths: Sequence[int], how: str) -> np.ndarray:
    """Title scores: ``sum`` keeps the sequence log-probability, ``mean`` divides by the token count."""
    if how == "sum":
        return np.asarray(sums, dtype=np.float64)
    if how == "mean":
        return np.asarray(sums, dtype=np.float64) / np.maximum(np.asarray(lengths, dtype=np.float64), 1.0)
    raise ValueError(f"unknown length normalisation {how!r} (sum | mean)")
