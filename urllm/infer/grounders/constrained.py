"""Constrained generation: beam search through a trie of the target domain's catalogue titles
(:func:`urllm.grounding.decode.constrained_beams`), so every beam is an in-domain item."""

from __future__ import annotations

from urllm.grounding.decode import constrained_beams
from urllm.grounding.refiner import Grounded
from urllm.grounding.trie import build_domain_tries
from urllm.infer.grounders import Grounder


class ConstrainedGrounder(Grounder):
    """Row fields: ``outputs`` [{text, score}] (beams, log-likelihood incl. eos) and ``grounded`` (the
    trie's items of each beam)."""

    name = run = "constrained"
    settings = ("num_beams", "length_penalty")
    generates = True

    def prepare(self, engine) -> None:
        self.tries = build_domain_tries(engine.catalogue, engine.tok)

    def infer(self, engine, jobs: list, prompts: list[list[int]], rows: list[dict]) -> None:
        c = self.cfg
        tries = [self.tries[j.record.domain] for j in jobs]
        beams = constrained_beams(
            engine.model, prompts, tries, c.num_beams, engine.eos, engine.pad, c.length_penalty,
            **engine.chunk,
        )  # fmt: skip
        for row, outs in zip(rows, beams, strict=True):
            texts = engine.tok.batch_decode([list(o.tokens) for o in outs], skip_special_tokens=True)
            row["outputs"] = [{"text": t, "score": o.score} for t, o in zip(texts, outs, strict=True)]
            row["grounded"] = [
                Grounded(t, "trie", o.score, o.items, ()).to_dict() for t, o in zip(texts, outs, strict=True)
            ]

    def groups(self, row: dict) -> tuple[list[tuple[int, ...]], list[float], list[Grounded]]:
        return output_groups(row, lambda g: True)


def output_groups(row: dict, keep) -> tuple[list[tuple[int, ...]], list[float], list[Grounded]]:
    """The grounded outputs of a generating mode that ``keep`` accepts and that matched an item."""
    grounded = [Grounded.from_dict(d) for d in row["grounded"]]
    scores = [float(o["score"]) for o in row["outputs"]]
    idx = [i for i, g in enumerate(grounded) if g.items and keep(g)]
    return [grounded[i].items for i in idx], [scores[i] for i in idx], [grounded[i] for i in idx]
