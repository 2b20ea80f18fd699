"""Loss terms of the dual-graph encoder: next-item CE, cross-domain contrastive, semantic alignment."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def next_item_ce(logits: torch.Tensor, target_col: torch.Tensor) -> torch.Tensor:
    """Full-softmax cross-entropy: logits (M, N_d) over all items of the domain, targets (M,) columns."""
    if logits.shape[0] == 0:
        return logits.sum() * 0.0  # keeps the graph (and DDP) happy when a batch has no target
    return F.cross_entropy(logits, target_col)


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE: row i of ``a`` (M, H) and row i of ``b`` (M, H) are positives, every other
    row of the batch a negative; cosine similarity / ``temperature``."""
    if a.shape[0] < 2:
        return (a.sum() + b.sum()) * 0.0
    sim = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / temperature  # (M, M)
    labels = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(sim, labels) + F.cross_entropy(sim.T, labels))


def infomax(a: torch.Tensor, b: torch.Tensor, disc: nn.Bilinear) -> torch.Tensor:
    """C2DSR-style InfoMax: a bilinear discriminator tells (a_i, b_i) from a corrupted pair (a_i, b_j)
    where ``b_j`` is another user's view (a rolled batch), binary cross-entropy."""
    if a.shape[0] < 2:
        return (a.sum() + b.sum()) * 0.0 + sum(p.sum() for p in disc.parameters()) * 0.0
    pos = disc(a, b).squeeze(-1)
    neg = disc(a, b.roll(1, dims=0)).squeeze(-1)
    return 0.5 * (
        F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos))
        + F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg))
    )


def contrastive_loss(
    mixed: torch.Tensor,
    domain_views: list[torch.Tensor],
    kind: str,
    temperature: float,
    disc: nn.Bilinear | None = None,
) -> torch.Tensor:
    """Cross-domain term: the mixed-sequence view of a user (B, H) against each single-domain view
    (B, H) of the same user; users without an item of that domain (zero view) are left out."""
    losses = []
    for view in domain_views:
        has = view.abs().sum(-1) > 0
        a, b = mixed[has], view[has]
        if kind == "infomax":
            if disc is None:
                raise ValueError("infomax needs a discriminator")
            losses.append(infomax(a, b, disc))
        else:
            losses.append(info_nce(a, b, temperature))
    return torch.stack(losses).mean()


def alignment_loss(collab: torch.Tensor, semantic: torch.Tensor, temperature: float) -> torch.Tensor:
    """Pull each item's collaborative embedding (M, H) toward its semantic embedding (M, H) and away
    from the other sampled items' (InfoNCE)."""
    return info_nce(collab, semantic, temperature)
