"""Configuration of the trained baselines."""

from __future__ import annotations

from dataclasses import dataclass

from urllm.configuration import opt


@dataclass
class SASRecConfig:
    """SASRec over the mixed sequence, scored over the target domain (Kang & McAuley, 2018)."""

    hidden: int = opt(128, "embedding and hidden size")
    layers: int = opt(2, "transformer blocks")
    heads: int = opt(1, "attention heads")
    dropout: float = opt(0.2, "dropout rate")
    max_len: int = opt(50, "most recent items kept from each sequence")
    lr: float = opt(1e-3, "Adam learning rate")
    weight_decay: float = opt(0.0, "Adam weight decay")
    batch_size: int = opt(128, "training sequences per step")
    epochs: int = opt(30, "maximum training epochs")
    patience: int = opt(3, "stop after this many epochs without a better valid MRR")
    device: str = opt("auto", "auto | cpu | cuda")

    def __post_init__(self) -> None:
        for name in ("hidden", "layers", "heads", "max_len", "batch_size", "epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        if not 0 <= self.dropout < 1:
            raise ValueError("dropout must be in [0, 1)")
