"""PureSVD (Cremonesi et al., RecSys 2010) as a user encoder and recommender.

Item factors ``V`` (n_items, D) come from a truncated SVD of the training users' binary user x item
matrix ``X ≈ U S Vᵀ``. A user is folded in from the history alone: ``u = x V`` with ``x`` the
(recency-weighted) history indicator, so valid/test users need no training. The domain-``d`` view
concatenates the mixed view with the fold-in of the domain-``d`` history items only, mirroring the
graph model's "mixed state + target-domain state". Scores of domain ``d`` items are ``u Vᵈᵀ``.

It implements the user-embedding port (``user_embeddings``) and the Recommender port (``score``), so
retrieval and prompts can be developed and tested before the graph encoder exists.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from urllm.configuration import to_dict
from urllm.data.schema import Record, TwoDomainData
from urllm.data.sequences import user_sequences
from urllm.retrieval.config import SVDConfig

logger = logging.getLogger(__name__)


class PureSVD:
    """Args: cfg: the factorisation (``retrieval.svd``)."""

    def __init__(self, cfg: SVDConfig | None = None) -> None:
        self.cfg = cfg or SVDConfig()
        self.factors: np.ndarray | None = None  # (n_items, D)
        self.item_domain: np.ndarray | None = None
        self.ranges: list[range] = []

    # ------------------------------------------------------------------ fitting

    def fit(self, data: TwoDomainData, run_dir: Path | None = None) -> None:
        cat = data.catalogue
        self.item_domain = cat.item_domain
        self.ranges = [cat.domain_range(d) for d in (0, 1)]
        train = data.records("train")
        meta = {"config": to_dict(self.cfg), "n_items": cat.n_items, "n_train_records": len(train)}
        cache = Path(run_dir) / "item_factors.npy" if run_dir is not None else None
        if cache is not None and cache.is_file() and _read_json(cache.with_suffix(".json")) == meta:
            self.factors = np.load(cache)
            logger.info("PureSVD: reusing %s", cache)
            return
        self.factors = self._factorise(user_sequences(train), cat.n_items)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.save(cache, self.factors)
            cache.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")

    def _factorise(self, sequences: list[tuple[int, ...]], n_items: int) -> np.ndarray:
        import torch

        rows = np.concatenate([np.full(len(set(s)), u) for u, s in enumerate(sequences)])
        cols = np.concatenate([np.fromiter(sorted(set(s)), dtype=np.int64) for s in sequences])
        x = torch.sparse_coo_tensor(
            torch.from_numpy(np.stack([rows, cols])),
            torch.ones(len(rows)),
            (len(sequences), n_items),
            check_invariants=True,
        ).coalesce()
        rank = min(self.cfg.dim, *x.shape)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.cfg.seed)
            _, _, v = torch.svd_lowrank(x, q=rank, niter=self.cfg.n_iter)  # v: (n_items, rank)
        logger.info("PureSVD: rank %d factors of %d users x %d items", rank, len(sequences), n_items)
        return v.numpy().astype(np.float32)

    # ------------------------------------------------------------------ the two ports

    def _fold_in(self, records: Sequence[Record], domain: int | None) -> np.ndarray:
        """(B, D): recency-weighted sum of the factors of each history's items (of ``domain`` if given)."""
        if self.factors is None or self.item_domain is None:
            raise RuntimeError("PureSVD used before fit()")
        out = np.zeros((len(records), self.factors.shape[1]), dtype=np.float32)
        decay = self.cfg.recency_decay
        for row, rec in enumerate(records):
            hist = np.asarray(rec.history, dtype=np.int64)
            w = decay ** np.arange(len(hist) - 1, -1, -1, dtype=np.float64)  # most recent item weighs 1
            if domain is not None:
                keep = self.item_domain[hist] == domain
                hist, w = hist[keep], w[keep]
            if len(hist):
                out[row] = (w[:, None] * self.factors[hist]).sum(0)
        return out

    def user_embeddings(self, records: Sequence[Record], domain: int) -> np.ndarray:
        """(B, 2D) float32: [mixed view, domain_weight x domain-``domain`` view], each unit-normalised."""
        mixed = _unit(self._fold_in(records, None))
        own = _unit(self._fold_in(records, domain)) * self.cfg.domain_weight
        return np.concatenate([mixed, own], axis=1).astype(np.float32)

    def score(self, records: Sequence[Record], domain: int) -> np.ndarray:
        """(B, n_items_of_domain): PureSVD scores ``x V Vᵈᵀ`` from the mixed history."""
        r = self.ranges[domain]
        return self._fold_in(records, None) @ self.factors[r.start : r.stop].T


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
