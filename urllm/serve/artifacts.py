"""A pipeline run's artifacts, loaded for serving: checked fresh first, never retrained.

:func:`check_stages` recomputes the fingerprint of each stage a system needs, exactly as
:func:`urllm.pipeline.runner.run_pipeline` does (config sections + input-file hashes + upstream
fingerprints), and compares it with the stage's ``manifest.json``. A missing, unfinished or stale stage
is a :class:`~urllm.configuration.ConfigError` whose one line names the stage and the command to run.
:func:`load_system` then builds each system from what the run holds: ``GraphSystem.load`` for the
graph, the finished SASRec checkpoint, the LLM systems on the fitted backbone; the count baselines
(popularity, transition) are recounted from the prepared training split (no training, well under a
second on MovieLens).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from urllm.configuration import ConfigError
from urllm.data.schema import TwoDomainData
from urllm.pipeline.manifest import Manifest, file_sha256, fingerprint

if TYPE_CHECKING:
    from urllm.config import Config

logger = logging.getLogger(__name__)

COUNT_SYSTEMS = ("popularity", "transition")  # fit() counts the training split; nothing to train


def _run_hint(config_path: str, stage: str) -> str:
    return f"run: urllm pipeline --config {config_path or 'CONFIG'} --stages {stage}"


def stage_states(cfg: Config, names: list[str]) -> dict[str, tuple[str, str]]:
    """``{stage: (state, why)}`` for ``names`` and the stages above them; state is fresh | missing |
    running | stale, ``why`` names what changed for a stale one.

    Fresh is what ``run_pipeline`` would skip: a finished manifest with the current fingerprint, or one
    it would migrate (same content once runtime fields are dropped; upstream known by an alias). Nothing
    is written here.
    """
    from urllm.pipeline.manifest import _drop_runtime, describe_change
    from urllm.pipeline.runner import _config_part  # the runner's own fingerprint input, not a copy
    from urllm.pipeline.stages import all_stages

    by_name = {s.name: s for s in all_stages(cfg)}
    fps: dict[str, str] = {}
    known: dict[str, set[str]] = {}  # stage -> fingerprints downstream manifests may have recorded
    states: dict[str, tuple[str, str]] = {}

    def visit(name: str) -> None:
        if name in states:
            return
        stage = by_name[name]
        for up in stage.after:
            visit(up)
        upstream = {up: fps[up] for up in stage.after}
        m = Manifest(cfg.run_path / stage.dir_name(cfg.pipeline.split)).read()
        # input files as the manifest recorded them, re-hashed (serving never fetches data; a file gone
        # since keeps its recorded hash)
        recorded = (m or {}).get("inputs") or {}
        hashes = {f: file_sha256(Path(f)) if Path(f).is_file() else h for f, h in recorded.items()}
        conf = _config_part(cfg, stage.sections, stage.exclude)
        if stage.per_split:
            conf["split"] = cfg.pipeline.split
        fps[name] = fp = fingerprint(conf, hashes, upstream)
        known[name] = {fp, *((m or {}).get("aliases") or []), (m or {}).get("fingerprint", fp)}
        if m is None:
            states[name] = ("missing", "")
        elif m.get("status") != "done":
            states[name] = ("running", "")
        elif m.get("fingerprint") == fp:
            states[name] = ("fresh", "")
        else:
            up = m.get("upstream") or {}
            same_up = set(up) == set(upstream) and all(up[k] in known[k] for k in upstream)
            if same_up and recorded == hashes and _drop_runtime(m.get("config")) == conf:
                states[name] = ("fresh", "")
            else:
                stale_up = [u for u in upstream if states[u][0] != "fresh"]
                why = f"upstream stage {stale_up[0]} is not fresh" if stale_up else ""
                states[name] = ("stale", why or describe_change(m, conf, hashes, {}))

    for n in names:
        visit(n)
    return states


def check_stages(cfg: Config, names: list[str], config_path: str = "") -> None:
    """Raise a one-line ConfigError naming the first stage of ``names`` (or above) that is not fresh."""
    states = stage_states(cfg, names)
    order = ["prepare", "graph", "index", "prompts", "finetune"]
    for name in sorted(states, key=lambda n: order.index(n) if n in order else len(order)):
        state, why = states[name]
        where = cfg.run_path / name
        if state == "missing":
            raise ConfigError(f"{where}: stage {name} has not run; {_run_hint(config_path, name)}")
        if state == "running":
            raise ConfigError(f"{where}: stage {name} did not finish; {_run_hint(config_path, name)}")
        if state == "stale":
            raise ConfigError(
                f"{where}: stage {name} is stale ({why} since it ran); {_run_hint(config_path, name)}"
            )


def needed_stages(name: str, cfg: Config) -> list[str]:
    """The pipeline stages whose artifacts system ``name`` is served from."""
    from urllm.recommender import kind_of

    kind = kind_of(name)
    if kind == "graph":
        return ["prepare", "graph"]
    if kind == "llm":
        from urllm.infer.variants import variant_for

        stages = ["prepare", *needed_stages(cfg.grounding.backbone, cfg)]
        if variant_for(name, cfg.grounding.mode).retrieval:
            stages.append("index")
        if cfg.infer.use_adapter and not cfg.infer.adapter_dir and "finetune" in cfg.pipeline.stages:
            stages.append("finetune")
        return list(dict.fromkeys(stages))
    return ["prepare"]  # baselines and encoders: the prepared data (SASRec's checkpoint: check_sasrec)


def check_sasrec(cfg: Config, data: TwoDomainData, config_path: str = "") -> Path:
    """The finished SASRec checkpoint of the run, or a ConfigError naming what trains it."""
    import torch

    from urllm.baselines.checkpoint import load_state, signature
    from urllm.baselines.sasrec import CHECKPOINT

    path = cfg.run_path / "systems" / "sasrec" / CHECKPOINT
    sig = signature(cfg.sasrec, cfg.seed, data.name, data.catalogue.n_items)
    state = load_state(path, sig, torch.device("cpu"))
    if state is None or not state.finished(cfg.sasrec):
        what = "missing" if not path.is_file() else "stale or unfinished"
        raise ConfigError(
            f"{path}: SASRec checkpoint {what}; run: urllm pipeline --config {config_path or 'CONFIG'} "
            "--stages evaluate (with sasrec in pipeline.systems)"
        )
    return path


def check_fusion(name: str, cfg: Config, data: TwoDomainData, backbone, config_path: str = "") -> None:
    """Calibrated fusion is fit on held-out training users' LLM rows: they must be in the run already
    (``score()`` would otherwise run the LLM on them at start-up and fit the fusion there)."""
    if cfg.grounding.fusion != "calibrated":
        return
    from urllm.infer.jobs import record_key
    from urllm.infer.store import JsonlStore
    from urllm.infer.variants import out_path, variant_for
    from urllm.prompts.rank import holdout_users

    train = data.records("train")
    held = holdout_users(train, cfg.grounding.fusion_holdout_users, cfg.seed, backbone)
    keys = [record_key(r, data.catalogue) for r in train if r.user in held]
    from urllm.systems import infer_setup

    path = out_path(infer_setup(cfg).paths, "train", variant_for(name, cfg.grounding.mode))
    have = JsonlStore(path, {}).load() if path.is_file() else {}
    missing = sum(k not in have for k in keys)
    if missing:
        raise ConfigError(
            f"{path}: {missing} of {len(keys)} held-out training records have no LLM row (the calibrated "
            f"fusion is fit on them); run: urllm evaluate --config {config_path or 'CONFIG'} --system {name}"
        )


def load_system(name: str, cfg: Config, data: TwoDomainData, llm: tuple | None, config_path: str = "") -> Any:
    """System ``name`` ready to score, from the run's artifacts (stages checked fresh by the caller)."""
    from urllm.recommender import kind_of, system_factory
    from urllm.systems import make_system

    factory = system_factory(name)
    if kind_of(name) == "graph" and callable(getattr(factory, "load", None)):
        return factory.load(cfg.run_path / "graph")  # read-only: nothing rebuilt or rewritten
    backbone = cfg.grounding.backbone if kind_of(name) == "llm" else None
    if "sasrec" in (name, backbone):
        check_sasrec(cfg, data, config_path)  # fit() would train SASRec without a finished checkpoint
    system = make_system(name, cfg)
    if llm is not None and hasattr(system, "llm"):
        system.llm = llm  # one model for every LLM system, loaded once
    # fresh stages make fit() reuse the finished checkpoints; the count baselines recount; nothing trains
    system.fit(data, cfg.run_path / "systems" / name)
    if kind_of(name) == "llm":
        check_fusion(name, cfg, data, system.backbone, config_path)
    return system


def load_embedder(cfg: Config, data: TwoDomainData, systems: dict[str, Any]) -> Any:
    """The retrieval encoder behind the run's user index (shared with a loaded system when possible)."""
    name = cfg.retrieval.encoder
    if name in systems and hasattr(systems[name], "user_embeddings"):
        return systems[name]
    if name == "graph":
        from urllm.graph.system import GraphSystem

        return GraphSystem.load(cfg.run_path / "graph")
    from urllm.systems import fitted_system

    if name == "sasrec" and not cfg.retrieval.encoder_dir:
        check_sasrec(cfg, data)  # fitted_system() would train otherwise
    return fitted_system(name, cfg, data, from_dir=cfg.retrieval.encoder_dir)


def load_retriever(cfg: Config, data: TwoDomainData, systems: dict[str, Any]) -> tuple[Any, Any] | None:
    """(embedder, UserRetriever) from ``<run_dir>/index`` when the index stage is fresh, else None."""
    from urllm.retrieval.neighbours import UserRetriever

    state, _ = stage_states(cfg, ["index"])["index"]
    if state != "fresh":
        logger.warning("no neighbours in the evidence: the index stage is %s", state)
        return None
    return load_embedder(cfg, data, systems), UserRetriever.load(cfg.run_path / "index", cfg.retrieval)
