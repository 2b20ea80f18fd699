"""The LLM side of one grounding mode: jobs in, one JSONL row per record out.

Row fields (all modes): ``key``, ``user``, ``domain``, ``target`` (for alignment checks only),
``mode``, ``prompt_tokens``, ``seconds`` (wall time of its batch / batch size), and
  constrained / free: ``outputs`` [{text, score}] (raw generations, log-likelihood incl. eos) and
      ``grounded`` [Grounded dict] (the trie's items, or what the refiner did with each output);
  rerank: ``candidates`` (global ids, backbone order), ``candidate_scores`` (sum of token
      log-probs) and ``candidate_tokens`` (tokens scored, for mean normalisation);
  rank: ``candidates`` (global ids, backbone order = list order) and ``label_logprobs`` (next-token
      log-probability of each candidate's label after the prompt, one forward pass).
Fusion with the backbone happens later, at scoring time (:mod:`urllm.infer.system`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from urllm.configuration import ConfigError
from urllm.data.schema import Catalogue
from urllm.grounding.config import GroundingConfig
from urllm.grounding.decode import constrained_beams, free_outputs
from urllm.grounding.listwise import label_logprobs
from urllm.grounding.refiner import Grounded, Refiner
from urllm.grounding.rerank import score_cached
from urllm.grounding.trie import build_domain_tries, tokenize_titles
from urllm.infer.config import InferConfig
from urllm.infer.jobs import Job
from urllm.llm.config import LLMConfig

logger = logging.getLogger(__name__)


def adapter_path(infer: InferConfig, finetune_dir: Path) -> Path | None:
    """The LoRA adapter to load: ``infer.adapter_dir``, else ``<finetune_dir>/adapter`` if present.

    ``finetune_dir`` is where the fine-tune wrote (``finetune.output_dir`` or ``<run_dir>/finetune``,
    :attr:`urllm.run_layout.RunLayout.finetune`).
    """
    if not infer.use_adapter:
        return None
    if infer.adapter_dir:
        path = Path(infer.adapter_dir)
        if not (path / "adapter_config.json").is_file():
            raise ConfigError(f"infer.adapter_dir: no adapter_config.json in {path}")
        return path
    path = Path(finetune_dir) / "adapter"
    return path if (path / "adapter_config.json").is_file() else None


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
    """Model, tokenizer and the mode's grounding structures (tries or refiner), built once per process."""

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
        self.tries = build_domain_tries(catalogue, tokenizer) if mode == "constrained" else None
        self.refiner = refiner
        if mode == "free" and refiner is None:
            self.refiner = Refiner(
                catalogue, cfg.refiner, cache_dir=cache_dir, title_embeddings=title_embeddings
            )
            self.refiner.prepare()
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
        """One row per job (same order)."""
        if not jobs:
            return []
        start = time.perf_counter()
        prompts = self.tok([j.prompt for j in jobs], add_special_tokens=False)["input_ids"]
        domains = [j.record.domain for j in jobs]
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
        c = self.cfg
        chunk = {"max_rows": c.rerank_chunk, "max_tokens": c.rerank_chunk_tokens}
        if self.mode == "constrained":
            tries = [self.tries[d] for d in domains]
            beams = constrained_beams(
                self.model, prompts, tries, c.num_beams, self.eos, self.pad, c.length_penalty, **chunk
            )
            for row, outs in zip(rows, beams, strict=True):
                texts = self.tok.batch_decode([list(o.tokens) for o in outs], skip_special_tokens=True)
                row["outputs"] = [{"text": t, "score": o.score} for t, o in zip(texts, outs, strict=True)]
                row["grounded"] = [
                    Grounded(t, "trie", o.score, o.items, ()).to_dict()
                    for t, o in zip(texts, outs, strict=True)
                ]
        elif self.mode == "free":
            outs = free_outputs(
                self.model,
                prompts,
                c.num_beams,
                c.free_max_new_tokens,
                self.eos,
                self.pad,
                c.length_penalty,
                **chunk,
            )
            for row, per, d in zip(rows, outs, domains, strict=True):
                texts = self.tok.batch_decode([list(o.tokens) for o in per], skip_special_tokens=True)
                row["outputs"] = [{"text": t, "score": o.score} for t, o in zip(texts, per, strict=True)]
                row["grounded"] = [g.to_dict() for g in self.refiner.ground_many(texts, [d] * len(texts))]
        elif self.mode == "rank":
            lps = label_logprobs(
                self.model,
                prompts,
                [j.label_ids for j in jobs],
                self.pad,
                max_rows=c.rerank_chunk,
                max_tokens=c.rank_chunk_tokens,
            )
            for row, j, lp in zip(rows, jobs, lps, strict=True):
                row["candidates"] = list(j.candidates)
                row["label_logprobs"] = lp.tolist()
        elif self.mode == "rerank":
            titles = [
                [ids + [self.eos] if c.rerank_append_eos else ids for ids in self.title_ids(j.candidates)]
                for j in jobs
            ]
            sums = score_cached(self.model, prompts, titles, self.pad, **chunk)
            for row, j, t, s in zip(rows, jobs, titles, sums, strict=True):
                row["candidates"] = list(j.candidates)
                row["candidate_scores"] = s.tolist()
                row["candidate_tokens"] = [len(x) for x in t]
        else:
            raise ValueError(f"unknown grounding mode {self.mode!r}")
        per_user = (time.perf_counter() - start) / len(jobs)
        for row in rows:
            row["seconds"] = per_user
        return rows
