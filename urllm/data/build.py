"""From per-user chronological interactions to :class:`TwoDomainData` (shared by the raw-data readers).

The RecBole and Amazon readers both end with the same steps: a seeded user sample, a user-disjoint
seeded train/valid/test split, a catalogue of the items that remain (grouped by domain), and one
:class:`Record` per user and target domain. The target of a domain is the user's *last* item of that
domain; the history is everything the user did before it (both domains, oldest first, the most recent
``max_history`` kept), so nothing after the target can leak into its history.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from urllm.data.schema import SPLITS, Catalogue, DataError, Record, TwoDomainData

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ItemInfo:
    """One candidate catalogue item as the reader found it."""

    domain: int
    title: str
    text: str
    source_id: str


def sample_users(users: Sequence[str], max_users: int, seed: int) -> list[str]:
    """At most ``max_users`` users (seeded, keeping the input order); 0 keeps everyone."""
    if max_users <= 0 or max_users >= len(users):
        return list(users)
    keep = np.sort(np.random.default_rng(seed).choice(len(users), size=max_users, replace=False))
    return [users[i] for i in keep.tolist()]


def split_users(users: Sequence[str], valid_frac: float, test_frac: float, seed: int) -> dict[str, str]:
    """User -> split name; a seeded permutation, test users first, then valid, the rest train."""
    n = len(users)
    n_test = int(round(test_frac * n))
    n_valid = int(round(valid_frac * n))
    if n - n_test - n_valid < 1:
        raise DataError(f"{n} users are too few for valid_frac={valid_frac} and test_frac={test_frac}")
    # a different stream from sample_users so that sampling and splitting are independent
    order = np.random.default_rng([seed, 1]).permutation(n)
    out = {}
    for rank, i in enumerate(order.tolist()):
        out[users[i]] = "test" if rank < n_test else "valid" if rank < n_test + n_valid else "train"
    return out


def target_records(user: str, seq: Sequence[int], item_domain: np.ndarray, max_history: int) -> list[Record]:
    """One record per domain the user has: target = last item of that domain, history = all before it.

    ``seq`` holds global item ids, oldest first. A domain whose last item is the user's very first
    interaction gives no record (its history would be empty).
    """
    doms = item_domain[np.asarray(seq, dtype=np.int64)]
    out = []
    for d in (0, 1):
        where = np.flatnonzero(doms == d)
        if not len(where):
            continue
        pos = int(where[-1])
        if pos == 0:
            continue
        history = tuple(seq[max(0, pos - max_history) : pos])
        out.append(Record(user=user, history=history, target=int(seq[pos]), domain=d))
    return out


def assemble(
    name: str,
    domains: tuple[str, str],
    items: Sequence[ItemInfo],
    seqs: dict[str, list[int]],
    *,
    max_history: int,
    valid_frac: float,
    test_frac: float,
    seed: int,
) -> TwoDomainData:
    """Catalogue of the items used by ``seqs`` plus records in user-disjoint splits.

    Args:
        items: candidate items; ``seqs`` refers to them by their index in this list.
        seqs: user -> chronological item indices (into ``items``), the users already filtered/sampled.
    """
    if not seqs:
        raise DataError(f"{name}: no user is left after filtering")
    used = np.zeros(len(items), dtype=bool)
    for s in seqs.values():
        used[np.asarray(s, dtype=np.int64)] = True
    idx = np.flatnonzero(used)
    dom = np.array([items[i].domain for i in idx.tolist()], dtype=np.int64)
    idx = idx[np.argsort(dom, kind="stable")]  # domain 0 block first, reader order inside a domain
    new_id = np.full(len(items), -1, dtype=np.int64)
    new_id[idx] = np.arange(len(idx))
    catalogue = Catalogue(
        domains=domains,
        item_domain=np.array([items[i].domain for i in idx.tolist()], dtype=np.int64),
        titles=[items[i].title for i in idx.tolist()],
        texts=[items[i].text for i in idx.tolist()],
        source_ids=[items[i].source_id for i in idx.tolist()],
    )
    for d, dname in enumerate(domains):
        if catalogue.domain_size(d) == 0:
            raise DataError(f"{name}: domain {dname!r} has no items left after filtering")
    users = list(seqs)
    split_of = split_users(users, valid_frac, test_frac, seed)
    splits: dict[str, list[Record]] = {s: [] for s in SPLITS}
    n_skipped = 0
    for u in users:
        recs = target_records(
            u, new_id[np.asarray(seqs[u], dtype=np.int64)].tolist(), catalogue.item_domain, max_history
        )
        n_skipped += 2 - len(recs)
        splits[split_of[u]].extend(recs)
    splits = {k: v for k, v in splits.items() if v or k == "train"}  # no empty valid/test split
    if n_skipped:
        logger.warning("%s: %d (user, domain) pairs gave no record (no earlier interaction)", name, n_skipped)
    logger.info(
        "%s: %d users, %d items (%s), records %s",
        name,
        len(users),
        catalogue.n_items,
        ", ".join(f"{n} {catalogue.domain_size(d)}" for d, n in enumerate(domains)),
        {k: len(v) for k, v in splits.items()},
    )
    return TwoDomainData(name=name, catalogue=catalogue, splits=splits)
