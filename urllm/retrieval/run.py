"""The retrieval stage end to end: index the training users, measure neighbour usefulness."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from urllm.data.schema import TwoDomainData
from urllm.retrieval.config import RetrievalConfig
from urllm.retrieval.encoders import UserEmbedder
from urllm.retrieval.neighbours import UserRetriever, hit_rates, training_users

logger = logging.getLogger(__name__)


def hit_rate_report(
    rc: RetrievalConfig,
    data: TwoDomainData,
    embedder: UserEmbedder,
    split: str = "valid",
    out_dir: str | Path | None = None,
) -> dict:
    """``{"hit_rate": {k: {retrieved, random, ratio}}, "per_domain": …}`` for the records of ``split``:
    the training users indexed with ``embedder`` (the fitted ``retrieval.encoder``); the index is saved
    to ``out_dir`` when given (the index stage's folder)."""
    records = data.records(split)
    start = time.perf_counter()
    retriever = UserRetriever.build(embedder, data.records("train"), rc)
    if out_dir is not None:
        retriever.save(out_dir)
    nbrs, _ = retriever.search(embedder, records, k=max(rc.k, *rc.hit_rate_ks))
    _, items = training_users(data.records("train"))
    item_domain = data.catalogue.item_domain

    def rates(idx: list[int]) -> dict:
        return hit_rates(
            [records[i] for i in idx], [nbrs[i] for i in idx], items, item_domain, rc.hit_rate_ks
        )

    report = {
        "hit_rate": rates(list(range(len(records)))),
        "per_domain": {
            name: rates([i for i, r in enumerate(records) if r.domain == d])
            for d, name in enumerate(data.catalogue.domains)
        },
        "split": split,
        "n_records": len(records),
        "n_train_users": len(items),
        "encoder": rc.encoder,
        "index_factory": rc.index_factory,
        "seconds": round(time.perf_counter() - start, 1),
    }
    return report
