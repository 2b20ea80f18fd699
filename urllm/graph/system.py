"""``GraphSystem``: the dual-graph encoder behind the Recommender and user-embedding ports.

``fit(data, run_dir)`` builds the graphs from the training split, trains (resuming or reusing what is in
``run_dir``) and loads the best weights. ``score`` ranks all items of the target domain;
``user_embeddings`` returns each record's domain view (final mixed state + that domain's encoder state),
computed from the record's history only. ``GraphSystem.load(run_dir)`` re-creates a fitted system from
``model.pt`` + ``graphs.pt`` without the data.

``GraphEncoderSystem`` (system ``graph-encoder``) is the same trained model scored by its encoder alone
(no transition prior, no item bias): the row that shows what the encoder itself has learned.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from urllm.configuration import dump_yaml, from_dict
from urllm.data.schema import DataError, Record, TwoDomainData
from urllm.graph.batches import record_batch, training_batch
from urllm.graph.build import (
    collaborative_graphs,
    csr_from_dict,
    csr_to_dict,
    fold_graphs,
)
from urllm.graph.config import GraphConfig
from urllm.graph.model import DualGraphEncoder
from urllm.graph.semantic import attribute_graph, embed_titles, item_text_embeddings, knn_graph
from urllm.graph.train import MODEL_FILE, scores_in_batches, signature, train, user_folds

logger = logging.getLogger(__name__)

GRAPHS_FILE = "graphs.pt"
TITLE_EMB_FILE = "title_embeddings.npy"


def data_identity(data: TwoDomainData) -> dict[str, Any]:
    """Name, sizes and a hash of the training records: what a trained model depends on."""
    h = hashlib.sha1()
    for r in data.records("train"):
        h.update(f"{r.user}:{r.target}:{','.join(map(str, r.history))};".encode())
    cat = data.catalogue
    return {"name": data.name, "n_items": cat.n_items, "n_x": cat.domain_size(0), "train": h.hexdigest()}


def build_graphs(data: TwoDomainData, cfg: GraphConfig) -> dict[str, torch.Tensor]:
    """All sparse graphs of the model, from the training split and the catalogue."""
    cat = data.catalogue
    graphs = collaborative_graphs(data.records("train"), cat.item_domain, cfg.symmetric)
    if cfg.graph_folds:
        graphs |= fold_graphs(data.records("train"), cat.item_domain, cfg.symmetric, cfg.graph_folds)
    if cfg.semantic_dim:
        graphs["attr"], _ = attribute_graph(cat.texts, cat.item_domain, cfg.min_attr_items, cfg.max_attr_frac)
    return graphs


class GraphSystem:
    """Dual-graph encoder as a :class:`~urllm.recommender.Recommender` with ``user_embeddings``."""

    encoder_only = False  # score by the encoder alone (GraphEncoderSystem)

    def __init__(self, cfg: GraphConfig | None = None, seed: int = 0) -> None:
        self.cfg, self.seed = cfg or GraphConfig(), seed
        self.model: DualGraphEncoder | None = None
        self.item_domain: np.ndarray | None = None
        self.folds: dict[str, int] = {}  # training user -> fold (saved in graphs.pt)
        self.device = torch.device("cpu")

    # ------------------------------------------------------------------ fit / load

    def fit(self, data: TwoDomainData, run_dir: Path) -> None:
        cfg, cat = self.cfg, data.catalogue
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        dump_yaml(cfg, run_dir / "config.yaml")
        graphs = build_graphs(data, cfg)
        text = None
        if cfg.semantic_dim and cfg.text_features:  # title + attribute words, cached by content hash
            text = torch.from_numpy(item_text_embeddings(cat.titles, cat.texts, cfg.text_model))
        if cfg.semantic_dim and cfg.title_knn:
            emb = embed_titles(cat.titles, cfg.text_model, run_dir / TITLE_EMB_FILE)
            graphs["knn"] = knn_graph(emb, cat.item_domain, cfg.title_knn)
            text = text if text is not None else torch.from_numpy(emb)
        torch.manual_seed(self.seed)
        ranges = [(r.start, r.stop) for r in (cat.domain_range(0), cat.domain_range(1))]
        model = DualGraphEncoder(cfg, ranges, graphs, text)
        n_params = sum(p.numel() for p in model.parameters())
        logger.info("graph model: %.2f M parameters", n_params / 1e6)
        folds = user_folds(data.records("train"), cfg.graph_folds) if cfg.graph_folds else {}
        torch.save(
            {"graphs": {k: csr_to_dict(v) for k, v in graphs.items()}, "item_domain": cat.item_domain,
             "text": text, "user_folds": folds},
            run_dir / GRAPHS_FILE,
        )  # fmt: skip
        batch = training_batch(
            data.records("train"), cat.item_domain, cfg.max_len, cfg.targets, cfg.graph_folds
        )
        valid = data.splits.get("valid", [])
        sig = signature(cfg, self.seed, data_identity(data))
        held = [r for r in data.records("train") if folds.get(r.user) == 0] if cfg.holds_out else []
        self.state = train(
            model, batch, valid, cat.item_domain, cfg, self.seed, run_dir, sig, held, domain_names=cat.domains
        )
        self._load_weights(model, run_dir / MODEL_FILE)
        self.item_domain = cat.item_domain
        self.folds = folds

    def _load_weights(self, model: DualGraphEncoder, path: Path) -> None:
        if not path.is_file():
            raise DataError(f"{path}: no trained graph model (training produced no valid epoch)")
        blob = torch.load(path, map_location="cpu", weights_only=True)
        blob["state_dict"].setdefault("neural_weights", torch.ones(2))  # saved before calibration existed
        model.load_state_dict(blob["state_dict"])
        self.model = model.to(self.device).eval()

    @classmethod
    def load(cls, run_dir: str | Path) -> GraphSystem:
        """A fitted system from ``model.pt`` and ``graphs.pt`` in ``run_dir``."""
        run_dir = Path(run_dir)
        for f in (MODEL_FILE, GRAPHS_FILE):
            if not (run_dir / f).is_file():
                raise DataError(f"{run_dir / f} not found: fit the graph system first")
        blob = torch.load(run_dir / MODEL_FILE, map_location="cpu", weights_only=True)
        cfg = from_dict(GraphConfig, blob["config"])
        g = torch.load(run_dir / GRAPHS_FILE, map_location="cpu", weights_only=False)
        graphs = {k: csr_from_dict(v) for k, v in g["graphs"].items()}
        system = cls(cfg, seed=int(blob["signature"].get("seed", 0)))
        model = DualGraphEncoder(cfg, [tuple(r) for r in blob["ranges"]], graphs, g["text"])
        system._load_weights(model, run_dir / MODEL_FILE)
        system.item_domain = np.asarray(g["item_domain"])
        system.folds = dict(g.get("user_folds") or {})
        return system

    # ------------------------------------------------------------------ ports

    def _require(self) -> DualGraphEncoder:
        if self.model is None:
            raise RuntimeError("GraphSystem used before fit() or load()")
        return self.model

    def score(self, records: Sequence[Record], domain: int) -> np.ndarray:
        """(len(records), n_items of ``domain``) scores; higher = better."""
        model = self._require()
        return scores_in_batches(
            model, records, domain, self.item_domain, self.cfg.eval_batch_size, self.device,
            encoder_only=self.encoder_only,
        )  # fmt: skip

    def score_out_of_fold(self, records: Sequence[Record], domain: int) -> np.ndarray:
        """Scores of training users' records as if their fold were unseen: propagation over the graphs
        without the user's fold and the prior without its counts (fold 0, which training leaves out) or
        without the record's target transition (folds 1..). Exact only for fold 0 (:meth:`unseen_users`):
        the learned weights of folds 1.. saw the user's targets. Users in no fold score as usual."""
        model = self._require()
        if not self.folds:
            raise DataError(
                "graph: no out-of-fold scores (graph.graph_folds=0, or graphs.pt of an older run: refit)"
            )
        out = np.zeros((len(records), model.ranges[domain][1] - model.ranges[domain][0]), np.float32)
        by_fold: dict[int | None, list[int]] = {}
        for i, r in enumerate(records):
            by_fold.setdefault(self.folds.get(r.user), []).append(i)
        for fold, idx in by_fold.items():
            recs = [records[i] for i in idx]
            out[idx] = scores_in_batches(
                model, recs, domain, self.item_domain, self.cfg.eval_batch_size, self.device, fold,
                self.encoder_only,
            )  # fmt: skip
        return out

    def unseen_users(self) -> set[str] | None:
        """Training users the model never trained on (fold 0 when held out), else None."""
        if not (self.folds and self.cfg.holds_out):
            return None
        return {u for u, f in self.folds.items() if f == 0}

    @torch.no_grad()
    def user_embeddings(self, records: Sequence[Record], domain: int) -> np.ndarray:
        """(len(records), hidden) float32: final mixed state + domain-``domain`` encoder state."""
        model = self._require()
        model.eval()
        tables = model.item_tables()[:2]  # once per call, not per batch
        out = [np.zeros((0, self.cfg.hidden), np.float32)]
        for start in range(0, len(records), self.cfg.eval_batch_size):
            b = record_batch(
                records[start : start + self.cfg.eval_batch_size], self.item_domain, self.cfg.max_len
            )
            out.append(model.user_states(b.to(self.device), domain, tables).float().cpu().numpy())
        return np.concatenate(out).astype(np.float32)


class GraphEncoderSystem(GraphSystem):
    """The trained graph model ranked by ``head_d(state) · token_i`` alone (system ``graph-encoder``).

    It shares the ``graph`` system's trained model: fitted in a folder named ``graph-encoder`` (as
    ``urllm evaluate`` does, ``<run_dir>/systems/graph-encoder``), it trains or reuses the sibling
    ``graph`` folder, so ``--system graph,graph-encoder`` trains once."""

    encoder_only = True

    def fit(self, data: TwoDomainData, run_dir: Path) -> None:
        run_dir = Path(run_dir)
        if run_dir.name == "graph-encoder":
            run_dir = run_dir.with_name("graph")
        super().fit(data, run_dir)
