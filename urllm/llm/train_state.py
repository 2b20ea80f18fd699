"""Training data order, resumable checkpoints and the JSONL log of LoRA fine-tuning.

A checkpoint holds only what changes during training — the LoRA weights, the optimizer and scheduler
states, the counters and the RNG state — a few MB instead of the full model. It is written at optimizer
step boundaries as one atomic folder ``checkpoint-<step>/`` (:class:`urllm.atomic.CheckpointSeries`:
staging folder, fsync, manifest, rename; the previous one kept), so a run killed at any moment resumes
from its last complete checkpoint and, given the deterministic data order below, continues exactly as if
it had never stopped; a damaged newest checkpoint is skipped with a warning. The JSONL log survives a
kill in the middle of a line: the partial last line is cut off with a warning.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Sampler

from urllm.atomic import CheckpointSeries, atomic_write_text, no_space_guard
from urllm.data.schema import DataError

logger = logging.getLogger(__name__)

CHECKPOINT = "checkpoint"
LOG = "train_log.jsonl"


def load_prompts(path: Path, limit: int, seed: int, extra_columns: tuple[str, ...] = ()) -> dict[str, list]:
    """Columns ``prompt``, ``completion`` (and ``extra_columns``) of a prompt parquet as lists.

    ``limit > 0`` keeps a seeded sample of that many rows in file order, so growing ``limit`` with the
    same seed only adds rows.
    """
    import pyarrow.parquet as pq

    if not path.is_file():
        raise DataError(f"{path}: prompt file not found (run the prompts stage first)")
    table = pq.read_table(path)
    wanted = ("prompt", "completion", *extra_columns)
    missing = [c for c in wanted if c not in table.column_names]
    if missing:
        raise DataError(f"{path}: missing column {missing[0]!r} (has {', '.join(table.column_names)})")
    cols = {c: table.column(c).to_pylist() for c in wanted}
    for i, (p, c) in enumerate(zip(cols["prompt"], cols["completion"], strict=True)):
        if not isinstance(p, str) or not p or not isinstance(c, str) or not c.strip():
            raise DataError(f"{path}: row {i} has an empty or non-text prompt/completion")
    n = len(cols["prompt"])
    if 0 < limit < n:
        keep = np.sort(np.random.default_rng(seed).permutation(n)[:limit])
        cols = {c: [v[i] for i in keep] for c, v in cols.items()}
    return cols


class EpochOrder(Sampler[int]):
    """A fresh seeded permutation per epoch that depends only on ``(seed, epoch)``.

    Resuming mid-epoch therefore sees the same order and can skip the batches already trained on.
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        return iter(np.random.default_rng([self.seed, self.epoch]).permutation(self.n).tolist())

    def __len__(self) -> int:
        return self.n


@dataclass
class Progress:
    """Counters of a run; ``batches_in_epoch`` counts this process's micro-batches of the current epoch."""

    step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0
    tokens: int = 0
    seconds: float = 0.0
    valid_loss_before: float | None = None
    last_valid_loss: float | None = None


def save_checkpoint(out_dir: Path, lora_state: dict, optimizer, scheduler, progress: Progress) -> None:
    """Write ``out_dir/checkpoint-<step>`` as one atomic unit (call on the main process only); on a full
    disk a one-line ``no space left on ...`` error, the previous checkpoint intact."""
    series = CheckpointSeries(out_dir, CHECKPOINT)
    stage = series.staging(progress.step)
    with no_space_guard(series.path(progress.step), cleanup=stage):
        torch.save(
            {
                "lora": {k: v.detach().cpu() for k, v in lora_state.items()},
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": torch.get_rng_state(),
            },
            stage / "state.pt",
        )
        (stage / "progress.json").write_text(json.dumps(asdict(progress), indent=2) + "\n")
    series.commit(progress.step)


def find_checkpoint(out_dir: Path) -> Path | None:
    """The newest complete checkpoint that loads (a damaged newer one is skipped with a warning);
    None when there is none."""
    found = CheckpointSeries(out_dir, CHECKPOINT).load_latest(load_checkpoint)
    if found is not None:
        return found[0]
    for name in (CHECKPOINT, CHECKPOINT + ".old"):  # written before checkpoints were numbered
        if (out_dir / name / "progress.json").is_file():
            return out_dir / name
    return None


def load_checkpoint(path: Path) -> tuple[dict, Progress]:
    """The saved tensors (``lora``, ``optimizer``, ``scheduler``, ``rng``) and the counters."""
    state = torch.load(path / "state.pt", map_location="cpu", weights_only=False)
    progress = Progress(**json.loads((path / "progress.json").read_text()))
    return state, progress


class JsonlLog:
    """Append-only training log; on resume, rows written after the checkpoint are dropped."""

    def __init__(self, path: Path, resume_step: int | None, enabled: bool) -> None:
        self.path = path
        self.enabled = enabled
        if not enabled:
            return
        rows = []
        if resume_step is not None and path.is_file():
            rows = [r for r in read_log(path) if r.get("step", 0) <= resume_step]
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))

    def write(self, **row) -> None:
        if self.enabled:
            with no_space_guard(self.path), self.path.open("a") as f:
                f.write(json.dumps(row) + "\n")


def read_log(path: Path) -> list[dict]:
    """The rows of a JSONL log; a partial last line (a write cut short by a kill) is left out with a
    warning, any other unreadable line is a :class:`DataError` naming the file and line."""
    lines = Path(path).read_bytes().split(b"\n")
    rows = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            if n == len(lines):  # no newline after it: the last write was interrupted
                logger.warning("%s:%d: ignoring a partial last line (an interrupted write)", path, n)
                break
            raise DataError(f"{path}:{n}: not valid JSON") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{n}: expected a JSON object")
        rows.append(row)
    return rows
