"""Why a recommendation: the history used, the similar users retrieved, the candidates and their scores.

Systems with ``explain(record, domain)`` (the LLM systems) describe themselves; their answer is only
normalised here (ids get titles and domains). For the others the evidence is built from the run:

- ``history``: the record's items, oldest first, domain-tagged;
- ``neighbours``: the training users the run's user index returns for the record and target domain
  (the same search the prompts stage makes), with their most recent target-domain items not already in
  the history (oldest first);
- ``candidates``: the system's own top-N with its score as ``backbone`` (there is no LLM score);
- ``grounding``: ``{"mode": "none"}``: the system ranks every item of the target domain itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from urllm.data.schema import Record
from urllm.serve.query import Catalog


def top_items(scores: np.ndarray, lo: int, n: int, exclude: Sequence[int] = ()) -> list[int]:
    """Global ids of the ``n`` best-scored items of a domain (ties: lower id), skipping ``exclude``."""
    order = np.lexsort((np.arange(len(scores)), -scores)) + lo
    if exclude:
        drop = set(exclude)
        order = order[[i not in drop for i in order.tolist()]]
    return order[:n].tolist()


def neighbour_items(
    seq: Sequence[int], item_domain: np.ndarray, domain: int, known: set[int], n: int
) -> list[int]:
    """A neighbour's ``n`` most recent distinct target-domain items not in ``known``, oldest first (the
    order of a history)."""
    out: list[int] = []
    for i in reversed(seq):
        if item_domain[i] == domain and i not in known and i not in out:
            out.append(int(i))
            if len(out) == n:
                break
    return out[::-1]


class EvidenceBuilder:
    """Evidence for systems without ``explain()``, for a batch of records of one target domain."""

    def __init__(self, catalog: Catalog, retriever: tuple | None, user_items: dict, cfg) -> None:
        self.catalog = catalog
        self.retriever = retriever  # (embedder, UserRetriever) or None
        self.user_items = user_items  # training user -> full training sequence
        self.cfg = cfg  # ServeConfig

    def neighbours(self, records: Sequence[Record], domain: int) -> list[list[dict[str, Any]]]:
        if self.retriever is None or not self.cfg.n_neighbours:
            return [[] for _ in records]
        embedder, retriever = self.retriever
        ids, sims = retriever.search(embedder, list(records), k=self.cfg.n_neighbours)
        item_domain = self.catalog.cat.item_domain
        out = []
        for rec, users, sim in zip(records, ids, sims, strict=True):
            known = set(rec.history)
            out.append(
                [
                    {
                        "user": u,
                        "similarity": round(float(s), 4),
                        "items": neighbour_items(
                            self.user_items.get(u, ()),
                            item_domain,
                            domain,
                            known,
                            self.cfg.items_per_neighbour,
                        ),
                    }
                    for u, s in zip(users, sim, strict=True)
                ]
            )
        return out

    def build(self, records: Sequence[Record], domain: int, scores: np.ndarray) -> list[dict[str, Any]]:
        """One evidence dict per record; ``scores`` is the system's (len(records), n_items_of_domain)."""
        lo = self.catalog.cat.domain_range(domain).start
        nbrs = self.neighbours(records, domain)
        out = []
        for rec, row, nb in zip(records, scores, nbrs, strict=True):
            cands = top_items(row, lo, self.cfg.n_candidates)
            out.append(
                {
                    "history": [int(i) for i in rec.history],
                    "neighbours": nb,
                    "candidates": [
                        {"id": c, "backbone": float(row[c - lo]), "llm": None, "fused": None} for c in cands
                    ],
                    "grounding": {
                        "mode": "none",
                        "detail": "the system ranks every target-domain item itself",
                    },
                }
            )
        return out


def _item_dict(catalog: Catalog, x: Any) -> dict[str, Any]:
    """An item (id or dict with an id) as {id, title, domain, ...}."""
    if isinstance(x, dict):
        i = int(x["id"])
        return {**catalog.item(i), **{k: v for k, v in x.items() if k not in ("id", "title", "domain")}}
    return catalog.item(int(x))


def normalise(evidence: dict[str, Any], catalog: Catalog, top: Sequence[int]) -> dict[str, Any]:
    """Titles and domains for every item; ``in_top_k`` on neighbours' items and candidates."""
    shown = set(top)
    ev = dict(evidence)
    ev["history"] = [_item_dict(catalog, x) for x in ev.get("history", [])]
    ev["neighbours"] = [
        {
            **{k: v for k, v in n.items() if k != "items"},
            "items": [
                {**_item_dict(catalog, x), "in_top_k": int(x["id"] if isinstance(x, dict) else x) in shown}
                for x in n.get("items", [])
            ],
        }
        for n in ev.get("neighbours", [])
    ]
    ev["candidates"] = [
        {**_item_dict(catalog, c), "in_top_k": int(c["id"]) in shown} for c in ev.get("candidates", [])
    ]
    ev.setdefault("grounding", {"mode": "unknown"})
    return ev
