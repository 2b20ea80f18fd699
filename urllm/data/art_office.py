"""Reader for the URLLM / C2DSR two-domain format (Amazon Art-Office).

Item lists: CSV ``idBefore,item_title,idAfter,item_attribute``, one file per domain; ``idAfter`` is the
global item id and the ids of domain 0 come before those of domain 1. Sequences: one record per line,
tab-separated ``user_id``, ``target_position``, then ``item|pos|pos`` fields in time order; the last
interaction is the target, the rest is the history.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np

from urllm.data.config import DataConfig
from urllm.data.schema import Catalogue, DataError, Record, TwoDomainData

logger = logging.getLogger(__name__)

ITEM_COLUMNS = ("idBefore", "item_title", "idAfter", "item_attribute")


def _require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    return path


def read_item_list(path: Path) -> list[tuple[int, str, str]]:
    """``(global_id, title, attributes)`` rows of one domain's item list."""
    _require_file(path, "item list")
    rows = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header[:4]) != ITEM_COLUMNS:
            raise DataError(f"{path}:1: expected header {','.join(ITEM_COLUMNS)}, got {header}")
        for lineno, row in enumerate(reader, start=2):
            if len(row) != 4:
                raise DataError(f"{path}:{lineno}: expected 4 columns, got {len(row)}")
            try:
                gid = int(row[2])
            except ValueError:
                raise DataError(f"{path}:{lineno}: idAfter {row[2]!r} is not an integer") from None
            rows.append((gid, row[1].strip(), row[3].strip()))
    if not rows:
        raise DataError(f"{path}: no items")
    return rows


def build_catalogue(cfg: DataConfig) -> Catalogue:
    """Both item lists as one catalogue; ids must be 0..N-1, each domain a contiguous block in order."""
    if len(cfg.item_files) != 2:
        raise DataError(f"data.item_files must list two files (one per domain), got {cfg.item_files}")
    ids, titles, texts, domain, where = [], [], [], [], []
    for d, rel in enumerate(cfg.item_files):
        path = cfg.path(rel)
        for row, (gid, title, attrs) in enumerate(read_item_list(path)):
            ids.append(gid)
            titles.append(title)
            texts.append(attrs)
            domain.append(d)
            where.append(f"{path}:{row + 2}")  # read_item_list keeps every row: row k is on line k + 2
    order = np.argsort(np.array(ids), kind="stable")
    sorted_ids = np.array(ids)[order]
    dup = np.flatnonzero(np.diff(sorted_ids) == 0)
    if len(dup):
        k = int(dup[0])
        raise DataError(
            f"{where[order[k + 1]]}: duplicate item id {int(sorted_ids[k])} (also on {where[order[k]]})"
        )
    gap = np.flatnonzero(sorted_ids != np.arange(len(ids)))
    if len(gap):
        k = int(gap[0])
        raise DataError(
            f"{where[order[k]]}: item id {int(sorted_ids[k])} breaks the id range 0..{len(ids) - 1} "
            f"(ids must be exactly 0..N-1 over both item lists)"
        )
    item_domain = np.array(domain, dtype=np.int64)[order]
    if np.any(np.diff(item_domain) < 0):
        k = int(np.argmax(np.diff(item_domain) < 0)) + 1  # a domain-0 item after a domain-1 item
        raise DataError(
            f"{where[order[k]]}: item {int(sorted_ids[k])} has an id inside the id block of "
            f"{cfg.item_files[1]} (domain {cfg.domains[0]} ids must come first)"
        )
    return Catalogue(
        domains=(cfg.domains[0], cfg.domains[1]),
        item_domain=item_domain,
        titles=[titles[i] for i in order],
        texts=[texts[i] for i in order],
        source_ids=[str(i) for i in sorted_ids.tolist()],
    )


def read_sequences(path: Path, catalogue: Catalogue) -> list[Record]:
    """One :class:`Record` per line; every problem names the file and line."""
    _require_file(path, "sequence file")
    n = catalogue.n_items
    records = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            fields = line.rstrip("\n").rstrip("\t").split("\t")
            if fields == [""]:
                continue  # blank line (e.g. at the end of the file)
            if len(fields) < 3:
                raise DataError(f"{path}:{lineno}: expected user, target position and interactions")
            items = []
            for f in fields[2:]:
                head = f.split("|", 1)[0]
                try:
                    item = int(head)
                except ValueError:
                    raise DataError(
                        f"{path}:{lineno}: interaction {f!r} does not start with an item id"
                    ) from None
                if not 0 <= item < n:
                    raise DataError(f"{path}:{lineno}: unknown item id {item} (catalogue has 0..{n - 1})")
                items.append(item)
            if len(items) < 2:
                raise DataError(f"{path}:{lineno}: empty history (only a target)")
            target = items[-1]
            records.append(
                Record(
                    user=fields[0],
                    history=tuple(items[:-1]),
                    target=target,
                    domain=int(catalogue.item_domain[target]),
                )
            )
    if not records:
        raise DataError(f"{path}: no records")
    return records


def load_art_office(cfg: DataConfig) -> TwoDomainData:
    catalogue = build_catalogue(cfg)
    splits = {"train": read_sequences(cfg.path(cfg.train_file), catalogue)}
    splits["valid"] = read_sequences(cfg.path(cfg.valid_file), catalogue)
    if cfg.test_file:
        splits["test"] = read_sequences(cfg.path(cfg.test_file), catalogue)
    logger.info(
        "loaded %s: %d items, %s", cfg.name, catalogue.n_items, {k: len(v) for k, v in splits.items()}
    )
    return TwoDomainData(name=cfg.name, catalogue=catalogue, splits=splits)


def write_art_office(data: TwoDomainData, out_dir: Path) -> dict[str, str]:
    """Write ``data`` in this format (item lists + one sequence file per split); returns the file names.

    Used to turn synthetic data into files the pipeline reads like the real dataset.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    cat = data.catalogue
    names = {}
    for d, dom in enumerate(cat.domains):
        name = f"items_{dom}.csv"
        with (out_dir / name).open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(ITEM_COLUMNS)
            for local, gid in enumerate(cat.domain_range(d)):
                w.writerow([local, cat.titles[gid], gid, cat.texts[gid]])
        names[f"items_{d}"] = name
    for split, recs in data.splits.items():
        name = f"{split}.txt"
        with (out_dir / name).open("w", encoding="utf-8") as fh:
            for r in recs:
                seq = (*r.history, r.target)
                fields = "\t".join(f"{item}|{pos}|{pos}" for pos, item in enumerate(seq))
                fh.write(f"{r.user}\t{len(seq) - 1}\t{fields}\t\n")
        names[split] = name
    return names
