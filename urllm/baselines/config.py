"""Configuration of the trained baselines."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from urllm.configuration import opt


@dataclass
class SASRecConfig:
    """SASRec over the mixed sequence, scored over the target domain (Kang & McAuley, 2018)."""

    hidden: int = opt(128, "embedding and hidden size")
    layers: int = opt(2, "transformer blocks")
    heads: int = opt(1, "attention heads")
    dropout: float = opt(0.2, "dropout rate")
    max_len: int = opt(50, "most recent items kept from each sequence")
    loss: Literal["domain", "catalogue", "each_domain"] = opt(
        "domain",
        "softmax cross-entropy of every position's next item over the items of that item's domain (domain) "
        "or over all items (catalogue); each_domain: every position predicts the next item of EACH domain "
        "(the task at inference), a softmax over that domain's items",
    )
    tie_weights: bool = opt(
        False, "score items with the input item embeddings (original SASRec) instead of own ones"
    )
    item_bias: bool = opt(True, "add a learned per-item bias to the output scores")
    lr: float = opt(1e-3, "AdamW learning rate")
    weight_decay: float = opt(
        0.0, "AdamW (decoupled) weight decay: rarely seen items shrink toward their popularity bias"
    )
    batch_size: int = opt(128, "training sequences per step")
    eval_batch_size: int = opt(512, "sequences per forward pass when scoring or embedding", runtime=True)
    epochs: int = opt(30, "maximum training epochs (exactly this many with selection: none)", extends=True)
    patience: int = opt(3, "stop after this many epochs without a better held-out MRR", extends=True)
    selection: Literal["heldout", "none"] = opt(
        "heldout",
        "heldout: keep the epoch with the best MRR on a seeded fold of held-out *training* users (not "
        "trained on) and stop early; none: train on every training user for exactly `epochs` epochs. "
        "The reported split (valid/test) is never read for selection",
    )
    heldout_fraction: float = opt(0.1, "share of training users held out for selection (selection: heldout)")
    device: str = opt("auto", "auto | cpu | cuda", runtime=True)

    def __post_init__(self) -> None:
        for name in ("hidden", "layers", "heads", "max_len", "batch_size", "eval_batch_size", "epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.patience < 1:
            raise ValueError("patience must be >= 1")
        if self.selection not in ("heldout", "none"):
            raise ValueError(f"selection must be heldout or none, got {self.selection!r}")
        if not 0 < self.heldout_fraction < 1:
            raise ValueError("heldout_fraction must be in (0, 1)")
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        if not 0 <= self.dropout < 1:
            raise ValueError("dropout must be in [0, 1)")
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError("lr must be > 0 and weight_decay >= 0")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
