"""SASRec baseline: a causal transformer over the mixed item sequence (Kang & McAuley, 2018).

Training: each training user's mixed sequence (``user_sequences``: history, then the user's targets)
is cut to its last ``max_len + 1`` items. With ``loss: each_domain`` every position predicts the next
item of EACH domain (the task at inference: the next item in a named domain, whatever comes first),
with a full softmax cross-entropy over that domain's items; ``domain`` predicts only the immediate next
item over its own domain, ``catalogue`` over all items. Items are scored by their own output
embeddings plus a per-item bias (``tie_weights`` / ``item_bias``).

Inference: the state at the last history position scores every item of the target domain. The same
state is the user embedding (:meth:`SASRecSystem.user_embeddings`).

Sequences are left-padded to exactly ``max_len`` so the last real item always sits at the same learned
position, in training and at inference alike.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from urllm.baselines.checkpoint import TrainState, load_state, save_state, signature
from urllm.baselines.config import SASRecConfig
from urllm.data.schema import Record, TwoDomainData
from urllm.data.sequences import user_sequences
from urllm.eval.config import EvalConfig
from urllm.eval.evaluate import rank_counts
from urllm.eval.metrics import expected_metrics
from urllm.eval.selection import heldout_users
from urllm.nn.transformer import CausalEncoder

logger = logging.getLogger(__name__)

CHECKPOINT = "sasrec.pt"


class SASRecModel(nn.Module):
    """Item embeddings (token 0 = padding, item ``i`` = token ``i + 1``) + :class:`CausalEncoder`."""

    def __init__(self, n_items: int, cfg: SASRecConfig) -> None:
        super().__init__()
        self.items = nn.Embedding(n_items + 1, cfg.hidden, padding_idx=0)
        # std H^-1/2: the encoder scales tokens by sqrt(H), and tied output logits start near unit size
        nn.init.normal_(self.items.weight, std=cfg.hidden**-0.5)
        with torch.no_grad():
            self.items.weight[0].zero_()
        self.encoder = CausalEncoder(cfg.hidden, cfg.layers, cfg.heads, cfg.dropout, cfg.max_len)
        # untied output embeddings: with tied ones the state of the last item scores that same item (and its
        # history neighbours) highest, yet repeats are rare in Amazon data
        self.out = (
            None if cfg.tie_weights else nn.Parameter(torch.randn(n_items, cfg.hidden) * cfg.hidden**-0.5)
        )
        # a per-item output bias learns popularity from every step, leaving the embeddings the sequence signal
        self.bias = nn.Parameter(torch.zeros(n_items)) if cfg.item_bias else None

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, T) left-padded token ids -> states (B, T, H)."""
        return self.encoder(self.items(tokens), tokens == 0)

    def logits(self, states: torch.Tensor, items: range) -> torch.Tensor:
        """states (N, H) -> (N, len(items)) scores of the global item ids ``items`` (a contiguous block)."""
        if self.out is None:
            weight = self.items.weight[items.start + 1 : items.stop + 1]  # tied: skip the padding row
        else:
            weight = self.out[items.start : items.stop]
        logits = states @ weight.T
        return logits if self.bias is None else logits + self.bias[items.start : items.stop]


def pad_left(seqs: Sequence[Sequence[int]], length: int) -> np.ndarray:
    """(len(seqs), length) int64 of token ids (item + 1), the last ``length`` items right-aligned."""
    out = np.zeros((len(seqs), length), dtype=np.int64)
    for row, seq in enumerate(seqs):
        tail = seq[-length:]
        if len(tail):
            out[row, length - len(tail) :] = np.asarray(tail, dtype=np.int64) + 1
    return out


def training_windows(records: Sequence[Record], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (U, max_len) token ids and labels (U, max_len) next global item ids (-1 = none).

    One row per user: the last ``max_len + 1`` items of the user's sequence, shifted by one.
    """
    seqs = [s for s in user_sequences(records) if len(s) >= 2]
    inputs = pad_left([s[:-1] for s in seqs], max_len)
    labels = pad_left([s[1:] for s in seqs], max_len) - 1  # back to item ids, padding -> -1
    return inputs, labels


def next_in_domain(labels: torch.Tensor, item_domain: torch.Tensor, d: int) -> torch.Tensor:
    """(B, T): for each position, the first item of domain ``d`` among its next items ``labels[:, t:]``.

    ``labels`` (B, T) holds the next item of every position (-1 = padding); the answer is -1 at padding
    and where no item of domain ``d`` follows.
    """
    own = labels.masked_fill((labels < 0) | (item_domain[labels.clamp(min=0)] != d), -1)
    out = own.clone()
    for t in range(labels.shape[1] - 2, -1, -1):  # scan backwards: inherit the answer of position t+1
        out[:, t] = torch.where(own[:, t] >= 0, own[:, t], out[:, t + 1])
    return out.masked_fill(labels < 0, -1)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class SASRecSystem:
    """The Recommender port (``fit`` / ``score``) and the user-embedding port over a trained SASRec."""

    def __init__(self, cfg: SASRecConfig, seed: int = 0, eval_cfg: EvalConfig | None = None) -> None:
        """Args: cfg: the model and its training; seed; eval_cfg: how held-out users are ranked when
        selecting the epoch (always on the full ranking)."""
        self.cfg = cfg
        self.seed = seed
        self.eval_cfg = dataclasses.replace(eval_cfg or EvalConfig(), sampled_negatives=0)
        self.device = resolve_device(self.cfg.device)
        self.model: SASRecModel | None = None
        self.ranges: list[range] = []
        self.item_domain: np.ndarray | None = None
        self.history: list[dict] = []

    # ------------------------------------------------------------------ training

    def fit(self, data: TwoDomainData, run_dir: Path) -> None:
        """Train, selecting the epoch on held-out training users (``selection``); resume or reuse
        ``run_dir/sasrec.pt``. The valid and test splits are never read here."""
        cat = data.catalogue
        self.ranges = [cat.domain_range(d) for d in (0, 1)]
        self.item_domain = cat.item_domain
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / CHECKPOINT
        sig = signature(self.cfg, self.seed, data.name, cat.n_items)

        torch.manual_seed(self.seed)
        self.model = SASRecModel(cat.n_items, self.cfg).to(self.device)
        # decay matrices (embeddings, projections) only, not biases, norms or the per-item popularity bias
        params = list(self.model.parameters())
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": self.cfg.weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
        opt = torch.optim.AdamW(groups, lr=self.cfg.lr)
        state = load_state(path, sig, self.device)
        if state is None:
            state = TrainState()
        else:
            self.model.load_state_dict(state.model)
            try:
                opt.load_state_dict(state.optimizer)
            except ValueError as exc:  # written by an older version of this code: keep the weights
                logger.warning(
                    "optimizer state in %s does not fit (%s); resuming with a fresh one", path, exc
                )
        if state.finished(self.cfg):
            logger.info("reusing the finished SASRec checkpoint %s (best epoch %d)", path, state.best_epoch)
        else:
            if state.epoch:
                logger.info("resuming SASRec from %s after epoch %d", path, state.epoch)
            self._train(data, state, opt, path, sig)
        self.model.load_state_dict(state.best_model)
        self.model.eval()
        self.history = state.history

    def _train(self, data: TwoDomainData, state: TrainState, opt, path: Path, sig: dict) -> None:
        assert self.model is not None
        fit_records, heldout = data.records("train"), []
        if self.cfg.selection == "heldout":
            fit_records, heldout = heldout_users(fit_records, self.cfg.heldout_fraction, self.seed)
        inputs, labels = training_windows(fit_records, self.cfg.max_len)
        inputs_t, labels_t = torch.from_numpy(inputs), torch.from_numpy(labels)
        item_domain = torch.from_numpy(np.asarray(self.item_domain, dtype=np.int64))
        n_params = sum(p.numel() for p in self.model.parameters())
        logger.info(
            "SASRec: %d training sequences, %d held-out training records for selection, %d parameters, "
            "device %s", len(inputs), len(heldout), n_params, self.device,
        )  # fmt: skip
        while not state.finished(self.cfg):
            epoch = state.epoch + 1
            start, cpu_start = time.perf_counter(), time.process_time()
            # per-epoch seeds make a resumed run draw the same batches and dropout as an uninterrupted one
            torch.manual_seed(self.seed * 100_003 + epoch)
            perm = torch.randperm(len(inputs), generator=torch.Generator().manual_seed(self.seed + epoch))
            self.model.train()
            total, n_batches = 0.0, 0
            bar = tqdm(
                range(0, len(perm), self.cfg.batch_size),
                desc=f"sasrec epoch {epoch}",
                leave=False,
                disable=None,
            )
            for lo in bar:
                idx = perm[lo : lo + self.cfg.batch_size]
                loss = self.loss(inputs_t[idx].to(self.device), labels_t[idx].to(self.device), item_domain)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item()
                n_batches += 1
                bar.set_postfix(loss=f"{total / n_batches:.4f}")
            mrr = self.heldout_mrr(data, heldout) if heldout else {}
            # without selection the last epoch is the model (scores rise with epochs)
            score = float(np.mean(list(mrr.values()))) if mrr else float(epoch)
            state.epoch = epoch
            if score > state.best_mrr:
                state.best_mrr, state.best_epoch, state.bad_epochs = score, epoch, 0
                state.best_model = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            else:
                state.bad_epochs += 1
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
            state.history.append(
                {
                    "epoch": epoch,
                    "loss": total / max(n_batches, 1),
                    "seconds": seconds,
                    "cpu_seconds": cpu,
                    **mrr,
                }
            )
            state.model = self.model.state_dict()
            state.optimizer = opt.state_dict()
            save_state(path, state, sig, self.cfg)
            logger.info(
                "epoch %d/%d  loss %.4f  held-out MRR %s  (mean %.4f, best %.4f @ %d)  %.1f s (%.1f s CPU)",
                epoch,
                self.cfg.epochs,
                total / max(n_batches, 1),
                " ".join(f"{k} {v:.4f}" for k, v in mrr.items()),
                score,
                state.best_mrr,
                state.best_epoch,
                seconds,
                cpu,
            )
        if state.bad_epochs >= self.cfg.patience:
            logger.info("early stop after epoch %d; best epoch %d", state.epoch, state.best_epoch)

    def loss(self, inputs: torch.Tensor, labels: torch.Tensor, item_domain: torch.Tensor) -> torch.Tensor:
        """Mean next-item cross-entropy of ``inputs`` (B, T) given next-item ``labels`` (B, T), -1 = none."""
        assert self.model is not None
        states = self.model(inputs)  # (B, T, H)
        item_domain = item_domain.to(labels.device)
        if self.cfg.loss == "catalogue":
            keep = labels >= 0
            everything = range(0, self.ranges[1].stop)
            return F.cross_entropy(self.model.logits(states[keep], everything), labels[keep])
        if self.cfg.loss == "each_domain":
            targets = [next_in_domain(labels, item_domain, d) for d in (0, 1)]  # the next item of domain d
        else:
            dom = item_domain[labels.clamp(min=0)]
            targets = [labels.masked_fill(dom != d, -1) for d in (0, 1)]  # the next item, if of domain d
        total, count = states.new_zeros(()), 0
        for items, target in zip(self.ranges, targets, strict=True):
            keep = target >= 0
            if keep.any():
                logits = self.model.logits(states[keep], items)  # (N_d, |domain d|)
                total = total + F.cross_entropy(logits, target[keep] - items.start, reduction="sum")
                count += int(keep.sum())
        return total / max(count, 1)

    def heldout_mrr(self, data: TwoDomainData, heldout: Sequence[Record]) -> dict[str, float]:
        """Full-ranking MRR per target domain on the held-out training users' records."""
        out = {}
        for d, name in enumerate(data.catalogue.domains):
            recs = [r for r in heldout if r.domain == d]
            if recs:
                g, t = rank_counts(self, recs, d, data, self.eval_cfg, desc=f"sasrec held-out {name}")
                out[name] = float(expected_metrics(g, t, [1])["MRR"].mean())
        return out

    # ------------------------------------------------------------------ inference

    @torch.no_grad()
    def last_states(self, records: Sequence[Record]) -> torch.Tensor:
        """(B, H) encoder state at the last history position of each record."""
        if self.model is None:
            raise RuntimeError("SASRecSystem used before fit()")
        was_training = self.model.training
        self.model.eval()
        out = []
        for lo in range(0, len(records), self.cfg.eval_batch_size):
            batch = records[lo : lo + self.cfg.eval_batch_size]
            tokens = torch.from_numpy(pad_left([r.history for r in batch], self.cfg.max_len))
            out.append(self.model(tokens.to(self.device))[:, -1])
        self.model.train(was_training)
        if not out:
            return torch.zeros(0, self.cfg.hidden, device=self.device)
        return torch.cat(out)

    @torch.no_grad()
    def score(self, records: Sequence[Record], domain: int) -> np.ndarray:
        """(B, n_items_of_domain) scores of every item of ``domain``."""
        states = self.last_states(records)
        assert self.model is not None
        return self.model.logits(states, self.ranges[domain]).float().cpu().numpy()

    def user_embeddings(self, records: Sequence[Record], domain: int) -> np.ndarray:
        """(B, hidden) float32: the last history state. One mixed encoder, so ``domain`` changes nothing."""
        return self.last_states(records).float().cpu().numpy().astype(np.float32, copy=False)
