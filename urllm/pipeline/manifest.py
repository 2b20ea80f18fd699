"""Stage manifests: what a stage read, with which config, and whether it finished.

Each stage directory holds ``manifest.json`` with the stage's *fingerprint*: a hash of the config
sections it reads (without the fields marked ``runtime``), the hashes of the input files it reads, and
the fingerprints of the stages it depends on. A stage whose manifest says ``done`` with the same
fingerprint is skipped. A different fingerprint means its artifacts were made from other inputs, so the
directory is cleared first, with a log line naming what changed; except when only fields marked
``extends`` changed (``graph.epochs``) in a stage whose trainer continues from its checkpoint: then the
folder is kept and the stage runs again on top of it.

A manifest written before a field became ``runtime`` has another fingerprint for the same content: when
its recorded config, inputs and upstream stages match the current ones after dropping runtime fields,
the manifest is migrated (its old fingerprint kept as an alias) instead of the stage being re-run.
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

    def aliases(self) -> set[str]:
        """Every fingerprint this stage's artifacts are known under (current + migrated)."""
        m = self.read() or {}
        return {m.get("fingerprint", ""), *m.get("aliases", [])} - {""}

    def migrate(
        self, fp: str, config: dict, input_hashes: dict, upstream: dict, upstream_aliases: dict[str, set[str]]
    ) -> bool:
        """A finished manifest under another fingerprint whose content matches (runtime fields aside):
        record ``fp`` for it and return True. ``upstream_aliases``: stage -> fingerprints it is known by."""
        m = self.read()
        if not m or m.get("status") != "done" or m.get("fingerprint") == fp:
            return False
        same_up = set(m.get("upstream", {})) == set(upstream) and all(
            m["upstream"][k] == v or m["upstream"][k] in upstream_aliases.get(k, ())
            for k, v in upstream.items()
        )
        if not (same_up and m.get("inputs") == input_hashes and _drop_runtime(m.get("config")) == config):
            return False
        m["aliases"] = sorted({*m.get("aliases", []), m["fingerprint"]})
        m.update(fingerprint=fp, config=config, upstream=upstream)
        self._write(m)
        return True

    def adopt(self, old_fp: str, fp: str, upstream: dict) -> bool:
        """A manifest written under ``old_fp`` (the same inputs, fingerprinted the older way) is
        re-labelled ``fp`` (``old_fp`` kept as an alias), finished or not, so it is neither re-run nor
        cleared; returns whether it was."""
        m = self.read()
        if not m or m.get("fingerprint") != old_fp or old_fp == fp:
            return False
        m["aliases"] = sorted({*m.get("aliases", []), old_fp})
        m.update(fingerprint=fp, upstream=upstream)
        self._write(m)
        logger.info("%s: manifest of an older version re-labelled (same inputs)", self.dir.name)
        return True

    def begin(
        self,
        stage: str,
        fp: str,
        config: dict,
        input_hashes: dict,
        upstream: dict,
        *,
        resume_fp: str = "",
    ) -> None:
        """Mark the stage as running; clear artifacts made from other inputs (a resume keeps them).

        ``resume_fp``: the fingerprint without the ``extends`` fields; when it matches the old one the
        folder is kept (the stage's trainer extends its checkpoint)."""
        old = self.read()
        if old is not None and old.get("fingerprint") != fp and self.dir.exists():
            why = describe_change(old, config, input_hashes, upstream)
            if resume_fp and old.get("resume_fingerprint") == resume_fp:
                logger.info(
                    "%s: %s; keeping %s (training continues from its checkpoint)", stage, why, self.dir
                )
            else:
                logger.info("%s: %s; clearing %s (made from other inputs)", stage, why, self.dir)
                shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._write(
            {
                "stage": stage,
                "status": "running",
                "fingerprint": fp,
                "resume_fingerprint": resume_fp,
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


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix.rstrip("."): d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}."))
    return out


def describe_change(old: dict, config: dict, input_hashes: dict, upstream: dict) -> str:
    """One phrase naming what differs between a manifest and the current run (for the log)."""
    parts = []
    a, b = _flat(_drop_runtime(old.get("config") or {})), _flat(config)
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    if keys:
        shown = ", ".join(f"{k} {a.get(k)!r} -> {b.get(k)!r}" for k in keys[:4])
        parts.append(f"config changed ({shown}{', ...' if len(keys) > 4 else ''})")
    files = sorted(
        k
        for k in set(old.get("inputs") or {}) | set(input_hashes)
        if (old.get("inputs") or {}).get(k) != input_hashes.get(k)
    )
    if files:
        parts.append(f"input file changed ({', '.join(files[:3])})")
    ups = sorted(k for k in upstream if (old.get("upstream") or {}).get(k) != upstream[k])
    if ups:
        parts.append(f"upstream stage re-made ({', '.join(ups)})")
    return "; ".join(parts) or "fingerprint changed (code version)"


def _drop_runtime(config: Any) -> Any:
    """A manifest's recorded config sections without the fields now marked runtime."""
    from urllm.config import Config
    from urllm.configuration import marked_keys

    if not isinstance(config, dict):
        return config
    out = json.loads(json.dumps(config, default=str))
    for key in marked_keys(Config, "runtime"):
        section = key.split(".")[0]
        for sec in (k for k in out if k == section or k.startswith(section + ".")):
            node = out[sec]
            sub = key[len(sec) + 1 :] if key.startswith(sec + ".") else None
            if sub is None or not isinstance(node, dict):
                continue
            *path, last = sub.split(".")
            for part in path:
                node = node.get(part) if isinstance(node, dict) else None
            if isinstance(node, dict):
                node.pop(last, None)
    return out
