"""Listwise ranking: the backbone's top K behind one-token labels in the prompt; one forward pass reads
the next-token log-probability of every label (:func:`urllm.grounding.listwise.label_logprobs`)."""

from __future__ import annotations

from urllm.grounding.listwise import label_logprobs
from urllm.grounding.refiner import Grounded
from urllm.infer.grounders import Grounder, candidate_groups


class RankGrounder(Grounder):
    """Row fields: ``candidates`` (global ids, backbone order = list order), ``label_logprobs``."""

    name = run = "rank"
    settings = ("top_n", "backbone", "backbone_dir")
    lists = "labelled"

    def infer(self, engine, jobs: list, prompts: list[list[int]], rows: list[dict]) -> None:
        c = self.cfg
        lps = label_logprobs(
            engine.model,
            prompts,
            [j.label_ids for j in jobs],
            engine.pad,
            max_rows=c.rerank_chunk,
            max_tokens=c.rank_chunk_tokens,
        )
        for row, j, lp in zip(rows, jobs, lps, strict=True):
            row["candidates"] = list(j.candidates)
            row["label_logprobs"] = lp.tolist()

    def groups(self, row: dict) -> tuple[list[tuple[int, ...]], list[float], list[Grounded]]:
        return candidate_groups(row, [float(x) for x in row["label_logprobs"]])
