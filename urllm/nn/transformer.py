"""A SASRec-style causal transformer over item-token sequences (Kang & McAuley, 2018).

Shared by the SASRec baseline and the dual-graph encoder. Sequences are left-padded with 0 and real
items are 1-based token ids; the state at position t only attends to positions <= t.
"""

from __future__ import annotations

import torch
from torch import nn


class CausalEncoder(nn.Module):
    """Learned positions + ``layers`` pre-LN transformer blocks with a causal mask.

    Args:
        hidden: model width (the width of the input token embeddings).
        layers: number of transformer blocks.
        heads: attention heads per block.
        dropout: dropout of embeddings, attention and feed-forward.
        max_len: longest sequence (number of learned positions).
    """

    def __init__(self, hidden: int, layers: int, heads: int, dropout: float, max_len: int) -> None:
        super().__init__()
        self.pos = nn.Embedding(max_len, hidden)
        self.drop = nn.Dropout(dropout)
        block = nn.TransformerEncoderLayer(
            hidden,
            heads,
            dim_feedforward=hidden,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden)
        self.max_len = max_len

    def forward(self, tokens: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        """tokens (B, T, H) embedded items; pad_mask (B, T) True at padding -> states (B, T, H)."""
        T = tokens.shape[1]
        if T > self.max_len:
            raise ValueError(f"sequence length {T} exceeds max_len {self.max_len}")
        pos = self.pos(torch.arange(T, device=tokens.device))  # (T, H)
        x = self.drop(tokens * tokens.shape[-1] ** 0.5 + pos)
        # blocked[b, q, k]: query q may not see key k (future or padding); the diagonal stays open so
        # padded queries of a left-padded row still attend to something (no NaN); they are zeroed below.
        causal = torch.triu(torch.ones(T, T, dtype=torch.bool, device=tokens.device), diagonal=1)
        blocked = causal.unsqueeze(0) | pad_mask.unsqueeze(1)  # (B, T, T)
        blocked = blocked & ~torch.eye(T, dtype=torch.bool, device=tokens.device)
        heads = self.blocks.layers[0].self_attn.num_heads
        x = self.blocks(x, mask=blocked.repeat_interleave(heads, dim=0))
        x = x.masked_fill(pad_mask.unsqueeze(-1), 0.0)
        return self.norm(x)
