"""Reader for Amazon Review Data JSON lines (2018 or 2023 release): two categories = two domains.

Per domain one reviews file and one metadata file (plain or ``.gz``), field names of either release:

| | 2018 | 2023 |
|---|---|---|
| review user, item, time | ``reviewerID``, ``asin``, ``unixReviewTime`` (s) | ``user_id``, ``parent_asin`` (else ``asin``), ``timestamp`` (ms) |
| meta id, title | ``asin``, ``title`` | ``parent_asin``, ``title`` |
| meta text | ``category`` (or ``categories``), ``brand`` | ``categories``, ``main_category``, ``store``, ``details.Brand`` |

Items are keyed by (domain, id): a product listed in both categories is two items. Reviews of items
without metadata (or with an empty title) are dropped with a warning; repeated reviews of an item by
the same user keep the earliest. Then: users of both domains only, an iterative k-core on the merged
data (users and items with >= k interactions, users with >= ``min_per_domain`` in each domain), and
:func:`urllm.data.build.assemble` (chronological sequences, user-disjoint splits, one record per target
domain).
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from urllm.data.build import ItemInfo, assemble
from urllm.data.config import AmazonConfig, DataConfig
from urllm.data.schema import DataError, TwoDomainData
from urllm.data.textfile import read_lines

logger = logging.getLogger(__name__)


def read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` of a JSON-lines file (``.gz`` is decompressed;
    :func:`~urllm.data.textfile.read_lines`: UTF-8, BOM, CRLF, blank lines, truncated archives)."""
    for lineno, line in read_lines(path):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{lineno}: invalid JSON: {exc.msg} (column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        yield lineno, obj


def _require(obj: dict, key: str, path: Path, lineno: int):
    value = obj.get(key)
    if value is None or value == "":
        raise DataError(f"{path}:{lineno}: missing required key {key!r}")
    return value


def _words(value) -> list[str]:
    """Strings of a (nested) list/str value, HTML entities decoded, empty ones dropped."""
    if isinstance(value, str):
        s = " ".join(html.unescape(value).split())
        return [s] if s else []
    if isinstance(value, (list, tuple)):
        return [w for v in value for w in _words(v)]
    return []


def meta_item(obj: dict, path: Path, lineno: int) -> tuple[str, str, str]:
    """``(item id, title, text)`` of one metadata line of either release."""
    if "parent_asin" in obj:  # 2023
        iid = str(_require(obj, "parent_asin", path, lineno))
        details = obj.get("details") if isinstance(obj.get("details"), dict) else {}
        text = _words(obj.get("main_category")) + _words(obj.get("categories"))
        text += _words(obj.get("store")) or _words(details.get("Brand"))
    elif "asin" in obj:  # 2018 (``categories`` is the 2014 name)
        iid = str(_require(obj, "asin", path, lineno))
        text = _words(obj.get("category", obj.get("categories"))) + _words(obj.get("brand"))
    else:
        raise DataError(f"{path}:{lineno}: missing required key 'asin' (2018) or 'parent_asin' (2023)")
    title = " ".join(_words(obj.get("title")))
    return iid, title, " ".join(text)


def review_row(obj: dict, path: Path, lineno: int) -> tuple[str, str, float]:
    """``(user, item id, time in seconds)`` of one review line of either release."""
    if "reviewerID" in obj:  # 2018
        user = _require(obj, "reviewerID", path, lineno)
        item = _require(obj, "asin", path, lineno)
        key, t, scale = "unixReviewTime", obj.get("unixReviewTime"), 1.0
    elif "user_id" in obj:  # 2023: milliseconds; parent_asin groups the variants of a product
        user = _require(obj, "user_id", path, lineno)
        item = obj.get("parent_asin") or _require(obj, "asin", path, lineno)
        key, t, scale = "timestamp", obj.get("timestamp"), 1e-3
    else:
        raise DataError(f"{path}:{lineno}: missing required key 'reviewerID' (2018) or 'user_id' (2023)")
    if t is None:
        raise DataError(f"{path}:{lineno}: missing required key {key!r}")
    if isinstance(t, bool) or not isinstance(t, (int, float)):
        raise DataError(f"{path}:{lineno}: {key} {t!r} is not a number")
    return str(user), str(item), float(t) * scale


def read_domain(
    d: int, review_path: Path, meta_path: Path, items: list[ItemInfo], rows: list[tuple[str, int, float]]
) -> None:
    """Append domain ``d``'s items to ``items`` and its reviews ``(user, item index, time)`` to ``rows``."""
    index: dict[str, int] = {}
    n_untitled = n_dup = 0
    for lineno, obj in read_jsonl(meta_path):
        iid, title, text = meta_item(obj, meta_path, lineno)
        if iid in index:
            n_dup += 1  # the 2018 metadata repeats some products
            continue
        if not title:
            index[iid] = -1
            n_untitled += 1
            continue
        index[iid] = len(items)
        items.append(ItemInfo(d, title, text, iid))
    if n_dup:
        logger.info("%s: %d repeated metadata lines kept their first occurrence", meta_path.name, n_dup)
    dropped: set[str] = set()
    n_dropped = 0
    for lineno, obj in read_jsonl(review_path):
        user, iid, t = review_row(obj, review_path, lineno)
        i = index.get(iid, -1)
        if i < 0:
            dropped.add(iid)
            n_dropped += 1
            continue
        rows.append((user, i, t))
    if n_dropped or n_untitled:
        logger.warning(
            "%s: dropped %d reviews of %d items without metadata or title (%d metadata lines had no title)",
            review_path,
            n_dropped,
            len(dropped),
            n_untitled,
        )


def k_core(user: np.ndarray, item: np.ndarray, dom: np.ndarray, ac: AmazonConfig) -> np.ndarray:
    """Mask of the interactions that survive the iterative k-core with the per-domain user minimum."""
    keep = np.ones(len(user), dtype=bool)
    n_users, n_items = int(user.max()) + 1, int(item.max()) + 1
    while True:
        u, i, d = user[keep], item[keep], dom[keep]
        per_dom = [np.bincount(u[d == k], minlength=n_users) for k in (0, 1)]
        ok_user = (per_dom[0] + per_dom[1] >= ac.k_core) & (np.minimum(*per_dom) >= ac.min_per_domain)
        ok_item = np.bincount(i, minlength=n_items) >= ac.k_core
        new = keep & ok_user[user] & ok_item[item]
        if new.sum() == keep.sum():
            return keep
        keep = new


def load_amazon(cfg: DataConfig) -> TwoDomainData:
    """Two-domain data from Amazon reviews + metadata (see the module docstring)."""
    ac = cfg.amazon
    for key in ("review_files", "meta_files"):
        if len(getattr(ac, key)) != 2:
            raise DataError(f"data.amazon.{key} must list two files (one per domain), got {getattr(ac, key)}")
    items: list[ItemInfo] = []
    rows: list[tuple[str, int, float]] = []
    for d in (0, 1):
        read_domain(d, cfg.path(ac.review_files[d]), cfg.path(ac.meta_files[d]), items, rows)
    if not rows:
        raise DataError(f"{cfg.name}: no reviews with metadata in {ac.review_files}")
    user_ids: dict[str, int] = {}
    user = np.array([user_ids.setdefault(u, len(user_ids)) for u, _, _ in rows], dtype=np.int64)
    item = np.array([i for _, i, _ in rows], dtype=np.int64)
    time = np.array([t for _, _, t in rows], dtype=np.float64)
    dom = np.array([items[i].domain for i in item.tolist()], dtype=np.int64)
    # chronological per user; lexsort is stable, so equal times keep the file order (domain X first)
    order = np.lexsort((time, user))
    user, item, dom = user[order], item[order], dom[order]
    # a repeated review of the same item by the same user keeps the earliest
    _, first = np.unique(user * len(items) + item, return_index=True)
    uniq = np.zeros(len(user), dtype=bool)
    uniq[first] = True
    if (~uniq).any():
        logger.warning(
            "%s: dropped %d repeated reviews of the same item (kept the earliest)",
            cfg.name,
            int((~uniq).sum()),
        )
    user, item, dom = user[uniq], item[uniq], dom[uniq]
    keep = k_core(user, item, dom, ac)
    names = list(user_ids)
    seqs: dict[str, list[int]] = {}
    for u, i in zip(user[keep].tolist(), item[keep].tolist(), strict=True):
        seqs.setdefault(names[u], []).append(i)
    logger.info(
        "%s: %d of %d users and %d of %d interactions left after the %d-core with both domains",
        cfg.name,
        len(seqs),
        len(user_ids),
        int(keep.sum()),
        len(keep),
        ac.k_core,
    )
    return assemble(
        cfg.name,
        (cfg.domains[0], cfg.domains[1]),
        items,
        seqs,
        max_history=ac.max_history,
        valid_frac=ac.valid_frac,
        test_frac=ac.test_frac,
        seed=ac.seed,
    )
