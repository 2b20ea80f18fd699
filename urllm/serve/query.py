"""One recommendation request: parsed, checked against the run's catalogue, turned into a Record.

A request names either a known ``user`` (any split of the prepared data) or a typed ``history`` of item
ids or exact titles, plus the target ``domain``, ``k`` and optionally the ``system``. Every problem is a
:class:`RequestError` whose one-line message starts with the field it is about.

A known user's record holds everything the run knows about them: the history of their latest record
followed by its target (records of one user are prefixes of one time-ordered sequence), so the
recommendation is for *now*, after the held-out items too. A served record has no target (``-1``).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from urllm.data.schema import Record, TwoDomainData
from urllm.serve.config import ServeConfig

NO_TARGET = -1
FIELDS = ("user", "history", "domain", "k", "system", "explain")


class RequestError(ValueError):
    """A bad request: ``field: message`` on one line, with the HTTP status to answer."""

    def __init__(self, field: str, message: str, status: int = 400) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.status = field, status


@dataclass(frozen=True)
class Query:
    system: str
    domain: int
    k: int
    record: Record
    user: str | None  # the known user, None for a typed history
    explain: bool = True


def full_sequence(records: Sequence[Record]) -> tuple[int, ...]:
    """A user's known sequence: the latest record's history + its target.

    The latest record is the one whose history holds every other record's target (the longest when the
    history window cut them off).
    """
    best = max(records, key=lambda r: (sum(o.target in r.history for o in records), len(r.history)))
    return (*best.history, best.target)


class Catalog:
    """Titles, ids and users of a run, for resolving and searching."""

    def __init__(self, data: TwoDomainData) -> None:
        cat = self.cat = data.catalogue
        self.by_title: dict[str, list[int]] = {}
        for i, t in enumerate(cat.titles):
            self.by_title.setdefault(t.strip(), []).append(i)
        self.by_source = {s: i for i, s in enumerate(cat.source_ids)}
        self.lower = [t.lower() for t in cat.titles]
        counts = Counter(i for r in data.records("train") for i in (*r.history, r.target))
        self.popularity = np.array([counts.get(i, 0) for i in range(cat.n_items)], dtype=np.int64)
        per_user: dict[str, list[Record]] = {}
        self.split_of: dict[str, str] = {}
        for split, recs in data.splits.items():
            for r in recs:
                per_user.setdefault(r.user, []).append(r)
                self.split_of.setdefault(r.user, split)
        self.sequences = {u: full_sequence(recs) for u, recs in per_user.items()}

    # ------------------------------------------------------------------ items

    def item(self, i: int) -> dict[str, Any]:
        return {
            "id": int(i),
            "title": self.cat.titles[i],
            "domain": self.cat.domains[self.cat.item_domain[i]],
        }

    def resolve(self, token: Any, field: str) -> int:
        """A global item id from an id (int, or digits), an exact title or a source id."""
        if isinstance(token, bool) or not isinstance(token, (int, str)):
            raise RequestError(field, f"expected an item id or title, got {token!r}")
        if isinstance(token, str):
            text = token.strip()
            ids = self.by_title.get(text)
            if ids and len(ids) > 1:
                raise RequestError(
                    field,
                    f"title {text!r} names {len(ids)} items (ids {', '.join(map(str, ids[:5]))}); give an id",
                )
            if ids:
                return ids[0]
            if text in self.by_source:
                return self.by_source[text]
            if not text.isdigit():
                raise RequestError(field, f"unknown item title {text!r} (titles must match exactly)")
            token = int(text)
        if not 0 <= token < self.cat.n_items:
            raise RequestError(field, f"unknown item id {token} (ids are 0..{self.cat.n_items - 1})")
        return token

    def search(self, q: str, domain: int | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """Titles containing ``q`` (case-insensitive): prefix matches first, then by training popularity."""
        q = q.strip().lower()
        if not q:
            return []
        hits = [
            i
            for i, t in enumerate(self.lower)
            if q in t and (domain is None or self.cat.item_domain[i] == domain)
        ]
        hits.sort(key=lambda i: (not self.lower[i].startswith(q), -self.popularity[i], i))
        return [self.item(i) for i in hits[:limit]]

    # ------------------------------------------------------------------ users

    def users(self, q: str = "", limit: int = 20) -> list[dict[str, Any]]:
        q = q.strip()
        ids = [u for u in self.sequences if u.startswith(q)]
        ids.sort(key=lambda u: (len(u), u))  # numeric ids in numeric order
        return [
            {"user": u, "split": self.split_of[u], "n_items": len(self.sequences[u])} for u in ids[:limit]
        ]

    def user_record(self, user: str, domain: int) -> Record:
        if user not in self.sequences:
            raise RequestError("user", f"unknown user {user!r}", status=404)
        return Record(user=user, history=self.sequences[user], target=NO_TARGET, domain=domain)


def history_record(history: Sequence[int], domain: int) -> Record:
    """A new user's record; the user id is a digest of the history (distinct histories, distinct keys)."""
    digest = hashlib.sha1(",".join(map(str, history)).encode()).hexdigest()[:12]
    return Record(user=f"new:{digest}", history=tuple(history), target=NO_TARGET, domain=domain)


def parse_query(obj: Any, catalog: Catalog, cfg: ServeConfig, systems: Sequence[str]) -> Query:
    """Check a request body (a JSON object) and build its Query; RequestError on the first problem."""
    if not isinstance(obj, dict):
        raise RequestError("body", f"expected a JSON object, got {type(obj).__name__}")
    unknown = [f for f in obj if f not in FIELDS]
    if unknown:
        raise RequestError(unknown[0], f"unknown field (known: {', '.join(FIELDS)})")
    domains = catalog.cat.domains
    name = obj.get("domain")
    if name is None:
        raise RequestError("domain", f"required (one of {', '.join(domains)})")
    if name not in domains:
        raise RequestError("domain", f"unknown domain {name!r} (this run has {', '.join(domains)})")
    domain = domains.index(name)
    k = obj.get("k", 10)
    if isinstance(k, bool) or not isinstance(k, int):
        raise RequestError("k", f"expected an integer, got {k!r}")
    if not 1 <= k <= min(cfg.max_k, catalog.cat.domain_size(domain)):
        raise RequestError("k", f"must be in 1..{min(cfg.max_k, catalog.cat.domain_size(domain))}, got {k}")
    system = obj.get("system") or cfg.system
    if system not in systems:
        raise RequestError(
            "system", f"unknown or not loaded system {system!r} (serving {', '.join(systems)})"
        )
    explain = obj.get("explain", True)
    if not isinstance(explain, bool):
        raise RequestError("explain", f"expected true or false, got {explain!r}")
    has_user, has_history = obj.get("user") is not None, obj.get("history") is not None
    if has_user == has_history:
        raise RequestError(
            "user", "give either user or history, not both" if has_user else "give user or history"
        )
    if has_user:
        user = obj["user"]
        if isinstance(user, bool) or not isinstance(user, (str, int)):
            raise RequestError("user", f"expected a user id, got {user!r}")
        record = catalog.user_record(str(user), domain)
        return Query(system, domain, k, record, str(user), explain)
    history = obj["history"]
    if not isinstance(history, list):
        raise RequestError("history", f"expected a list of item ids or titles, got {history!r}")
    if not history:
        raise RequestError("history", "empty (give at least one item id or title)")
    if len(history) > cfg.max_history:
        raise RequestError("history", f"{len(history)} items, more than serve.max_history={cfg.max_history}")
    ids = [catalog.resolve(t, f"history[{i}]") for i, t in enumerate(history)]
    return Query(system, domain, k, history_record(ids, domain), None, explain)


def split_history(text: str, catalog: Catalog) -> list[int]:
    """``--history`` of the command line: comma-separated ids or titles; titles may contain commas
    ("Godfather, The (1972)"), so the longest run of pieces that names an item wins."""
    pieces = text.split(",")
    out: list[int] = []
    i = 0
    while i < len(pieces):
        for j in range(len(pieces), i, -1):
            token = ",".join(pieces[i:j]).strip()
            try:
                out.append(catalog.resolve(token, f"history[{len(out)}]"))
            except RequestError:
                if j == i + 1:
                    raise
                continue
            i = j
            break
    return out
