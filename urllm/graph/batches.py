"""Sequences -> the index tensors of the three encoders (mixed, X-only, Y-only).

Token ids are ``item + 1`` (0 = padding); every window is left-padded so the most recent item sits at the
last position. For each position ``t`` of the mixed window, ``gather[d, t]`` is the position in the
domain-``d`` window of the user's last domain-``d`` item at or before ``t`` (-1 if there is none): the
state the domain-``d`` head combines with the mixed state at ``t``. Causality holds by construction: the
domain window only holds items up to the end of the mixed window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from urllm.data.schema import Record
from urllm.graph.build import training_sequences


@dataclass
class SeqBatch:
    """Index tensors of B sequences of window length T."""

    mixed: torch.Tensor  # (B, T) token ids of the mixed window
    domain: torch.Tensor  # (B, 2, T) token ids of the X-only and Y-only windows
    gather: torch.Tensor  # (B, 2, T) position in the domain window of the last d-item <= t, or -1
    targets: torch.Tensor | None = None  # (B, 2, T) next item of domain d after t (global id), or -1
    fold: torch.Tensor | None = None  # (B,) training fold of each row (user i is in fold i % folds)

    def __len__(self) -> int:
        return self.mixed.shape[0]

    def to(self, device: torch.device | str) -> SeqBatch:
        move = {k: (v.to(device) if v is not None else None) for k, v in vars(self).items()}
        return SeqBatch(**move)

    def rows(self, idx: torch.Tensor | slice) -> SeqBatch:
        sel = {k: (v[idx] if v is not None else None) for k, v in vars(self).items()}
        return SeqBatch(**sel)


def encode_inputs(seqs: Sequence[Sequence[int]], item_domain: np.ndarray, max_len: int) -> SeqBatch:
    """Windows of the inputs ``seqs`` (each a history, oldest first; may be empty)."""
    B, T = len(seqs), max_len
    mixed = np.zeros((B, T), dtype=np.int64)
    domain = np.zeros((B, 2, T), dtype=np.int64)
    gather = np.full((B, 2, T), -1, dtype=np.int64)
    for b, seq in enumerate(seqs):
        arr = np.asarray(seq, dtype=np.int64)
        if arr.size == 0:
            continue
        win = arr[-T:]
        mixed[b, T - len(win) :] = win + 1
        dom = item_domain[arr]
        for d in (0, 1):
            items = arr[dom == d]
            if items.size == 0:
                continue
            dw = items[-T:]
            domain[b, d, T - len(dw) :] = dw + 1
            # number of d-items up to and including each position of the mixed window
            upto = np.cumsum(dom == d)[-len(win) :]
            j = upto - 1 - (len(items) - len(dw))  # index into the kept domain items
            pos = (T - len(dw)) + j
            gather[b, d, T - len(win) :] = np.where(upto > 0, pos, -1)
    return SeqBatch(
        mixed=torch.from_numpy(mixed), domain=torch.from_numpy(domain), gather=torch.from_numpy(gather)
    )


def next_in_domain(seq: np.ndarray, item_domain: np.ndarray) -> np.ndarray:
    """(2, len(seq)) next item of domain d strictly after each position (-1 if none)."""
    out = np.full((2, len(seq)), -1, dtype=np.int64)
    nxt = [-1, -1]
    for p in range(len(seq) - 1, -1, -1):
        out[0, p], out[1, p] = nxt
        nxt[int(item_domain[seq[p]])] = int(seq[p])
    return out


def training_batch(
    records: Sequence[Record],
    item_domain: np.ndarray,
    max_len: int,
    targets: str = "per_domain",
    folds: int = 0,
) -> SeqBatch:
    """One row per training user: the last ``max_len`` inputs of the user's sequence, every position
    supervised. ``per_domain``: the next item of each domain; ``next``: only the next item. With
    ``folds``, row ``i`` is in fold ``i % folds`` (as in :func:`~urllm.graph.build.fold_graphs`)."""
    seqs = [np.asarray(s, dtype=np.int64) for s in training_sequences(records)]
    batch = encode_inputs([s[:-1] for s in seqs], item_domain, max_len)
    T = max_len
    tgt = np.full((len(seqs), 2, T), -1, dtype=np.int64)
    for b, s in enumerate(seqs):
        if targets == "per_domain":
            nxt = next_in_domain(s, item_domain)[:, :-1]  # targets of the inputs s[:-1]
        else:
            nxt = np.full((2, len(s) - 1), -1, dtype=np.int64)
            nxt[item_domain[s[1:]], np.arange(len(s) - 1)] = s[1:]
        k = min(T, nxt.shape[1])
        tgt[b, :, T - k :] = nxt[:, -k:]
    batch.targets = torch.from_numpy(tgt)
    if folds:
        batch.fold = torch.arange(len(seqs)) % folds
    return batch


def record_batch(records: Sequence[Record], item_domain: np.ndarray, max_len: int) -> SeqBatch:
    """Windows of the records' histories (targets are never read)."""
    return encode_inputs([r.history for r in records], item_domain, max_len)
