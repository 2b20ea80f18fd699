"""The stages of the method, wired for :func:`urllm.pipeline.runner.run_pipeline`.

prepare -> graph -> index -> prompts -> finetune -> infer/<split> -> evaluate/<split>
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from urllm.config import Config, save_config
from urllm.data.schema import TwoDomainData, load_data, save_data
from urllm.pipeline.runner import Stage, StageContext

logger = logging.getLogger(__name__)


def _data_inputs(cfg: Config, split: str) -> list[Path]:
    # recbole/amazon build every split from the same files; art_office reads the test file only for test
    if cfg.data.format == "recbole":  # a fresh machine: fetch MovieLens before its files are hashed
        from urllm.data.recbole import fetch_if_missing

        fetch_if_missing(cfg.data)
    return cfg.data.source_files(include_test=False)


def load_split_data(ctx: StageContext) -> TwoDomainData:
    """The prepared train/valid data, plus the test records when scoring the test split."""
    data = load_data(ctx.stage_dir("prepare"))
    if ctx.split == "test" and "test" not in data.splits:
        from urllm.data.load import load_data_from_config

        data.splits["test"] = load_data_from_config(ctx.cfg.data).records("test")
    return data


def run_prepare(ctx: StageContext) -> dict:
    from urllm.data.load import load_data_from_config

    data = load_data_from_config(ctx.cfg.data)
    if ctx.cfg.data.format == "art_office":
        data.splits.pop("test", None)  # the test file is read only when the test split is scored
    save_data(data, ctx.dir)
    save_config(ctx.cfg, ctx.dir / "config.yaml")
    return {split: len(recs) for split, recs in data.splits.items()}


def run_evaluate(ctx: StageContext) -> dict:
    """Score every system of ``pipeline.systems``; one JSON and one per-record JSONL per system, so a
    killed run resumes; every system is paired with the baseline (:func:`evaluation_baseline`)."""
    from urllm.atomic import atomic_write_json, read_json
    from urllm.eval.evaluate import add_paired, evaluate_records, format_table
    from urllm.eval.per_record import read_per_record, write_per_record

    data = load_split_data(ctx)
    records = data.records(ctx.split)
    scored = records
    if llm_systems(ctx.cfg):
        # every system is scored on the records the LLM systems were run on (infer.limit per domain)
        from urllm.infer.jobs import select_records

        scored = select_records(records, ctx.cfg.infer.limit)
    baseline = evaluation_baseline(ctx.cfg)
    names = ctx.cfg.pipeline.systems
    names = ([baseline] if baseline else []) + [n for n in names if n != baseline]  # baseline first
    results, per_record = {}, {}
    for name in names:
        out = ctx.dir / "systems" / f"{name}.json"
        rows = ctx.dir / "systems" / f"{name}.per_record.jsonl"
        results[name] = read_json(out, f"{name}'s evaluation") if rows.is_file() else None
        if results[name] is not None:
            per_record[name] = read_per_record(rows)
            continue
        system = evaluation_system(ctx, name, data)  # fitted on every record, not the scored subset
        data.splits[ctx.split] = scored
        try:
            results[name], per_record[name] = evaluate_records(system, data, ctx.split, ctx.cfg.eval, name)
        finally:
            data.splits[ctx.split] = records
        if len(scored) < len(records):
            results[name]["subset"] = f"first {ctx.cfg.infer.limit} records per target domain of {ctx.split}"
        if baseline and name != baseline:
            add_paired(results, {k: per_record[k] for k in (baseline, name)}, baseline, ctx.cfg.eval)
        write_per_record(rows, {name: per_record[name]})
        atomic_write_json(out, results[name], indent=2)
        logger.info("\n%s", format_table(results[name]))
    atomic_write_json(ctx.dir / "results.json", {"systems": results}, indent=2)
    return {"systems": list(results), "baseline": baseline}


def evaluation_baseline(cfg: Config) -> str:
    """``pipeline.baseline``, or the backbone of the LLM systems when it is scored, else ''."""
    if cfg.pipeline.baseline:
        return cfg.pipeline.baseline
    backbone = cfg.grounding.backbone
    return backbone if llm_systems(cfg) and backbone in cfg.pipeline.systems else ""


def run_graph(ctx: StageContext) -> dict:
    from urllm.systems import fitted_system

    fitted_system("graph", ctx.cfg, load_data(ctx.layout.prepare), ctx.dir)  # stamps cache.json
    return {}


def run_index(ctx: StageContext) -> dict:
    """Index the training users and measure neighbour usefulness on valid (saved as hit_rate.json)."""
    from urllm.retrieval.run import hit_rate_report
    from urllm.systems import fitted_embedder

    data = load_data(ctx.layout.prepare)
    embedder = fitted_embedder(ctx.cfg, data)
    report = hit_rate_report(ctx.cfg.retrieval, data, embedder, "valid", out_dir=ctx.dir)
    (ctx.dir / "hit_rate.json").write_text(json.dumps(report, indent=2) + "\n")
    return {"hit_rate": report["hit_rate"]}


def run_prompts(ctx: StageContext) -> dict:
    """The prompt datasets, with the neighbours of the index stage's retriever (loaded, not rebuilt:
    a stage writes only into its own folder)."""
    from urllm.retrieval.neighbours import UserRetriever
    from urllm.systems import fitted_embedder, prompt_datasets

    data = load_data(ctx.layout.prepare)
    embedder = retriever = None
    if ctx.cfg.prompts.n_neighbours > 0:
        embedder = fitted_embedder(ctx.cfg, data)  # read-only from the graph stage / its cache
        retriever = UserRetriever.load(ctx.layout.index, ctx.cfg.retrieval)
    return prompt_datasets(ctx.cfg, data, ctx.dir, embedder=embedder, retriever=retriever)


def finetune_reads(ctx: StageContext) -> dict[str, str]:
    """What the fine-tune reads from upstream stages, by content (in place of their fingerprints): the
    prompt columns it trains on, or for the listwise task what ``prompts-rank`` is built from
    (:func:`urllm.systems.rank_data_inputs`). An upstream change that leaves these alone (a new
    ``prompts.n_candidates`` only rewrites the prompts' candidates column) keeps the adapter."""
    import hashlib

    from urllm.cache import columns_digest
    from urllm.systems import rank_data_inputs

    cfg = ctx.cfg
    if cfg.finetune.task == "title" or cfg.finetune.prompts_dir:
        src = ctx.layout.finetune_prompts
        cols = ("prompt", "completion")
        return {f"prompts/{s}": columns_digest(src / f"{s}.parquet", cols) for s in ("train", "valid")}
    inputs = rank_data_inputs(cfg, load_data(ctx.layout.prepare))
    blob = json.dumps(inputs, sort_keys=True, default=str).encode()
    return {"prepare": ctx.fingerprints["prepare"], "rank_inputs": hashlib.sha256(blob).hexdigest()[:20]}


def run_finetune(ctx: StageContext) -> dict:
    from urllm.systems import finetune_lora

    return finetune_lora(ctx.cfg)  # reads prompts-rank (built first) or prompts, writes finetune (resumes)


def llm_systems(cfg: Config) -> list[str]:
    """The LLM systems (registry kind ``llm``) among ``pipeline.systems``."""
    from urllm.recommender import llm_systems as of_kind_llm

    return of_kind_llm(cfg.pipeline.systems)


def run_infer(ctx: StageContext) -> dict:
    """Batch inference for every LLM variant the evaluate stage scores (JSONL per variant, resumable)."""
    import dataclasses

    from urllm.infer.batch import run_inference
    from urllm.infer.variants import variant_for

    cfg = ctx.cfg
    data = load_split_data(ctx)
    if ctx.split == "test":
        # test prompts are built here (the training stages never see the test file)
        from urllm.systems import prompt_datasets

        test_prompts = ctx.dir / "prompts"
        only = TwoDomainData(
            data.name, data.catalogue, {"train": data.records("train"), "test": data.records("test")}
        )
        prompt_datasets(cfg, only, test_prompts)
        cfg = dataclasses.replace(cfg, infer=dataclasses.replace(cfg.infer, prompts_dir=str(test_prompts)))
    from urllm.systems import infer_setup

    setup = infer_setup(cfg)
    done = {}
    for name in llm_systems(cfg):
        variant = variant_for(name, cfg.grounding.mode)
        if variant.run_name not in done:
            done[variant.run_name] = str(run_inference(setup, data, ctx.split, variant))
    return done


def system_dir(ctx: StageContext, name: str) -> Path:
    """Where a system keeps its trained state: the pipeline stage that trained it, if any."""
    return ctx.layout.system_dir(name)


def evaluation_system(ctx: StageContext, name: str, data: TwoDomainData):
    """System ``name`` for the evaluate stage: loaded read-only from the stage that trained it (the
    graph) when made from the same inputs, else fitted in ``systems/<name>``, a cache keyed by all of
    its inputs (:mod:`urllm.cache`)."""
    from urllm.systems import fitted_system

    return fitted_system(name, ctx.cfg, data)


def all_stages(cfg: Config | None = None) -> list[Stage]:
    """Every stage; the evaluate stage waits for the graph and inference stages only when the
    systems it scores need them."""
    systems = cfg.pipeline.systems if cfg is not None else []
    evaluate_after = ("prepare",) + (("graph",) if "graph" in systems else ())
    evaluate_after += ("infer",) if cfg is not None and llm_systems(cfg) else ()
    llm = ("llm", "retrieval", "prompts", "graph", "seed")
    return [
        Stage("prepare", ("data",), (), run_prepare, inputs=_data_inputs, exclude=("data.test_file",)),
        Stage("graph", ("graph", "seed"), ("prepare",), run_graph, extends=True),  # epochs+ continue
        Stage("index", ("retrieval", "seed"), ("graph",), run_index),
        Stage("prompts", ("prompts", "llm"), ("index",), run_prompts),
        Stage("finetune", ("finetune", "llm"), ("prompts",), run_finetune, consumes=finetune_reads),
        Stage(
            "infer",
            (*llm, "finetune", "grounding", "infer", "pipeline.systems"),
            ("finetune",),
            run_infer,
            per_split=True,
            inputs=_test_inputs,
        ),
        Stage(
            "evaluate",
            ("eval", "pipeline.systems", "sasrec", "graph", "grounding", "seed"),
            evaluate_after,
            run_evaluate,
            per_split=True,
            inputs=_test_inputs,
        ),
    ]


def _test_inputs(cfg: Config, split: str) -> list[Path]:
    return [cfg.data.path(cfg.data.test_file)] if split == "test" and cfg.data.test_file else []
