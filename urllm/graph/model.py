"""The dual-graph cross-domain encoder (collaborative + semantic graphs, three causal encoders).

Item tokens (width ``hidden``) are ``[ID + graph embedding] ⊕ projected semantic embedding``:

* collaborative part (``hidden - semantic_dim``): an ID embedding ``e_i`` plus its propagation over a
  transition graph, ``e_i + mean_k (A^k e)_i``. Tokens of the mixed encoder use the cross-domain graph;
  tokens of the X-only / Y-only encoders and the output heads use the intra-domain graphs;
* semantic part (``semantic_dim``): the mean of the item's attribute-word embeddings (item-attribute
  graph), plus its projected title embedding and kNN propagation when the title view is on, projected.

Three :class:`~urllm.nn.transformer.CausalEncoder` read the mixed, X-only and Y-only windows. The domain-d
score of the next item at position ``t`` is ``head_d(mixed_t + enc_d[last d-item <= t]) · token_i + b_i``
over all items ``i`` of domain d (tied output embeddings), plus an optional learned multiple of
``log(1 + #transitions last d-item -> i)`` (the first-order transition prior).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from urllm.graph.batches import SeqBatch
from urllm.graph.build import propagate, with_padding_row, with_self_loops
from urllm.graph.config import GraphConfig
from urllm.graph.losses import alignment_loss, contrastive_loss, next_item_ce
from urllm.nn.transformer import CausalEncoder

_NEG_INF = torch.tensor(float("-inf"))


def sampled_ce(
    pos: torch.Tensor, neg: torch.Tensor, hard: torch.Tensor, hard_rows: torch.Tensor
) -> torch.Tensor:
    """Mean over rows of ``-log softmax`` of the target score ``pos`` (M,) among [target, the shared
    negatives ``neg`` (M, K) (-inf = not a candidate of that row), the row's hard negatives ``hard`` (E,)
    of rows ``hard_rows`` (E,)]: a log-sum-exp shifted by a detached max."""
    with torch.no_grad():
        top = torch.maximum(pos, neg.max(1).values)
        if hard.numel():
            with warnings.catch_warnings():  # "index_reduce is in beta": fine for a max
                warnings.simplefilter("ignore")
                top = top.index_reduce(0, hard_rows, hard, "amax")
    total = (pos - top).exp() + (neg - top.unsqueeze(1)).exp().sum(1)
    if hard.numel():
        total = total.index_add(0, hard_rows, (hard - top[hard_rows]).exp())
    return (top + total.log() - pos).mean()


class DualGraphEncoder(nn.Module):
    """Args:
    cfg: the graph config (sizes, graphs, loss weights).
    ranges: ``(lo, hi)`` global item-id block of each domain.
    graphs: CSR matrices ``cross``, ``intra`` (n_items, n_items), ``counts`` (directed transition
        counts), ``attr`` (n_items, n_attrs), optional ``knn`` (n_items, n_items).
    text: optional (n_items, D) title embeddings (the second semantic view).
    """

    def __init__(
        self,
        cfg: GraphConfig,
        ranges: list[tuple[int, int]],
        graphs: dict[str, torch.Tensor],
        text: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.ranges = ranges
        n_items = ranges[1][1]
        # sparse graphs are plain attributes, not buffers: they are rebuilt from data (or graphs.pt),
        # stay out of the state dict, and DDP never tries to broadcast them
        self.graphs = dict(graphs)
        self.ids = nn.Embedding(n_items + 1, cfg.collab_dim, padding_idx=0)
        nn.init.normal_(self.ids.weight, std=cfg.hidden**-0.5)
        with torch.no_grad():
            self.ids.weight[0].zero_()
        S = cfg.semantic_dim
        if S:
            self.attrs = nn.Embedding(graphs["attr"].shape[1], S)
            nn.init.normal_(self.attrs.weight, std=S**-0.5)
            self.text_proj = nn.Linear(text.shape[1], S) if text is not None else None
            self.text = text
            self.sem_proj = nn.Linear(S, S)
            self.align_proj = nn.Linear(S, cfg.collab_dim) if cfg.align > 0 else None
        self.encoders = nn.ModuleList(
            CausalEncoder(cfg.hidden, cfg.layers, cfg.heads, cfg.dropout, cfg.max_len) for _ in range(3)
        )
        self.heads = nn.ModuleList(nn.Linear(cfg.hidden, cfg.hidden, bias=False) for _ in range(2))
        for h in self.heads:
            nn.init.eye_(h.weight)
        self.bias = nn.Parameter(torch.zeros(n_items)) if cfg.item_bias else None
        # weights [direction, j]: successors (row 0) and predecessors (row 1) of the j-th most recent
        # same-domain item; the most recent item counts most
        init = [[cfg.transition_prior * 0.5**j * 0.5**r for j in range(cfg.prior_items)] for r in (0, 1)]
        self.prior = nn.Parameter(torch.tensor(init)) if cfg.transition_prior > 0 else None
        # residual scoring: a learned per-domain multiple of the encoder's scores, small at the start
        self.scale = nn.Parameter(torch.full((2,), cfg.neural_scale)) if cfg.neural_scale > 0 else None
        # scoring only: the encoder's weight per domain chosen on held-out users (``calibrate``)
        self.register_buffer("neural_weights", torch.ones(2))
        # scoring only: the prior reads ``counts_<k>`` (transitions without fold k) when set
        self.prior_fold: int | None = None
        if cfg.contrastive > 0 and cfg.contrastive_kind == "infomax":
            self.discriminator = nn.Bilinear(cfg.hidden, cfg.hidden, 1)

    # ------------------------------------------------------------------ item representations

    def _graph(self, name: str, device: torch.device, padded: bool = False) -> torch.Tensor | None:
        """The sparse graph ``name`` on ``device``; ``padded``: with an empty row 0 (and column 0 for the
        item-item graphs), so it multiplies tables indexed by token id (0 = padding) directly."""
        key = name + "+pad" if padded else name
        g = self.graphs.get(key)
        if g is None and padded and name in self.graphs:
            g = with_padding_row(self.graphs[name], shift_cols=name != "attr")
        if g is not None and g.device != device:
            g = g.to(device)
        if g is not None:
            self.graphs[key] = g
        return g

    def semantic(self) -> torch.Tensor | None:
        """(n_items + 1, semantic_dim) semantic item embeddings before the token projection (row 0 =
        padding, zero)."""
        if not self.cfg.semantic_dim:
            return None
        dev = self.attrs.weight.device
        sem = torch.sparse.mm(self._graph("attr", dev, padded=True), self.attrs.weight)  # mean of words
        if self.text_proj is not None:
            self.text = self.text.to(dev)
            sem = sem + F.pad(self.text_proj(self.text), (0, 0, 1, 0))
        knn = self._graph("knn", dev, padded=True)
        if knn is not None:
            sem = 0.5 * (sem + torch.sparse.mm(knn, sem))
        return sem

    def _collaborative(self, e: torch.Tensor, graph: str | None, device: torch.device) -> torch.Tensor:
        """``e + mean_k A^k e`` over the padded graph ``graph`` (None = ``e``); one hop (the default) is
        one product with ``I + A`` (cached), without a separate sum and its gradient."""
        if graph is None or self.cfg.graph_layers == 0:
            return e
        if self.cfg.graph_layers > 1:
            return e + propagate(self._graph(graph, device, padded=True), e, self.cfg.graph_layers)
        key = graph + "+pad+eye"
        if key not in self.graphs or self.graphs[key].device != device:
            self.graphs[key] = with_self_loops(self._graph(graph, device, padded=True))
        return torch.sparse.mm(self.graphs[key], e)

    def item_tables(self, fold: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Token tables (n_items + 1, hidden) for the mixed and the domain encoders (row 0 = padding,
        zero) and the (n_items, semantic_dim) semantic embeddings. ``fold``: propagate over the graphs
        without that training fold's sequences (``cross_k``, ``intra_k``); None = all training users.

        Everything is computed on token-id-indexed tables (graphs with an empty row and column 0), so no
        full-size slice or concatenation of a padding row is needed. Row 0 of the ID embeddings stays zero:
        padding tokens only reach padded positions, which the encoders zero, so it gets no gradient."""
        cfg, dev = self.cfg, self.ids.weight.device
        sfx = "" if fold is None else f"_{fold}"
        e = self.ids.weight  # (N + 1, Hc)
        cross = self._collaborative(e, "cross" + sfx if cfg.cross_graph else None, dev)
        intra = self._collaborative(e, "intra" + sfx if cfg.intra_graph else None, dev)
        sem = self.semantic()
        if sem is None:
            return cross, intra, None
        s = self.sem_proj(sem)  # (N + 1, S); the projection's bias is zeroed on the padding row
        s = torch.cat([s.new_zeros(1, s.shape[1]), s[1:]])
        return torch.cat([cross, s], -1), torch.cat([intra, s], -1), sem[1:]

    # ------------------------------------------------------------------ encoders

    def encode(
        self, batch: SeqBatch, tables: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Mixed states (B, T, H) and, per domain, the domain-encoder state at the last d-item <= t
        aligned to the mixed positions (B, T, H) (zero where the user has no d-item yet)."""
        tok_mix, tok_dom = tables if tables is not None else self.item_tables()[:2]
        h_mix = self.encoders[0](tok_mix[batch.mixed], batch.mixed == 0)
        tok = tok_dom[batch.domain]  # (B, 2, T, H): one gather (each back-propagates into a full table)
        aligned = []
        for d in (0, 1):
            ids = batch.domain[:, d]  # (B, T)
            h = self.encoders[1 + d](tok[:, d], ids == 0)  # (B, T, H)
            h = torch.cat([torch.zeros_like(h[:, :1]), h], 1)  # slot 0 = "no d-item yet"
            idx = (batch.gather[:, d] + 1).unsqueeze(-1).expand(-1, -1, h.shape[-1])  # (B, T, H)
            aligned.append(h.gather(1, idx))
        return h_mix, aligned

    def logits(
        self,
        states: torch.Tensor,
        d: int,
        tok_dom: torch.Tensor,
        last: torch.Tensor | None = None,
        loo_targets: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """states (M, H) -> (M, n_items of domain d) scores. ``last`` (M,) the last d-item (-1 none)
        feeds the transition prior; ``loo_targets`` (M,) removes each row's own training transition."""
        lo, hi = self.ranges[d]
        cols = torch.arange(lo, hi, device=states.device)
        return self._scores(self.query(states, d), cols, tok_dom[lo + 1 : hi + 1], last, loo_targets)

    def query(self, states: torch.Tensor, d: int) -> torch.Tensor:
        """Head output (M, H) whose dot product with a token is the encoder's score of that item."""
        q = self.heads[d](states)
        return q * self.scale[d] if self.scale is not None else q

    def _scores(
        self,
        q: torch.Tensor,
        cols: torch.Tensor,
        w: torch.Tensor,
        last: torch.Tensor | None,
        loo_targets: torch.Tensor | None,
    ) -> torch.Tensor:
        """Head outputs q (M, H) -> (M, C) scores of the items ``cols`` (C,) (global ids, distinct) whose
        tokens are ``w`` (C, H)."""
        out = torch.addmm(self.bias[cols], q, w.T) if self.bias is not None else q @ w.T  # (M, C)
        if self.prior is not None and last is not None:
            which, col, contrib = self._prior_entries(last, loo_targets)
            pos = self._column_positions(cols, self.ranges[1][1])
            keep = pos[col] >= 0
            out.index_put_((which[keep], pos[col[keep]]), contrib[keep], accumulate=True)
        return out

    @staticmethod
    def _column_positions(cols: torch.Tensor, n_items: int) -> torch.Tensor:
        """(n_items,) position of each item in ``cols``, -1 for items not in it."""
        pos = torch.full((n_items,), -1, dtype=torch.long, device=cols.device)
        pos[cols] = torch.arange(len(cols), device=cols.device)
        return pos

    def _positive_scores(
        self, q: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None, last: torch.Tensor | None
    ) -> torch.Tensor:
        """(M,) score of each row's own target ``y`` (M,) with tokens ``w`` (M, H) (leave-one-out
        transition prior). ``w`` None: ``q`` (M, 1) is already the dot product."""
        out = (q * w).sum(-1) if w is not None else q[:, 0]
        if self.bias is not None:
            out = out + self.bias[y]
        if self.prior is not None and last is not None:
            which, col, contrib = self._prior_entries(last, y)
            hit = col == y[which]
            out = out.index_add(0, which[hit], contrib[hit])
        return out

    def _prior_entries(
        self, last: torch.Tensor, loo_targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Transition-prior terms of rows whose recent same-domain items are ``last`` (M, k), most
        recent first, -1 = none: (row, item, w * log(1 + #transitions)) triples, for the successors
        (``last_j -> item``, weight ``prior[0, j]``) and the predecessors (``item -> last_j``,
        ``prior[1, j]``). With ``loo_targets`` (M,), ``last_0 -> target`` loses the row's own
        training transition (the only training transition that directly reveals the target)."""
        out = []
        sfx = "" if self.prior_fold is None else f"_{self.prior_fold}"
        for r, name in enumerate(("counts", "counts_rev")):
            counts = self._graph(name + sfx, last.device)
            crow, col, val = counts.crow_indices(), counts.col_indices(), counts.values()
            M, k = last.shape
            flat_last = last.reshape(-1)  # (M * k,)
            rows = flat_last.clamp(min=0)
            n = (crow[rows + 1] - crow[rows]) * (flat_last >= 0)
            src = torch.repeat_interleave(torch.arange(M * k, device=last.device), n)
            offs = torch.arange(int(n.sum()), device=last.device)
            flat = crow[rows][src] + offs - torch.repeat_interleave(n.cumsum(0) - n, n)
            which, j, c, v = src // k, src % k, col[flat], val[flat]
            if loo_targets is not None and r == 0:
                v = (v - ((j == 0) & (c == loo_targets[which])).to(v.dtype)).clamp(min=0)
            # counts are coalesced (one entry per source and target item): log1p per entry is exact
            out.append((which, c, self.prior[r, j] * torch.log1p(v)))
        return tuple(torch.cat(parts) for parts in zip(*out, strict=True))

    def next_item_loss(
        self,
        states: torch.Tensor,
        d: int,
        tok_dom: torch.Tensor,
        y: torch.Tensor,
        last: torch.Tensor | None,
        plain: bool = False,
    ) -> torch.Tensor:
        """CE of the next domain-d items ``y`` (M,) given ``states`` (M, H): the full scorer's, or with
        ``plain`` the encoder's alone (see :meth:`next_item_losses`)."""
        full_ce, plain_ce = self.next_item_losses(states, d, tok_dom, y, last, full=not plain, plain=plain)
        return plain_ce if plain else full_ce

    def next_item_losses(
        self,
        states: torch.Tensor,
        d: int,
        tok_dom: torch.Tensor,
        y: torch.Tensor,
        last: torch.Tensor | None,
        full: bool = True,
        plain: bool = False,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """CE of the next domain-d items ``y`` (M,) given ``states`` (M, H), of the full scorer (``full``:
        scaled encoder + item bias + transition prior) and of the encoder alone (``plain``: unscaled
        head output · token, the ``ce_encoder`` term); None for the one not asked for.

        ``negatives`` = 0: full softmax over the domain. ``negatives`` = K: a sampled softmax over each
        row's target, K distinct uniformly drawn items shared by all rows, and (with the transition
        prior) the row's own prior candidates: the items linked to its recent items, the hard
        negatives that full ranking must order. Each candidate is counted once per row. Both losses
        share the candidates and the dot products (the full score is ``scale * dot + bias + prior``)."""
        lo, hi = self.ranges[d]
        k = self.cfg.negatives
        if not k or k > hi - lo or len(y) == 0:
            dots = self.heads[d](states) @ tok_dom[lo + 1 : hi + 1].T
            out_plain = next_item_ce(dots, y - lo) if plain else None
            return (
                next_item_ce(self.logits(states, d, tok_dom, last, y), y - lo) if full else None
            ), out_plain
        n_items = tok_dom.shape[0] - 1
        h = self.heads[d](states)  # (M, H) unscaled head output
        neg = torch.randperm(hi - lo, device=y.device)[:k] + lo
        in_neg = self._column_positions(neg, n_items)
        hard_rows, hard_items, hard_prior = self._hard_negatives(y, last, in_neg)
        # one gather of the token table for the three kinds of candidates
        w_neg, w_pos, w_hard = tok_dom[torch.cat([neg, y, hard_items]) + 1].split(
            [len(neg), len(y), len(hard_items)]
        )
        neg_dot, pos_dot = h @ w_neg.T, (h * w_pos).sum(-1)  # (M, K), (M,)
        hard_dot = (h[hard_rows] * w_hard).sum(-1)  # (E,)
        r = torch.nonzero(in_neg[y] >= 0).squeeze(1)  # a row's target drawn as a negative
        drop = (r, in_neg[y[r]])
        out_full = out_plain = None
        if plain:
            out_plain = sampled_ce(
                pos_dot, neg_dot.index_put(drop, _NEG_INF.to(h.device)), hard_dot, hard_rows
            )
        if full:
            sc = self.scale[d] if self.scale is not None else None
            neg_s = neg_dot * sc if sc is not None else neg_dot
            if self.bias is not None:
                neg_s = neg_s + self.bias[neg]
            if self.prior is not None and last is not None:
                which, col, contrib = self._prior_entries(last, None)
                pos_in = in_neg[col]
                keep = pos_in >= 0
                neg_s = neg_s.index_put((which[keep], pos_in[keep]), contrib[keep], accumulate=True)
            neg_s = neg_s.index_put(drop, _NEG_INF.to(h.device))
            pos_s = self._positive_scores(
                pos_dot.unsqueeze(1) * (sc if sc is not None else 1.0), y, None, last
            )
            hard_s = (hard_dot * sc if sc is not None else hard_dot) + hard_prior
            if self.bias is not None:
                hard_s = hard_s + self.bias[hard_items]
            out_full = sampled_ce(pos_s, neg_s, hard_s, hard_rows)
        return out_full, out_plain

    def _hard_negatives(
        self, y: torch.Tensor, last: torch.Tensor | None, in_neg: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each row's prior candidates that are neither its target nor a shared negative, at most
        ``hard_negatives`` per call (a random subset): rows (E,), items (E,) and their prior (E,)."""
        if self.prior is None or last is None or not self.cfg.hard_negatives:
            return y.new_zeros(0), y.new_zeros(0), self.ids.weight.new_zeros(0)
        which, col, contrib = self._prior_entries(last, y)
        n_items = self.ranges[1][1]
        key, inv = torch.unique(which * n_items + col, return_inverse=True)  # one entry per (row, item)
        rows, items = key // n_items, key % n_items
        keep = torch.nonzero((items != y[rows]) & (in_neg[items] < 0)).squeeze(1)
        cap = self.cfg.hard_negatives
        if len(keep) > cap:  # popular recent items have many neighbours: a random subset bounds the cost
            keep = keep[torch.randperm(len(keep), device=keep.device)[:cap]]
        prior = contrib.new_zeros(len(key)).index_add(0, inv, contrib)[keep]
        return rows[keep], items[keep], prior

    def last_items(self, batch: SeqBatch, d: int) -> torch.Tensor:
        """(B, T, prior_items) global ids of the most recent d-items <= t, most recent first (-1 none)."""
        g = batch.gather[:, d].unsqueeze(-1) - torch.arange(self.cfg.prior_items, device=batch.mixed.device)
        tok = batch.domain[:, d].gather(1, g.clamp(min=0).flatten(1)).view_as(g)  # (B, T, k)
        return torch.where((g >= 0) & (tok > 0), tok - 1, torch.full_like(g, -1))

    # ------------------------------------------------------------------ training objective

    def forward(self, batch: SeqBatch) -> dict[str, torch.Tensor]:
        """The weighted loss terms of one training batch (``loss`` is their sum)."""
        cfg = self.cfg
        fold = int(batch.fold[0]) if cfg.graph_folds and batch.fold is not None else None
        tok_mix, tok_dom, sem = self.item_tables(fold)
        h_mix, h_dom = self.encode(batch, (tok_mix, tok_dom))
        terms: dict[str, torch.Tensor] = {}
        ce, ce_shared, ce_enc = [], [], []
        for d in (0, 1):
            tgt = batch.targets[:, d]  # (B, T)
            m = tgt >= 0
            last = self.last_items(batch, d)[m] if self.prior is not None else None
            y = tgt[m]
            if cfg.ce > 0 or cfg.ce_encoder > 0:  # one candidate set and one set of dot products for both
                full, plain = self.next_item_losses(
                    h_mix[m] + h_dom[d][m], d, tok_dom, y, last, full=cfg.ce > 0, plain=cfg.ce_encoder > 0
                )
                ce += [full] if full is not None else []
                ce_enc += [plain] if plain is not None else []
            if cfg.ce_shared > 0:
                ce_shared.append(self.next_item_loss(h_mix[m], d, tok_dom, y, last))
        if ce:
            terms["ce"] = cfg.ce * torch.stack(ce).mean()
        if ce_shared:
            terms["ce_shared"] = cfg.ce_shared * torch.stack(ce_shared).mean()
        if ce_enc:
            terms["ce_encoder"] = cfg.ce_encoder * torch.stack(ce_enc).mean()
        if cfg.contrastive > 0:
            disc = getattr(self, "discriminator", None)
            terms["contrastive"] = cfg.contrastive * contrastive_loss(
                h_mix[:, -1], [h[:, -1] for h in h_dom], cfg.contrastive_kind, cfg.temperature, disc
            )
        if cfg.align > 0 and sem is not None:
            n = tok_dom.shape[0] - 1
            ids = torch.randperm(n, device=sem.device)[: cfg.align_items]
            collab = tok_dom[1:][ids, : cfg.collab_dim]  # ID + intra-graph embedding
            terms["align"] = cfg.align * alignment_loss(collab, self.align_proj(sem[ids]), cfg.temperature)
        terms["loss"] = torch.stack(list(terms.values())).sum()
        return terms

    # ------------------------------------------------------------------ inference

    @torch.no_grad()
    def user_states(
        self, batch: SeqBatch, d: int, tables: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """(B, H) mixed state + domain-d encoder state at the last history position. ``tables``:
        the :meth:`item_tables` token tables, computed once per scoring pass by the caller."""
        h_mix, h_dom = self.encode(batch, tables)
        return h_mix[:, -1] + h_dom[d][:, -1]

    @torch.no_grad()
    def score_last(
        self,
        batch: SeqBatch,
        d: int,
        tables: tuple[torch.Tensor, torch.Tensor] | None = None,
        loo_targets: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, n_items of domain d) scores of the next domain-d item after each history.
        ``loo_targets`` (B,): leave each row's own transition to its target out of the prior (for
        held-out training users, whose transitions are in the counts)."""
        tok_mix, tok_dom = tables if tables is not None else self.item_tables()[:2]
        h_mix, h_dom = self.encode(batch, (tok_mix, tok_dom))
        last = self.last_items(batch, d)[:, -1] if self.prior is not None else None
        # the heads are linear without bias: scaling the state scales exactly the encoder's share
        w = self.cfg.neural_weight * self.neural_weights[d]
        return self.logits(w * (h_mix[:, -1] + h_dom[d][:, -1]), d, tok_dom, last, loo_targets)

    @torch.no_grad()
    def score_encoder(
        self, batch: SeqBatch, d: int, tables: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """(B, n_items of domain d) the encoder's scores alone: ``head_d(state) · token_i``, without the
        transition prior, the item bias, the residual scale and the calibrated weight (system
        ``graph-encoder``; what the ``ce_encoder`` term trains)."""
        tok_mix, tok_dom = tables if tables is not None else self.item_tables()[:2]
        h_mix, h_dom = self.encode(batch, (tok_mix, tok_dom))
        lo, hi = self.ranges[d]
        return self.heads[d](h_mix[:, -1] + h_dom[d][:, -1]) @ tok_dom[lo + 1 : hi + 1].T
