"""The LLM side of one grounding mode: jobs in, one JSONL row per record out.

Row fields (all modes): ``key``, ``user``, ``domain``, ``target`` (for alignment checks only),
``mode``, ``prompt_tokens``, ``seconds`` (wall time of its batch / batch size), and the mode's own
fields (its grounder's, :mod:`urllm.infer.grounders`: ``outputs`` and ``grounded`` for the generating
modes, ``candidates`` and their scores for rank / rerank). Fusion with the backbone happens later, at
scoring time (:mod:`urllm.infer.system`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from urllm.configuration import ConfigError
from urllm.data.schema import Catalogue
from urllm.grounding.config import GroundingConfig
from urllm.grounding.refiner import Refiner
from urllm.grounding.trie import tokenize_titles
from urllm.infer.config import InferConfig
from urllm.infer.grounders import make_grounder
from urllm.infer.jobs import Job
from urllm.llm.config import LLMConfig

logger = logging.getLogger(__name__)


def adapter_path(infer: InferConfig, finetune_dir: Path, retrieval: bool = True) -> Path | None:
    """The LoRA adapter to load: ``infer.adapter_dir``, else ``<finetune_dir>/adapter`` if present;
    for the history-only variant (``retrieval`` false) ``infer.no_retrieval_adapter_dir`` when set.

    ``finetune_dir`` is where the fine-tune wrote (``finetune.output_dir`` or ``<run_dir>/finetune``,
    :attr:`urllm.run_layout.RunLayout.finetune`).
    """
    if not infer.use_adapter:
        return None
    for key in ("adapter_dir",) if retrieval else ("no_retrieval_adapter_dir", "adapter_dir"):
        if getattr(infer, key):
            path = Path(getattr(infer, key))
            if not (path / "adapter_config.json").is_file():
                raise ConfigError(f"infer.{key}: no adapter_config.json in {path}")
            return path
    path = Path(finetune_dir) / "adapter"
    return path if (path / "adapter_config.json").is_file() else None


def shared_llm(llm: tuple | None, adapter: Path | None) -> tuple | None:
    """``llm`` when it carries ``adapter`` (or no adapter is asked for), else None: load the one asked."""
    if llm is None or adapter is None or (llm[2] is not None and Path(llm[2]) == Path(adapter)):
        return llm
    return None


def load_llm(llm: LLMConfig, adapter: Path | None, device) -> tuple:
    """``(model, tokenizer, adapter)``: the base model ``llm`` with ``adapter`` merged (None: none)."""
    from urllm.llm.generate import load_finetuned

    device = _device(device)
    logger.info("LLM %s, adapter %s, on %s", llm.model, adapter or "none (base model)", device)
    model, tokenizer = load_finetuned(llm, adapter, device.type)
    model = model.to(device).eval()
    if llm.quantize == "int8":
        model = quantize_int8(model)
    return model, tokenizer, adapter


def quantize_int8(model):
    """Dynamic int8 quantisation of every ``nn.Linear`` (CPU inference; weights int8, activations fp32).

    The tied embedding stays fp32 (an ``nn.Embedding``); the output projection, a Linear sharing its
    weight, gets its own int8 copy.
    """
    import torch

    if next(model.parameters()).device.type != "cpu":
        raise ConfigError("llm.quantize=int8 is CPU-only (torch dynamic quantisation)")
    return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def _device(device):
    import torch

    return torch.device(device) if device is not None else torch.device("cpu")


class Engine:
    """Model, tokenizer and the mode's grounder (:mod:`urllm.infer.grounders`), built once per process.

    Args:
        cfg: the grounding settings; mode: the inference run's grounding mode (``rank``, ``free`` ...).
        refiner: a prepared refiner to share (free generation); else built from ``cfg.refiner`` with
            ``cache_dir`` (title embeddings) and ``title_embeddings`` (the graph stage's, when reusable).
    """

    def __init__(
        self,
        cfg: GroundingConfig,
        catalogue: Catalogue,
        mode: str,
        model,
        tokenizer,
        refiner: Refiner | None = None,
        cache_dir: Path | None = None,
        title_embeddings=None,
    ) -> None:
        self.cfg = cfg
        self.catalogue = catalogue
        self.mode = mode
        self.model = model
        self.tok = tokenizer
        self.eos = tokenizer.eos_token_id
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos
        self.chunk = {"max_rows": cfg.rerank_chunk, "max_tokens": cfg.rerank_chunk_tokens}
        self.refiner, self.cache_dir, self.title_embeddings = refiner, cache_dir, title_embeddings
        self.grounder = make_grounder(mode, cfg)
        self.grounder.prepare(self)
        self._title_ids: dict[int, list[int]] = {}

    def title_ids(self, items: list[int]) -> list[list[int]]:
        """Token ids of item titles (memoised), as they follow the prompt."""
        todo = [i for i in dict.fromkeys(items) if i not in self._title_ids]
        if todo:
            for i, ids in zip(
                todo, tokenize_titles(self.tok, [self.catalogue.titles[i] for i in todo]), strict=True
            ):
                self._title_ids[i] = ids
        return [self._title_ids[i] for i in items]

    def run(self, jobs: list[Job]) -> list[dict]:
        """One row per job (same order): the fields every mode has, then the grounder's."""
        if not jobs:
            return []
        start = time.perf_counter()
        prompts = self.tok([j.prompt for j in jobs], add_special_tokens=False)["input_ids"]
        rows = [
            {
                "key": j.key,
                "user": j.record.user,
                "domain": self.catalogue.domains[j.record.domain],
                "target": j.record.target,
                "mode": self.mode,
                "prompt_tokens": len(p),
            }
            for j, p in zip(jobs, prompts, strict=True)
        ]
        self.grounder.infer(self, jobs, prompts, rows)
        per_user = (time.perf_counter() - start) / len(jobs)
        for row in rows:
            row["seconds"] = per_user
        return rows
