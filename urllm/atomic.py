"""Writes that a kill or a full disk cannot leave half done, and reads that survive the ones that did.

Files: :func:`atomic_write_text` / :func:`atomic_write_json` / :func:`atomic_torch_save` write a
temporary file in the same folder, ``fsync`` it, and ``os.replace`` it over the target, so a reader
sees the old content or the new one, never a mix. :func:`read_json` treats an unreadable file as
missing (with a warning) so the caller recomputes it.

Checkpoint folders: :class:`CheckpointSeries` keeps numbered folders ``<prefix>-000003/``. A new one is
written into a hidden staging folder beside them, every file in it ``fsync``-ed, a ``MANIFEST.json``
(size and sha256 of each file) written last, and the folder renamed into place — one atomic step, so
everything a resume needs (weights, optimizer, RNG *and* the training-state file) lives in one unit and
cannot get out of step. The previous complete folder is kept; :meth:`CheckpointSeries.load_latest`
falls back to it, with a warning, when the newest one fails its manifest or its loader.

A full disk (``ENOSPC``, or torch's ``unexpected pos`` from a short write) becomes
:class:`NoSpaceError` ``no space left on <path>``; the previous file or checkpoint stays intact.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from urllm.data.schema import DataError

logger = logging.getLogger(__name__)

T = TypeVar("T")
MANIFEST = "MANIFEST.json"
# what torch / accelerate raise when a write comes up short on a full disk
_SHORT_WRITE = re.compile(r"unexpected pos|No space left|file write failed", re.IGNORECASE)


class NoSpaceError(DataError):
    """A write failed because the disk is full; the previous version of the target is intact.

    A :class:`~urllm.data.schema.DataError` so every entry point reports it as one line.
    """


def _is_no_space(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(exc, RuntimeError) and bool(_SHORT_WRITE.search(str(exc)))


@contextlib.contextmanager
def no_space_guard(path: str | Path, cleanup: Path | None = None) -> Iterator[None]:
    """Turn a full-disk failure inside the block into ``NoSpaceError('no space left on <path>')``;
    ``cleanup`` (a temporary file or folder) is removed on any failure."""
    try:
        yield
    except BaseException as exc:
        if cleanup is not None:
            if cleanup.is_dir():
                shutil.rmtree(cleanup, ignore_errors=True)
            else:
                cleanup.unlink(missing_ok=True)
        if _is_no_space(exc):
            raise NoSpaceError(f"no space left on {path}") from None
        raise


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _tmp_for(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_for(path)
    with no_space_guard(path, cleanup=tmp):
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Replace ``path`` by ``text`` (UTF-8) in one step; on a full disk the old file stays."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = 1) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` through a fsynced temporary file and a rename."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_for(path)
    with no_space_guard(path, cleanup=tmp):
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    fsync_dir(path.parent)


def read_json(path: str | Path, what: str = "file") -> Any | None:
    """The JSON content of ``path``; None when it is missing, or (with a warning) unreadable or
    half written, so the caller recomputes it."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        logger.warning("%s %s is unreadable (%s): treating it as missing", what, path, exc)
        return None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class CheckpointSeries:
    """Numbered checkpoint folders ``root/<prefix>-NNNNNN`` written atomically; the ``keep`` newest
    complete ones are kept.

    Writing (``tag``: e.g. the epoch or optimizer step; strictly increasing)::

        stage = series.staging(tag)   # an empty hidden folder (main process; then wait for the others)
        ... write every file into stage ...
        series.commit(tag)            # fsync, manifest, rename, prune (main process)
    """

    def __init__(self, root: str | Path, prefix: str = "checkpoint", keep: int = 2) -> None:
        if keep < 1:
            raise ValueError("keep must be >= 1")
        self.root = Path(root)
        self.prefix = prefix
        self.keep = keep
        self._pattern = re.compile(rf"{re.escape(prefix)}-(\d+)")

    def path(self, tag: int) -> Path:
        return self.root / f"{self.prefix}-{tag:06d}"

    def staging_path(self, tag: int) -> Path:
        return self.root / f".{self.prefix}-{tag:06d}.partial"

    def staging(self, tag: int) -> Path:
        """An empty staging folder for ``tag`` (a leftover of a killed write is discarded)."""
        stage = self.staging_path(tag)
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir(parents=True)
        return stage

    def commit(self, tag: int) -> Path:
        """Seal the staging folder of ``tag``: fsync every file, write the manifest, rename it into
        place, then remove the older folders beyond ``keep``."""
        stage, final = self.staging_path(tag), self.path(tag)
        with no_space_guard(final, cleanup=stage):
            files = {}
            for p in sorted(q for q in stage.rglob("*") if q.is_file()):
                with open(p, "rb+") as f:
                    os.fsync(f.fileno())
                files[p.relative_to(stage).as_posix()] = {"size": p.stat().st_size, "sha256": _sha256(p)}
            manifest = stage / MANIFEST
            with open(manifest, "w", encoding="utf-8") as f:
                json.dump({"tag": tag, "files": files}, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            fsync_dir(stage)
            if final.exists():  # a rewrite of the same tag (e.g. after a resumed epoch)
                shutil.rmtree(final)
            os.replace(stage, final)
        fsync_dir(self.root)
        for old in self.folders()[self.keep :]:
            shutil.rmtree(old, ignore_errors=True)
        for stale in self.root.glob(f".{self.prefix}-*.partial"):
            shutil.rmtree(stale, ignore_errors=True)
        return final

    def folders(self) -> list[Path]:
        """Committed folders, newest first (complete or not)."""
        if not self.root.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.root.iterdir() if (m := self._pattern.fullmatch(p.name))]
        return [p for _, p in sorted(found, reverse=True)]

    def clear(self) -> None:
        """Remove every checkpoint of the series (before training anew, so no older one is resumed)."""
        for folder in self.folders():
            shutil.rmtree(folder, ignore_errors=True)
        for stale in self.root.glob(f".{self.prefix}-*.partial"):
            shutil.rmtree(stale, ignore_errors=True)

    @staticmethod
    def damage(folder: Path) -> str | None:
        """Why ``folder`` is not a complete checkpoint, or None when its manifest checks out."""
        try:
            manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
            files = manifest["files"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return f"no readable {MANIFEST} ({exc.__class__.__name__})"
        for name, meta in files.items():
            p = folder / name
            if not p.is_file():
                return f"{name} is missing"
            if p.stat().st_size != meta["size"]:
                return f"{name} has {p.stat().st_size} bytes, {meta['size']} written"
            if _sha256(p) != meta["sha256"]:
                return f"{name} does not match its checksum"
        return None

    def load_latest(self, loader: Callable[[Path], T]) -> tuple[Path, T] | None:
        """``(folder, loader(folder))`` for the newest checkpoint that is complete and loads; a
        damaged newer one is skipped with a warning. None when there is none."""
        for folder in self.folders():
            why = self.damage(folder)
            if why is None:
                try:
                    return folder, loader(folder)
                except Exception as exc:  # noqa: BLE001 - any failure to load means: try the previous one
                    first = (str(exc).splitlines() or [""])[0][:200]
                    why = f"cannot be loaded ({exc.__class__.__name__}: {first})"
            logger.warning("checkpoint %s is damaged: %s; falling back to the previous one", folder, why)
        return None
