"""Stage manifests: what a stage read, with which config, and whether it finished.

Each stage directory holds ``manifest.json`` with the stage's *fingerprint*: a hash of the config
sections it reads, the hashes of the input files it reads, and the fingerprints of the stages it
depends on. A stage whose manifest says ``done`` with the same fingerprint is skipped; a different
fingerprint means its artifacts were made from other inputs, so the directory is cleared first.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import shutil
import time
from importlib import metadata
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PACKAGES = (
    "urllm",
    "torch",
    "transformers",
    "peft",
    "torch-geometric",
    "faiss-cpu",
    "datasets",
    "accelerate",
)


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def fingerprint(config: dict[str, Any], input_hashes: dict[str, str], upstream: dict[str, str]) -> str:
    blob = json.dumps(
        {"config": config, "inputs": input_hashes, "upstream": upstream}, sort_keys=True, default=str
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


class Manifest:
    """Read and write ``<stage_dir>/manifest.json``."""

    def __init__(self, stage_dir: Path) -> None:
        self.dir = stage_dir
        self.path = stage_dir / "manifest.json"

    def read(self) -> dict[str, Any] | None:
        if not self.path.is_file():
            return None
        try:
            return json.loads(self.path.read_text())
        except json.JSONDecodeError:
            logger.warning("%s is unreadable; the stage will run again", self.path)
            return None

    def is_done(self, fp: str) -> bool:
        m = self.read()
        return bool(m and m.get("status") == "done" and m.get("fingerprint") == fp)

    def begin(self, stage: str, fp: str, config: dict, input_hashes: dict, upstream: dict) -> None:
        """Mark the stage as running; clear artifacts made from other inputs (a resume keeps them)."""
        old = self.read()
        if old is not None and old.get("fingerprint") != fp and self.dir.exists():
            logger.info("%s: inputs changed since the last run; clearing %s", stage, self.dir)
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._write(
            {
                "stage": stage,
                "status": "running",
                "fingerprint": fp,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "config": config,
                "inputs": input_hashes,
                "upstream": upstream,
                "versions": package_versions(),
            }
        )

    def finish(self, seconds: float, outputs: dict[str, Any] | None = None) -> None:
        m = self.read() or {}
        m.update(status="done", seconds=round(seconds, 1), outputs=outputs or {})
        self._write(m)

    def _write(self, obj: dict) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
        tmp.replace(self.path)
