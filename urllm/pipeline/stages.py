"""The stages of the method, wired for :func:`urllm.pipeline.runner.run_pipeline`.

prepare -> graph -> index -> prompts -> finetune -> infer-<split> -> evaluate-<split>
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
    """Score every system of ``pipeline.systems``; one JSON per system, so a killed run resumes."""
    from urllm.eval.evaluate import evaluate, format_table
    from urllm.recommender import make_system

    data = load_split_data(ctx)
    results = {}
    for name in ctx.cfg.pipeline.systems:
        out = ctx.dir / "systems" / f"{name}.json"
        if out.is_file():
            results[name] = json.loads(out.read_text())
            continue
        system = make_system(name, ctx.cfg)
        system.fit(data, system_dir(ctx, name))
        results[name] = evaluate(system, data, ctx.split, ctx.cfg.eval, name)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results[name], indent=2) + "\n")
        logger.info("\n%s", format_table(results[name]))
    (ctx.dir / "results.json").write_text(json.dumps({"systems": results}, indent=2) + "\n")
    return {"systems": list(results)}


def system_dir(ctx: StageContext, name: str) -> Path:
    """Where a system keeps its trained state: the pipeline stage that trained it, if any."""
    trained_by = {"graph": "graph"}
    return ctx.stage_dir(trained_by.get(name, f"systems/{name}"))


def all_stages() -> list[Stage]:
    return [
        Stage("prepare", ("data",), (), run_prepare, inputs=_data_inputs, exclude=("data.test_file",)),
        Stage(
            "evaluate",
            ("eval", "pipeline.systems", "sasrec", "seed"),
            ("prepare",),
            run_evaluate,
            per_split=True,
        ),
    ]
