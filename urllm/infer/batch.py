"""Batch LLM inference, on one process or many: ``accelerate launch -m urllm.infer.batch --config C``.

Records are processed in rounds of ``batch_size x num_processes``: each round is split between the
processes (``split_between_processes(apply_padding=True)`` so every process runs the same number of
rounds), the rows are gathered with ``gather_object``, the padding duplicates are dropped, and the main
process appends them to the run's JSONL and flushes. A killed run therefore loses at most one round,
and the next launch skips every record already in the JSONL. Without ``accelerate launch`` it runs as
a single process (also how :mod:`urllm.infer.system` fills in missing records).

    accelerate launch -m urllm.infer.batch --config configs/art_office.yaml --systems urllm,urllm-no-grounding
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from urllm.data.schema import Record, TwoDomainData
from urllm.infer.jobs import ScoreFn, build_jobs, prompts_file, record_key, select_records
from urllm.infer.store import JsonlStore
from urllm.infer.variants import (
    SYSTEM_NAMES,
    Variant,
    backbone_dir,
    out_path,
    prompts_dir,
    run_settings,
    variant_for,
)

logger = logging.getLogger(__name__)


def fitted_backbone(cfg, data: TwoDomainData):
    """The backbone system (default ``graph``), fitted or loaded from its directory."""
    from urllm.cache import fitted_system
    from urllm.run_layout import RunLayout

    name, layout = cfg.grounding.backbone, RunLayout.of(cfg)
    if cfg.grounding.backbone_dir:
        return fitted_system(name, cfg, data, backbone_dir(cfg))
    # read-only from the graph stage when made from the same inputs (a downstream stage never rewrites
    # it), else in systems/<name>, a folder keyed by all of its inputs (urllm.cache)
    return fitted_system(name, cfg, data, layout.cache_dir(name), shared=layout.system_dir(name))


class _Backbone:
    """The backbone system, fitted on first use; ``score`` is out of fold for training records."""

    def __init__(self, cfg, data: TwoDomainData, given=None, out_of_fold: bool = False) -> None:
        self.cfg, self.data, self.out_of_fold = cfg, data, out_of_fold
        self.system = given if given is not None and hasattr(given, "score") else None
        self.fn: ScoreFn | None = given if given is not None and self.system is None else None

    def get(self):
        if self.system is None:
            self.system = fitted_backbone(self.cfg, self.data)
        return self.system

    def __call__(self, records: Sequence[Record], domain: int):
        if self.fn is not None:
            return self.fn(records, domain)
        if self.out_of_fold:
            from urllm.grounding.prior import out_of_fold_scores

            return out_of_fold_scores(self.get(), records, domain)[0]
        return self.get().score(records, domain)


def run_inference(
    cfg,
    data: TwoDomainData,
    split: str,
    variant: Variant,
    records: Sequence[Record] | None = None,
    backbone: ScoreFn | None = None,
    llm: tuple | None = None,
    state=None,
) -> Path:
    """Fill the JSONL of ``variant`` on ``split`` for ``records`` (default: the ``infer.limit`` subset).

    Args:
        backbone: ``score(records, domain)`` for re-ranking candidates missing from the prompts parquet;
            built from ``grounding.backbone`` when needed and not given.
        llm: ``(model, tokenizer, adapter)`` to use instead of loading ``cfg.llm`` (tests, benchmarks).
        state: an ``accelerate.PartialState``; default: the current one (a single process when not launched).
    Returns:
        the JSONL path.
    """
    from accelerate import PartialState
    from accelerate.utils import gather_object
    from tqdm.auto import tqdm

    from urllm.infer.engine import Engine, adapter_path, load_llm

    state = state or PartialState()
    cat = data.catalogue
    records = list(records) if records is not None else select_records(data.records(split), cfg.infer.limit)
    path = out_path(cfg, split, variant)
    pdir = prompts_dir(cfg, variant)
    parquet = prompts_file(pdir, split, cfg.infer.prompt_source)
    adapter = llm[2] if llm is not None else adapter_path(cfg)
    store = JsonlStore(path, run_settings(cfg, variant, parquet, adapter))
    if state.is_main_process:
        store.check(cfg.infer.overwrite)
        store.load(repair=True)
    state.wait_for_everyone()
    done = store.load()
    pending = [r for r in records if record_key(r, cat) not in done]
    logger.info(
        "%s %s: %d of %d records to infer -> %s", variant.run_name, split, len(pending), len(records), path
    )
    if not pending:
        return path
    if llm is None:
        llm = load_llm(cfg, state.device)
    model, tokenizer, _ = llm
    top_n = cfg.grounding.top_n if variant.mode == "rerank" else 0
    if top_n and backbone is None and not _parquet_has_candidates(parquet):
        backbone = fitted_backbone(cfg, data).score
    jobs = build_jobs(
        pending, cat, parquet, tokenizer, cfg.prompts, cfg.llm.use_chat_template, top_n, backbone
    )
    cache_dir = Path(cfg.grounding.cache_dir) if cfg.grounding.cache_dir else cfg.run_path / "grounding"
    emb = shared_title_embeddings(cfg, cat.n_items) if variant.mode == "free" else None
    with state.main_process_first():  # the first process fills the title-embedding cache, the others read it
        engine = Engine(
            cfg.grounding, cat, variant.mode, model, tokenizer, cache_dir=cache_dir, title_embeddings=emb
        )
    step = cfg.infer.batch_size * state.num_processes
    bar = tqdm(
        total=len(jobs), unit="user", desc=f"{variant.run_name} {split}", disable=not state.is_main_process
    )
    for start in range(0, len(jobs), step):
        round_jobs = jobs[start : start + step]
        with state.split_between_processes(round_jobs, apply_padding=True) as mine:
            rows = engine.run(list(mine))
        rows = gather_object(rows) if state.num_processes > 1 else rows
        if state.is_main_process:
            store.append(_dedupe(rows))
            bar.update(len(round_jobs))
    bar.close()
    state.wait_for_everyone()
    return path


def shared_title_embeddings(cfg, n_items: int):
    """The graph stage's title embeddings when made by the refiner's model (same pooling), else None."""
    import numpy as np

    path = cfg.run_path / "graph" / "title_embeddings.npy"
    if (
        getattr(cfg.graph, "text_model", None) != cfg.grounding.refiner.embedding_package
        or not path.is_file()
    ):
        return None
    emb = np.load(path)
    if emb.shape[0] != n_items:
        logger.warning("%s has %d rows for %d items: not reused", path, emb.shape[0], n_items)
        return None
    logger.info("reusing the graph stage's title embeddings %s", path)
    return emb


def _dedupe(rows: list[dict]) -> list[dict]:
    """Drop the padding duplicates ``apply_padding`` added (same key), keeping the first occurrence."""
    seen: set[str] = set()
    out = []
    for row in rows:
        if row["key"] not in seen:
            seen.add(row["key"])
            out.append(row)
    return out


def _parquet_has_candidates(parquet: Path | None) -> bool:
    if parquet is None:
        return False
    import pyarrow.parquet as pq

    return "candidates" in pq.read_schema(parquet).names


def main(argv: list[str] | None = None, data_loader: Callable | None = None) -> int:
    parser = argparse.ArgumentParser(prog="urllm.infer.batch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="YAML config file (see configs/)")
    parser.add_argument("--split", default="valid", choices=["train", "valid", "test"])
    parser.add_argument("--systems", default="urllm", help=f"comma-separated, of: {', '.join(SYSTEM_NAMES)}")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
    args = parser.parse_args(argv)

    import torch
    from accelerate import PartialState

    from urllm.config import load_config
    from urllm.data.load import load_data_from_config

    # cpu=True when there is no GPU: several CPU processes (torchrun) then form a gloo group
    state = PartialState(cpu=not torch.cuda.is_available())
    logging.basicConfig(
        level=logging.INFO if state.is_main_process else logging.WARNING,
        format=f"%(asctime)s %(levelname)s [{state.process_index}] %(name)s: %(message)s",
    )
    cfg = load_config(args.config, args.overrides)
    if cfg.infer.threads:
        torch.set_num_threads(cfg.infer.threads)
    variants = list(dict.fromkeys(variant_for(s.strip(), cfg) for s in args.systems.split(",") if s.strip()))
    data = (data_loader or load_data_from_config)(cfg.data)
    data.records(args.split)  # fail early on a missing split
    runs = {(v.mode, v.retrieval): v for v in variants}  # no-grounding shares the free run
    for v in runs.values():
        path = run_inference(cfg, data, args.split, v, state=state)
        if state.is_main_process:
            logger.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
