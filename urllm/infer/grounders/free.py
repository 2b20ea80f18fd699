"""Free generation: beam search without constraints, then the refiner maps each output to catalogue
items of the target domain (exact title, BM25, embedding kNN: :class:`urllm.grounding.refiner.Refiner`)."""

from __future__ import annotations

from urllm.grounding.decode import free_outputs
from urllm.grounding.refiner import Grounded, Refiner
from urllm.infer.grounders import Grounder
from urllm.infer.grounders.constrained import output_groups


class FreeGrounder(Grounder):
    """Row fields: ``outputs`` [{text, score}] (raw generations) and ``grounded`` (what the refiner did
    with each)."""

    name = run = "free"
    settings = ("num_beams", "length_penalty", "free_max_new_tokens", "refiner")
    generates = True
    refines = True

    def prepare(self, engine) -> None:
        self.refiner = engine.refiner
        if self.refiner is None:
            self.refiner = Refiner(
                engine.catalogue,
                self.cfg.refiner,
                cache_dir=engine.cache_dir,
                title_embeddings=engine.title_embeddings,
            )
            self.refiner.prepare()

    def infer(self, engine, jobs: list, prompts: list[list[int]], rows: list[dict]) -> None:
        c = self.cfg
        outs = free_outputs(
            engine.model, prompts, c.num_beams, c.free_max_new_tokens, engine.eos, engine.pad,
            c.length_penalty, **engine.chunk,
        )  # fmt: skip
        for row, per, j in zip(rows, outs, jobs, strict=True):
            texts = engine.tok.batch_decode([list(o.tokens) for o in per], skip_special_tokens=True)
            row["outputs"] = [{"text": t, "score": o.score} for t, o in zip(texts, per, strict=True)]
            domains = [j.record.domain] * len(texts)
            row["grounded"] = [g.to_dict() for g in self.refiner.ground_many(texts, domains)]

    def groups(self, row: dict) -> tuple[list[tuple[int, ...]], list[float], list[Grounded]]:
        return output_groups(row, lambda g: True)
