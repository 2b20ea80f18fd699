"""Systems built from the root config: the one library module that reads the root ``Config``.

Library classes and functions take their config sections (``SASRecSystem(cfg.sasrec, cfg.seed,
cfg.eval)``, ``GraphSystem(cfg.graph, cfg.seed)``), explicit paths and built objects; the pipeline, the
CLI, the recipes and the server get those from here:

- :func:`make_system`: an unfitted system by registry name (the registry lists, per system, the
  root-config sections its factory takes: ``args``);
- :func:`fitted_system`: a fitted system, cached in the run folder under the key of all its inputs
  (:mod:`urllm.cache`), loaded read-only from the stage that trained it when it can be;
- :func:`fitted_embedder` (``retrieval.encoder``) and :func:`fitted_backbone` (``grounding.backbone``);
- :func:`infer_setup`: the LLM side's sections, paths and system makers (:mod:`urllm.infer.setup`);
- :func:`prompt_datasets`: the prompt writer with its tokenizer, user index and candidates system;
- :func:`finetune_lora` (with :func:`ensure_rank_data`): the LoRA fine-tune on its prompts and folders.

Paths come from :class:`urllm.run_layout.RunLayout`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from urllm.configuration import ConfigError
from urllm.data.schema import TwoDomainData
from urllm.recommender import Recommender, spec_of, system_factory
from urllm.run_layout import RunLayout

if TYPE_CHECKING:
    from urllm.config import Config
    from urllm.infer.setup import InferSetup
    from urllm.retrieval.encoders import UserEmbedder

logger = logging.getLogger(__name__)


def section(cfg: Config, dotted: str) -> Any:
    """``cfg.a.b`` for ``"a.b"``."""
    node: Any = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def make_system(name: str, cfg: Config) -> Recommender:
    """An unfitted system ``name``: its factory called with the sections the registry names."""
    spec = spec_of(name)
    factory = system_factory(name)
    if spec.kind == "llm":
        return factory(infer_setup(cfg))
    return factory(*(section(cfg, a) for a in spec.args))


def infer_setup(cfg: Config) -> InferSetup:
    """The LLM side's sections, the run's paths (``RunLayout``) and its backbone and encoder makers."""
    from urllm.infer.setup import InferPaths, InferSetup

    layout = RunLayout.of(cfg)
    paths = InferPaths(
        out=layout.infer_root,
        prompts=layout.infer_prompts,
        prompts_no_retrieval=layout.prompts_no_retrieval,
        finetune=layout.finetune,
        grounding_cache=layout.grounding_cache,
        graph=layout.graph,
    )
    return InferSetup(
        llm=cfg.llm, prompts=cfg.prompts, grounding=cfg.grounding, infer=cfg.infer, retrieval=cfg.retrieval,
        seed=cfg.seed, graph_text_model=cfg.graph.text_model, paths=paths,
        backbone=lambda data: fitted_backbone(cfg, data), embedder=lambda data: fitted_embedder(cfg, data),
    )  # fmt: skip


def system_sections(cfg: Config, name: str) -> dict[str, Any]:
    """The config sections the fitted state of ``name`` depends on (its cache key, :mod:`urllm.cache`)."""
    from urllm.cache import ALL_SECTIONS

    spec = spec_of(name)
    names = spec.sections if spec.sections is not None else ALL_SECTIONS
    return {s: section(cfg, s) for s in names}


def fitted_system(
    name: str, cfg: Config, data: TwoDomainData, folder: str | Path | None = None, *, from_dir: str = ""
) -> Recommender:
    """System ``name`` fitted on ``data``.

    Args:
        folder: fit (or reuse, same key) it there; default: ``systems/<name>`` of the run, or read-only
            from the stage folder that trained it (``graph/``) when that was made from the same inputs.
        from_dir: load it read-only from this folder with the system's ``load(dir)`` instead.
    """
    from urllm.cache import fitted_system as cached

    if from_dir:
        factory = system_factory(name)
        if not callable(getattr(factory, "load", None)):
            raise ConfigError(f"system {name!r} cannot be loaded from a folder (it has no load(dir))")
        logger.info("loading fitted system %s from %s", name, from_dir)
        return factory.load(from_dir)
    layout = RunLayout.of(cfg)
    shared = None
    if folder is None:
        folder, shared = layout.cache_dir(name), layout.system_dir(name)
    sections = system_sections(cfg, name)
    return cached(name, lambda: make_system(name, cfg), sections, cfg.seed, data, folder, shared=shared)


def fitted_embedder(cfg: Config, data: TwoDomainData) -> UserEmbedder:
    """The fitted system named by ``retrieval.encoder``; it must embed users."""
    name = cfg.retrieval.encoder
    system = fitted_system(name, cfg, data, from_dir=cfg.retrieval.encoder_dir)
    if not callable(getattr(system, "user_embeddings", None)):
        raise ConfigError(f"retrieval.encoder: system {name!r} has no user_embeddings(records, domain)")
    return system


def fitted_backbone(cfg: Config, data: TwoDomainData) -> Recommender:
    """The LLM systems' backbone (``grounding.backbone``), fitted in ``grounding.backbone_dir`` when given,
    else in the run's cache (read-only from the graph stage when made from the same inputs)."""
    g = cfg.grounding
    return fitted_system(g.backbone, cfg, data, Path(g.backbone_dir) if g.backbone_dir else None)


def prompt_datasets(
    cfg: Config,
    data: TwoDomainData,
    out_dir: str | Path,
    tokenizer: Any = None,
    embedder: UserEmbedder | None = None,
    retriever: Any = None,
) -> dict[str, Any]:
    """:func:`urllm.prompts.dataset.write_prompt_datasets` with the pieces made from the config: the
    tokenizer (``llm``), the encoder and the user index (``retrieval``; the index is built in memory
    unless given: the index stage owns ``<run_dir>/index``) and the candidates system."""
    from urllm.configuration import to_dict
    from urllm.prompts.dataset import write_prompt_datasets
    from urllm.retrieval.neighbours import UserRetriever

    pc, rc = cfg.prompts, cfg.retrieval
    if tokenizer is None:
        from urllm.llm.model import load_tokenizer

        tokenizer = load_tokenizer(cfg.llm)
    made: dict[str, Any] = {}

    def neighbours() -> tuple[UserEmbedder, UserRetriever]:
        made["embedder"] = embedder or fitted_embedder(cfg, data)
        index = retriever or UserRetriever.build(made["embedder"], data.records("train"), rc)
        return made["embedder"], index

    def scorer() -> Recommender:
        if "embedder" in made and (pc.candidates_system, pc.candidates_dir) == (rc.encoder, rc.encoder_dir):
            return made["embedder"]
        return fitted_system(pc.candidates_system, cfg, data, from_dir=pc.candidates_dir)

    layout = RunLayout.of(cfg)
    folders = [
        Path(given) if given else layout.system_dir(name)
        for name, given in ((rc.encoder, rc.encoder_dir), (pc.candidates_system, pc.candidates_dir))
    ]
    key = {"config": [to_dict(rc), to_dict(cfg.llm)], "folders": [str(f) for f in folders]}
    return write_prompt_datasets(
        pc, data, out_dir, tokenizer, use_chat_template=cfg.llm.use_chat_template,
        neighbours=neighbours, scorer=scorer, key=key,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------- fine-tune

RANK_INPUTS = "inputs.json"
# prompt settings the listwise prompts do not read (they are about the prompts stage's candidates column)
NOT_IN_RANK_PROMPTS = ("n_candidates", "candidates_system", "candidates_dir")
# the prompts stage's columns the listwise data reads: each training record's neighbours
NEIGHBOUR_COLUMNS = ("user", "target_domain", "target", "neighbours")


def rank_data_inputs(cfg: Config, data: TwoDomainData) -> dict:
    """What ``prompts-rank`` is made from: the backbone (its cache key: config, seed, data), the grounding
    and prompt settings that shape the lists and their prompts, the seed and the prompts' neighbours
    (only that column: a changed ``prompts.n_candidates`` changes nothing here)."""
    from urllm.cache import columns_digest, system_key
    from urllm.configuration import signature_dict

    g = cfg.grounding
    key, stopping = system_key(g.backbone, system_sections(cfg, g.backbone), cfg.seed, data)
    prompts = {k: v for k, v in signature_dict(cfg.prompts).items() if k not in NOT_IN_RANK_PROMPTS}
    source = RunLayout.of(cfg).infer_prompts / "train.parquet"
    neighbours = columns_digest(source, NEIGHBOUR_COLUMNS) if cfg.prompts.n_neighbours else ""
    return {
        "backbone": {"key": key, "stopping": stopping, "dir": g.backbone_dir},
        "grounding": {k: getattr(g, k) for k in ("top_n", "fusion_holdout_users", "rank_train_missing")},
        "prompts": prompts,
        "use_chat_template": cfg.llm.use_chat_template,
        "seed": cfg.seed,
        "neighbours": neighbours,
    }


def ensure_rank_data(cfg: Config, tokenizer: Any) -> Path:
    """``<run_dir>/prompts-rank/{train,valid}.parquet`` from the backbone's out-of-fold lists, built once
    per :func:`rank_data_inputs` (recorded in ``inputs.json``; other inputs: rebuilt, logged)."""
    import json

    from urllm.atomic import atomic_write_json, read_json
    from urllm.data.load import load_data_from_config
    from urllm.prompts.rank import write_rank_datasets

    layout = RunLayout.of(cfg)
    out = layout.finetune_prompts
    if cfg.finetune.prompts_dir:  # given listwise prompts: used as they are
        return out
    data = load_data_from_config(cfg.data)
    inputs = json.loads(json.dumps(rank_data_inputs(cfg, data), default=str))  # as read back
    if (out / "train.parquet").is_file() and (out / "valid.parquet").is_file():
        if not (out / RANK_INPUTS).is_file():
            logger.warning("%s has no %s (an older run): reusing it; delete it to rebuild", out, RANK_INPUTS)
            atomic_write_json(out / RANK_INPUTS, inputs, indent=2)
            return out
        if read_json(out / RANK_INPUTS, "the listwise data's inputs") == inputs:
            return out
        logger.info("%s was made from other inputs; rebuilding it", out)
    backbone = fitted_backbone(cfg, data)
    write_rank_datasets(
        cfg.prompts, cfg.grounding, cfg.seed, data, out, backbone, tokenizer, layout.infer_prompts,
        cfg.llm.use_chat_template,
    )  # fmt: skip
    atomic_write_json(out / RANK_INPUTS, inputs, indent=2)
    return out


def finetune_lora(cfg: Config) -> dict:
    """:func:`urllm.llm.finetune.finetune` as ``cfg`` says: prompts from ``finetune.prompts_dir`` (else
    ``prompts-rank/``, built first, or ``prompts/``), written into ``finetune.output_dir`` (else
    ``finetune/``); the resolved config is saved beside the adapter."""
    from urllm.config import save_config
    from urllm.llm.finetune import finetune

    layout = RunLayout.of(cfg)
    rank = cfg.finetune.task == "rank"
    return finetune(
        cfg.finetune, cfg.llm, cfg.seed, layout.finetune_prompts, layout.finetune,
        save_config=lambda path: save_config(cfg, path),
        rank_data=(lambda tok: ensure_rank_data(cfg, tok)) if rank else None,
    )  # fmt: skip
