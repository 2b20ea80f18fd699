"""Every path under a run directory, in one place (the contract is docs/artifacts.md).

::

    <run_dir>/
      .lock                       the writer holding the folder (urllm.lock)
      prepare/                    the prepared data (train/valid, catalogue) + manifest.json
      graph/                      the dual-graph encoder: model.pt, graphs.pt, train_state.json, ...
      index/                      the user index (FAISS) + hit_rate.json
      prompts/                    {train,valid}.parquet + stats.json
      finetune/                   LoRA: checkpoint/, adapter/, train_log.jsonl, summary.json
      infer/<split>/              one JSONL per inference run (mode x prompt kind)
      evaluate/<split>/           systems/<name>.json + results.json
      systems/<name>/             systems trained outside a stage (sasrec, svd, ...; cache.json = inputs)
      grounding/                  title-embedding cache of the refiner

The ``*_dir`` overrides of the config (``finetune.output_dir``, ``infer.out_dir``, ...) replace the
corresponding default here; library code that still computes a default path itself is listed in
docs/artifacts.md as work left to move here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from urllm.config import Config

LOCK_FILE = ".lock"
STAGES = ("prepare", "graph", "index", "prompts", "finetune", "infer", "evaluate")
PER_SPLIT = ("infer", "evaluate")
# systems whose trained state is a pipeline stage's folder (not systems/<name>)
STAGE_OF_SYSTEM = {"graph": "graph", "graph-encoder": "graph"}


@dataclass(frozen=True)
class RunLayout:
    """The paths of one run directory; ``cfg`` supplies the ``*_dir`` overrides (``None``: defaults)."""

    root: Path
    cfg: Config | None = None

    @classmethod
    def of(cls, cfg: Config) -> RunLayout:
        return cls(Path(cfg.run_path), cfg)

    # ---- the folder itself
    @property
    def lock_file(self) -> Path:
        return self.root / LOCK_FILE

    def ensure_writable(self) -> Path:
        """Create the run folder, or raise a one-line ConfigError naming the path (before any work)."""
        check_writable_dir(self.root, "run_dir")
        return self.root

    def stage_dir(self, stage: str, split: str | None = None) -> Path:
        """``<run_dir>/<stage>`` (``<stage>/<split>`` for the per-split stages)."""
        return self.root / stage / split if split else self.root / stage

    # ---- stage folders
    @property
    def prepare(self) -> Path:
        return self.stage_dir("prepare")

    @property
    def graph(self) -> Path:
        return self.stage_dir("graph")

    @property
    def index(self) -> Path:
        return self.stage_dir("index")

    @property
    def prompts(self) -> Path:
        return self.stage_dir("prompts")

    @property
    def prompts_no_retrieval(self) -> Path:
        return self._override("infer", "prompts_dir_no_retrieval") or self.root / "prompts-no-retrieval"

    @property
    def infer_prompts(self) -> Path:
        """The retrieval-augmented prompts inference reads (``infer.prompts_dir``, else ``prompts/``)."""
        return self._override("infer", "prompts_dir") or self.prompts

    @property
    def prompts_rank(self) -> Path:
        return self.root / "prompts-rank"

    @property
    def finetune_prompts(self) -> Path:
        """The fine-tune's training prompts: ``finetune.prompts_dir``, else ``prompts-rank/`` (the
        listwise task, the default) or ``prompts/`` (``finetune.task: title``)."""
        title = self.cfg is not None and self.cfg.finetune.task == "title"
        return self._override("finetune", "prompts_dir") or (self.prompts if title else self.prompts_rank)

    @property
    def finetune(self) -> Path:
        return self._override("finetune", "output_dir") or self.stage_dir("finetune")

    @property
    def adapter(self) -> Path:
        return self._override("infer", "adapter_dir") or self.finetune / "adapter"

    @property
    def infer_root(self) -> Path:
        """Inference JSONL, one folder per split (``infer.out_dir``, else ``infer/``)."""
        return self._override("infer", "out_dir") or self.stage_dir("infer")

    def infer(self, split: str) -> Path:
        return self.infer_root / split

    def evaluate(self, split: str) -> Path:
        return self.stage_dir("evaluate", split)

    def results(self, split: str) -> Path:
        return self.evaluate(split) / "results.json"

    @property
    def report(self) -> Path:
        """``urllm report``'s tables and plots."""
        return self.root / "report"

    # ---- systems and caches
    def system_dir(self, name: str) -> Path:
        """Where system ``name`` keeps its trained state: its stage's folder, else ``systems/<name>``."""
        stage = STAGE_OF_SYSTEM.get(name)
        return self.stage_dir(stage) if stage else self.root / "systems" / name

    def cache_dir(self, name: str) -> Path:
        """``systems/<name>``: a system's own cached folder (keyed by its inputs, :mod:`urllm.cache`);
        a system scoring another's trained state (``graph-encoder``) shares that system's folder."""
        from urllm.recommender import REGISTRY

        spec = REGISTRY.get(name)
        return self.root / "systems" / (spec.state if spec else name)

    @property
    def grounding_cache(self) -> Path:
        return self._override("grounding", "cache_dir") or self.root / "grounding"

    def _override(self, section: str, key: str) -> Path | None:
        if self.cfg is None:
            return None
        value = getattr(getattr(self.cfg, section), key)
        return Path(value) if value else None


def check_writable_dir(path: Path, key: str) -> None:
    """``path`` is (or can be made) a writable folder; else ConfigError naming ``key`` and the path."""
    from urllm.configuration import ConfigError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{key}: {path} is a file, not a folder")
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{key}: cannot create {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}: cannot write to {path} ({parent} is not writable)")
    path.mkdir(parents=True, exist_ok=True)


def check_output_file(path: str | Path, key: str = "--out") -> Path:
    """``path`` can be written as a file: not a folder, its folder writable; fails before any work."""
    from urllm.configuration import ConfigError

    out = Path(path)
    if out.is_dir():
        raise ConfigError(f"{key} {out} is a folder; give a file name, e.g. {out / 'result.json'}")
    if out.exists() and not os.access(out, os.W_OK):
        raise ConfigError(f"{key} {out}: the file is not writable")
    check_writable_dir(out.parent, key)
    return out
