"""Per-record results of one system: what every paired comparison and interval is computed from.

``urllm evaluate --per-record FILE.jsonl`` (and the pipeline's
``evaluate/<split>/<system>.per_record.jsonl``) writes one JSON line per scored record:
``system``, ``protocol`` (``standard`` or ``cold-N``), ``key`` (the record key of inference), ``user``,
``domain`` (name), ``target``, ``n_target_history``, ``rank`` (the expected 1-based rank under random
tie-breaking) and every metric of the table (``MRR``, ``NDCG@k``, ``HR@k``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class PerRecord:
    """One system's results on a list of records, all arrays in the records' order."""

    system: str
    keys: list[str]
    users: list[str]
    domains: list[str]
    targets: list[int]
    n_target_history: list[int]
    values: dict[str, np.ndarray]  # "rank" and every metric

    def metrics(self) -> dict[str, np.ndarray]:
        return self.values

    def rows(self, protocol: str = "standard") -> Iterator[dict]:
        names = list(self.values)
        for i, key in enumerate(self.keys):
            row = {
                "system": self.system,
                "protocol": protocol,
                "key": key,
                "user": self.users[i],
                "domain": self.domains[i],
                "target": self.targets[i],
                "n_target_history": self.n_target_history[i],
            }
            row |= {m: float(self.values[m][i]) for m in names}
            yield row


def write_per_record(path: str | Path, systems: dict[str, dict[str, PerRecord]]) -> int:
    """Write every system's and protocol's rows to ``path`` (JSON lines, atomically); returns the count.

    ``systems``: system name -> protocol -> its results.
    """
    from urllm.atomic import atomic_write_text

    lines = [
        json.dumps(row)
        for protocols in systems.values()
        for protocol, per in protocols.items()
        for row in per.rows(protocol)
    ]
    atomic_write_text(Path(path), "".join(line + "\n" for line in lines))
    return len(lines)


def read_per_record(path: Path, system: str | None = None) -> dict[str, PerRecord]:
    """The protocols of one system read back from a per-record JSONL file (the inverse of the writer)."""
    groups: dict[str, list[dict]] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not a JSON line ({exc.msg})") from None
            if system is None or row["system"] == system:
                groups.setdefault(row["protocol"], []).append(row)
    return {protocol: _from_rows(rows) for protocol, rows in groups.items()}


def _from_rows(rows: Sequence[dict]) -> PerRecord:
    fixed = {"system", "protocol", "key", "user", "domain", "target", "n_target_history"}
    names = [k for k in rows[0] if k not in fixed]
    return PerRecord(
        system=rows[0]["system"],
        keys=[r["key"] for r in rows],
        users=[r["user"] for r in rows],
        domains=[r["domain"] for r in rows],
        targets=[r["target"] for r in rows],
        n_target_history=[r["n_target_history"] for r in rows],
        values={m: np.array([r[m] for r in rows], dtype=np.float64) for m in names},
    )
