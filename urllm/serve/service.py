"""``Recommendation``: a pipeline run loaded once, answering top-k requests with their evidence.

    service = Recommendation.load(cfg, config_path)             # checks and loads the run's artifacts
    [answer] = service.recommend([service.query({"user": "42", "domain": "heart", "k": 10})])

:meth:`recommend` takes a batch of queries (the HTTP server's micro-batches, the CLI's single one),
scores each (system, target domain) group with **one** ``score(records, domain)`` call, takes the top-k
(items already in the history left out when ``serve.exclude_history``) and attaches the evidence.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from urllm.data.schema import Record, TwoDomainData, load_data
from urllm.recommender import is_llm_system
from urllm.serve import artifacts
from urllm.serve.evidence import EvidenceBuilder, normalise, top_items
from urllm.serve.query import Catalog, Query, history_record, parse_query

if TYPE_CHECKING:
    from urllm.config import Config

logger = logging.getLogger(__name__)


class Recommendation:
    """The run's data, catalogue and fitted systems, and how to answer a query with them."""

    def __init__(
        self,
        cfg: Config,
        data: TwoDomainData,
        systems: dict[str, Any],
        retriever: tuple | None = None,
        startup_seconds: float = 0.0,
    ) -> None:
        from urllm.retrieval.neighbours import training_users

        self.cfg = cfg
        self.data = data
        self.systems = systems
        self.catalog = Catalog(data)
        self.evidence = EvidenceBuilder(
            self.catalog, retriever, training_users(data.records("train"))[1], cfg.serve
        )
        self.startup_seconds = startup_seconds

    @classmethod
    def load(
        cls,
        cfg: Config,
        config_path: str = "",
        systems: Sequence[str] | None = None,
        llm: tuple | None = None,
    ) -> Recommendation:
        """Check the run directory, then load the data and every system of ``serve.systems``.

        Args:
            llm: ``(model, tokenizer, adapter)`` instead of loading ``cfg.llm`` (tests use a tiny model).
        """
        start = time.perf_counter()
        names = list(systems or cfg.serve.systems)
        needed = [s for n in names for s in artifacts.needed_stages(n, cfg)]
        artifacts.check_stages(cfg, list(dict.fromkeys(needed)), config_path)
        data = load_data(cfg.run_path / "prepare")
        if llm is None and any(is_llm_system(n) for n in names):
            from urllm.infer.engine import adapter_path, load_llm
            from urllm.run_layout import RunLayout

            adapter = adapter_path(cfg.infer, RunLayout.of(cfg).finetune)
            llm = load_llm(cfg.llm, adapter, cfg.serve.device)
        loaded = {n: artifacts.load_system(n, cfg, data, llm, config_path) for n in names}
        retriever = artifacts.load_retriever(cfg, data, loaded)
        service = cls(cfg, data, loaded, retriever)
        service.warm_up()
        service.startup_seconds = time.perf_counter() - start
        logger.info(
            "serving %s from %s: start-up %.1f s", ", ".join(names), cfg.run_path, service.startup_seconds
        )
        return service

    def warm_up(self) -> None:
        """One request per system, so the first real one does not pay for lazy loading."""
        first = self.data.records("train")[0]
        for name in self.systems:
            rec = history_record(first.history[-5:], first.domain)
            self.recommend([Query(name, first.domain, 1, rec, None, True)])

    # ------------------------------------------------------------------ answering

    def query(self, obj: Any) -> Query:
        """A request body as a Query (RequestError naming the field when it is bad)."""
        return parse_query(obj, self.catalog, self.cfg.serve, list(self.systems))

    def recommend(self, queries: Sequence[Query]) -> list[dict[str, Any]]:
        """The answer of each query; one ``score`` call per (system, target domain) in the batch."""
        start = time.perf_counter()
        answers: list[dict[str, Any] | None] = [None] * len(queries)
        groups: dict[tuple[str, int], list[int]] = {}
        for i, q in enumerate(queries):
            groups.setdefault((q.system, q.domain), []).append(i)
        for (name, domain), idx in groups.items():
            unique: dict[Record, int] = {}
            for i in idx:
                unique.setdefault(queries[i].record, len(unique))
            records = list(unique)
            scores = np.asarray(self.systems[name].score(records, domain), dtype=np.float64)
            own = self._own_evidence(name, records, domain, scores, [queries[i] for i in idx])
            for i in idx:
                row = unique[queries[i].record]
                answers[i] = self._answer(queries[i], scores[row], own.get(row))
        seconds = time.perf_counter() - start
        for a in answers:
            a["batch"] = {"size": len(queries), "seconds": round(seconds, 4)}
        return answers  # type: ignore[return-value]

    def _own_evidence(
        self, name: str, records: list[Record], domain: int, scores: np.ndarray, queries: list[Query]
    ) -> dict[int, dict]:
        """Evidence built here for systems without explain() (batched), keyed by record row."""
        system = self.systems[name]
        if callable(getattr(system, "explain", None)) or not any(q.explain for q in queries):
            return {}
        return dict(enumerate(self.evidence.build(records, domain, scores)))

    def _answer(self, q: Query, scores: np.ndarray, own: dict | None) -> dict[str, Any]:
        cat = self.catalog.cat
        lo = cat.domain_range(q.domain).start
        exclude = q.record.history if self.cfg.serve.exclude_history else ()
        top = top_items(scores, lo, q.k, exclude)
        answer: dict[str, Any] = {
            "system": q.system,
            "domain": cat.domains[q.domain],
            "user": q.user,
            "k": q.k,
            "items": [{**self.catalog.item(i), "score": float(scores[i - lo])} for i in top],
        }
        if q.explain:
            system = self.systems[q.system]
            explain = getattr(system, "explain", None)
            ev = explain(q.record, q.domain) if callable(explain) else own
            ev = normalise(ev or {}, self.catalog, top)
            ev["user"] = (
                {"id": q.user, "split": self.catalog.split_of[q.user]} if q.user is not None else {"id": None}
            )
            ev["excluded_history"] = bool(exclude)
            answer["evidence"] = ev
        return answer

    # ------------------------------------------------------------------ status

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "run_dir": str(self.cfg.run_path),
            "systems": list(self.systems),
            "default_system": self.cfg.serve.system,
            "domains": list(self.catalog.cat.domains),
            "n_items": self.catalog.cat.n_items,
            "n_users": len(self.catalog.sequences),
            "neighbours": self.evidence.retriever is not None,
            "startup_seconds": round(self.startup_seconds, 2),
        }
