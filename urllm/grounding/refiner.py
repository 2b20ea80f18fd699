"""Map free LLM text to catalogue items: normalised exact match -> BM25 -> title-embedding kNN.

Matching runs over the *whole* catalogue, so an answer that names an item of the other domain is
recognised as such (it counts as out-of-domain in the raw statistics) and then discarded: grounded
output only ever contains items of the target domain. Every decision is returned as a
:class:`Grounded` record (the step that matched, its score, the items kept and dropped), which the
batch inference writes to its JSONL.

Titles shared by several items are one document here; all their items are returned, and the backbone
score decides their order later (:mod:`urllm.grounding.fusion`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from urllm.data.schema import Catalogue
from urllm.grounding.bm25 import BM25
from urllm.grounding.config import RefinerConfig
from urllm.grounding.embed import Encoder, MiniLMEncoder, cached_embeddings
from urllm.grounding.normalize import clean_generation, normalize_title

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Grounded:
    """What the refiner did with one generated text.

    ``method`` is ``exact`` | ``bm25`` | ``knn`` (the step that matched), ``none`` (no step was
    confident enough) or ``empty`` (nothing to match); constrained beams are recorded as ``trie`` and
    re-ranked candidates as ``candidate``. ``items`` are the matched title's items in the target
    domain, ``dropped`` those outside it.
    """

    text: str
    method: str
    score: float
    items: tuple[int, ...]
    dropped: tuple[int, ...]

    @property
    def matched(self) -> bool:
        return self.method in ("exact", "bm25", "knn", "trie", "candidate")

    @property
    def valid_title(self) -> bool:
        """The text is a catalogue title (after normalisation), of any domain."""
        return self.method in ("exact", "trie", "candidate")

    @property
    def out_of_domain(self) -> bool:
        """The text names (or is closest to) an item of the other domain only."""
        return self.matched and not self.items

    def to_dict(self) -> dict:
        d = asdict(self)
        d["items"], d["dropped"] = list(self.items), list(self.dropped)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Grounded:
        return cls(d["text"], d["method"], float(d["score"]), tuple(d["items"]), tuple(d["dropped"]))


class Refiner:
    """Catalogue-wide title matcher; :meth:`ground` keeps the target domain's items only.

    Args:
        catalogue: all items of both domains.
        cfg: steps and thresholds.
        encoder: ``texts -> (n, D)`` unit vectors for the kNN step; default all-MiniLM-L6-v2, built
            lazily the first time a text reaches that step.
        cache_dir: where title embeddings are cached (``None``: not cached).
        title_embeddings: ``(n_items, D)`` unit vectors of ``catalogue.titles`` made by the same encoder
            (e.g. the graph stage's), used instead of computing them.
    """

    def __init__(
        self,
        catalogue: Catalogue,
        cfg: RefinerConfig,
        encoder: Encoder | None = None,
        cache_dir: str | Path | None = None,
        title_embeddings: np.ndarray | None = None,
    ) -> None:
        if title_embeddings is not None and len(title_embeddings) != catalogue.n_items:
            raise ValueError(
                f"title_embeddings has {len(title_embeddings)} rows for {catalogue.n_items} items"
            )
        self.catalogue = catalogue
        self._title_emb = title_embeddings
        self.cfg = cfg
        self._encoder = encoder
        self.cache_dir = Path(cache_dir) if cache_dir else None
        groups: dict[str, list[int]] = {}
        for item, title in enumerate(catalogue.titles):
            norm = normalize_title(title)
            if norm:
                groups.setdefault(norm, []).append(item)
        self.titles = list(groups)  # distinct normalised titles (documents)
        self.title_items = [tuple(v) for v in groups.values()]
        self.by_title = {t: i for i, t in enumerate(self.titles)}
        self.doc_of_item = np.full(catalogue.n_items, -1, dtype=np.int64)  # item -> its title's document
        for doc, items in enumerate(self.title_items):
            self.doc_of_item[list(items)] = doc
        self.bm25 = (
            BM25([t.split(" ") for t in self.titles], cfg.bm25_k1, cfg.bm25_b)
            if "bm25" in cfg.steps
            else None
        )
        self._index = None  # FAISS inner-product index over title embeddings, built on first use

    # ----------------------------------------------------------------------------------------- matching

    def prepare(self) -> None:
        """Build the kNN index now (it is otherwise built on the first text that reaches that step)."""
        if "knn" in self.cfg.steps:
            self._knn_index()

    def _knn_index(self):
        if self._index is None:
            import faiss

            if self._encoder is None:
                self._encoder = MiniLMEncoder(self.cfg)
            emb = self._title_emb
            if emb is None:  # one vector per item, as the graph stage embeds titles (shareable cache)
                name = getattr(self._encoder, "name", type(self._encoder).__name__)
                emb = cached_embeddings(self._encoder, self.catalogue.titles, self.cache_dir, name)
            self._index = faiss.IndexFlatIP(emb.shape[1])
            self._index.add(np.ascontiguousarray(emb, dtype=np.float32))
        return self._index

    def match_many(self, texts: Sequence[str]) -> list[tuple[str, str, float, int]]:
        """Best catalogue title of each text: ``(cleaned text, method, score, title index or -1)``."""
        out: list[tuple[str, str, float, int] | None] = [None] * len(texts)
        pending: list[int] = []
        cleaned = [clean_generation(t) for t in texts]
        for i, text in enumerate(cleaned):
            norm = normalize_title(text)
            if not norm:
                out[i] = (text, "empty", 0.0, -1)
                continue
            if "exact" in self.cfg.steps and norm in self.by_title:
                out[i] = (text, "exact", 1.0, self.by_title[norm])
                continue
            if self.bm25 is not None:
                hits = self.bm25.search(norm.split(" "), k=1)
                if hits and hits[0][2] >= self.cfg.bm25_min_ratio:
                    out[i] = (text, "bm25", hits[0][2], hits[0][0])
                    continue
            pending.append(i)
        if pending and "knn" in self.cfg.steps:
            index = self._knn_index()
            queries = np.ascontiguousarray(self._encoder([cleaned[i] for i in pending]), dtype=np.float32)
            sims, ids = index.search(queries, 1)  # (P, 1) each: the nearest item
            for row, i in enumerate(pending):
                sim, item = float(sims[row, 0]), int(ids[row, 0])
                doc = int(self.doc_of_item[item]) if item >= 0 else -1
                if doc >= 0 and sim >= self.cfg.knn_min_cosine:
                    out[i] = (cleaned[i], "knn", sim, doc)
        return [o if o is not None else (cleaned[i], "none", 0.0, -1) for i, o in enumerate(out)]

    def ground_many(self, texts: Sequence[str], domains: Sequence[int]) -> list[Grounded]:
        """Match each text and keep only the items of its target domain."""
        item_domain = self.catalogue.item_domain
        result = []
        for (text, method, score, doc), d in zip(self.match_many(texts), domains, strict=True):
            items = self.title_items[doc] if doc >= 0 else ()
            keep = tuple(i for i in items if item_domain[i] == d)
            drop = tuple(i for i in items if item_domain[i] != d)
            result.append(Grounded(text, method, score, keep, drop))
        return result

    def ground(self, text: str, domain: int) -> Grounded:
        return self.ground_many([text], [domain])[0]


def exact_only(grounded: Sequence[Grounded]) -> list[Grounded]:
    """The no-grounding ablation: keep exact title matches in the target domain, nothing else."""
    return [g for g in grounded if g.method == "exact" and g.items]
