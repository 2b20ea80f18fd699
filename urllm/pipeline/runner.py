"""Run stages in dependency order, skipping those whose inputs did not change.

A stage reads config sections and files, and the artifacts of its upstream stages; its fingerprint
covers all three (see :mod:`urllm.pipeline.manifest`), so a stage never reads an artifact made from
different inputs. A killed pipeline resumes: finished stages are skipped, the interrupted one restarts
in its own directory (stages that checkpoint, such as training, continue from their checkpoint).

Config fields marked ``runtime`` (threads, progress, batch sizes of pure inference ...) are not part of
any fingerprint, so changing them re-runs and deletes nothing. Paths come from
:class:`urllm.run_layout.RunLayout`; the run folder is locked while the pipeline writes to it
(:mod:`urllm.lock`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from urllm.config import Config
from urllm.configuration import ConfigError, fingerprint_dict, marked_keys
from urllm.pipeline.manifest import Manifest, file_sha256, fingerprint
from urllm.run_layout import RunLayout

logger = logging.getLogger(__name__)


@dataclass
class StageContext:
    """What a running stage sees: the config, its own directory and its upstream stages' directories."""

    cfg: Config
    run_dir: Path
    name: str
    split: str
    fingerprints: dict[str, str] = field(default_factory=dict)  # stage -> fingerprint, upstream included

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.run_dir, self.cfg)

    @property
    def dir(self) -> Path:
        return self.stage_dir(self.name)

    def stage_dir(self, name: str) -> Path:
        return self.run_dir / name


@dataclass(frozen=True)
class Stage:
    """One step of the method.

    Args:
        name: directory name under the run directory.
        sections: dotted config sections the stage reads (``"data"``, ``"graph"`` ...).
        after: upstream stages whose artifacts it reads.
        run: does the work; returns a small dict of outputs recorded in the manifest.
        inputs: files outside the run directory the stage reads (hashed into the fingerprint).
        per_split: the stage depends on ``pipeline.split`` (its directory is ``<name>/<split>``).
        exclude: dotted keys left out of the fingerprint (e.g. the test file for training stages).
        extends: the stage's trainer continues from its checkpoint when only fields marked ``extends``
            (``epochs``, ``patience``) changed, so such a change re-runs the stage in its kept folder.
        consumes: content digests of what the stage reads from its upstream stages, used in its
            fingerprint in place of their fingerprints: an upstream change that leaves what it reads
            alone does not re-run it (the fine-tune reads the prompts' text, not their candidates).
    """

    name: str
    sections: tuple[str, ...]
    after: tuple[str, ...]
    run: Callable[[StageContext], dict[str, Any] | None]
    inputs: Callable[[Config, str], list[Path]] = field(default=lambda cfg, split: [])
    per_split: bool = False
    exclude: tuple[str, ...] = ()
    extends: bool = False
    consumes: Callable[[StageContext], dict[str, str]] | None = None

    def dir_name(self, split: str) -> str:
        return f"{self.name}/{split}" if self.per_split else self.name


def _config_part(cfg: Config, sections: tuple[str, ...], exclude: tuple[str, ...]) -> dict[str, Any]:
    full = fingerprint_dict(cfg)  # runtime fields never invalidate anything
    out = {}
    for sec in sections:
        node: Any = full
        for part in sec.split("."):
            node = node[part]
        out[sec] = node
    for key in exclude:
        *path, last = key.split(".")
        node = out.get(path[0]) if path else out
        for part in path[1:]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    return out


def run_pipeline(cfg: Config, stages: list[Stage], wanted: list[str], split: str) -> dict[str, str]:
    """Run the ``wanted`` stages (and the upstream stages they need); return stage -> fingerprint."""
    by_name = {s.name: s for s in stages}
    unknown = [w for w in wanted if w not in by_name]
    if unknown:
        raise ConfigError(f"pipeline.stages: unknown stage {unknown[0]!r}; known: {', '.join(by_name)}")
    order: list[Stage] = []

    def visit(name: str) -> None:
        stage = by_name[name]
        for up in stage.after:
            visit(up)
        if stage not in order:
            order.append(stage)

    for name in wanted:
        visit(name)

    run_dir = cfg.run_path
    fps: dict[str, str] = {}
    aliases: dict[str, set[str]] = {}
    for i, stage in enumerate(order, start=1):
        ctx = StageContext(
            cfg=cfg, run_dir=run_dir, name=stage.dir_name(split), split=split, fingerprints=fps
        )
        missing = [p for p in stage.inputs(cfg, split) if not p.is_file()]
        if missing:
            raise ConfigError(f"stage {stage.name}: input file not found: {missing[0]}")
        hashes = {str(p): file_sha256(p) for p in stage.inputs(cfg, split)}
        conf = _config_part(cfg, stage.sections, stage.exclude)
        if stage.per_split:
            conf["split"] = split
        upstream = {up: fps[up] for up in stage.after}
        legacy = ""  # the fingerprint older code gave it (upstream fingerprints, not contents)
        if stage.consumes is not None:
            legacy = fingerprint(conf, hashes, upstream)
            upstream = stage.consumes(ctx)
        fp = fingerprint(conf, hashes, upstream)
        resume_fp = ""
        if stage.extends:
            extends = tuple(k for k in marked_keys(Config, "extends") if k.split(".")[0] in stage.sections)
            resume_fp = fingerprint(
                _config_part(cfg, stage.sections, (*stage.exclude, *extends)), hashes, upstream
            )
        fps[stage.name] = fp
        manifest = Manifest(ctx.dir)
        if legacy:
            manifest.adopt(legacy, fp, upstream)
        if manifest.is_done(fp) or manifest.migrate(fp, conf, hashes, upstream, aliases):
            aliases[stage.name] = manifest.aliases()
            logger.info("[%d/%d] %s: up to date, skipped", i, len(order), ctx.name)
            continue
        logger.info("[%d/%d] %s: running", i, len(order), ctx.name)
        manifest.begin(ctx.name, fp, conf, hashes, upstream, resume_fp=resume_fp)
        start = time.perf_counter()
        outputs = stage.run(ctx)
        manifest.finish(time.perf_counter() - start, outputs)
        aliases[stage.name] = {fp}
        logger.info("[%d/%d] %s: done in %.1f s", i, len(order), ctx.name, time.perf_counter() - start)
    return fps
