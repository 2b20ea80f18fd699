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
    def finetune(self) -> Path:
        return self._override("finetune", "output_dir") or self.stage_dir("finetune")

    @property
    def adapter(self) -> Path:
        return self._override("infer", "adapter_dir") or self.finetune / "adapter"

    def infer(self, split: str) -> Path:
        base = self._override("infer", "out_dir") or self.stage_dir("infer")
        return base / split

    def evaluate(self, split: str) -> Path:
        return self.stage_dir("evaluate", split)

    def results(self, split: str) -> Path:
        return self.evaluate(split) / "results.json"

    # ---- systems and caches
    def system_dir(self, name: str) -> Path:
        """Where system ``name`` keeps its trained state: its stage's folder, else ``systems/<name>``."""
        stage = STAGE_OF_SYSTEM.get(name)
        return self.stage_dir(stage) if stage else self.root / "systems" / name

    @property
    def grounding_cache(self) -> Path:
        return self._override("grounding", "cache_dir") or self.root / "grounding"

    def _override(self, section: str, key: str) -> Path | None:
        if self.cfg is None:
            return None
        value = getattr(getattr(self.cfg, section), key)
        return Path(value) if value else None
