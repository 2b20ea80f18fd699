"""Similar training users per (user, target domain), and how useful they are.

One index per domain holds the training users' domain-``d`` embeddings (one vector per user, from
the history, as every query is embedded). A record with target domain ``d`` searches index ``d`` and
never gets its own user back. A neighbour contributes its full training sequence (history and its
targets: legitimate, it is a training user); valid/test users are never indexed.

The hit rate measures usefulness: the share of records whose target is among the target-domain items
of the top-k neighbours, against the same share for k random training users.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from urllm.data.schema import Record
from urllm.retrieval.config import RetrievalConfig
from urllm.retrieval.encoders import UserEmbedder
from urllm.retrieval.index import UserIndex, load_index, make_index

logger = logging.getLogger(__name__)


def training_users(records: Sequence[Record]) -> tuple[list[Record], dict[str, tuple[int, ...]]]:
    """One record per training user (its longest history) and each user's full training sequence.

    The sequence is the history followed by the user's distinct targets, in record order.
    """
    first: dict[str, Record] = {}
    targets: dict[str, list[int]] = {}
    for r in records:
        if r.user not in first or len(r.history) > len(first[r.user].history):
            first[r.user] = r
        t = targets.setdefault(r.user, [])
        if r.target not in t:
            t.append(r.target)
    return list(first.values()), {u: (*rec.history, *targets[u]) for u, rec in first.items()}


def _batched_embeddings(
    embedder: UserEmbedder, records: Sequence[Record], domain: int, batch_size: int, desc: str
) -> np.ndarray:
    parts = [
        np.asarray(embedder.user_embeddings(records[lo : lo + batch_size], domain), dtype=np.float32)
        for lo in tqdm(
            range(0, len(records), batch_size), desc=desc, leave=False, disable=len(records) < 4096
        )
    ]
    return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)


class UserRetriever:
    """Per-domain user indexes over training users, searched with the query user excluded."""

    def __init__(self, indexes: dict[int, UserIndex], cfg: RetrievalConfig) -> None:
        self.indexes = indexes
        self.cfg = cfg

    @classmethod
    def build(
        cls, embedder: UserEmbedder, train_records: Sequence[Record], cfg: RetrievalConfig
    ) -> UserRetriever:
        """Index every training user's domain-0 and domain-1 embedding."""
        users, _ = training_users(train_records)
        ids = [r.user for r in users]
        indexes = {}
        for d in (0, 1):
            vectors = _batched_embeddings(
                embedder, users, d, cfg.batch_size, f"embed train users (domain {d})"
            )
            index = make_index(
                cfg.index_factory, cfg.normalize, cfg.nprobe, cfg.ef_search, cfg.train_size, cfg.seed
            )
            index.build(vectors, ids)
            indexes[d] = index
            logger.info(
                "user index, domain %d: %d users x %d dims (%s)", d, *vectors.shape, cfg.index_factory
            )
        return cls(indexes, cfg)

    def save(self, out_dir: str | Path) -> None:
        out = Path(out_dir)
        for d, index in self.indexes.items():
            index.save(out / f"domain{d}")
        (out / "retrieval.json").write_text(json.dumps({"index_factory": self.cfg.index_factory}) + "\n")

    @classmethod
    def load(cls, in_dir: str | Path, cfg: RetrievalConfig) -> UserRetriever:
        src = Path(in_dir)
        return cls({d: load_index(src / f"domain{d}") for d in (0, 1)}, cfg)

    @property
    def train_users(self) -> list[str]:
        return self.indexes[0].ids

    def search(
        self, embedder: UserEmbedder, records: Sequence[Record], k: int | None = None
    ) -> tuple[list[list[str]], list[list[float]]]:
        """Per record: the ids (best first) and similarities of its ``k`` nearest *other* training users.

        Each record is embedded and searched in its own target domain (``record.domain``).
        """
        k = k or self.cfg.k
        ids: list[list[str]] = [[] for _ in records]
        sims: list[list[float]] = [[] for _ in records]
        for d in (0, 1):
            rows = [i for i, r in enumerate(records) if r.domain == d]
            index = self.indexes[d]
            bs = self.cfg.batch_size
            for lo in tqdm(
                range(0, len(rows), bs), desc=f"search (domain {d})", leave=False, disable=len(rows) < 4096
            ):
                batch = [records[i] for i in rows[lo : lo + bs]]
                q = np.asarray(embedder.user_embeddings(batch, d), dtype=np.float32)
                pos, sc = index.search(q, k, exclude_ids=[r.user for r in batch])
                for row, p, s in zip(rows[lo : lo + bs], pos, sc, strict=True):
                    ids[row] = [index.ids[j] for j in p if j >= 0]
                    sims[row] = [float(v) for v, j in zip(s, p, strict=True) if j >= 0]
        return ids, sims


def hit_rates(
    records: Sequence[Record],
    neighbour_ids: Sequence[Sequence[str]],
    user_items: dict[str, tuple[int, ...]],
    item_domain: np.ndarray,
    ks: Sequence[int],
) -> dict[str, dict[str, float | None]]:
    """``{str(k): {"retrieved": share, "random": share, "ratio": retrieved / random}}``.

    A record hits at k when its target is among the target-domain items of its first k neighbours.
    ``random`` is the exact expectation for k distinct training users drawn uniformly from all but the
    record's own user: with ``c`` of those ``N`` users holding the target, P(hit) = 1 - C(N-c, k) / C(N, k)
    (no sampling noise).
    """
    holders: dict[int, set[str]] = {}
    for u, seq in user_items.items():
        for i in seq:
            holders.setdefault(int(i), set()).add(u)
    by_domain = {
        (u, d): {i for i in seq if item_domain[i] == d} for u, seq in user_items.items() for d in (0, 1)
    }

    def hit(rec: Record, nbrs: Sequence[str]) -> bool:
        return any(rec.target in by_domain[(v, rec.domain)] for v in nbrs)

    def p_random(rec: Record, k: int) -> float:
        others = holders.get(rec.target, set()) - {rec.user}
        n = len(user_items) - (rec.user in user_items)
        c, k = len(others), min(k, n)
        p_miss = 1.0
        for i in range(k):  # C(n-c, k) / C(n, k) as a product
            p_miss *= max(n - c - i, 0) / (n - i)
        return 1.0 - p_miss

    n_rec = max(len(records), 1)
    out: dict[str, dict[str, float | None]] = {}
    for k in ks:
        if any(len(nb) < k for nb in neighbour_ids):
            logger.warning("hit rate at k=%d: some records have fewer than %d neighbours", k, k)
        retrieved = sum(hit(rec, nb[:k]) for rec, nb in zip(records, neighbour_ids, strict=True)) / n_rec
        rand = sum(p_random(rec, k) for rec in records) / n_rec
        out[str(k)] = {
            "retrieved": round(retrieved, 4),
            "random": round(rand, 4),
            "ratio": round(retrieved / rand, 2) if rand > 0 else None,
        }
    return out
