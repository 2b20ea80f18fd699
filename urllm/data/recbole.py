"""Reader for RecBole atomic files: a ``.inter`` and a ``.item`` file split into two domains.

Both files are tab-separated with a typed header (``user_id:token	item_id:token	rating:float ...``).
Items are assigned to a domain by the space-separated values of one item field
(``data.recbole.domain_field``): an item goes to the domain of its first value that any list of
``data.recbole.domain_values`` names; items matching no list are dropped with their interactions.
Per user the interactions are ordered by time (ties keep the file order), then
:func:`urllm.data.build.assemble` makes user-disjoint splits with one record per target domain.
"""

from __future__ import annotations

import logging
from operator import itemgetter
from pathlib import Path

from urllm.data.build import ItemInfo, assemble, sample_users
from urllm.data.config import DataConfig, RecBoleConfig
from urllm.data.fetch import FETCH_HINT, fetch_movielens
from urllm.data.schema import DataError, TwoDomainData
from urllm.data.textfile import read_lines

logger = logging.getLogger(__name__)

FIELD_TYPES = ("token", "token_seq", "float", "float_seq")


def read_header(path: Path, line: str) -> list[str]:
    """Column names of a typed header line ``name:type<TAB>name:type ...``."""
    names = []
    for i, col in enumerate(line.rstrip("\r\n").split("\t")):
        name, sep, ftype = col.partition(":")
        if not sep or not name or ftype not in FIELD_TYPES:
            raise DataError(
                f"{path}:1: header column {i + 1} is {col!r}, expected name:type with type one of "
                f"{', '.join(FIELD_TYPES)}"
            )
        names.append(name)
    if len(set(names)) != len(names):
        raise DataError(f"{path}:1: duplicate column names in the header {names}")
    return names


def column(path: Path, names: list[str], name: str, what: str) -> int:
    if name not in names:
        raise DataError(f"{path}:1: no column {name!r} ({what}); the header has {', '.join(names)}")
    return names.index(name)


def fetch_if_missing(data_cfg) -> None:
    """Fetch MovieLens-1M when a RecBole file is missing and ``data.recbole.fetch`` is on (before hashing)."""
    rc = data_cfg.recbole
    files = [data_cfg.path(rc.inter_file), data_cfg.path(rc.item_file)]
    if rc.fetch and not all(p.is_file() for p in files):
        logger.info("%s is missing: fetching MovieLens-1M into %s", files[0], files[0].parent)
        fetch_movielens(files[0].parent)


def _open(path: Path, fetch: bool):
    """The non-blank lines of ``path`` (:func:`~urllm.data.textfile.read_lines`: UTF-8, BOM, CRLF)."""
    if not path.is_file():
        if fetch:
            logger.info("%s is missing: fetching MovieLens-1M into %s", path, path.parent)
            fetch_movielens(path.parent)
        if not path.is_file():
            raise DataError(
                f"file not found: {path}; for MovieLens-1M run: {FETCH_HINT.format(dest=path.parent)}"
            )
    return read_lines(path)


def domain_lookup(cfg: DataConfig) -> dict[str, int]:
    """Field value -> domain index, from ``data.recbole.domain_values``."""
    rc = cfg.recbole
    if not rc.domain_values or not any(rc.domain_values.values()):
        raise DataError("data.recbole.domain_values is empty: map each domain name to field values")
    if set(rc.domain_values) != set(cfg.domains):
        raise DataError(
            f"data.recbole.domain_values must have the keys {cfg.domains} (data.domains), "
            f"got {sorted(rc.domain_values)}"
        )
    lookup: dict[str, int] = {}
    for d, dname in enumerate(cfg.domains):
        if not rc.domain_values[dname]:
            raise DataError(f"data.recbole.domain_values.{dname} is empty")
        for v in rc.domain_values[dname]:
            if lookup.get(v, d) != d:
                raise DataError(f"data.recbole.domain_values: value {v!r} is listed for both domains")
            lookup[v] = d
    return lookup


def read_items(path: Path, cfg: DataConfig) -> tuple[dict[str, int], list[ItemInfo | None]]:
    """Item id -> index, and per index its :class:`ItemInfo` (``None`` when it is in no domain)."""
    rc = cfg.recbole
    lookup = domain_lookup(cfg)
    fh = _open(path, rc.fetch)
    untitled: list[int] = []
    names = read_header(path, next(fh)[1])
    c_id = column(path, names, rc.item_field, "data.recbole.item_field")
    c_dom = column(path, names, rc.domain_field, "data.recbole.domain_field")
    c_title = column(path, names, rc.title_field, "data.recbole.title_field")
    c_text = [column(path, names, f, "data.recbole.text_fields") for f in rc.text_fields]
    index: dict[str, int] = {}
    first_line: dict[str, int] = {}
    items: list[ItemInfo | None] = []
    for lineno, line in fh:
        fields = line.split("\t")
        if len(fields) != len(names):
            raise DataError(f"{path}:{lineno}: expected {len(names)} tab-separated fields, got {len(fields)}")
        iid = fields[c_id]
        if not iid.strip():
            raise DataError(f"{path}:{lineno}: empty {rc.item_field}")
        if iid in index:
            raise DataError(f"{path}:{lineno}: duplicate item id {iid!r} (first on line {first_line[iid]})")
        index[iid] = len(items)
        first_line[iid] = lineno
        domain = next((lookup[v] for v in fields[c_dom].split() if v in lookup), None)
        if domain is None:
            items.append(None)
            continue
        text = " ".join(fields[c].strip() for c in c_text if fields[c].strip())
        if not fields[c_title].strip():
            untitled.append(lineno)
        items.append(ItemInfo(domain, fields[c_title].strip(), text, iid))
    if not items:
        raise DataError(f"{path}: no items (only a header)")
    if untitled:
        logger.warning(
            "%s:%d: %d item%s with an empty %s (kept; an LLM's answer can never be grounded to them)",
            path, untitled[0], len(untitled), "s" * (len(untitled) > 1), rc.title_field,
        )  # fmt: skip
    return index, items


def read_interactions(
    path: Path, index: dict[str, int], items: list[ItemInfo | None], rc: RecBoleConfig
) -> dict[str, list[int]]:
    """User -> item indices ordered by time (ties keep the file order), in-domain and rated >= min_rating."""
    per_user: dict[str, list[tuple[float, int]]] = {}
    n_out_of_domain = n_low = 0
    seen: dict[tuple[str, ...], int] = {}
    dups: list[tuple[int, int]] = []
    fh = _open(path, rc.fetch)
    names = read_header(path, next(fh)[1])
    c_user = column(path, names, rc.user_field, "data.recbole.user_field")
    c_item = column(path, names, rc.item_field, "data.recbole.item_field")
    c_time = column(path, names, rc.time_field, "data.recbole.time_field")
    c_rating = column(path, names, rc.rating_field, "data.recbole.rating_field") if rc.rating_field else -1
    n_cols = len(names)
    for lineno, line in fh:
        fields = line.split("\t")
        if len(fields) != n_cols:
            raise DataError(f"{path}:{lineno}: expected {n_cols} tab-separated fields, got {len(fields)}")
        if not fields[c_user].strip():
            raise DataError(f"{path}:{lineno}: empty {rc.user_field}")
        key = tuple(fields)
        if key in seen:  # the same line twice: counted once
            dups.append((lineno, seen[key]))
            continue
        seen[key] = lineno
        item = index.get(fields[c_item])
        if item is None:
            raise DataError(f"{path}:{lineno}: item {fields[c_item]!r} is not in the item file")
        try:
            t = float(fields[c_time])
        except ValueError:
            raise DataError(f"{path}:{lineno}: {rc.time_field} {fields[c_time]!r} is not a number") from None
        if c_rating >= 0:
            try:
                rating = float(fields[c_rating])
            except ValueError:
                raise DataError(
                    f"{path}:{lineno}: {rc.rating_field} {fields[c_rating]!r} is not a number"
                ) from None
            if rating < rc.min_rating:
                n_low += 1
                continue
        if items[item] is None:
            n_out_of_domain += 1
            continue
        per_user.setdefault(fields[c_user], []).append((t, item))
    if dups:
        logger.warning(
            "%s:%d: dropped %d exact duplicate interaction%s (the first repeats line %d)",
            path, dups[0][0], len(dups), "s" * (len(dups) > 1), dups[0][1],
        )  # fmt: skip
    logger.info(
        "%s: dropped %d interactions with items in no domain and %d rated below %s",
        path.name,
        n_out_of_domain,
        n_low,
        rc.min_rating,
    )
    out = {}
    for user, pairs in per_user.items():
        pairs.sort(key=itemgetter(0))  # stable: equal times keep the file order
        out[user] = [i for _, i in pairs]
    return out


def load_recbole(cfg: DataConfig) -> TwoDomainData:
    """Two-domain data from RecBole atomic files (see the module docstring)."""
    rc = cfg.recbole
    index, items = read_items(cfg.path(rc.item_file), cfg)
    seqs = read_interactions(cfg.path(rc.inter_file), index, items, rc)
    item_domain = [-1 if it is None else it.domain for it in items]
    kept = []
    for user, seq in seqs.items():
        n1 = sum(item_domain[i] for i in seq)  # domains are 0/1: the sum counts domain-1 items
        if len(seq) - n1 >= rc.min_per_domain and n1 >= rc.min_per_domain:
            kept.append(user)
    logger.info(
        "%d of %d users have >= %d interactions in each domain", len(kept), len(seqs), rc.min_per_domain
    )
    kept = sample_users(kept, rc.max_users, rc.seed)
    return assemble(
        cfg.name,
        (cfg.domains[0], cfg.domains[1]),
        [it if it is not None else ItemInfo(-1, "", "", "") for it in items],
        {u: seqs[u] for u in kept},
        max_history=rc.max_history,
        valid_frac=rc.valid_frac,
        test_frac=rc.test_frac,
        seed=rc.seed,
    )
