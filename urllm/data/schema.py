"""The canonical two-domain sequential data model.

Items have global integer ids ``0 .. n_items-1`` and are ordered by domain, so the items of domain ``d``
are the contiguous block ``catalogue.domain_range(d)``. A :class:`Record` is one prediction task: a
user's time-ordered mixed history and the next item in a named target domain. Every reader produces a
:class:`TwoDomainData`; it is stored with the ``datasets`` library as Parquet in the run directory.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")


class DataError(ValueError):
    """Bad input data; the message names the file and line (or key)."""


@dataclass(frozen=True)
class Catalogue:
    """All items of both domains, grouped by domain (domain 0 first)."""

    domains: tuple[str, str]
    item_domain: np.ndarray  # (n_items,) int64, non-decreasing
    titles: list[str]
    texts: list[str]  # attribute words / metadata text, "" when unknown
    source_ids: list[str]  # the item's id in the source files

    def __post_init__(self) -> None:
        n = len(self.item_domain)
        if not (len(self.titles) == len(self.texts) == len(self.source_ids) == n):
            raise DataError("catalogue columns have different lengths")
        if n and (
            np.any(np.diff(self.item_domain) < 0) or self.item_domain.min() < 0 or self.item_domain.max() > 1
        ):
            raise DataError("catalogue items must be grouped by domain: domain 0 first, then domain 1")

    @property
    def n_items(self) -> int:
        return len(self.item_domain)

    def domain_index(self, name: str) -> int:
        if name not in self.domains:
            raise DataError(f"unknown domain {name!r}; this dataset has {list(self.domains)}")
        return self.domains.index(name)

    def domain_range(self, d: int) -> range:
        """Global ids of domain ``d`` (a contiguous block)."""
        lo = int(np.searchsorted(self.item_domain, d, side="left"))
        hi = int(np.searchsorted(self.item_domain, d, side="right"))
        return range(lo, hi)

    def domain_size(self, d: int) -> int:
        return len(self.domain_range(d))


@dataclass(frozen=True)
class Record:
    """Predict ``target`` (an item of domain ``domain``) from the mixed ``history`` (oldest first)."""

    user: str
    history: tuple[int, ...]
    target: int
    domain: int


@dataclass
class TwoDomainData:
    """A catalogue and its records per split (``train``, ``valid`` and optionally ``test``)."""

    name: str
    catalogue: Catalogue
    splits: dict[str, list[Record]] = field(default_factory=dict)

    def records(self, split: str) -> list[Record]:
        if split not in self.splits:
            raise DataError(f"dataset {self.name!r} has no {split!r} split (has {sorted(self.splits)})")
        return self.splits[split]

    def validate(self) -> None:
        """Check every record against the catalogue (ids in range, target in its domain)."""
        n = self.catalogue.n_items
        for split, recs in self.splits.items():
            for i, r in enumerate(recs):
                where = f"{self.name} {split} record {i} (user {r.user})"
                if not r.history:
                    raise DataError(f"{where}: empty history")
                if not 0 <= r.target < n or any(not 0 <= h < n for h in r.history):
                    raise DataError(f"{where}: item id outside 0..{n - 1}")
                if self.catalogue.item_domain[r.target] != r.domain:
                    raise DataError(
                        f"{where}: target {r.target} is not in domain {self.catalogue.domains[r.domain]}"
                    )


def count_in_domain(history: Sequence[int], item_domain: np.ndarray, d: int) -> int:
    """Number of history items of domain ``d`` (the cold-start measure)."""
    return int(np.count_nonzero(item_domain[np.asarray(history, dtype=np.int64)] == d)) if history else 0


# --------------------------------------------------------------------------- storage (datasets / Parquet)


def save_data(data: TwoDomainData, out_dir: str | Path) -> None:
    """Write ``catalogue.parquet`` and ``<split>.parquet`` with the ``datasets`` library, then
    ``meta.json`` atomically: a folder without a readable ``meta.json`` was not finished."""
    from urllm.atomic import no_space_guard

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "meta.json").unlink(missing_ok=True)
    with no_space_guard(out):
        _write_parquets(data, out)


def _write_parquets(data: TwoDomainData, out: Path) -> None:
    from datasets import Dataset

    from urllm.atomic import atomic_write_json

    cat = data.catalogue
    Dataset.from_dict(
        {
            "item_id": list(range(cat.n_items)),
            "domain": [cat.domains[d] for d in cat.item_domain.tolist()],
            "title": cat.titles,
            "text": cat.texts,
            "source_id": cat.source_ids,
        }
    ).to_parquet(str(out / "catalogue.parquet"))
    for split, recs in data.splits.items():
        Dataset.from_dict(
            {
                "user": [r.user for r in recs],
                "history": [list(r.history) for r in recs],
                "target": [r.target for r in recs],
                "target_domain": [cat.domains[r.domain] for r in recs],
                "split": [split] * len(recs),
            }
        ).to_parquet(str(out / f"{split}.parquet"))
    atomic_write_json(out / "meta.json", {"name": data.name, "domains": list(cat.domains)}, indent=None)


def load_data(in_dir: str | Path) -> TwoDomainData:
    """Read what :func:`save_data` wrote."""
    from datasets import Dataset

    src = Path(in_dir)
    if not (src / "catalogue.parquet").is_file():
        raise DataError(f"{src}: no catalogue.parquet (run the prepare stage first)")
    try:
        meta = json.loads((src / "meta.json").read_text())
    except (OSError, ValueError):
        raise DataError(
            f"{src / 'meta.json'}: missing or unreadable (an interrupted prepare stage; rerun it)"
        ) from None
    domains = (meta["domains"][0], meta["domains"][1])
    c = Dataset.from_parquet(str(src / "catalogue.parquet")).to_dict()
    cat = Catalogue(
        domains=domains,
        item_domain=np.array([domains.index(d) for d in c["domain"]], dtype=np.int64),
        titles=c["title"],
        texts=c["text"],
        source_ids=c["source_id"],
    )
    splits = {}
    for split in SPLITS:
        f = src / f"{split}.parquet"
        if f.is_file():
            t = Dataset.from_parquet(str(f)).to_dict()
            splits[split] = [
                Record(user=u, history=tuple(h), target=int(y), domain=domains.index(d))
                for u, h, y, d in zip(t["user"], t["history"], t["target"], t["target_domain"], strict=True)
            ]
    return TwoDomainData(name=meta["name"], catalogue=cat, splits=splits)
