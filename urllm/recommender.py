"""The port every recommender implements, and the one registry of systems by name.

Every name a config can give a system by (``pipeline.systems``, ``grounding.backbone``,
``retrieval.encoder``, ``prompts.candidates_system``, ``urllm evaluate --system``) is looked up here, so
a misspelt name fails when the config loads, naming the key (:func:`check_system`), not stages later.

A system has a *kind*:

| kind       | what it is                                                   | examples                  |
|------------|--------------------------------------------------------------|---------------------------|
| baseline   | a single-model sequential recommender                        | popularity, sasrec        |
| graph      | the dual-graph cross-domain encoder (docs/graph.md)          | graph                     |
| encoder    | a user encoder for retrieval that also scores items          | svd                       |
| llm        | an LLM system: inference JSONL + grounding over a backbone   | urllm, urllm-no-retrieval |

Adding a system is one :func:`register` call below (``module:factory``, and ``args``: the root-config
sections its factory takes, in order); nothing is imported until it is made. Factories take config
sections, never the root ``Config``: :mod:`urllm.systems` is the one module that reads the root config
and builds systems from it (``make_system(name, cfg)``; the LLM systems take an
:class:`urllm.infer.setup.InferSetup` made there).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from urllm.configuration import ConfigError
from urllm.data.schema import Record, TwoDomainData

Kind = Literal["baseline", "graph", "encoder", "llm"]
KINDS: tuple[str, ...] = ("baseline", "graph", "encoder", "llm")


class Recommender(Protocol):
    """Scores every item of a target domain for a batch of records (higher = better)."""

    def fit(self, data: TwoDomainData, run_dir: Path) -> None:
        """Train on ``data.records("train")`` (and select on ``valid``); may cache under ``run_dir``."""

    def score(self, records: Sequence[Record], domain: int) -> np.ndarray:
        """(len(records), n_items_of_domain) scores, columns in catalogue order of ``domain``."""


@dataclass(frozen=True)
class SystemSpec:
    """One registered system.

    Args:
        name: the name configs and the command line use.
        kind: one of :data:`KINDS`.
        factory: ``"module:attr"``; ``attr(*args)`` returns an unfitted system.
        embeds_users: it has ``user_embeddings(records, domain)`` (can be ``retrieval.encoder``).
        help: one line for listings and error messages.
        sections: the dotted config sections its fitted state depends on (with the seed and the data:
            the key of its cached folder, :mod:`urllm.cache`); None = every stage section (safe, but a
            change anywhere refits it).
        state_of: the system whose trained state it scores with (``graph-encoder``: ``graph``); its
            cached folder and key are that system's.
        args: the dotted root-config sections (or ``seed``) passed to the factory, in order
            (:func:`urllm.systems.make_system`); an ``llm`` system's factory takes an ``InferSetup``.
    """

    name: str
    kind: Kind
    factory: str
    embeds_users: bool = False
    help: str = ""
    sections: tuple[str, ...] | None = None
    state_of: str = ""
    args: tuple[str, ...] = ()

    @property
    def state(self) -> str:
        """The name its trained state is kept under."""
        return self.state_of or self.name


REGISTRY: dict[str, SystemSpec] = {}


def register(
    name: str,
    kind: Kind,
    factory: str,
    *,
    embeds_users: bool = False,
    help: str = "",
    sections: tuple[str, ...] | None = None,
    state_of: str = "",
    args: tuple[str, ...] = (),
) -> None:
    """Add a system to the registry (a name registered twice is a programming error)."""
    if name in REGISTRY:
        raise ValueError(f"system {name!r} is registered twice")
    if kind not in KINDS:
        raise ValueError(f"system {name!r}: kind must be one of {KINDS}, got {kind!r}")
    if ":" not in factory:
        raise ValueError(f"system {name!r}: factory must be 'module:attr', got {factory!r}")
    if sections is None and kind == "llm":
        sections = ()  # nothing fitted in its own folder: the backbone has its own
    REGISTRY[name] = SystemSpec(name, kind, factory, embeds_users, help, sections, state_of, args)


register("popularity", "baseline", "urllm.baselines.popularity:Popularity", help="item counts", sections=())
register("transition", "baseline", "urllm.baselines.transition:Transition", help="transitions", sections=())
register(
    "transition-prior", "baseline", "urllm.baselines.transition_prior:TransitionPrior",
    help="the graph's untrained prior: log transitions of the 3 recent items (leave-user-out for training users)",
    sections=(),
)  # fmt: skip
register(
    "prior", "baseline", "urllm.baselines.transition_prior:TransitionPrior", help="= transition-prior",
    sections=(),
)  # fmt: skip
register(
    "sasrec", "baseline", "urllm.baselines.sasrec:SASRecSystem", embeds_users=True, help="SASRec",
    sections=("sasrec",), args=("sasrec", "seed", "eval"),
)  # fmt: skip
register(
    "graph", "graph", "urllm.graph.system:GraphSystem", embeds_users=True, help="dual-graph encoder",
    sections=("graph",), args=("graph", "seed"),
)  # fmt: skip
register(
    "graph-encoder", "graph", "urllm.graph.system:GraphEncoderSystem", embeds_users=True,
    help="the trained graph model scored by its encoder alone (no prior, no item bias)", sections=("graph",),
    state_of="graph", args=("graph", "seed"),
)  # fmt: skip
register(
    "svd", "encoder", "urllm.retrieval.svd:PureSVD", embeds_users=True, help="PureSVD user encoder",
    sections=("retrieval.svd",), args=("retrieval.svd",),
)  # fmt: skip
register("urllm", "llm", "urllm.infer.system:URLLM", help="URLLM with grounding.mode")
register("urllm-constrained", "llm", "urllm.infer.system:URLLM_CONSTRAINED", help="trie beam search")
register("urllm-free", "llm", "urllm.infer.system:URLLM_FREE", help="free generation + refiner")
register("urllm-rerank", "llm", "urllm.infer.system:URLLM_RERANK", help="LLM re-ranks backbone top-N")
register("urllm-no-retrieval", "llm", "urllm.infer.system:URLLM_NO_RETRIEVAL", help="no similar users")
register("urllm-no-grounding", "llm", "urllm.infer.system:URLLM_NO_GROUNDING", help="exact titles only")

# name -> "module:factory" (the form older callers read)
SYSTEMS: dict[str, str] = {name: spec.factory for name, spec in REGISTRY.items()}


def kind_of(name: str) -> str:
    return spec_of(name).kind


def spec_of(name: str, key: str = "system") -> SystemSpec:
    if name not in REGISTRY:
        raise ConfigError(f"{key}: unknown system {name!r}; known systems: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def is_llm_system(name: str) -> bool:
    """True for the systems that read LLM inference output (the ``llm`` kind)."""
    spec = REGISTRY.get(name)
    return spec is not None and spec.kind == "llm"


def llm_systems(names: Iterable[str]) -> list[str]:
    """The LLM systems among ``names``, in order."""
    return [n for n in names if is_llm_system(n)]


def names_of_kind(*kinds: str) -> list[str]:
    return [n for n, s in REGISTRY.items() if s.kind in kinds]


def check_system(name: str, key: str, *, role: str = "any") -> None:
    """Raise :class:`ConfigError` naming ``key`` unless ``name`` can play ``role``.

    Roles: ``any`` (scored by evaluate), ``backbone`` (scores items without an LLM: fills LLM rankings,
    ranks prompt candidates) and ``encoder`` (embeds users for retrieval).
    """
    if role == "backbone":
        allowed = [n for n, s in REGISTRY.items() if s.kind != "llm"]
    elif role == "encoder":
        allowed = [n for n, s in REGISTRY.items() if s.embeds_users]
    elif role == "any":
        allowed = list(REGISTRY)
    else:
        raise ValueError(f"unknown role {role!r}")
    if name in allowed:
        return
    what = {"any": "a system", "backbone": "a non-LLM system", "encoder": "a user encoder"}[role]
    if name in REGISTRY:
        problem = f"{name!r} is a {REGISTRY[name].kind} system, not {what}"
    else:
        problem = f"unknown system {name!r}"
    raise ConfigError(f"{key}: {problem}; {what[2:]}s: {', '.join(sorted(allowed))}")


def system_factory(name: str, key: str = "system") -> Callable[..., Recommender]:
    """The registered factory of ``name`` (imports its module)."""
    module, attr = spec_of(name, key).factory.split(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"system {name!r} is registered but its module is missing: {exc}") from None
