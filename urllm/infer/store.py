"""An append-only JSONL of inference results, one line per record, that a killed run resumes from.

Lines are flushed as they are written, so after a kill the file holds every finished record plus at
most one truncated last line, which :meth:`JsonlStore.load` drops. A ``.meta.json`` beside it records
the settings the lines were produced with; reopening with other settings is an error (or, with
``overwrite``, starts afresh) so results of different models or prompts never mix.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from urllm.configuration import ConfigError
from urllm.data.schema import DataError

logger = logging.getLogger(__name__)


class JsonlStore:
    def __init__(self, path: str | Path, settings: dict) -> None:
        self.path = Path(path)
        self.meta_path = self.path.with_name(self.path.stem + ".meta.json")
        self.settings = json.loads(
            json.dumps(settings)
        )  # plain JSON types, comparable with what is read back

    def check(self, overwrite: bool = False) -> None:
        """Fail (or reset, with ``overwrite``) when the file was written with different settings."""
        if not self.meta_path.is_file():
            if self.path.is_file():
                raise ConfigError(
                    f"{self.path}: results without {self.meta_path.name}; delete the file to rerun"
                )
            return
        old = json.loads(self.meta_path.read_text())
        if old == self.settings:
            return
        changed = sorted(k for k in set(old) | set(self.settings) if old.get(k) != self.settings.get(k))
        if not overwrite:
            raise ConfigError(
                f"{self.path} was written with other settings (differing: {', '.join(changed)}); "
                "delete it or set infer.overwrite=true"
            )
        logger.warning("%s: settings changed (%s), starting afresh", self.path, ", ".join(changed))
        self.path.unlink(missing_ok=True)
        self.meta_path.unlink()

    def load(self, repair: bool = False) -> dict[str, dict]:
        """Rows by ``key``; a truncated last line (a killed write) is ignored, and removed with ``repair``."""
        if not self.path.is_file():
            return {}
        rows: dict[str, dict] = {}
        raw = self.path.read_bytes()
        lines = raw.split(b"\n")
        good_bytes = 0
        for n, line in enumerate(lines, start=1):
            if not line.strip():
                good_bytes += len(line) + 1
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                if n == len(lines):  # the last line, without a newline: an interrupted write
                    logger.warning("%s: ignoring a truncated last line", self.path)
                    if repair:
                        with open(self.path, "r+b") as f:
                            f.truncate(min(good_bytes, len(raw)))
                    break
                raise DataError(f"{self.path}:{n}: not valid JSON") from None
            if "key" not in row:
                raise DataError(f"{self.path}:{n}: row without a 'key'")
            rows[row["key"]] = row
            good_bytes += len(line) + 1
        return rows

    def append(self, rows: Iterable[dict]) -> None:
        """Write rows and flush them to disk (main process only)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.meta_path.is_file():
            self.meta_path.write_text(json.dumps(self.settings, indent=2, sort_keys=True) + "\n")
        ends_open = False
        if self.path.is_file() and self.path.stat().st_size:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                ends_open = f.read(1) != b"\n"  # a complete row whose newline was never written
        with open(self.path, "a", encoding="utf-8") as f:
            if ends_open:
                f.write("\n")
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
