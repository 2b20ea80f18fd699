"""Batch LLM inference, on one process or many: ``urllm infer --config C`` (recipe :mod:`urllm.recipes.infer`).

Records are processed in rounds of ``batch_size x num_processes``: each round is split between the
processes (``split_between_processes(apply_padding=True)`` so every process runs the same number of
rounds), the rows are gathered with ``gather_object``, the padding duplicates are dropped, and the main
process appends them to the run's JSONL and flushes. A killed run therefore loses at most one round,
and the next launch skips every record already in the JSONL. Without ``accelerate launch`` it runs as
a single process (also how :mod:`urllm.infer.system` fills in missing records).

    urllm infer --config configs/art_office.yaml --systems urllm,urllm-no-grounding
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from urllm.data.schema import Record, TwoDomainData
from urllm.infer.grounders import grounder_class
from urllm.infer.jobs import ScoreFn, build_jobs, build_rank_jobs, prompts_file, record_key, select_records
from urllm.infer.setup import InferSetup
from urllm.infer.store import JsonlStore
from urllm.infer.variants import (
    Variant,
    out_path,
    prompts_dir,
    run_settings,
)

logger = logging.getLogger(__name__)


class _Backbone:
    """The backbone system, fitted on first use; ``score`` is out of fold for training records."""

    def __init__(self, setup: InferSetup, data: TwoDomainData, given=None, out_of_fold: bool = False) -> None:
        self.setup, self.data, self.out_of_fold = setup, data, out_of_fold
        self.system = given if given is not None and hasattr(given, "score") else None
        self.fn: ScoreFn | None = given if given is not None and self.system is None else None

    def get(self):
        if self.system is None:
            self.system = self.setup.backbone(self.data)
        return self.system

    def __call__(self, records: Sequence[Record], domain: int):
        if self.fn is not None:
            return self.fn(records, domain)
        if self.out_of_fold:
            from urllm.grounding.backbone import out_of_fold_scores

            return out_of_fold_scores(self.get(), records, domain)[0]
        return self.get().score(records, domain)


def run_inference(
    setup: InferSetup,
    data: TwoDomainData,
    split: str,
    variant: Variant,
    records: Sequence[Record] | None = None,
    backbone=None,
    llm: tuple | None = None,
    state=None,
) -> Path:
    """Fill the JSONL of ``variant`` on ``split`` for ``records`` (default: the ``infer.limit`` subset).

    Args:
        backbone: the backbone system (or a bare ``score(records, domain)``) ranking the candidates
            (rank mode; re-ranking when the parquet lacks them); fitted from ``grounding.backbone`` on
            first use when not given. Training records (``split="train"``: held-out users of the fusion
            fit) are scored out of fold, like the fine-tune's lists.
        setup: the LLM side's sections, paths and systems (:func:`urllm.systems.infer_setup`).
        llm: ``(model, tokenizer, adapter)`` to use instead of loading ``setup.llm`` (tests, benchmarks).
        state: an ``accelerate.PartialState``; default: the current one (a single process when not launched).
    Returns:
        the JSONL path.
    """
    from accelerate import PartialState
    from accelerate.utils import gather_object
    from tqdm.auto import tqdm

    from urllm.infer.engine import Engine, adapter_path, load_llm, shared_llm

    state = state or PartialState()
    cat = data.catalogue
    records = list(records) if records is not None else select_records(data.records(split), setup.infer.limit)
    path = out_path(setup.paths, split, variant)
    pdir = prompts_dir(setup.paths, variant)
    # prompts.n_neighbours=0: no neighbours by configuration, so history-only prompts are not a fallback
    parquet = prompts_file(
        pdir, split, setup.infer.prompt_source, variant.retrieval and setup.prompts.n_neighbours > 0
    )
    wanted = adapter_path(setup.infer, setup.paths.finetune, variant.retrieval)
    llm = shared_llm(llm, wanted)
    adapter = llm[2] if llm is not None else wanted
    store = JsonlStore(path, run_settings(setup, variant, parquet, adapter))
    if state.is_main_process:
        store.check(setup.infer.overwrite)
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
        llm = load_llm(setup.llm, adapter, state.device)
    model, tokenizer, _ = llm
    bb = _Backbone(setup, data, backbone, out_of_fold=split == "train")
    grounder = grounder_class(variant.mode)
    if grounder.lists == "labelled":
        if bb.fn is not None:
            raise TypeError("rank mode needs the backbone system (score / score_out_of_fold), not a function")
        jobs = build_rank_jobs(
            pending, data, parquet, tokenizer, setup, bb.get(), out_of_fold=split == "train"
        )
        if setup.infer.eval_target_shortcut:
            jobs = _shortcut(jobs, store, state)
    else:
        top_n = setup.grounding.top_n if grounder.lists == "titles" else 0
        # the backbone fills in candidates the parquet lacks (e.g. prompts.n_candidates=0), fitted lazily
        jobs = build_jobs(
            pending, cat, parquet, tokenizer, setup.prompts, setup.llm.use_chat_template, top_n, bb
        )
    cache_dir = setup.paths.grounding_cache
    emb = shared_title_embeddings(setup, cat.n_items) if grounder.refines else None
    with state.main_process_first():  # the first process fills the title-embedding cache, the others read it
        engine = Engine(
            setup.grounding, cat, variant.mode, model, tokenizer, cache_dir=cache_dir, title_embeddings=emb
        )
    step = setup.infer.batch_size * state.num_processes
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


def _shortcut(jobs: list, store: JsonlStore, state) -> list:
    """Evaluation only (``infer.eval_target_shortcut``): rows without the LLM for lists lacking the target.

    With calibrated fusion a record whose target is not among its K candidates gets the backbone's rank
    whatever the LLM says (the K candidates stay above it, the rest keep backbone order:
    tests/test_listwise.py checks it), so its metrics are exact without a forward pass. Such rows carry
    uniform label log-probs and ``llm_skipped: true``; this reads the target, so serving never uses it.
    """
    import math

    keep, skipped = [], []
    for j in jobs:
        (keep if j.record.target in j.candidates else skipped).append(j)
    if state.is_main_process and skipped:
        rows = []
        for j in skipped:
            k = len(j.candidates)
            rows.append(
                {"key": j.key, "user": j.record.user, "domain": None, "target": j.record.target, "mode": "rank",
                 "prompt_tokens": None, "seconds": 0.0, "candidates": list(j.candidates),
                 "label_logprobs": [-math.log(k)] * k, "llm_skipped": True}
            )  # fmt: skip
        store.append(rows)
        logger.info("eval shortcut: %d lists without the target written without the LLM", len(skipped))
    return keep


def shared_title_embeddings(setup: InferSetup, n_items: int):
    """The graph stage's title embeddings when made by the refiner's model (same pooling), else None."""
    import numpy as np

    path = setup.paths.graph / "title_embeddings.npy"
    if setup.graph_text_model != setup.grounding.refiner.embedding_package or not path.is_file():
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
