"""Trained systems kept between runs, keyed by everything they were made from.

A system's folder (``<run_dir>/systems/<name>``, or the graph stage's folder for ``graph``) holds
``cache.json``: the *key* the folder was made for — the system's name, the config sections it reads
(without ``runtime`` and ``extends`` fields: :func:`urllm.configuration.signature_dict`), the seed, and a
digest of the data it was fitted on (every training and validation record, every catalogue title and
text) — plus its stopping rules (``extends`` fields) and whether the fit finished.

:func:`fitted_system` is the one way to get a fitted system by name:

- same key, fit finished, and the system can ``load(dir)``: loaded read-only (a downstream stage never
  rewrites an upstream stage's folder);
- same key otherwise (a killed fit, or a raised ``epochs``): fitted again in the folder, so its trainer
  resumes or extends its checkpoint;
- another key (an edited input file, another config): the folder is cleared, with a log line saying
  what changed, and the system is fitted anew.

A folder without ``cache.json`` (written before this module) is adopted with a warning: its inputs are
unknown, delete it to retrain.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from urllm.configuration import marked_keys, signature_dict, to_dict
from urllm.data.schema import DataError, TwoDomainData

logger = logging.getLogger(__name__)

CACHE_FILE = "cache.json"
# a system registered without its sections depends on all of these (the data enters as its digest)
ALL_SECTIONS = ("sasrec", "llm", "finetune", "graph", "retrieval", "prompts", "grounding")
_DIGESTS: list[tuple[tuple, str]] = []  # (the objects digested, digest); held so their ids stay theirs
_MEMO_SIZE = 4


def data_digest(data: TwoDomainData, splits: tuple[str, ...] = ("train", "valid")) -> str:
    """sha256 of the records of ``splits`` and of the catalogue (ids, domains, titles, texts)."""
    marker = (tuple(splits), data, data.catalogue, *(data.splits.get(s) for s in splits))
    for objects, digest in _DIGESTS:  # the same objects (identity, not equality: ids of dead objects recur)
        if objects[0] == marker[0] and all(a is b for a, b in zip(objects[1:], marker[1:], strict=True)):
            return digest
    h = hashlib.sha256()
    cat = data.catalogue
    h.update(json.dumps([list(cat.domains), cat.item_domain.tolist(), cat.titles, cat.texts]).encode())
    for split in splits:
        h.update(f"\n#{split}\n".encode())
        for r in data.splits.get(split, []):
            h.update(f"{r.user}|{' '.join(map(str, r.history))}|{r.target}|{r.domain}\n".encode())
    digest = h.hexdigest()[:20]
    _DIGESTS.insert(0, (marker, digest))
    del _DIGESTS[_MEMO_SIZE:]
    return digest


def system_key(name: str, sections: dict[str, Any], seed: int, data: TwoDomainData) -> tuple[dict, dict]:
    """(key, stopping): what the folder of ``name`` must have been made from, and the fields that do not
    change its trained state but must match to *load* it (stopping rules; scoring-only fields that a
    section's module lists in ``NOT_IN_SIGNATURE``, such as ``graph.neural_weight``).

    ``sections``: dotted name -> config section, the ones the registry lists for ``name``
    (:func:`urllm.systems.system_sections`)."""
    import sys

    from urllm.recommender import spec_of

    spec = spec_of(name)
    config, stopping = {}, {}
    for s, section in sections.items():
        if not hasattr(section, "__dataclass_fields__"):
            config[s] = to_dict(section)
            continue
        module = sys.modules.get(type(section).__module__)
        loose = {*marked_keys(type(section), "extends"), *getattr(module, "NOT_IN_SIGNATURE", ())}
        loose -= set(marked_keys(type(section), "runtime"))
        config[s] = {k: v for k, v in signature_dict(section).items() if k not in loose}
        stopping.update({f"{s}.{k}": to_dict(getattr(section, k)) for k in sorted(loose)})
    key = {"system": spec.state, "config": config, "seed": seed, "data": data_digest(data)}
    return key, stopping


def read_stamp(folder: Path) -> dict | None:
    try:
        return json.loads((Path(folder) / CACHE_FILE).read_text())
    except (OSError, ValueError):
        return None


def _write_stamp(folder: Path, stamp: dict) -> None:
    from urllm.atomic import atomic_write_json

    atomic_write_json(Path(folder) / CACHE_FILE, stamp, indent=2)


def _diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _diff(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}")
    return out


def prepare_folder(folder: Path, key: dict, stopping: dict, what: str) -> dict | None:
    """Make ``folder`` hold artifacts of ``key``: clear it (logged) when it was made for another key.
    Returns the stamp found (None when the folder is new, adopted or cleared)."""
    folder = Path(folder)
    stamp = read_stamp(folder)
    if stamp is None:
        if folder.is_dir() and any(p.name not in (CACHE_FILE, "manifest.json") for p in folder.iterdir()):
            logger.warning(
                "%s: %s has no %s (written by an older version): reusing it as it is; delete it to retrain",
                what, folder, CACHE_FILE,
            )  # fmt: skip
            _write_stamp(folder, {"key": key, "stopping": stopping, "fitted": False, "adopted": True})
        return None
    if stamp.get("key") != key:
        changed = ", ".join(_diff(stamp.get("key") or {}, key)[:6]) or "key"
        logger.info("%s: %s was made from other inputs (%s changed); clearing it", what, folder, changed)
        shutil.rmtree(folder)
        return None
    return stamp


def fitted_system(
    name: str,
    make: Callable[[], Any],
    sections: dict[str, Any],
    seed: int,
    data: TwoDomainData,
    folder: str | Path,
    shared: str | Path | None = None,
):
    """System ``name`` fitted on ``data`` with its state in ``folder`` (see the module docstring).

    ``make()`` returns the unfitted system; ``sections`` and ``seed`` are what its key is made of
    (:func:`system_key`). ``shared``: an upstream stage's folder (``<run_dir>/graph``) that may hold this
    very system, fitted on the same inputs: then it is loaded from there read-only, and ``folder`` is not
    touched. A stage folder is only ever written by its own stage."""
    from urllm.recommender import system_factory

    folder = Path(folder)
    factory = system_factory(name)
    key, stopping = system_key(name, sections, seed, data)
    if shared is not None and Path(shared) != folder:
        shared = Path(shared)
        stamp = read_stamp(shared)
        if stamp and stamp.get("key") == key and stamp.get("fitted") and stamp.get("stopping") == stopping:
            system = _load(factory, name, shared)
            if system is not None:
                return system
        elif stamp is None and shared.is_dir() and any(shared.iterdir()):
            logger.info(
                "system %s: %s is from an older run (no %s): using it as before", name, shared, CACHE_FILE
            )
            folder = shared
    stamp = prepare_folder(folder, key, stopping, f"system {name}")
    if stamp and stamp.get("fitted") and stamp.get("stopping") == stopping:
        system = _load(factory, name, folder)
        if system is not None:
            return system
    folder.mkdir(parents=True, exist_ok=True)
    _write_stamp(folder, {"key": key, "stopping": stopping, "fitted": False})
    system = make()
    system.fit(data, folder)
    _write_stamp(folder, {"key": key, "stopping": stopping, "fitted": True})
    return system


def _load(factory, name: str, folder: Path):
    """``factory.load(folder)``, or None when the system cannot load (then it is fitted)."""
    if not callable(getattr(factory, "load", None)):
        return None
    try:
        system = factory.load(folder)
    except (DataError, OSError) as exc:
        logger.info("system %s: cannot load %s (%s); fitting it", name, folder, exc)
        return None
    logger.info("system %s: loaded %s read-only (fitted on the same inputs)", name, folder)
    return system


SIGNATURE_FILE = "signature.json"


def check_signature(folder: str | Path, signature: dict, what: str) -> None:
    """Refuse to resume or reuse ``folder`` when it was made under another ``signature`` (one line naming
    the keys that differ); record the signature when the folder is new. Keys missing on either side (a
    prompts digest not known yet) are not compared, and are added."""
    from urllm.configuration import ConfigError

    path = Path(folder) / SIGNATURE_FILE
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        old = None
    if old is not None:
        common = {k: v for k, v in signature.items() if k in old}
        changed = _diff({k: old[k] for k in common}, common)
        if changed:
            raise ConfigError(
                f"{what}: {folder} was made with other settings ({', '.join(changed[:6])} differ); "
                "use another output folder or delete it to start again"
            )
        if set(signature) <= set(old):
            return
        signature = {**old, **signature}
    _write_stamp_file(path, signature)


def _write_stamp_file(path: Path, obj: dict) -> None:
    from urllm.atomic import atomic_write_json

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, obj, indent=2)


def lora_signature(finetune, llm, seed: int, prompts: Path) -> dict:
    """What a LoRA checkpoint or adapter depends on: the fine-tune settings (``finetune``: runtime fields
    and the folders left out), the model (``llm``), the seed and the training/valid prompt files (when
    they exist)."""
    ft = {k: v for k, v in signature_dict(finetune).items() if k not in ("prompts_dir", "output_dir")}
    sig: dict[str, Any] = {"finetune": ft, "llm": signature_dict(llm), "seed": seed}
    for split in ("train", "valid"):
        f = Path(prompts) / f"{split}.parquet"
        if f.is_file():
            sig[f"prompts_{split}"] = _file_digest(f)
    return sig


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:20]


def columns_digest(path: str | Path, columns: tuple[str, ...]) -> str:
    """sha256 of ``columns`` of a parquet file ('' when it does not exist): what a reader of those
    columns depends on, whatever the other columns hold."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        return ""
    table = pq.read_table(path, columns=list(columns))
    h = hashlib.sha256()
    for name in columns:
        h.update(f"\n#{name}\n".encode())
        h.update(json.dumps(table.column(name).to_pylist(), default=str).encode())
    return h.hexdigest()[:20]
