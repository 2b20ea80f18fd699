"""A resumable training checkpoint for the trained baselines: weights, optimizer, epoch, best so far.

The checkpoint stores a *signature* (the model config, seed and dataset identity). A checkpoint whose
signature differs from the current run is not resumed: training starts anew and overwrites it. Fields
that only decide when to stop (``epochs``, ``patience``) and the device are not part of the signature,
so a finished run can be extended by raising ``epochs``.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from urllm.atomic import atomic_torch_save
from urllm.configuration import signature_dict, to_dict

logger = logging.getLogger(__name__)


@dataclass
class TrainState:
    """Everything needed to continue (or reuse) a training run."""

    epoch: int = 0  # epochs completed
    best_mrr: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0  # epochs since the best one
    model: dict[str, Any] = field(default_factory=dict)
    optimizer: dict[str, Any] = field(default_factory=dict)
    best_model: dict[str, Any] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)  # one entry per epoch: loss, valid MRR, seconds

    def finished(self, cfg: Any) -> bool:
        """True once ``cfg.epochs`` are done or ``cfg.patience`` epochs passed without improvement."""
        return self.epoch >= cfg.epochs or (self.epoch > 0 and self.bad_epochs >= cfg.patience)


def signature(cfg: Any, seed: int, data_name: str, n_items: int) -> dict[str, Any]:
    """What must match for a checkpoint to be resumed: model/training config, seed and data."""
    sig = signature_dict(cfg)  # runtime fields and stopping rules (extends) are not part of it
    return {**sig, "seed": seed, "data": data_name, "n_items": n_items}


def save_state(path: Path, state: TrainState, sig: dict[str, Any], config: Any = None) -> None:
    """Write atomically (temp file, fsync, rename) so a kill never leaves a half-written checkpoint."""
    blob = {"signature": sig, "config": to_dict(config) if config is not None else sig}
    blob.update({f.name: getattr(state, f.name) for f in dataclasses.fields(state)})  # no deep copy
    atomic_torch_save(blob, path)  # fsync + rename; a full disk: "no space left on <path>", old file kept


def load_state(path: Path, sig: dict[str, Any], device: torch.device) -> TrainState | None:
    """The saved state if ``path`` exists and was written for the same signature, else None."""
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # a corrupt file must not stop a rerun: train anew
        logger.warning("cannot read checkpoint %s (%s); training anew", path, exc)
        return None
    if blob.get("signature") != sig:
        old = blob.get("signature") or {}
        diff = sorted(k for k in set(old) | set(sig) if old.get(k) != sig.get(k))
        logger.warning("checkpoint %s was written for a different config (%s); training anew", path, diff)
        return None
    names = {f.name for f in dataclasses.fields(TrainState)}
    return TrainState(**{k: v for k, v in blob.items() if k in names})
