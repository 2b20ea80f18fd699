"""Write the prompt datasets ``<out_dir>/{train,valid,test}.parquet`` (see docs/artifacts.md).

One row per record: ``prompt`` (chat template applied, ending with the assistant opening),
``completion`` (the target's catalogue title, no EOS), ``user``, ``target`` (global id),
``target_domain`` (name), ``neighbours`` (ids of the training users whose items are in the prompt),
``candidates`` (the candidates system's top-N global ids for the target domain, best first),
``n_prompt_tokens``, and ``history`` (the record's history ids, to re-create the record).

No leakage by construction: neighbours are training users other than the query user and bring their
*training* sequences; the query user contributes its history only, never its target. Each split is
written atomically with its statistics; a rerun with the same inputs skips finished splits.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from urllm.configuration import to_dict
from urllm.data.schema import Record, TwoDomainData
from urllm.prompts.builder import PromptBuilder, count_tokens
from urllm.prompts.config import PromptConfig

if TYPE_CHECKING:
    from urllm.retrieval.encoders import UserEmbedder
    from urllm.retrieval.neighbours import UserRetriever

logger = logging.getLogger(__name__)


def top_candidates(
    scorer: Any, records: Sequence[Record], data: TwoDomainData, n: int, batch_size: int
) -> list[list[int]]:
    """Per record, the scorer's ``n`` best global item ids of its target domain (ties: lower id first)."""
    out: list[list[int]] = [[] for _ in records]
    if n == 0:
        return out
    for d in (0, 1):
        offset = data.catalogue.domain_range(d).start
        rows = [i for i, r in enumerate(records) if r.domain == d]
        for lo in range(0, len(rows), batch_size):
            idx = rows[lo : lo + batch_size]
            scores = np.asarray(scorer.score([records[i] for i in idx], d), dtype=np.float64)  # (B, n_d)
            m = min(n, scores.shape[1])
            for row, s in zip(idx, scores, strict=True):
                part = np.argpartition(-s, m - 1)[:m] if m < len(s) else np.arange(len(s))
                kth = s[part].min()
                cand = np.flatnonzero(s >= kth)  # every tie of the m-th best, for a stable order
                best = cand[np.lexsort((cand, -s[cand]))][:m]
                out[row] = (best + offset).tolist()
    return out


def token_stats(lengths: Sequence[int], budget: int) -> dict[str, float]:
    a = np.asarray(lengths, dtype=np.float64)
    if not len(a):
        return {"n": 0}
    return {
        "n": len(a),
        "mean": round(float(a.mean()), 1),
        "p50": float(np.percentile(a, 50)),
        "p95": float(np.percentile(a, 95)),
        "max": int(a.max()),
        "budget": budget,
        "within_budget": round(float(np.mean(a <= budget)), 4),
    }


def _fingerprint(pc: PromptConfig, key: dict, data: TwoDomainData, split: str) -> str:
    """Hash of what a split's prompts depend on: the prompt settings, ``key["config"]`` (the retrieval and
    LLM settings), the records, and the saved state in the folders ``key["folders"]`` (the encoder's and
    the candidates system's)."""
    h = hashlib.sha256()
    h.update(json.dumps([to_dict(pc), *key.get("config", [])], sort_keys=True).encode())
    for r in (*data.records("train"), *data.records(split)):
        h.update(f"{r.user}|{r.history}|{r.target}|{r.domain}\n".encode())
    for folder in key.get("folders", []):
        folder = Path(folder)
        files = sorted(folder.rglob("*")) if folder.is_dir() else []
        h.update(
            json.dumps(
                [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.is_file()]
            ).encode()
        )
    return h.hexdigest()[:16]


def build_split(
    records: Sequence[Record],
    builder: PromptBuilder,
    neighbour_ids: Sequence[Sequence[str]],
    user_items: dict[str, tuple[int, ...]],
    candidates: Sequence[list[int]],
    data: TwoDomainData,
    desc: str = "prompts",
) -> tuple[dict[str, list], dict[str, Any]]:
    """The columns of one split and its statistics."""
    cat = data.catalogue
    cols: dict[str, list] = {k: [] for k in ("prompt", "completion", "user", "target", "target_domain")}
    cols.update({k: [] for k in ("neighbours", "candidates", "n_prompt_tokens", "history")})
    n_nbr_items, n_hist_items, cut = [], [], []
    for rec, nbrs, cands in tqdm(
        zip(records, neighbour_ids, candidates, strict=True), total=len(records), desc=desc, leave=False
    ):
        built = builder.build(rec, [(u, user_items[u]) for u in nbrs])
        cols["prompt"].append(built.text)
        cols["completion"].append(cat.titles[rec.target])
        cols["user"].append(rec.user)
        cols["target"].append(int(rec.target))
        cols["target_domain"].append(cat.domains[rec.domain])
        cols["neighbours"].append(list(built.neighbours))
        cols["candidates"].append(list(cands))
        cols["n_prompt_tokens"].append(built.n_tokens)
        cols["history"].append(list(rec.history))
        n_nbr_items.append(built.n_neighbour_items)
        n_hist_items.append(built.n_history_items)
        cut.append(built.history_cut)
    completion_tokens = [count_tokens(builder.tok, t) for t in cols["completion"]]
    stats = {
        "prompt_tokens": token_stats(cols["n_prompt_tokens"], builder.cfg.max_tokens),
        "completion_tokens": token_stats(completion_tokens, 0) | {"budget": None, "within_budget": None},
        "mean_neighbour_items": round(float(np.mean(n_nbr_items)), 2) if records else 0.0,
        "mean_history_items": round(float(np.mean(n_hist_items)), 2) if records else 0.0,
        "share_history_cut_by_budget": round(float(np.mean(cut)), 4) if records else 0.0,
    }
    return cols, stats


def write_prompt_datasets(
    pc: PromptConfig,
    data: TwoDomainData,
    out_dir: str | Path,
    tokenizer: Any,
    *,
    use_chat_template: bool = True,
    neighbours: Callable[[], tuple[UserEmbedder, UserRetriever]] | None = None,
    scorer: Callable[[], Any] | None = None,
    key: dict | None = None,
) -> dict[str, Any]:
    """Write ``<split>.parquet`` for every split of ``data`` and ``stats.json``; return the statistics.

    Args:
        neighbours: returns the user encoder and the index of training users (needed when
            ``pc.n_neighbours > 0``); called only when a split is written.
        scorer: returns the system ranking the candidates (needed when ``pc.n_candidates > 0``).
        key: what else the prompts depend on (``config``: JSON-able settings, ``folders``: the folders
            of the systems' saved state); a split whose recorded fingerprint matches is skipped.
    """
    from datasets import Dataset

    from urllm.retrieval.neighbours import training_users

    key = key or {}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    builder = PromptBuilder(pc, data.catalogue, tokenizer, use_chat_template)
    _, user_items = training_users(data.records("train"))

    splits = [s for s in ("train", "valid", "test") if s in data.splits]
    todo = []
    for split in splits:
        stats_file = out / f"{split}.stats.json"
        done = (out / f"{split}.parquet").is_file() and stats_file.is_file()
        fp = _fingerprint(pc, key, data, split)
        if done and json.loads(stats_file.read_text()).get("fingerprint") == fp:
            logger.info("prompts/%s.parquet is up to date; skipped", split)
        else:
            todo.append(split)
    embedder = retriever = None
    if pc.n_neighbours > 0 and todo:
        if neighbours is None:
            raise ValueError("prompts.n_neighbours > 0: give neighbours (the encoder and the user index)")
        embedder, retriever = neighbours()
    rank = None
    if pc.n_candidates > 0 and todo:
        if scorer is None:
            raise ValueError("prompts.n_candidates > 0: give scorer (the candidates system)")
        rank = scorer()

    for split in todo:
        records = data.records(split)
        if pc.n_neighbours > 0:
            nbrs, _ = retriever.search(embedder, records, k=pc.n_neighbours)
        else:
            nbrs = [[] for _ in records]
        cands = top_candidates(rank, records, data, pc.n_candidates, pc.batch_size)
        cols, stats = build_split(records, builder, nbrs, user_items, cands, data, desc=f"prompts {split}")
        stats["fingerprint"] = _fingerprint(pc, key, data, split)
        tmp = out / f"{split}.parquet.partial"
        Dataset.from_dict(cols).to_parquet(str(tmp))
        tmp.replace(out / f"{split}.parquet")  # atomic: a killed run never leaves half a split
        (out / f"{split}.stats.json").write_text(json.dumps(stats, indent=2) + "\n")
        pt = stats["prompt_tokens"]
        logger.info(
            "prompts/%s.parquet: %d prompts, tokens mean %.0f p95 %.0f max %d (budget %d)",
            split,
            pt["n"],
            pt["mean"],
            pt["p95"],
            pt["max"],
            pc.max_tokens,
        )
    if "test" not in data.splits:
        logger.info("no test split in the data: prompts/test.parquet not written")
    summary = {s: json.loads((out / f"{s}.stats.json").read_text()) for s in splits}
    (out / "stats.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
