"""Live inference for records that are not in any JSONL: a request served by ``urllm recommend/serve``.

One :class:`Live` per LLM system holds the model (loaded once), the mode's engine and, for
retrieval-augmented variants, the user retriever (the training users' index, built once from
``retrieval.encoder``). ``rows(records)`` renders the prompts exactly as the batch path does (the prompt
builder with the record's live neighbours; rank mode appends the backbone's top K) and runs the engine on
all of them at once: one forward pass per batch of ``grounding.rerank_chunk`` prompts in rank mode.
Nothing is written; the rows have the JSONL's shape, so scoring and fusion are the batch path's.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from urllm.data.schema import Record
from urllm.grounding.calibrate import _logsumexp, candidate_columns
from urllm.infer.jobs import Job, build_jobs, build_rank_jobs, record_key

logger = logging.getLogger(__name__)


class Live:
    def __init__(self, system) -> None:
        from urllm.infer.engine import Engine, adapter_path, load_llm, shared_llm

        self.system = system
        setup = system.setup
        adapter = adapter_path(setup.infer, setup.paths.finetune, system.variant.retrieval)
        system.llm = shared_llm(system.llm, adapter)
        if system.llm is None:
            system.llm = load_llm(setup.llm, adapter, None)
        model, self.tok, _ = system.llm
        self.engine = Engine(
            setup.grounding,
            system.data.catalogue,
            system.variant.mode,
            model,
            self.tok,
            cache_dir=setup.paths.grounding_cache,
        )
        self._retrieval: tuple | None = None

    def neighbours(self, records: Sequence[Record]) -> list[list[str]]:
        """Similar training users per record (none for the no-retrieval variant)."""
        setup = self.system.setup
        if not self.system.variant.retrieval or setup.prompts.n_neighbours == 0:
            return [[] for _ in records]
        if self._retrieval is None:
            from urllm.retrieval.neighbours import UserRetriever

            embedder = setup.embedder(self.system.data)
            self._retrieval = (
                embedder,
                UserRetriever.build(embedder, self.system.data.records("train"), setup.retrieval),
            )
        embedder, retriever = self._retrieval
        ids, _ = retriever.search(embedder, records, k=setup.prompts.n_neighbours)
        return ids

    def jobs(self, records: Sequence[Record]) -> list[Job]:
        s = self.system
        setup, data = s.setup, s.data
        nbrs = self.neighbours(records)
        if s.grounder.lists == "labelled":
            return build_rank_jobs(records, data, None, self.tok, setup, s.backbone, neighbour_ids=nbrs)
        from urllm.prompts.builder import PromptBuilder
        from urllm.retrieval.neighbours import training_users

        _, items = training_users(data.records("train"))
        builder = PromptBuilder(setup.prompts, data.catalogue, self.tok, setup.llm.use_chat_template)
        top_n = setup.grounding.top_n if s.grounder.lists == "titles" else 0
        jobs = build_jobs(
            records,
            data.catalogue,
            None,
            self.tok,
            setup.prompts,
            setup.llm.use_chat_template,
            top_n,
            s.backbone.score,
        )
        for j, n in zip(jobs, nbrs, strict=True):
            j.prompt = builder.build(j.record, [(u, items[u]) for u in n if u in items]).text
        return jobs

    def rows(self, records: Sequence[Record]) -> list[dict]:
        """JSONL-shaped rows for ``records``, inferred now (nothing written)."""
        if not records:
            return []
        logger.info("%s: live inference for %d records", self.system.name, len(records))
        return self.engine.run(self.jobs(records))

    def explain(self, record: Record, domain: int) -> dict:
        """Candidates (id, title, backbone, llm, fused), grounding settings, neighbours and history."""
        s = self.system
        if record.domain != domain:
            raise ValueError(
                f"record of user {record.user} targets domain {record.domain}, asked for {domain}"
            )
        cat = s.data.catalogue
        nbrs = self.neighbours([record])[0]
        jobs = self.jobs([record])
        row = self.engine.run(jobs)[0]
        base = np.asarray(s.backbone.score([record], domain), dtype=np.float64)[0]
        fused = s.fuse_row(row, base, domain)
        groups, scores, _ = s.groups(row)
        lo = cat.domain_range(domain).start
        grounding: dict = {
            "mode": s.variant.mode,
            "fusion": s.setup.grounding.fusion,
            "backbone": s.setup.grounding.backbone,
        }
        temp = 1.0
        if s.setup.grounding.fusion == "calibrated":
            fit = s.fusion_fit(domain)
            grounding |= {"fusion_weight": fit.weight, "backbone_temperature": fit.temperature}
            temp = fit.temperature
        if s.grounder.lists:
            grounding["k"] = s.setup.grounding.top_n
        cols, llm = (
            candidate_columns(groups, scores, lo, len(base)) if groups else (np.zeros(0, int), np.zeros(0))
        )
        b = base / temp
        b_ls = b - _logsumexp(b[cols]) if len(cols) else b
        cands = [
            {
                "id": int(c + lo),
                "title": cat.titles[int(c + lo)],
                "backbone": float(b_ls[c]),
                "llm": float(v),
                "fused": float(fused[c]),
            }
            for c, v in zip(cols.tolist(), llm.tolist(), strict=True)
        ]
        cands.sort(key=lambda x: -x["fused"])
        _, items = _train_items(s)
        return {
            "key": record_key(record, cat),
            "candidates": cands,
            "grounding": grounding,
            "neighbours": [{"user": u, "items": [int(i) for i in items.get(u, ())]} for u in nbrs],
            "history": [int(i) for i in record.history],
            "prompt_tokens": row["prompt_tokens"],
            "seconds": row["seconds"],
        }


def _train_items(system) -> tuple[list, dict]:
    if not hasattr(system, "_train_items"):
        from urllm.retrieval.neighbours import training_users

        system._train_items = training_users(system.data.records("train"))
    return system._train_items
