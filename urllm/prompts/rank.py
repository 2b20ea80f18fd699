"""Listwise prompts (grounding mode ``rank``) and the fine-tuning data of the ranker.

A listwise prompt is the retrieval-augmented prompt of :mod:`urllm.prompts.builder` (similar users'
items, the user's history) ending with the backbone's top-K candidates of the target domain, each behind
a one-token label; the completion is the target's label (one token).

**Training lists come from the test-time process.** At test time the candidates are the backbone's
top K for a user the backbone never trained on (Art-Office's splits are user-disjoint). For training
users the backbone scores *out of fold* (``score_out_of_fold``; exact for the count prior
:class:`urllm.baselines.transition_prior.TransitionPrior`, whose user's own transitions are removed; for the
graph, propagation and counts without the user's fold: exact for fold 0, which it never trains on, and
for folds 1.. the learned weights have seen the user, so ``stats.json`` compares the target's position
in training, held-out and valid lists). A backbone without it is used in-sample, with a WARNING and
``candidates_out_of_fold: false`` in the statistics.

**Order.** Training lists are shuffled (seeded per record), so the label carries no position signal;
at test time the list is in backbone order. **Targets outside the top K** cannot be labelled:
``grounding.rank_train_missing: drop`` leaves such training records out (the default: lists then look
like test lists where the target is present); ``insert`` puts the target in place of the K-th candidate.

Held-out training users (``grounding.fusion_holdout_users``, seeded) are never trained on: their lists
give the fine-tune's valid loss and, at scoring time, fit the fusion (:mod:`urllm.grounding.calibrate`).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from urllm.data.schema import DataError, Record, TwoDomainData
from urllm.grounding.backbone import out_of_fold_scores, unseen_users
from urllm.grounding.config import GroundingConfig
from urllm.grounding.listwise import rank_labels, shuffled
from urllm.prompts.builder import BuiltPrompt, PromptBuilder
from urllm.prompts.config import PromptConfig

logger = logging.getLogger(__name__)


def holdout_users(train: Sequence[Record], n: int, seed: int, backbone=None) -> set[str]:
    """``n`` training users (seeded) kept out of the ranker's fine-tune, for fusion and valid loss:
    drawn from the users the backbone never trained on where it names them (the graph's fold 0,
    :func:`~urllm.grounding.backbone.unseen_users`), so their lists are exactly the test-time process."""
    pool = unseen_users(backbone) if backbone is not None else None
    users = sorted({r.user for r in train if pool is None or r.user in pool})
    if pool is not None and n > len(users):
        raise DataError(
            f"grounding.fusion_holdout_users={n}: the backbone has only {len(users)} unseen training users"
        )
    rng = np.random.default_rng(seed + 7919)
    n = min(n, len(users))
    return {users[i] for i in rng.choice(len(users), size=n, replace=False)} if n else set()


def top_k(scores: np.ndarray, k: int, lo: int) -> np.ndarray:
    """(B, k) global ids of the ``k`` best columns per row (ties: lower id first)."""
    return np.argsort(-np.asarray(scores), axis=1, kind="stable")[:, :k] + lo


def backbone_candidates(
    backbone, records: Sequence[Record], data: TwoDomainData, k: int, out_of_fold: bool, batch: int = 256
) -> tuple[list[list[int]], bool]:
    """Per record, the backbone's top-``k`` global ids of its target domain (``exact``: OOF was used)."""
    cat = data.catalogue
    out: list[list[int]] = [[] for _ in records]
    exact = True
    for d in (0, 1):
        rows = [i for i, r in enumerate(records) if r.domain == d]
        for s in range(0, len(rows), batch):
            idx = rows[s : s + batch]
            recs = [records[i] for i in idx]
            if out_of_fold:
                scores, ok = out_of_fold_scores(backbone, recs, d)
                exact &= ok
            else:
                scores = np.asarray(backbone.score(recs, d))
            for i, row in zip(idx, top_k(scores, k, cat.domain_range(d).start), strict=True):
                out[i] = row.tolist()
    return out, exact


class RankPrompts:
    """Listwise prompts for records: neighbours' items + history + K labelled candidates."""

    def __init__(
        self, pc: PromptConfig, data: TwoDomainData, tokenizer, k: int, use_chat_template: bool = True
    ) -> None:
        from urllm.retrieval.neighbours import training_users

        self.builder = PromptBuilder(pc, data.catalogue, tokenizer, use_chat_template)
        self.labels, self.label_ids = rank_labels(tokenizer, k)
        self.k = k
        _, self.user_items = training_users(data.records("train"))

    def build(self, record: Record, neighbour_ids: Sequence[str], candidates: Sequence[int]) -> BuiltPrompt:
        if len(candidates) > self.k:
            raise ValueError(f"{len(candidates)} candidates for {self.k} labels")
        nbrs = [(u, self.user_items[u]) for u in neighbour_ids if u in self.user_items]
        return self.builder.build(record, nbrs, candidates, self.labels[: len(candidates)])


def parquet_neighbours(parquet: Path | None, records: Sequence[Record], catalogue) -> list[list[str]]:
    """Per record, the neighbour ids the prompts stage stored (``neighbours`` column; [] without parquet)."""
    if parquet is None:
        return [[] for _ in records]
    import pyarrow.parquet as pq

    t = pq.read_table(parquet, columns=["user", "target_domain", "target", "neighbours"]).to_pydict()
    row_of = {
        f"{u}|{d}|{int(x)}": n
        for u, d, x, n in zip(t["user"], t["target_domain"], t["target"], t["neighbours"], strict=True)
    }
    keys = [f"{r.user}|{catalogue.domains[r.domain]}|{r.target}" for r in records]
    missing = [k for k in keys if k not in row_of]
    if missing:
        raise DataError(f"{parquet}: no row for record {missing[0]} ({len(missing)} records missing)")
    return [list(row_of[k] or []) for k in keys]


def position_histogram(records: Sequence[Record], candidates: Sequence[Sequence[int]], k: int) -> dict:
    """Where the target sits in the backbone's list: share at positions 1..k and outside (``>k``)."""
    counts: Counter = Counter()
    for r, c in zip(records, candidates, strict=True):
        counts[c.index(r.target) + 1 if r.target in c else f">{k}"] += 1
    n = max(len(records), 1)
    pos = [counts.get(i, 0) / n for i in range(1, k + 1)]
    return {"n": len(records), f"hr@{k}": round(sum(pos), 4), "at_position": [round(p, 4) for p in pos]}


def write_rank_datasets(
    pc: PromptConfig,
    g: GroundingConfig,
    seed: int,
    data: TwoDomainData,
    out_dir: Path,
    backbone,
    tokenizer,
    parquet_dir: Path,
    use_chat_template: bool = True,
) -> dict:
    """Write ``train.parquet`` (fine-tune pool) and ``valid.parquet`` (held-out users) + ``stats.json``.

    The lists are ``backbone``'s top ``g.top_n`` (out of fold for training records), the prompts
    ``pc``'s with the neighbours stored in ``parquet_dir/train.parquet`` (the prompts stage's)."""
    from datasets import Dataset

    k = g.top_n
    train = data.records("train")
    held = holdout_users(train, g.fusion_holdout_users, seed, backbone)
    maker = RankPrompts(pc, data, tokenizer, k, use_chat_template)
    src = parquet_dir / "train.parquet"
    if pc.n_neighbours > 0 and not src.is_file():
        raise DataError(f"{src}: no prompts; run `urllm prompts build --config CONFIG` first")
    nbrs = parquet_neighbours(src if src.is_file() else None, train, data.catalogue)
    cands, exact = backbone_candidates(backbone, train, data, k, out_of_fold=True)
    if not exact:
        logger.warning("backbone %s has no score_out_of_fold: training lists are in-sample", g.backbone)
    valid = data.records("valid")
    vcands, _ = backbone_candidates(backbone, valid, data, k, out_of_fold=False)
    stats: dict = {"k": k, "backbone": g.backbone, "candidates_out_of_fold": exact}
    stats["missing_target"] = g.rank_train_missing
    in_train = [i for i, r in enumerate(train) if r.user not in held]
    in_held = [i for i, r in enumerate(train) if r.user in held]
    stats["train_lists"] = position_histogram([train[i] for i in in_train], [cands[i] for i in in_train], k)
    stats["holdout_lists"] = position_histogram([train[i] for i in in_held], [cands[i] for i in in_held], k)
    stats["valid_lists"] = position_histogram(valid, vcands, k)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", in_train), ("valid", in_held)):
        cols: dict[str, list] = {c: [] for c in ("prompt", "completion", "user", "target", "target_domain")}
        cols.update({c: [] for c in ("candidates", "backbone_position", "n_prompt_tokens")})
        for i in rows:
            r, c = train[i], list(cands[i])
            pos = c.index(r.target) if r.target in c else -1
            if pos < 0:
                if g.rank_train_missing == "drop":
                    continue
                c[-1] = r.target
            rng = np.random.default_rng([seed, i])
            order = shuffled(c, rng)
            built = maker.build(r, nbrs[i], order)
            cols["prompt"].append(built.text)
            cols["completion"].append(maker.labels[order.index(r.target)])
            cols["user"].append(r.user)
            cols["target"].append(int(r.target))
            cols["target_domain"].append(data.catalogue.domains[r.domain])
            cols["candidates"].append(order)
            cols["backbone_position"].append(pos)
            cols["n_prompt_tokens"].append(built.n_tokens)
        stats[f"{name}_examples"] = len(cols["prompt"])
        if cols["prompt"]:
            stats[f"{name}_prompt_tokens_mean"] = round(float(np.mean(cols["n_prompt_tokens"])), 1)
        tmp = out_dir / f"{name}.parquet.partial"
        Dataset.from_dict(cols).to_parquet(str(tmp))
        tmp.replace(out_dir / f"{name}.parquet")
    (out_dir / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    logger.info("rank datasets in %s: %s", out_dir, json.dumps(stats))
    return stats
