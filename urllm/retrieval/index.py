"""The user index port: maximum-inner-product search over user embeddings, with two backends.

:class:`FaissUserIndex` takes any FAISS ``index_factory`` string (``Flat`` exact; ``IVF…``, ``HNSW…``,
``…PQ…`` approximate, for millions of users). :class:`ExactUserIndex` is plain numpy with the same
interface: the brute-force oracle the tests hold FAISS to, and a dependency-free fallback.

Both L2-normalise vectors when ``normalize`` is set (inner product = cosine) and return, per query,
the positions of the ``k`` best users (best first, ties by position) excluding an optional user id.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from urllm.configuration import ConfigError

logger = logging.getLogger(__name__)

_EPS = 1e-12


class UserIndex(Protocol):
    """Build once from (vectors, user ids); search with per-query exclusions; save and load."""

    ids: list[str]

    def build(self, vectors: np.ndarray, ids: Sequence[str]) -> None:
        """``vectors`` (N, D) float; ``ids`` N distinct user ids."""

    def search(
        self, queries: np.ndarray, k: int, exclude_ids: Sequence[str | None] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(positions (Q, k) int64, scores (Q, k) float32); position -1 / score -inf pad missing hits."""

    def save(self, path: str | Path) -> None:
        """Write the index into the folder ``path``."""


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), as a new float32 C-contiguous array."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, _EPS), dtype=np.float32)


def _check_build(vectors: np.ndarray, ids: Sequence[str]) -> list[str]:
    if vectors.ndim != 2 or vectors.shape[0] != len(ids):
        raise ValueError(f"vectors {vectors.shape} must be (len(ids)={len(ids)}, D)")
    ids = [str(u) for u in ids]
    if len(set(ids)) != len(ids):
        raise ValueError("user ids of an index must be distinct")
    if not np.all(np.isfinite(vectors)):
        raise ValueError("user vectors contain NaN or infinity")
    return ids


def _drop_excluded(
    pos: np.ndarray, scores: np.ndarray, k: int, ids: list[str], exclude_ids: Sequence[str | None] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the first ``k`` hits of each row that are not the row's excluded id (``pos`` has k+1 cols)."""
    q = pos.shape[0]
    out_pos = np.full((q, k), -1, dtype=np.int64)
    out_sc = np.full((q, k), -np.inf, dtype=np.float32)
    for row in range(q):
        bad = exclude_ids[row] if exclude_ids is not None else None
        keep = [
            c for c in range(pos.shape[1]) if pos[row, c] >= 0 and (bad is None or ids[pos[row, c]] != bad)
        ]
        keep = keep[:k]
        out_pos[row, : len(keep)] = pos[row, keep]
        out_sc[row, : len(keep)] = scores[row, keep]
    return out_pos, out_sc


def _check_queries(queries: np.ndarray, dim: int, exclude_ids) -> None:
    if queries.ndim != 2 or queries.shape[1] != dim:
        raise ValueError(f"queries {queries.shape} must be (Q, {dim})")
    if exclude_ids is not None and len(exclude_ids) != len(queries):
        raise ValueError(f"exclude_ids has {len(exclude_ids)} entries for {len(queries)} queries")


class ExactUserIndex:
    """Brute-force inner product in numpy: the test oracle of :class:`FaissUserIndex`."""

    def __init__(self, normalize: bool = True, chunk: int = 1024) -> None:
        self.normalize = normalize
        self.chunk = chunk
        self.ids: list[str] = []
        self.vectors = np.zeros((0, 0), dtype=np.float32)

    def build(self, vectors: np.ndarray, ids: Sequence[str]) -> None:
        self.ids = _check_build(vectors, ids)
        v = np.asarray(vectors, dtype=np.float32)
        self.vectors = normalize_rows(v) if self.normalize else np.ascontiguousarray(v)

    def search(
        self, queries: np.ndarray, k: int, exclude_ids: Sequence[str | None] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        _check_queries(queries, self.vectors.shape[1], exclude_ids)
        q = normalize_rows(queries) if self.normalize else np.asarray(queries, dtype=np.float32)
        n = len(self.ids)
        fetch = min(k + 1, n)
        pos = np.full((len(q), k + 1), -1, dtype=np.int64)
        sc = np.full((len(q), k + 1), -np.inf, dtype=np.float32)
        for lo in range(0, len(q), self.chunk):
            s = q[lo : lo + self.chunk] @ self.vectors.T  # (B, N)
            for r in range(s.shape[0]):
                # every user scoring at least the fetch-th best (ties included), then best first with
                # ties broken by the lower position: a stable total order
                kth = np.partition(s[r], n - fetch)[n - fetch]
                cand = np.flatnonzero(s[r] >= kth)
                order = cand[np.lexsort((cand, -s[r, cand]))][:fetch]
                pos[lo + r, :fetch] = order
                sc[lo + r, :fetch] = s[r, order]
        return _drop_excluded(pos, sc, k, self.ids, exclude_ids)

    def save(self, path: str | Path) -> None:
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        np.save(out / "vectors.npy", self.vectors)
        _write_meta(out, {"kind": "exact", "normalize": self.normalize}, self.ids)

    @classmethod
    def load(cls, path: str | Path) -> ExactUserIndex:
        src = Path(path)
        meta, ids = _read_meta(src)
        index = cls(normalize=meta["normalize"])
        index.ids, index.vectors = ids, np.load(src / "vectors.npy")
        return index


class FaissUserIndex:
    """Any FAISS ``index_factory`` index over inner product.

    Args:
        factory: e.g. ``"Flat"``, ``"HNSW32"``, ``"IVF1024,Flat"``, ``"IVF4096,PQ32"``.
        normalize: L2-normalise vectors and queries (cosine similarity).
        nprobe: IVF lists visited per query (ignored by indexes without inverted lists).
        ef_search: HNSW search beam (ignored by indexes without a graph).
        train_size: IVF/PQ training uses at most this many vectors (a seeded sample).
        seed: seed of the training sample and of FAISS' k-means.
    """

    def __init__(
        self,
        factory: str = "Flat",
        normalize: bool = True,
        nprobe: int = 16,
        ef_search: int = 64,
        train_size: int = 100_000,
        seed: int = 0,
    ) -> None:
        self.factory, self.normalize = factory, normalize
        self.nprobe, self.ef_search = nprobe, ef_search
        self.train_size, self.seed = train_size, seed
        self.ids: list[str] = []
        self.index = None

    def build(self, vectors: np.ndarray, ids: Sequence[str]) -> None:
        import faiss

        self.ids = _check_build(vectors, ids)
        v = normalize_rows(vectors) if self.normalize else np.ascontiguousarray(vectors, dtype=np.float32)
        try:
            index = faiss.index_factory(v.shape[1], self.factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
            raise ConfigError(f"retrieval.index_factory: FAISS rejects {self.factory!r}: {first}") from None
        if not index.is_trained:
            sample = v
            if len(v) > self.train_size:
                rng = np.random.default_rng(self.seed)
                sample = v[np.sort(rng.choice(len(v), self.train_size, replace=False))]
            _set_seed(index, self.seed)
            try:
                index.train(sample)
            except RuntimeError as exc:
                raise ConfigError(
                    f"retrieval.index_factory: cannot train {self.factory!r} on {len(sample)} vectors "
                    f"(too few for its lists/codebooks?): {str(exc).strip().splitlines()[-1]}"
                ) from None
        index.add(v)
        self.index = index
        self._apply_search_params()

    def _apply_search_params(self) -> None:
        import faiss

        ps = faiss.ParameterSpace()
        for name, value in (("nprobe", self.nprobe), ("efSearch", self.ef_search)):
            try:
                ps.set_index_parameter(self.index, name, value)
            except RuntimeError:
                pass  # this index type has no such parameter (e.g. nprobe on Flat)

    def search(
        self, queries: np.ndarray, k: int, exclude_ids: Sequence[str | None] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        if self.index is None:
            raise RuntimeError("FaissUserIndex.search() called before build() or load()")
        _check_queries(queries, self.index.d, exclude_ids)
        q = normalize_rows(queries) if self.normalize else np.ascontiguousarray(queries, dtype=np.float32)
        scores, pos = self.index.search(q, min(k + 1, len(self.ids)))  # one spare for the excluded user
        pos = np.asarray(pos, dtype=np.int64)
        scores = np.where(pos >= 0, scores, -np.inf).astype(np.float32)
        return _drop_excluded(pos, scores, k, self.ids, exclude_ids)

    def save(self, path: str | Path) -> None:
        import faiss

        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(out / "index.faiss"))
        meta = {
            "kind": "faiss",
            "factory": self.factory,
            "normalize": self.normalize,
            "nprobe": self.nprobe,
            "ef_search": self.ef_search,
            "train_size": self.train_size,
            "seed": self.seed,
        }
        _write_meta(out, meta, self.ids)

    @classmethod
    def load(cls, path: str | Path) -> FaissUserIndex:
        import faiss

        src = Path(path)
        meta, ids = _read_meta(src)
        index = cls(
            meta["factory"],
            meta["normalize"],
            meta["nprobe"],
            meta["ef_search"],
            meta["train_size"],
            meta["seed"],
        )
        index.ids, index.index = ids, faiss.read_index(str(src / "index.faiss"))
        index._apply_search_params()
        return index


def _set_seed(index, seed: int) -> None:
    """Seed the k-means of IVF coarse quantisers so index training is reproducible."""
    import faiss

    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:
        return
    ivf.cp.seed = seed


def _write_meta(out: Path, meta: dict, ids: list[str]) -> None:
    (out / "ids.json").write_text(json.dumps(ids) + "\n")
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


def _read_meta(src: Path) -> tuple[dict, list[str]]:
    if not (src / "meta.json").is_file():
        raise FileNotFoundError(f"{src}: no meta.json (not a saved user index)")
    return json.loads((src / "meta.json").read_text()), json.loads((src / "ids.json").read_text())


def make_index(
    factory: str,
    normalize: bool = True,
    nprobe: int = 16,
    ef_search: int = 64,
    train_size: int = 100_000,
    seed: int = 0,
) -> UserIndex:
    """``factory="exact"`` gives the numpy oracle; any other string is a FAISS ``index_factory`` string."""
    if factory.lower() == "exact":
        return ExactUserIndex(normalize=normalize)
    return FaissUserIndex(factory, normalize, nprobe, ef_search, train_size, seed)


def load_index(path: str | Path) -> UserIndex:
    """Load whichever index :meth:`save` wrote into ``path``."""
    meta, _ = _read_meta(Path(path))
    return ExactUserIndex.load(path) if meta["kind"] == "exact" else FaissUserIndex.load(path)
