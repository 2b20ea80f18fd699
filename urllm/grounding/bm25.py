"""Okapi BM25 over short documents (catalogue titles), in numpy, with a length-free acceptance ratio.

score(q, d) = sum over distinct query terms t of idf(t) * tf(t, d) * (k1 + 1) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))
idf(t)      = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))

Raw BM25 scores grow with the number of query terms, so a fixed threshold would accept long garbage and
reject short exact titles. :meth:`BM25.search` also returns ``ratio = score / sum_t idf(t)``: about 1 when
every query term occurs once in a document of average length, near 0 when none does. Terms unseen in the
corpus count with the largest possible idf, so hallucinated words lower the ratio.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np


class BM25:
    """An inverted index over tokenized documents; postings hold precomputed per-document weights."""

    def __init__(self, docs: Sequence[Sequence[str]], k1: float = 1.2, b: float = 0.75) -> None:
        self.n_docs = len(docs)
        lengths = np.array([len(d) for d in docs], dtype=np.float64)
        avgdl = float(lengths.mean()) if self.n_docs and lengths.sum() > 0 else 1.0
        norm = k1 * (1.0 - b + b * lengths / avgdl)  # (N,)
        postings: dict[str, tuple[list[int], list[float]]] = {}
        for i, doc in enumerate(docs):
            for term, tf in Counter(doc).items():
                ids, tfs = postings.setdefault(term, ([], []))
                ids.append(i)
                tfs.append(tf)
        self.max_idf = math.log(1.0 + (self.n_docs + 0.5) / 0.5)  # a term no document contains
        self.idf: dict[str, float] = {}
        self.postings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for term, (ids, tfs) in postings.items():
            df = len(ids)
            idf = math.log(1.0 + (self.n_docs - df + 0.5) / (df + 0.5))
            idx = np.array(ids, dtype=np.int64)
            tf = np.array(tfs, dtype=np.float64)
            self.idf[term] = idf
            self.postings[term] = (idx, idf * tf * (k1 + 1.0) / (tf + norm[idx]))

    def scores(self, query: Sequence[str]) -> np.ndarray:
        """(n_docs,) BM25 score of every document for the distinct terms of ``query``."""
        out = np.zeros(self.n_docs, dtype=np.float64)
        for term in set(query):
            hit = self.postings.get(term)
            if hit is not None:
                out[hit[0]] += hit[1]
        return out

    def max_score(self, query: Sequence[str]) -> float:
        """The ratio's denominator: sum of idf over distinct query terms (unseen terms: the largest idf)."""
        return float(sum(self.idf.get(t, self.max_idf) for t in set(query)))

    def search(self, query: Sequence[str], k: int = 1) -> list[tuple[int, float, float]]:
        """The ``k`` best documents as ``(doc, score, ratio)``, best first; [] when nothing matches."""
        if not query or self.n_docs == 0:
            return []
        s = self.scores(query)
        k = min(k, self.n_docs)
        top = np.argpartition(-s, k - 1)[:k]
        top = top[np.lexsort((top, -s[top]))]  # by score, ties by document order
        denom = self.max_score(query)
        return [(int(i), float(s[i]), float(s[i] / denom)) for i in top if s[i] > 0]
