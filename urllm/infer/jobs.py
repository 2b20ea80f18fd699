"""Inference jobs: one prompt (and, for re-ranking, the backbone's candidates) per record.

Prompts come from the prompts stage (``<prompts_dir>/{split}.parquet``, see docs/artifacts.md). A missing
parquet is an error naming the command that builds it, except for the no-retrieval variant (or
``infer.prompt_source: history``), whose prompts are by definition :func:`history_prompts`: the same
builder without similar users. Listwise jobs (mode ``rank``, :func:`build_rank_jobs`) re-render the
prompt with the backbone's top K appended, reading the neighbours the prompts stage chose.
A record is identified by :func:`record_key` (user, target domain, target): rows of the parquet and of
the inference JSONL are matched by it, so any subset of records can be scored.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from urllm.data.schema import Catalogue, DataError, Record
from urllm.infer.setup import InferSetup

logger = logging.getLogger(__name__)

ScoreFn = Callable[[Sequence[Record], int], np.ndarray]  # the Recommender port's score()


@dataclass
class Job:
    key: str
    record: Record
    prompt: str
    candidates: list[int] = field(default_factory=list)
    label_ids: list[int] = field(default_factory=list)  # rank: token id of each candidate's label


def record_key(record: Record, catalogue: Catalogue) -> str:
    """``user|domain|target``: unique per record within a split (checked by :func:`check_unique`)."""
    return f"{record.user}|{catalogue.domains[record.domain]}|{record.target}"


def check_unique(records: Sequence[Record], catalogue: Catalogue) -> None:
    counts = Counter(record_key(r, catalogue) for r in records)
    dup = [k for k, n in counts.items() if n > 1]
    if dup:
        raise DataError(
            f"{len(dup)} records share user, target domain and target (e.g. {dup[0]}); cannot key them"
        )


def select_records(records: Sequence[Record], limit: int) -> list[Record]:
    """The first ``limit`` records of each target domain, in split order (all when ``limit`` is 0)."""
    if limit <= 0:
        return list(records)
    seen: Counter = Counter()
    out = []
    for r in records:
        if seen[r.domain] < limit:
            seen[r.domain] += 1
            out.append(r)
    return out


def history_prompts(
    records: Sequence[Record], catalogue: Catalogue, tokenizer, prompt_cfg, use_chat_template: bool
) -> list[str]:
    """Prompts without similar users, rendered by the prompts stage's builder (same format, same budget)."""
    from urllm.prompts.builder import PromptBuilder

    builder = PromptBuilder(prompt_cfg, catalogue, tokenizer, use_chat_template)
    return [builder.build(r, []).text for r in records]


def _read_parquet(path: Path) -> dict[str, list]:
    from datasets import Dataset

    cols = Dataset.from_parquet(str(path)).to_dict()
    missing = [c for c in ("prompt", "user", "target", "target_domain") if c not in cols]
    if missing:
        raise DataError(f"{path}: missing column {missing[0]!r} (see the prompt-dataset contract)")
    return cols


def prompts_file(prompts_dir: Path, split: str, source: str, retrieval: bool = True) -> Path | None:
    """The parquet to read, or None for history-only prompts.

    A retrieval-augmented system never falls back to history-only prompts (it would silently become its
    own no-retrieval ablation): without the parquet it is an error naming the command that builds it.
    """
    path = prompts_dir / f"{split}.parquet"
    if source == "history":
        return None
    if path.is_file():
        return path
    if source == "parquet" or retrieval:
        raise DataError(
            f"{path}: prompt dataset not found; build it with `urllm prompts build --config CONFIG` "
            "(or `urllm pipeline`), or set infer.prompt_source=history to score history-only prompts"
        )
    logger.info("%s not found: the no-retrieval variant renders history-only prompts", path)
    return None


def build_jobs(
    records: Sequence[Record],
    catalogue: Catalogue,
    parquet: Path | None,
    tokenizer,
    prompt_cfg,
    use_chat_template: bool = True,
    top_n: int = 0,
    backbone: ScoreFn | None = None,
) -> list[Job]:
    """Jobs for ``records``; with ``top_n > 0`` each also gets its top-N candidates (parquet or backbone)."""
    check_unique(records, catalogue)
    keys = [record_key(r, catalogue) for r in records]
    prompts: list[str]
    cands: list[list[int]] = [[] for _ in records]
    if parquet is not None:
        cols = _read_parquet(parquet)
        row_of = {
            f"{u}|{d}|{int(t)}": i
            for i, (u, d, t) in enumerate(
                zip(cols["user"], cols["target_domain"], cols["target"], strict=True)
            )
        }
        missing = [k for k in keys if k not in row_of]
        if missing:
            raise DataError(f"{parquet}: no row for record {missing[0]} ({len(missing)} records missing)")
        rows = [row_of[k] for k in keys]
        prompts = [cols["prompt"][i] for i in rows]
        if top_n and cols.get("candidates"):
            cands = [[int(c) for c in (cols["candidates"][i] or [])][:top_n] for i in rows]
    else:
        prompts = history_prompts(records, catalogue, tokenizer, prompt_cfg, use_chat_template)
    if top_n:
        need = [i for i, c in enumerate(cands) if len(c) < top_n]
        if need and backbone is None:
            raise DataError(
                f"{len(need)} records lack {top_n} candidates and no backbone was given to rank them"
            )
        for d in sorted({records[i].domain for i in need}):
            idx = [i for i in need if records[i].domain == d]
            lo = catalogue.domain_range(d).start
            scores = np.asarray(backbone([records[i] for i in idx], d))  # (len(idx), n_items_of_domain)
            top = np.argsort(-scores, axis=1, kind="stable")[:, :top_n] + lo
            for i, row in zip(idx, top, strict=True):
                cands[i] = row.tolist()
    for i, c in enumerate(cands):
        bad = [x for x in c if catalogue.item_domain[x] != records[i].domain]
        if bad:
            raise DataError(f"candidates of record {keys[i]} hold items outside its target domain: {bad[:3]}")
    return [Job(k, r, p, c) for k, r, p, c in zip(keys, records, prompts, cands, strict=True)]


def build_rank_jobs(
    records: Sequence[Record],
    data,
    parquet: Path | None,
    tokenizer,
    setup: InferSetup,
    backbone,
    out_of_fold: bool = False,
    neighbour_ids: Sequence[Sequence[str]] | None = None,
) -> list[Job]:
    """Listwise jobs: the backbone's top ``grounding.top_n`` in backbone order behind one-token labels.

    Args:
        backbone: a fitted system (``score``; ``score_out_of_fold`` used when ``out_of_fold``).
        out_of_fold: the records are training users' (held-out fusion fit): score them leave-user-out,
            as the fine-tune's lists were made.
        neighbour_ids: per record, similar users to show (live records); default: the parquet's.
    """
    from urllm.prompts.rank import RankPrompts, backbone_candidates, parquet_neighbours

    check_unique(records, data.catalogue)
    k = setup.grounding.top_n
    maker = RankPrompts(setup.prompts, data, tokenizer, k, setup.llm.use_chat_template)
    if neighbour_ids is None:
        neighbour_ids = parquet_neighbours(parquet, records, data.catalogue)
    cands, exact = backbone_candidates(backbone, records, data, k, out_of_fold)
    if out_of_fold and not exact:
        logger.warning(
            "backbone %s has no score_out_of_fold: held-out lists are in-sample", setup.grounding.backbone
        )
    jobs = []
    for r, nbrs, c in zip(records, neighbour_ids, cands, strict=True):
        built = maker.build(r, nbrs, c)
        jobs.append(Job(record_key(r, data.catalogue), r, built.text, list(c), maker.label_ids[: len(c)]))
    return jobs
