"""No grounding (system ``urllm-no-grounding``): the free-generation run's outputs, keeping only those
that are exactly a catalogue title of the target domain (the refiner's ``exact`` step); what BM25 or
kNN would have matched is dropped. It reads the ``free`` run, so it runs no LLM of its own."""

from __future__ import annotations

from urllm.grounding.refiner import Grounded
from urllm.infer.grounders.constrained import output_groups
from urllm.infer.grounders.free import FreeGrounder


class ExactTitleGrounder(FreeGrounder):
    name = "exact"
    run = "free"

    def groups(self, row: dict) -> tuple[list[tuple[int, ...]], list[float], list[Grounded]]:
        return output_groups(row, lambda g: g.method == "exact")
