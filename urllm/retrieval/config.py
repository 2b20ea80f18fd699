"""Configuration of the user-retrieval stage: which encoder embeds users, which FAISS index finds them."""

from __future__ import annotations

from dataclasses import dataclass

from urllm.configuration import opt


@dataclass
class SVDConfig:
    """PureSVD user encoder (``retrieval.encoder: svd``): a simple, honest stand-in for the graph encoder."""

    dim: int = opt(64, "rank of the truncated SVD of the training user x item matrix")
    n_iter: int = opt(4, "power iterations of the randomised SVD")
    recency_decay: float = opt(
        1.0, "weight of the i-th most recent history item is decay**i (1.0 = plain PureSVD folding-in)"
    )
    domain_weight: float = opt(
        1.0, "weight of the target-domain-only view concatenated to the mixed view (0 = mixed view only)"
    )
    seed: int = opt(0, "seed of the randomised SVD")

    def __post_init__(self) -> None:
        if self.dim < 1 or self.n_iter < 0:
            raise ValueError("svd.dim must be >= 1 and svd.n_iter >= 0")
        if not 0 < self.recency_decay <= 1:
            raise ValueError(f"svd.recency_decay must be in (0, 1], got {self.recency_decay}")
        if self.domain_weight < 0:
            raise ValueError("svd.domain_weight must be >= 0")


@dataclass
class RetrievalConfig:
    """Index the training users' target-domain embeddings; fetch the k most similar other users."""

    encoder: str = opt(
        "graph",
        "system implementing user_embeddings(records, domain): graph | sasrec | svd (built in, no training)",
    )
    encoder_dir: str = opt(
        "",
        "load the fitted encoder read-only from this folder (its system's load(dir)) instead of fitting it "
        "in <run_dir>; empty = fit or reuse <run_dir>/graph (graph) or <run_dir>/systems/<encoder>",
        path=True,
    )
    index_factory: str = opt(
        "Flat",
        "FAISS index_factory string: Flat (exact) for small catalogues; IVF4096,Flat / HNSW32 / IVF4096,PQ32np "
        "for millions of users ('np' skips PQ's slow polysemous training); 'exact' = the numpy oracle",
    )
    normalize: bool = opt(True, "L2-normalise vectors so inner product = cosine similarity")
    k: int = opt(10, "neighbours fetched per (user, target domain); the prompt uses prompts.n_neighbours")
    nprobe: int = opt(16, "IVF indexes: inverted lists visited per query")
    ef_search: int = opt(64, "HNSW indexes: size of the search beam")
    train_size: int = opt(100_000, "IVF/PQ indexes: at most this many vectors (seeded sample) to train on")
    batch_size: int = opt(1024, "records embedded and searched per batch", runtime=True)
    hit_rate_ks: list[int] = opt(factory=lambda: [1, 5, 10], help="k of the neighbour hit-rate measurement")
    seed: int = opt(0, "seed of the IVF/PQ training sample and k-means")
    svd: SVDConfig = opt(factory=SVDConfig, help="the built-in PureSVD encoder (encoder: svd)")

    def __post_init__(self) -> None:
        if not self.encoder:
            raise ValueError("encoder must name a system (graph, sasrec, svd)")
        if not self.index_factory.strip():
            raise ValueError("index_factory must be a FAISS index_factory string such as Flat")
        for name in ("k", "nprobe", "ef_search", "train_size", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.hit_rate_ks or any(k < 1 for k in self.hit_rate_ks):
            raise ValueError(f"hit_rate_ks must be positive, got {self.hit_rate_ks}")
