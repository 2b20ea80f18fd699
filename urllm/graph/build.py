"""Collaborative item graphs from the training split, as row-normalised ``torch.sparse`` CSR matrices.

* cross-domain graph: ``a -> b`` for consecutive items of a user's mixed sequence;
* intra-domain graphs: ``a -> b`` for consecutive items of the same domain (one block-diagonal matrix:
  the two domains' item id ranges are disjoint, so X and Y graphs never touch).

Edge weights are transition counts; with ``symmetric`` the reversed edges are added, so an item's
neighbours are both its successors and its predecessors. Rows are normalised to sum to 1 (a random-walk
matrix), and propagation is the LightGCN-style mean of the hops ``A x, A^2 x, ...``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch_geometric.utils import coalesce, to_torch_csr_tensor

from urllm.data.schema import Record
from urllm.data.sequences import user_sequences


def transition_edges(seqs: Sequence[Sequence[int]]) -> torch.Tensor:
    """(2, E) int64 ``[src; dst]`` of every consecutive pair of every sequence (duplicates kept)."""
    src, dst = [], []
    for seq in seqs:
        if len(seq) >= 2:
            src.extend(seq[:-1])
            dst.extend(seq[1:])
    return torch.tensor([src, dst], dtype=torch.long).reshape(2, -1)


def csr(edge_index: torch.Tensor, weight: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """A CSR matrix with duplicate edges summed (PyG's coalesce sorts by row, as CSR needs)."""
    edge_index, weight = coalesce(edge_index, weight.float(), num_nodes=max(shape), reduce="sum")
    with warnings.catch_warnings():  # "sparse CSR support is in beta": known and fine for spmm
        warnings.simplefilter("ignore")
        return to_torch_csr_tensor(edge_index, weight, size=shape)


def row_normalised(edge_index: torch.Tensor, weight: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """CSR of ``D^-1 W``: each non-empty row sums to 1 (empty rows stay zero)."""
    edge_index, weight = coalesce(edge_index, weight.float(), num_nodes=max(shape), reduce="sum")
    deg = torch.zeros(shape[0]).index_add_(0, edge_index[0], weight)
    return csr(edge_index, weight / deg[edge_index[0]], shape)


def transition_graph(seqs: Sequence[Sequence[int]], n_items: int, symmetric: bool) -> torch.Tensor:
    """(n_items, n_items) row-normalised CSR transition graph of ``seqs``."""
    ei = transition_edges(seqs)
    if symmetric:
        ei = torch.cat([ei, ei.flip(0)], dim=1)
    ei = ei[:, ei[0] != ei[1]]  # a repeat purchase is not a neighbour relation
    return row_normalised(ei, torch.ones(ei.shape[1]), (n_items, n_items))


def domain_split(seqs: Sequence[Sequence[int]], item_domain: np.ndarray) -> list[list[int]]:
    """Each sequence cut into its per-domain subsequences (X items in order, then Y items in order)."""
    out = []
    for seq in seqs:
        arr = np.asarray(seq, dtype=np.int64)
        for d in (0, 1):
            sub = arr[item_domain[arr] == d].tolist()
            if sub:
                out.append(sub)
    return out


def collaborative_graphs(
    records: Sequence[Record], item_domain: np.ndarray, symmetric: bool
) -> dict[str, torch.Tensor]:
    """``cross`` and ``intra`` row-normalised graphs, ``counts`` (directed intra-domain transition
    counts ``a -> b``, for the transition prior) and ``counts_rev`` (its transpose) from the training
    records."""
    n = len(item_domain)
    seqs = user_sequences(records)
    per_domain = domain_split(seqs, item_domain)
    ei = transition_edges(per_domain)
    return {
        "cross": transition_graph(seqs, n, symmetric),
        "intra": transition_graph(per_domain, n, symmetric),
        "counts": csr(ei, torch.ones(ei.shape[1]), (n, n)),
        "counts_rev": csr(ei.flip(0), torch.ones(ei.shape[1]), (n, n)),
    }


def training_sequences(records: Sequence[Record]) -> list[tuple[int, ...]]:
    """The users' training sequences with a transition (>= 2 items): the rows of the training batch."""
    return [s for s in user_sequences(records) if len(s) >= 2]


def fold_graphs(
    records: Sequence[Record], item_domain: np.ndarray, symmetric: bool, folds: int
) -> dict[str, torch.Tensor]:
    """``cross_k`` and ``intra_k`` for k < ``folds``: the row-normalised graphs without the sequences
    of fold k (user ``i`` of :func:`training_sequences` is in fold ``i % folds``); ``counts_0`` and
    ``counts_rev_0``: the transition counts without fold 0 (the held-out users')."""
    n = len(item_domain)
    seqs = training_sequences(records)
    out = {}
    for k in range(folds):
        rest = [s for i, s in enumerate(seqs) if i % folds != k]
        out[f"cross_{k}"] = transition_graph(rest, n, symmetric)
        out[f"intra_{k}"] = transition_graph(domain_split(rest, item_domain), n, symmetric)
        if k == 0:  # the held-out fold's users are scored with the prior counts of the other folds
            ei = transition_edges(domain_split(rest, item_domain))
            out["counts_0"] = csr(ei, torch.ones(ei.shape[1]), (n, n))
            out["counts_rev_0"] = csr(ei.flip(0), torch.ones(ei.shape[1]), (n, n))
    return out


def propagate(adj: torch.Tensor | None, x: torch.Tensor, hops: int) -> torch.Tensor:
    """Mean of ``A x, A^2 x, ..., A^hops x`` (N, H); zeros when there is no graph or ``hops`` is 0."""
    if adj is None or hops == 0:
        return torch.zeros_like(x)
    out = h = torch.sparse.mm(adj, x)
    for _ in range(hops - 1):  # no zero-filled accumulator or division for one hop (the default)
        h = torch.sparse.mm(adj, h)
        out = out + h
    return out / hops if hops > 1 else out


def with_padding_row(m: torch.Tensor, shift_cols: bool) -> torch.Tensor:
    """CSR ``m`` with an empty row 0 prepended (and, with ``shift_cols``, an empty column 0): the same
    operator on tables indexed by token id (item + 1; 0 = padding)."""
    crow = torch.cat([m.crow_indices()[:1], m.crow_indices()])
    col = m.col_indices() + 1 if shift_cols else m.col_indices()
    shape = (m.shape[0] + 1, m.shape[1] + 1 if shift_cols else m.shape[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.sparse_csr_tensor(crow, col, m.values(), shape)


def with_self_loops(m: torch.Tensor) -> torch.Tensor:
    """CSR ``I + m`` of a square CSR matrix: ``e + A e`` as one sparse product."""
    n = m.shape[0]
    eye = torch.sparse_coo_tensor(torch.arange(n).repeat(2, 1), torch.ones(n, dtype=m.dtype), (n, n))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return (m.to_sparse_coo() + eye.to(m.device)).coalesce().to_sparse_csr()


def csr_to_dict(m: torch.Tensor) -> dict[str, torch.Tensor | tuple[int, int]]:
    """Plain tensors (for ``torch.save`` with ``weights_only``)."""
    return {
        "crow": m.crow_indices(),
        "col": m.col_indices(),
        "val": m.values(),
        "shape": torch.tensor(m.shape),
    }


def csr_from_dict(d: dict) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.sparse_csr_tensor(d["crow"], d["col"], d["val"], tuple(d["shape"].tolist()))
