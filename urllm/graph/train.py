"""Training loop of the dual-graph encoder through ``accelerate`` (the same code on CPU, one GPU or many).

Each epoch shuffles the training users with a seed derived from ``(seed, epoch)`` (so a resumed run sees
the same order) and shards the batches over processes. Model selection never reads the reported split:
with ``selection: heldout`` (the default) fold 0 of the training users is left out of training, and after
each epoch their own training records (history -> next art / office item, like a valid record), scored
with the graphs and transition counts built without them, calibrate the encoder's weight
(``calibrate``) and give the MRR that picks the saved epoch and drives early stopping. ``selection: none``
trains ``epochs`` epochs and keeps the last; ``selection: valid`` (the old behaviour) is there to measure
what selecting on the reported split changes. The valid MRR is scored and logged after every epoch.

Files in the run directory:
  ``checkpoint-NNNNNN/`` after epoch N: the accelerate state (weights, optimizer, RNG) and
                        ``train_state.json`` (epoch, best MRR, history, the signature it was written
                        for), one atomic unit (:class:`urllm.atomic.CheckpointSeries`); the previous
                        epoch's is kept;
  ``model.pt``          the best weights with the resolved config and signature (what inference loads).
A run interrupted between epochs resumes from the newest complete checkpoint (a damaged newest one is
skipped with a warning); a finished run is reused as it is.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from urllm.atomic import CheckpointSeries, atomic_torch_save, no_space_guard
from urllm.configuration import to_dict
from urllm.data.schema import Record
from urllm.data.sequences import user_sequences
from urllm.eval.metrics import expected_metrics, greater_and_ties
from urllm.graph.batches import SeqBatch, record_batch
from urllm.graph.build import training_sequences
from urllm.graph.config import GraphConfig
from urllm.graph.model import DualGraphEncoder

logger = logging.getLogger(__name__)

MODEL_FILE = "model.pt"
STATE_FILE = "train_state.json"
CHECKPOINT_DIR = "checkpoint"
# bump when a change of the model or objective makes older checkpoints unfit to resume
MODEL_VERSION = 4
# calibration (``calibrate``): the encoder weights tried on the held-out users
CALIBRATION_GRID = (0.0, 0.125, 0.25, 0.375, 0.5, 0.75, 1.0, 1.5)


@dataclass
class TrainState:
    signature: dict[str, Any] = field(default_factory=dict)
    epoch: int = 0  # epochs completed
    best_mrr: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0
    history: list[dict[str, float]] = field(default_factory=list)

    def done(self, cfg: GraphConfig) -> bool:
        """The stopping rule of ``cfg`` holds (so raising ``epochs`` extends a finished run)."""
        return self.epoch >= cfg.epochs or (cfg.patience > 0 and self.bad_epochs >= cfg.patience)


def signature(cfg: GraphConfig, seed: int, data_id: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint must match to be resumed or reused (stopping rules and device excluded)."""
    from urllm.graph.config import NOT_IN_SIGNATURE

    sig = {k: v for k, v in to_dict(cfg).items() if k not in NOT_IN_SIGNATURE}
    return {**sig, "seed": seed, "data": data_id, "version": MODEL_VERSION}


@torch.no_grad()
def scores_in_batches(
    model: DualGraphEncoder,
    records: Sequence[Record],
    d: int,
    item_domain: np.ndarray,
    batch_size: int,
    device: torch.device,
    fold: int | None = None,
    encoder_only: bool = False,
) -> np.ndarray:
    """(len(records), n_items of domain d) float32 scores. ``fold``: the records are training users
    of that fold: tokens from the graphs without the fold, and the prior from the counts without it
    (``counts_<fold>``) or, where those were not built, with the target transition left out.
    ``encoder_only``: the encoder's scores alone (no prior, no item bias, no calibrated weight)."""
    model.eval()
    tables = model.item_tables(fold)[:2]  # once per pass, not per batch
    own_counts = fold is not None and f"counts_{fold}" in model.graphs
    model.prior_fold = fold if own_counts else None
    out = []
    try:
        for start in range(0, len(records), batch_size):
            chunk = records[start : start + batch_size]
            b = record_batch(chunk, item_domain, model.cfg.max_len).to(device)
            if encoder_only:
                out.append(model.score_encoder(b, d, tables).float().cpu().numpy())
                continue
            loo = None
            if fold is not None and not own_counts:
                loo = torch.tensor([r.target for r in chunk], device=device)
            out.append(model.score_last(b, d, tables, loo).float().cpu().numpy())
    finally:
        model.prior_fold = None
    return np.concatenate(out) if out else np.zeros((0, model.ranges[d][1] - model.ranges[d][0]), np.float32)


def mrr(scores: np.ndarray, targets: np.ndarray) -> float:
    """Mean full-ranking MRR of target columns ``targets`` (M,) in ``scores`` (M, C)."""
    g, t = greater_and_ties(scores, targets)
    return float(expected_metrics(g, t, [1])["MRR"].mean())


def valid_mrr(
    model: DualGraphEncoder,
    records: Sequence[Record],
    item_domain: np.ndarray,
    cfg: GraphConfig,
    device,
    fold: int | None = None,
    encoder_only: bool = False,
) -> dict[str, float]:
    """Full-ranking MRR per target domain (index) on ``records`` (``fold``: held-out training users of
    that fold, see :func:`scores_in_batches`)."""
    out = {}
    for d in (0, 1):
        recs = [r for r in records if r.domain == d]
        if not recs:
            continue
        s = scores_in_batches(model, recs, d, item_domain, cfg.eval_batch_size, device, fold, encoder_only)
        out[str(d)] = mrr(s, np.array([r.target - model.ranges[d][0] for r in recs]))
    return out


def user_folds(records: Sequence[Record], folds: int) -> dict[str, int]:
    """Training user -> fold: user ``i`` of :func:`~urllm.graph.build.training_sequences` is in fold
    ``i % folds`` (a user by its first sequence; users without a transition are in no fold)."""
    seqs = training_sequences(records)
    index: dict[tuple[int, ...], list[int]] = {}
    for i, s in enumerate(seqs):
        index.setdefault(tuple(s), []).append(i)
    by_user: dict[str, list[Record]] = {}
    for r in records:
        by_user.setdefault(r.user, []).append(r)
    out = {}
    for user, recs in by_user.items():
        own = user_sequences(recs)
        slots = index.get(tuple(own[0]), []) if own else []
        if slots:
            out[user] = slots.pop(0) % folds
    return out


def heldout_records(records: Sequence[Record], folds: int) -> list[Record]:
    """The training records of the users of fold 0 (:func:`user_folds`): records exactly like the
    valid ones (a user's history, then their next item of a domain), of users that training leaves out
    and whose sequences the fold-0 graphs and counts do not contain."""
    fold = user_folds(records, folds)
    return [r for r in records if fold.get(r.user) == 0]


@torch.no_grad()
def calibrate(
    model: DualGraphEncoder, records: Sequence[Record], item_domain: np.ndarray, cfg: GraphConfig, device
) -> dict[str, float]:
    """Set ``model.neural_weights[d]`` to the value of ``CALIBRATION_GRID`` whose scores (prior + bias +
    weight * encoder) rank the held-out users' items best; returns the MRR per domain at that weight."""
    out = {}
    for d in (0, 1):
        recs = [r for r in records if r.domain == d]
        if not recs:
            continue
        y = np.array([r.target - model.ranges[d][0] for r in recs])
        model.neural_weights[d] = 0.0
        base = scores_in_batches(model, recs, d, item_domain, cfg.eval_batch_size, device, fold=0)
        model.neural_weights[d] = 1.0
        neural = scores_in_batches(model, recs, d, item_domain, cfg.eval_batch_size, device, fold=0) - base
        found = [mrr(base + w * neural, y) for w in CALIBRATION_GRID]
        best = int(np.argmax(found))  # the first best: the smaller weight on ties
        model.neural_weights[d] = CALIBRATION_GRID[best]
        out[str(d)] = found[best]
        logger.info(
            "calibration, domain %d (%d items): MRR %s at encoder weights %s -> %.3g",
            d, len(recs), [round(m, 4) for m in found], list(CALIBRATION_GRID), CALIBRATION_GRID[best],
        )  # fmt: skip
    return out


def train(
    model: DualGraphEncoder,
    train_batch: SeqBatch,
    valid: Sequence[Record],
    item_domain: np.ndarray,
    cfg: GraphConfig,
    seed: int,
    run_dir: Path,
    sig: dict[str, Any],
    heldout: Sequence[Record] = (),
    domain_names: Sequence[str] = ("0", "1"),
) -> TrainState:
    """Train (or resume, or reuse) in ``run_dir``; the selected weights end in ``run_dir/model.pt``.
    ``heldout``: the held-out training users' records (:func:`heldout_records`) that calibrate the
    encoder weight and, with ``selection: heldout``, pick the epoch; ``valid`` is scored and logged."""
    if cfg.holds_out and not heldout:
        raise ValueError("selection: heldout / calibrate need the held-out records (heldout_records)")
    run_dir.mkdir(parents=True, exist_ok=True)
    series = CheckpointSeries(run_dir, CHECKPOINT_DIR)
    found = series.load_latest(load_train_state)
    state = found[1] if found else None
    if state is not None and state.signature != sig:
        logger.warning("%s was written for another config or data: training anew", found[0])
        state = None
    if state is not None and state.done(cfg) and (run_dir / MODEL_FILE).is_file():
        logger.info("graph model in %s is trained (best epoch %d): reusing it", run_dir, state.best_epoch)
        return state
    acc = Accelerator(cpu=cfg.device == "cpu")
    set_seed(seed)
    opt = optimizer(model, cfg)
    wrapped, opt = acc.prepare(model, opt)
    state = resume(acc, wrapped, opt, series, sig) if state is not None and state.epoch > 0 else None
    if state is None:
        series.clear()  # no checkpoint of another config or an older run may be resumed later
        state = TrainState(signature=sig)
    for epoch in range(state.epoch, cfg.epochs):
        if state.done(cfg):
            break
        start = time.perf_counter()
        total, n_steps = run_epoch(wrapped, opt, acc, train_batch, cfg, seed, epoch)
        train_s = time.perf_counter() - start
        model = acc.unwrap_model(wrapped)
        held, held_enc = {}, {}
        if heldout and cfg.calibrate:  # sets the encoder weights; its MRR is the held-out MRR at them
            held = calibrate(model, heldout, item_domain, cfg, acc.device)
        elif heldout:
            held = valid_mrr(model, heldout, item_domain, cfg, acc.device, fold=0)
        if heldout:
            held_enc = valid_mrr(model, heldout, item_domain, cfg, acc.device, fold=0, encoder_only=True)
        mrr = valid_mrr(
            model, valid, item_domain, cfg, acc.device
        )  # reported, selects only if selection=valid
        mean = float(np.mean(list(mrr.values()))) if mrr else float("nan")
        held_mean = float(np.mean(list(held.values()))) if held else float("nan")
        state.epoch = epoch + 1
        state.history.append(
            {"epoch": epoch + 1, "loss": total / max(n_steps, 1), "valid_mrr": mean, "train_s": train_s}
            | {f"valid_mrr_{k}": v for k, v in mrr.items()}
            | {"heldout_mrr": held_mean}
            | {f"heldout_mrr_{k}": v for k, v in held.items()}
            | {f"heldout_encoder_mrr_{k}": v for k, v in held_enc.items()}
            | {f"neural_weight_{d}": float(model.neural_weights[d]) for d in (0, 1)}
        )
        logger.info(
            "graph epoch %d: loss %.4f, held-out MRR %s (encoder alone %s), valid MRR %s, %.0f s",
            epoch + 1, total / max(n_steps, 1), *({domain_names[int(k)]: round(v, 4) for k, v in m.items()}
                                                  for m in (held, held_enc, mrr)), train_s,
        )  # fmt: skip
        crit = selection_value(cfg, held_mean, mean, epoch + 1, total)
        if crit > state.best_mrr:
            state.best_mrr, state.best_epoch, state.bad_epochs = crit, epoch + 1, 0
            if acc.is_main_process:
                save_model(run_dir / MODEL_FILE, acc.unwrap_model(wrapped), sig, state)
        else:
            state.bad_epochs += 1
        save_checkpoint(acc, series, state)
    return state


def load_train_state(folder: Path) -> TrainState:
    """The :class:`TrainState` inside a checkpoint folder (raises when unreadable)."""
    return TrainState(**json.loads((folder / STATE_FILE).read_text()))


def resume(
    acc: Accelerator,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    series: CheckpointSeries,
    sig: dict[str, Any],
) -> TrainState | None:
    """Load the newest complete checkpoint written for ``sig`` into the prepared ``model`` and ``opt``;
    None (both as they were) when none loads."""
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    initial_opt = copy.deepcopy(opt.state_dict())

    def load(folder: Path) -> TrainState:
        state = load_train_state(folder)
        if state.signature != sig:
            raise ValueError("written for another config or data")
        acc.load_state(str(folder))
        return state

    found = series.load_latest(load)
    if found is None:
        model.load_state_dict(initial)
        opt.load_state_dict(initial_opt)
        return None
    logger.info("resuming graph training after epoch %d (%s)", found[1].epoch, found[0].name)
    return found[1]


def save_checkpoint(acc: Accelerator, series: CheckpointSeries, state: TrainState) -> None:
    """The accelerate state and ``state`` of epoch ``state.epoch`` as one atomic checkpoint folder."""
    stage = series.staging_path(state.epoch)
    if acc.is_main_process:
        series.staging(state.epoch)
    acc.wait_for_everyone()
    with no_space_guard(series.path(state.epoch), cleanup=stage if acc.is_main_process else None):
        acc.save_state(str(stage))
        if acc.is_main_process:
            (stage / STATE_FILE).write_text(json.dumps(asdict(state), indent=1) + "\n")
    acc.wait_for_everyone()
    if acc.is_main_process:
        series.commit(state.epoch)
    acc.wait_for_everyone()


def selection_value(cfg: GraphConfig, heldout: float, valid: float, epoch: int, loss: float) -> float:
    """What ``cfg.selection`` maximises over epochs: the held-out users' MRR (mean of the domains), the
    valid MRR, or (``none``) the epoch number, so the last epoch is kept and nothing stops early."""
    if cfg.selection == "heldout":
        return heldout
    if cfg.selection == "valid":
        return valid if valid == valid else -float(loss)  # no valid records: the lowest loss
    return float(epoch)


def run_epoch(
    wrapped: torch.nn.Module,
    opt: torch.optim.Optimizer,
    acc: Accelerator,
    train_batch: SeqBatch,
    cfg: GraphConfig,
    seed: int,
    epoch: int,
    max_steps: int = 0,
) -> tuple[float, int]:
    """One pass over the training users (this process's share); returns (summed loss, steps)."""
    batches = epoch_batches(train_batch, cfg, seed, epoch)
    batches = batches[: len(batches) - len(batches) % acc.num_processes or None]  # equal steps per rank
    mine = batches[acc.process_index :: acc.num_processes][: max_steps or None]
    wrapped.train()
    show = cfg.progress and acc.is_main_process
    bar = tqdm(mine, desc=f"graph epoch {epoch + 1}", leave=False, disable=not show)
    total = 0.0
    for idx in bar:
        terms = wrapped(train_batch.rows(torch.from_numpy(idx)).to(acc.device))
        opt.zero_grad(set_to_none=True)
        acc.backward(terms["loss"])
        opt.step()
        total += float(terms["loss"].detach())
        bar.set_postfix({k: f"{float(v.detach()):.3f}" for k, v in terms.items()})
    return total, len(mine)


def epoch_batches(train_batch: SeqBatch, cfg: GraphConfig, seed: int, epoch: int) -> list[np.ndarray]:
    """The row indices of each training step of ``epoch`` (seeded shuffle; one fold per batch with
    ``graph_folds``; the calibration fold left out with ``calibrate``)."""
    rng = np.random.default_rng([seed, epoch])
    perm = rng.permutation(len(train_batch))
    if cfg.holds_out:  # fold 0: the held-out users of selection and calibration
        perm = perm[train_batch.fold.numpy()[perm] != 0]
    if train_batch.fold is None:
        return chunks(perm, cfg.batch_size)
    # one fold per batch: its rows share the graphs without that fold
    fold = train_batch.fold.numpy()[perm]
    batches = [b for k in np.unique(fold) for b in chunks(perm[fold == k], cfg.batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def optimizer(model: torch.nn.Module, cfg: GraphConfig) -> torch.optim.Optimizer:
    """AdamW; the fused kernel (one pass over each parameter instead of one per update term)."""
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)


def chunks(idx: np.ndarray, size: int) -> list[np.ndarray]:
    return [idx[i : i + size] for i in range(0, len(idx), size)]


def save_model(path: Path, model: DualGraphEncoder, sig: dict[str, Any], state: TrainState) -> None:
    """Best weights + resolved config + signature, written atomically."""
    blob = {
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": to_dict(model.cfg),
        "signature": sig,
        "ranges": [list(r) for r in model.ranges],
        "epoch": state.epoch,
        "valid_mrr": state.best_mrr,
    }
    atomic_torch_save(blob, path)
