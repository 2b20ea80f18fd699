"""Re-ranking: each of the backbone's top N candidates scored by the log-likelihood of its title after
the prompt (prefix KV cache shared: :func:`urllm.grounding.rerank.score_cached`), normalised by
``grounding.rerank_length_norm`` when rows become groups."""

from __future__ import annotations

from urllm.grounding.refiner import Grounded
from urllm.grounding.rerank import normalise, score_cached
from urllm.infer.grounders import Grounder, candidate_groups


class RerankGrounder(Grounder):
    """Row fields: ``candidates`` (global ids, backbone order), ``candidate_scores`` (sum of token
    log-probs) and ``candidate_tokens`` (tokens scored, for mean normalisation)."""

    name = run = "rerank"
    settings = ("top_n", "rerank_append_eos", "backbone")
    lists = "titles"

    def infer(self, engine, jobs: list, prompts: list[list[int]], rows: list[dict]) -> None:
        c = self.cfg
        titles = [
            [ids + [engine.eos] if c.rerank_append_eos else ids for ids in engine.title_ids(j.candidates)]
            for j in jobs
        ]
        sums = score_cached(engine.model, prompts, titles, engine.pad, **engine.chunk)
        for row, j, t, s in zip(rows, jobs, titles, sums, strict=True):
            row["candidates"] = list(j.candidates)
            row["candidate_scores"] = s.tolist()
            row["candidate_tokens"] = [len(x) for x in t]

    def groups(self, row: dict) -> tuple[list[tuple[int, ...]], list[float], list[Grounded]]:
        scores = normalise(row["candidate_scores"], row["candidate_tokens"], self.cfg.rerank_length_norm)
        return candidate_groups(row, scores.tolist())
