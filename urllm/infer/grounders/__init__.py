"""The grounder port: one class per grounding mode, chosen by name (``grounding.mode`` and the LLM
systems' table in :mod:`urllm.infer.variants`).

A grounder says how the LLM is asked about a batch of jobs (one forward pass or a beam search per
prompt: :meth:`Grounder.infer` fills the mode's fields of each JSONL row), which grounding settings those
rows depend on (:attr:`Grounder.settings`, part of the run's settings), and how a row becomes LLM groups
over catalogue items (:meth:`Grounder.groups`: item tuples, scores, and what was grounded) for fusion
with the backbone. The model, the tokenizer and the row fields common to every mode are the engine's
(:class:`urllm.infer.engine.Engine`).

| name        | LLM step (``run``)                       | groups                                  |
|-------------|------------------------------------------|-----------------------------------------|
| rank        | label log-probs of K listed candidates   | every candidate, its label log-prob     |
| rerank      | sum of title log-probs of N candidates   | every candidate, normalised score       |
| constrained | trie beam search over catalogue titles   | the beams' items                        |
| free        | free generation + the refiner            | the refined items of every output       |
| exact       | free generation (the ``free`` run)       | exact catalogue titles only             |

Adding a mode is one file here with a :class:`Grounder` subclass and one line in :data:`GROUNDERS`.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from typing import Any

from urllm.configuration import ConfigError
from urllm.grounding.config import GroundingConfig
from urllm.grounding.refiner import Grounded

# name -> "module:class"
GROUNDERS: dict[str, str] = {
    "rank": "urllm.infer.grounders.rank:RankGrounder",
    "rerank": "urllm.infer.grounders.rerank:RerankGrounder",
    "constrained": "urllm.infer.grounders.constrained:ConstrainedGrounder",
    "free": "urllm.infer.grounders.free:FreeGrounder",
    "exact": "urllm.infer.grounders.exact:ExactTitleGrounder",
}


class Grounder(ABC):
    """One grounding mode (see the module docstring); subclasses set the class attributes.

    Attributes:
        name: the name it is registered under.
        run: the inference run whose rows it reads (its own name, or ``free`` for ``exact``).
        settings: the ``grounding`` fields its rows depend on (a change means a rerun).
        lists: the jobs carry the backbone's candidates: ``"labelled"`` (the top ``grounding.top_n``
            behind one-token labels, in the prompt), ``"titles"`` (the top ``grounding.top_n``, scored
            as titles after the prompt) or ``""`` (none).
        generates: it generates text (its raw outputs get the out-of-domain / valid-title rates).
        refines: the refiner grounds its outputs (the ``refiner_<step>_rate`` metrics).
    """

    name = ""
    run = ""
    settings: tuple[str, ...] = ()
    lists = ""
    generates = False
    refines = False

    def __init__(self, cfg: GroundingConfig) -> None:
        self.cfg = cfg

    def prepare(self, engine: Any) -> None:  # noqa: B027 (an optional hook: the list modes need nothing)
        """Build what the mode needs once per process (tries, the refiner), from ``engine``'s catalogue
        and tokenizer."""

    @abstractmethod
    def infer(self, engine: Any, jobs: list, prompts: list[list[int]], rows: list[dict]) -> None:
        """Fill the mode's fields of ``rows`` (one per job) with the LLM's answers to ``prompts``
        (token ids, one list per job)."""

    @abstractmethod
    def groups(self, row: dict) -> tuple[list[tuple[int, ...]], list[float], list[Grounded]]:
        """LLM groups (item tuples), their scores, and the grounded outputs behind them."""


def grounder_class(name: str, key: str = "grounding.mode") -> type[Grounder]:
    """The class registered as ``name``; an unknown name is a ConfigError naming ``key``."""
    if name not in GROUNDERS:
        raise ConfigError(f"{key}: unknown grounding mode {name!r}; known: {', '.join(GROUNDERS)}")
    module, attr = GROUNDERS[name].split(":")
    return getattr(importlib.import_module(module), attr)


def make_grounder(name: str, cfg: GroundingConfig, key: str = "grounding.mode") -> Grounder:
    return grounder_class(name, key)(cfg)


def candidate_groups(row: dict, scores: list[float]) -> tuple[list, list[float], list[Grounded]]:
    """One group per listed candidate (rank, rerank), scored by ``scores``."""
    cands = [int(c) for c in row["candidates"]]
    grounded = [Grounded("", "candidate", float(s), (c,), ()) for c, s in zip(cands, scores, strict=True)]
    return [(c,) for c in cands], [float(s) for s in scores], grounded
