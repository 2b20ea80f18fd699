"""A seeded synthetic two-domain dataset with latent taste clusters.

Every item belongs to one of ``n_clusters`` tastes; every user has one taste and picks most items of
it, walking each domain's items of that taste in a fixed order (so there is sequence structure to learn).
Users of the same taste are "similar users", which makes retrieval and sequence models testable.
"""

from __future__ import annotations

import numpy as np

from urllm.data.schema import Catalogue, Record, TwoDomainData

COLOURS = ["red", "blue", "green", "yellow", "black", "white", "pink", "grey"]


def make_synthetic(
    n_users: int = 200,
    items_per_domain: int = 40,
    n_clusters: int = 4,
    seq_len: int = 12,
    noise: float = 0.1,
    seed: int = 0,
    domains: tuple[str, str] = ("art", "office"),
) -> TwoDomainData:
    """Users split 70/15/15 into train/valid/test, one record per target domain per user."""
    rng = np.random.default_rng(seed)
    n_items = 2 * items_per_domain
    item_domain = np.repeat([0, 1], items_per_domain)
    cluster = np.tile(np.arange(items_per_domain) % n_clusters, 2)
    titles = [
        f"{domains[d]} {COLOURS[c % len(COLOURS)]} thing {i}"
        for i, (d, c) in enumerate(zip(item_domain, cluster, strict=True))
    ]
    texts = [
        f"{domains[d]} taste{c} {COLOURS[c % len(COLOURS)]}"
        for d, c in zip(item_domain, cluster, strict=True)
    ]
    catalogue = Catalogue(
        domains=domains,
        item_domain=item_domain,
        titles=titles,
        texts=texts,
        source_ids=[str(i) for i in range(n_items)],
    )
    pools = {
        (d, c): np.flatnonzero((item_domain == d) & (cluster == c)) for d in (0, 1) for c in range(n_clusters)
    }
    splits: dict[str, list[Record]] = {"train": [], "valid": [], "test": []}
    for u in range(n_users):
        taste = int(rng.integers(n_clusters))
        pos = {0: int(rng.integers(100)), 1: int(rng.integers(100))}  # where the user starts walking
        seq = []
        for t in range(seq_len + 2):
            d = t % 2
            if rng.random() < noise:
                seq.append(int(rng.integers(d * items_per_domain, (d + 1) * items_per_domain)))
            else:
                pool = pools[(d, taste)]
                seq.append(int(pool[pos[d] % len(pool)]))
                pos[d] += 1
        hist, targets = seq[:-2], seq[-2:]
        split = "train" if u < 0.7 * n_users else "valid" if u < 0.85 * n_users else "test"
        for target in sorted(targets, key=lambda i: item_domain[i]):
            splits[split].append(
                Record(user=f"u{u}", history=tuple(hist), target=target, domain=int(item_domain[target]))
            )
    data = TwoDomainData(name="synthetic", catalogue=catalogue, splits=splits)
    data.validate()
    return data
