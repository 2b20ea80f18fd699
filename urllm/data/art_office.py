"""Reader for the URLLM / C2DSR two-domain format (Amazon Art-Office).

Item lists: CSV ``idBefore,item_title,idAfter,item_attribute``, one file per domain; ``idAfter`` is the
global item id and the ids of domain 0 come before those of domain 1. Sequences: one record per line,
tab-separated ``user_id``, ``target_position``, then ``item|pos|pos`` fields in time order; the last
interaction is the target, the rest is the history. ``target_position`` must be the index of the last
interaction. Files are read by :func:`urllm.data.textfile.read_lines` (UTF-8, BOM, CRLF, blank lines);
what else is rejected or warned about is listed in ``docs/data.md``.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np

from urllm.data.config import DataConfig
from urllm.data.schema import Catalogue, DataError, Record, TwoDomainData
from urllm.data.textfile import read_lines, require_file

logger = logging.getLogger(__name__)

ITEM_COLUMNS = ("idBefore", "item_title", "idAfter", "item_attribute")


def read_item_list(path: Path) -> list[tuple[int, str, str, int]]:
    """``(global_id, title, attributes, line)`` rows of one domain's item list."""
    require_file(path, "item list")
    lines = read_lines(path, "item list")
    where = {"line": 0}

    def texts():
        for lineno, text in lines:
            where["line"] = lineno
            yield text + "\n"

    rows = []
    untitled: list[int] = []
    try:
        reader = csv.reader(texts())
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header[:4]) != ITEM_COLUMNS:
            raise DataError(f"{path}:{where['line']}: expected header {','.join(ITEM_COLUMNS)}, got {header}")
        for row in reader:
            lineno = where["line"]
            if len(row) != 4:
                raise DataError(f"{path}:{lineno}: expected 4 columns, got {len(row)}")
            try:
                gid = int(row[2])
            except ValueError:
                raise DataError(f"{path}:{lineno}: idAfter {row[2]!r} is not an integer") from None
            if not row[1].strip():
                untitled.append(lineno)
            rows.append((gid, row[1].strip(), row[3].strip(), lineno))
    except csv.Error as exc:
        raise DataError(f"{path}:{where['line']}: malformed CSV ({exc})") from None
    if not rows:
        raise DataError(f"{path}: no items (only a header)")
    if untitled:
        logger.warning(
            "%s:%d: %d item%s with an empty title (kept; an LLM's answer can never be grounded to them)",
            path, untitled[0], len(untitled), "s" * (len(untitled) > 1),
        )  # fmt: skip
    return rows


def build_catalogue(cfg: DataConfig) -> Catalogue:
    """Both item lists as one catalogue; ids must be 0..N-1, each domain a contiguous block in order."""
    if len(cfg.item_files) != 2:
        raise DataError(f"data.item_files must list two files (one per domain), got {cfg.item_files}")
    ids, titles, texts, domain, where = [], [], [], [], []
    for d, rel in enumerate(cfg.item_files):
        path = cfg.path(rel)
        for gid, title, attrs, lineno in read_item_list(path):
            ids.append(gid)
            titles.append(title)
            texts.append(attrs)
            domain.append(d)
            where.append(f"{path}:{lineno}")
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


def parse_interaction(field: str, path: Path, lineno: int, n: int) -> int:
    """The item id of one ``item|pos|pos`` field (the positions must be integers when present)."""
    parts = field.split("|")
    try:
        item = int(parts[0])
    except ValueError:
        raise DataError(f"{path}:{lineno}: interaction {field!r} does not start with an item id") from None
    if any(not p.strip().lstrip("-").isdigit() for p in parts[1:]):
        raise DataError(f"{path}:{lineno}: interaction {field!r} has a non-integer position")
    if not 0 <= item < n:
        raise DataError(f"{path}:{lineno}: unknown item id {item} (catalogue has 0..{n - 1})")
    return item


def read_sequences(path: Path, catalogue: Catalogue) -> tuple[list[Record], list[int]]:
    """One :class:`Record` per line, and the line of each; every problem names the file and line.
    An exact repeat of an earlier line is dropped, counted in one WARNING."""
    require_file(path, "sequence file")
    n = catalogue.n_items
    records, where = [], []
    seen: dict[str, int] = {}
    dups: list[tuple[int, int]] = []
    for lineno, line in read_lines(path, "sequence file"):
        fields = line.rstrip("\t").split("\t")
        if len(fields) < 3:
            raise DataError(f"{path}:{lineno}: expected user, target position and interactions")
        if not fields[0].strip():
            raise DataError(f"{path}:{lineno}: empty user id")
        try:
            target_pos = int(fields[1])
        except ValueError:
            raise DataError(f"{path}:{lineno}: target position {fields[1]!r} is not an integer") from None
        items = [parse_interaction(f, path, lineno, n) for f in fields[2:]]
        if len(items) < 2:
            raise DataError(f"{path}:{lineno}: empty history (only a target)")
        if target_pos != len(items) - 1:
            raise DataError(
                f"{path}:{lineno}: target position {target_pos} is not the last of the "
                f"{len(items)} interactions (expected {len(items) - 1})"
            )
        key = "\t".join(fields)
        if key in seen:
            dups.append((lineno, seen[key]))
            continue
        seen[key] = lineno
        target = items[-1]
        records.append(
            Record(
                user=fields[0],
                history=tuple(items[:-1]),
                target=target,
                domain=int(catalogue.item_domain[target]),
            )
        )
        where.append(lineno)
    if dups:
        logger.warning(
            "%s:%d: dropped %d exact duplicate record%s (the first repeats line %d)",
            path, dups[0][0], len(dups), "s" * (len(dups) > 1), dups[0][1],
        )  # fmt: skip
    return records, where


def warn_shared_users(splits: dict[str, tuple[Path, list[Record], list[int]]]) -> None:
    """One WARNING per pair of splits that share users (their evaluation would see trained users)."""
    names = list(splits)
    for i, a in enumerate(names):
        first_a = {}
        for r, line in zip(splits[a][1], splits[a][2], strict=True):
            first_a.setdefault(r.user, line)
        for b in names[i + 1 :]:
            shared = [(r.user, line) for r, line in zip(splits[b][1], splits[b][2], strict=True)
                      if r.user in first_a]  # fmt: skip
            users = dict(shared)
            if users:
                user, line = shared[0]
                logger.warning(
                    "%s:%d: %d user%s of %s also in %s (first: user %r, %s:%d); splits should be user-disjoint",
                    splits[b][0], line, len(users), "s" * (len(users) > 1), b, a, user, splits[a][0],
                    first_a[user],
                )  # fmt: skip


def load_art_office(cfg: DataConfig) -> TwoDomainData:
    catalogue = build_catalogue(cfg)
    files = {"train": cfg.train_file, "valid": cfg.valid_file}
    if cfg.test_file:
        files["test"] = cfg.test_file
    read = {k: (cfg.path(f), *read_sequences(cfg.path(f), catalogue)) for k, f in files.items()}
    warn_shared_users(read)
    splits = {k: v[1] for k, v in read.items()}
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
