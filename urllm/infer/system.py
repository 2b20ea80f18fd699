"""The LLM systems of ``urllm evaluate``: inference JSONL + backbone scores -> full target-domain ranking.

``score(records, domain)`` reads each record's row from the variant's JSONL (running inference for the
missing ones when ``infer.run_missing``), turns it into LLM groups (listwise candidates, trie beams,
refined free outputs, or re-ranked candidates) and fuses them with the backbone's scores. Records that
are not in the fitted data (a live request) are inferred in-process, batched, without a JSONL; and
``explain(record, domain)`` returns one record's candidates with their backbone, LLM and fused scores.

Fusion ``calibrated`` (the default, :mod:`urllm.grounding.calibrate`) is fit per target domain on the
records of held-out *training* users (``grounding.fusion_holdout_users``, never fine-tuned on; their
LLM rows live in ``<infer>/train/<run>.jsonl``, their backbone scores are out of fold), never on the
split that is reported; ``extra_metrics()`` reports the chosen weight, temperature and held-out gain.
``extra_metrics()`` reports, per target domain, over the records scored:

- ``raw_valid_title_rate``: raw outputs that are a catalogue title after normalisation (any domain);
- ``raw_ood_rate``: raw outputs whose catalogue match (exact, BM25 or kNN) lies in the other domain only;
- ``raw_empty_rate``: raw outputs with no text;
- ``raw_in_history_rate``: raw outputs matched to an item the user already has (an echo of the prompt);
- ``ood_rate``: items handed to fusion that are outside the target domain (0 by construction; checked
  against the catalogue here, not assumed);
- ``refiner_<method>_rate`` (free generation): which refiner step matched;
- rank / rerank: ``target_in_candidates_rate`` and, on the records whose target is a candidate,
  ``llm_top1_accuracy``, ``llm_list_mrr`` vs ``backbone_list_mrr`` (reciprocal rank within the list) and
  ``llm_top1_accuracy_by_position`` (by the target's backbone position: 1, 2-3, 4-10, 11-K);
- ``fusion_*``: the held-out fit (weight, temperature, n, MRR per weight, gain).
Raw rates are ``None`` for rank / re-ranking, which generate no text.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from urllm.data.schema import DataError, Record, TwoDomainData
from urllm.grounding.backbone import out_of_fold_scores
from urllm.grounding.calibrate import FusionFit, HeldOut, fit_fusion, fuse_calibrated
from urllm.grounding.fusion import fuse
from urllm.grounding.refiner import Grounded
from urllm.infer.grounders import make_grounder
from urllm.infer.jobs import record_key
from urllm.infer.setup import InferSetup
from urllm.infer.store import JsonlStore
from urllm.infer.variants import Variant, out_path, variant_for

logger = logging.getLogger(__name__)


class LLMSystem:
    """One row of the table in :mod:`urllm.infer.variants`, as a Recommender."""

    def __init__(self, setup: InferSetup, name: str) -> None:
        self.setup = setup
        self.name = name
        self.variant: Variant = variant_for(name, setup.grounding.mode)
        self.grounder = make_grounder(self.variant.grounding, setup.grounding)
        self.data: TwoDomainData | None = None
        self.backbone = None
        self.llm: tuple | None = (
            None  # (model, tokenizer, adapter) for in-process inference; None = load setup.llm
        )
        self._split_of: dict[str, str] = {}
        self._rows: dict[str, dict[str, dict]] = {}
        self._stats: dict[int, dict[str, dict]] = defaultdict(dict)  # domain -> key -> per-record stats
        self.fusion: dict[int, FusionFit] = {}  # domain -> held-out fit (calibrated fusion)
        self._live = None  # urllm.infer.live.Live, made on the first live request

    def fit(self, data: TwoDomainData, run_dir: Path) -> None:
        """Nothing to train here: load the backbone and index the records of every split."""
        self.data = data
        self.backbone = self.setup.backbone(data)
        for split, recs in data.splits.items():
            for r in recs:
                self._split_of[record_key(r, data.catalogue)] = split

    # ------------------------------------------------------------------------------------------- rows

    def _load(self, split: str) -> dict[str, dict]:
        if split not in self._rows:
            self._rows[split] = JsonlStore(out_path(self.setup.paths, split, self.variant), {}).load()
        return self._rows[split]

    def rows(self, records: Sequence[Record]) -> list[dict]:
        """The JSONL row of each record, inferring missing ones in-process if allowed."""
        if self.data is None:
            raise RuntimeError(f"{self.name}: call fit() before score()")
        cat = self.data.catalogue
        keys = [record_key(r, cat) for r in records]
        unknown = [k for k in keys if k not in self._split_of]
        if unknown:
            raise DataError(f"{self.name}: record {unknown[0]} is not in the fitted data")
        for split in dict.fromkeys(self._split_of[k] for k in keys):
            have = self._load(split)
            if all(k in have for k in keys if self._split_of[k] == split):
                continue
            # infer every missing record of the split at once: evaluate() asks for them batch by batch
            # (training records: only those asked for, the held-out users of the fusion fit)
            pool = records if split == "train" else self.data.records(split)
            missing = [r for r in pool if record_key(r, cat) not in have]
            missing = [r for r in dict((record_key(r, cat), r) for r in missing).values()]
            path = out_path(self.setup.paths, split, self.variant)
            if not self.setup.infer.run_missing:
                raise DataError(
                    f"{path}: {len(missing)} records have no inference row (infer.run_missing=false)"
                )
            from urllm.infer.batch import run_inference

            logger.info("%s: inferring %d missing records in-process", self.name, len(missing))
            run_inference(
                self.setup,
                self.data,
                split,
                self.variant,
                records=missing,
                backbone=self.backbone,
                llm=self.llm,
            )
            self._rows.pop(split)
        rows = [self._load(self._split_of[k]).get(k) for k in keys]
        for r, row, k in zip(records, rows, keys, strict=True):
            if row is None or int(row["target"]) != r.target:
                raise DataError(
                    f"{out_path(self.setup.paths, self._split_of[k], self.variant)}: no valid row for {k}"
                )
        return rows

    # ------------------------------------------------------------------------------------------ score

    def groups(self, row: dict) -> tuple[list[tuple[int, ...]], list[float], list[Grounded]]:
        """LLM groups (item tuples), their scores, and the grounded outputs behind them (the
        variant's grounder)."""
        return self.grounder.groups(row)

    def _backbone_scores(self, records: Sequence[Record], domain: int) -> np.ndarray:
        """Backbone scores; out of fold for training records (the held-out fusion fit)."""
        cat = self.data.catalogue
        train = [self._split_of.get(record_key(r, cat)) == "train" for r in records]
        if any(train) and all(train):
            return out_of_fold_scores(self.backbone, records, domain)[0]
        return np.asarray(self.backbone.score(records, domain), dtype=np.float64)

    def fusion_fit(self, domain: int) -> FusionFit:
        """The calibrated fusion of ``domain``, fit once on the held-out training users' records."""
        if domain not in self.fusion:
            from urllm.prompts.rank import holdout_users

            g = self.setup.grounding
            held = holdout_users(
                self.data.records("train"), g.fusion_holdout_users, self.setup.seed, self.backbone
            )
            recs = [r for r in self.data.records("train") if r.user in held and r.domain == domain]
            fit = FusionFit()
            if recs:
                rows = self.rows(recs)
                base = self._backbone_scores(recs, domain)
                lo = self.data.catalogue.domain_range(domain).start
                held_out = []
                for r, row, b in zip(recs, rows, base, strict=True):
                    groups, scores, _ = self.groups(row)
                    held_out.append(HeldOut(groups, scores, b, lo, r.target))
                fit = fit_fusion(held_out, g.fusion_weights, g.fusion_confidence, self.setup.seed)
            else:
                logger.warning(
                    "%s: no held-out training records of domain %d: fusion weight 0", self.name, domain
                )
            logger.info("%s, domain %d: fusion %s", self.name, domain, fit.to_dict())
            self.fusion[domain] = fit
        return self.fusion[domain]

    def fuse_row(self, row: dict, base: np.ndarray, domain: int) -> np.ndarray:
        groups, scores, _ = self.groups(row)
        g = self.setup.grounding
        lo = self.data.catalogue.domain_range(domain).start
        if g.fusion == "calibrated":
            fit = self.fusion_fit(domain)
            return fuse_calibrated(groups, scores, base, lo, fit.weight, fit.temperature)
        return fuse(groups, scores, base, lo, g.fusion, g.fusion_weight)

    def score(self, records: Sequence[Record], domain: int) -> np.ndarray:
        """(len(records), n_items_of_domain) fused scores; records outside the fitted data run live."""
        if self.data is None:
            raise RuntimeError(f"{self.name}: call fit() before score()")
        for r in records:
            if r.domain != domain:
                raise ValueError(f"record of user {r.user} targets domain {r.domain}, scored for {domain}")
        cat = self.data.catalogue
        known = [record_key(r, cat) in self._split_of for r in records]
        rows: list[dict | None] = [None] * len(records)
        idx = [i for i, k in enumerate(known) if k]
        for i, row in zip(idx, self.rows([records[i] for i in idx]) if idx else [], strict=True):
            rows[i] = row
        # a row of the evaluation shortcut was written without the LLM because its target is not a
        # candidate: it read the target, so outside that evaluation (serving) the record runs live
        shortcut = self.setup.infer.eval_target_shortcut
        live = [i for i, row in enumerate(rows) if row is None or (row.get("llm_skipped") and not shortcut)]
        if live:
            for i, row in zip(live, self.live().rows([records[i] for i in live]), strict=True):
                rows[i] = row
        base = self._backbone_scores(records, domain)
        out = np.empty_like(base)
        for i, (r, row) in enumerate(zip(records, rows, strict=True)):
            self._stats[domain][row["key"]] = self._record_stats(row, self.groups(row)[2], r)
            out[i] = self.fuse_row(row, base[i], domain)
        return out

    # -------------------------------------------------------------------------------------- live

    def live(self):
        """In-process inference for records without a JSONL row (made once; loads the LLM if needed)."""
        if self._live is None:
            from urllm.infer.live import Live

            self._live = Live(self)
        return self._live

    def explain(self, record: Record, domain: int) -> dict:
        """One record, run live: its candidates with backbone, LLM and fused scores (JSON-able)."""
        return self.live().explain(record, domain)

    # -------------------------------------------------------------------------------------- metrics

    def _record_stats(self, row: dict, used: list[Grounded], record: Record) -> dict:
        item_domain = self.data.catalogue.item_domain
        domain = record.domain
        s: dict = {"used": sum(len(u.items) for u in used)}
        s["used_ood"] = sum(int(item_domain[i] != domain) for u in used for i in u.items)
        if "candidates" in row and used:
            cands = [int(c) for c in row["candidates"]]
            if record.target in cands:
                llm = np.array([u.score for u in used])
                pos = cands.index(record.target)
                better = int(np.sum(llm > llm[pos]))
                tied = int(np.sum(llm == llm[pos]))
                s["list"] = {
                    "position": pos + 1,
                    "llm_rr": float(np.mean(1.0 / np.arange(better + 1, better + tied + 1))),
                    "llm_top1": float(better == 0) / tied,
                }
        if "outputs" in row:
            raw = [Grounded.from_dict(d) for d in row["grounded"]]
            s["raw"] = len(raw)
            s["valid"] = sum(gr.valid_title for gr in raw)
            s["empty"] = sum(gr.method == "empty" for gr in raw)
            # out of domain: matched, and every matched item (kept or dropped) lies in another domain
            s["ood"] = sum(
                gr.matched and all(item_domain[i] != domain for i in (*gr.items, *gr.dropped)) for gr in raw
            )
            history = set(record.history)
            s["history"] = sum(bool(history.intersection((*gr.items, *gr.dropped))) for gr in raw)
            s["methods"] = Counter(gr.method for gr in raw)
        return s

    def extra_metrics(self) -> dict[str, dict[str, float | None]]:
        """Per target-domain name: raw and grounded out-of-domain and valid-title rates."""
        out: dict[str, dict[str, float | None]] = {}
        for d, per in sorted(self._stats.items()):
            stats = list(per.values())
            used = sum(s["used"] for s in stats)
            m: dict[str, float | None] = {
                "ood_rate": sum(s["used_ood"] for s in stats) / used if used else 0.0
            }
            n_raw = sum(s.get("raw", 0) for s in stats)
            for key, name in (
                ("ood", "raw_ood_rate"),
                ("valid", "raw_valid_title_rate"),
                ("empty", "raw_empty_rate"),
                ("history", "raw_in_history_rate"),
            ):
                m[name] = sum(s.get(key, 0) for s in stats) / n_raw if n_raw else None
            if self.grounder.refines and n_raw:
                methods: Counter = sum((s["methods"] for s in stats), Counter())
                for method in ("exact", "bm25", "knn", "none", "empty"):
                    m[f"refiner_{method}_rate"] = methods.get(method, 0) / n_raw
            if self.grounder.lists:
                m |= list_diagnostics(stats)
            if d in self.fusion:
                m |= self.fusion[d].to_dict()
            out[self.data.catalogue.domains[d]] = m
        return out


def list_diagnostics(stats: list[dict]) -> dict:
    """How the LLM orders the lists that hold the target, against the backbone's own order."""
    lists = [s["list"] for s in stats if "list" in s]
    out: dict = {
        "target_in_candidates_rate": len(lists) / len(stats) if stats else 0.0,
        "n_lists": len(lists),
    }
    if not lists:
        return out
    out["llm_top1_accuracy"] = float(np.mean([x["llm_top1"] for x in lists]))
    out["llm_list_mrr"] = float(np.mean([x["llm_rr"] for x in lists]))
    out["backbone_list_mrr"] = float(np.mean([1.0 / x["position"] for x in lists]))
    by: dict[str, dict] = {}
    for name, lo, hi in (("1", 1, 1), ("2-3", 2, 3), ("4-10", 4, 10), ("11+", 11, 10**9)):
        part = [x for x in lists if lo <= x["position"] <= hi]
        if part:
            by[name] = {"n": len(part), "llm_top1": float(np.mean([x["llm_top1"] for x in part]))}
            by[name]["llm_rr"] = float(np.mean([x["llm_rr"] for x in part]))
    out["by_backbone_position"] = by
    return out


def _factory(name: str):
    def make(setup: InferSetup) -> LLMSystem:
        return LLMSystem(setup, name)

    make.__name__ = name.replace("-", "_")
    return make


URLLM = _factory("urllm")
URLLM_CONSTRAINED = _factory("urllm-constrained")
URLLM_FREE = _factory("urllm-free")
URLLM_RERANK = _factory("urllm-rerank")
URLLM_NO_RETRIEVAL = _factory("urllm-no-retrieval")
URLLM_NO_GROUNDING = _factory("urllm-no-grounding")
