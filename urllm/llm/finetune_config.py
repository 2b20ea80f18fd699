"""Configuration of LoRA fine-tuning (root config section ``finetune``).

Reference values (URLLM on LLaMA-2): r = 8, alpha = 16, dropout 0.05 on every attention and MLP projection,
lr 1e-4 with warm-up. We train on the completion (the target title + EOS) only, not on the prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from urllm.configuration import opt

LLAMA_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class FinetuneConfig:
    """What ``accelerate launch -m urllm.llm.finetune`` trains and how."""

    task: Literal["rank", "title"] = opt(
        "rank",
        "rank: the listwise ranker (completion = the target's one-token label, no EOS; data built from the "
        "backbone's out-of-fold lists into <run_dir>/prompts-rank) | title: generate the target's title + EOS",
    )
    prompts_dir: str = opt(
        "",
        "folder with {train,valid}.parquet; empty = <run_dir>/prompts-rank (rank) or <run_dir>/prompts",
        path=True,
    )
    output_dir: str = opt("", "checkpoint, log and adapter folder; empty = <run_dir>/finetune", path=True)
    # LoRA
    lora_r: int = opt(8, "LoRA rank")
    lora_alpha: int = opt(16, "LoRA scale numerator (the update is scaled by alpha / r)")
    lora_dropout: float = opt(0.05, "dropout on the LoRA input")
    target_modules: list[str] = opt(
        factory=lambda: list(LLAMA_PROJECTIONS), help="module names that get LoRA adapters"
    )
    # data
    max_train_prompts: int = opt(0, "train on a seeded sample of this many prompts; 0 = all")
    max_valid_prompts: int = opt(200, "valid-loss prompts (seeded sample); 0 = all")
    max_length: int = opt(1024, "tokens per example (prompt + completion + EOS)")
    overflow: Literal["drop", "truncate"] = opt(
        "drop", "an example over max_length is dropped (counted in the log) or loses its oldest prompt tokens"
    )
    # optimisation
    epochs: int = opt(1, "passes over the training prompts")
    max_steps: int = opt(0, "stop after this many optimizer steps; 0 = run all epochs")
    batch_size: int = opt(4, "examples per micro-batch per process")
    grad_accum: int = opt(1, "micro-batches per optimizer step")
    eval_batch_size: int = opt(8, "examples per valid-loss batch per process", runtime=True)
    lr: float = opt(1e-4, "peak learning rate (AdamW)")
    weight_decay: float = opt(0.0, "AdamW weight decay on the LoRA weights")
    warmup_ratio: float = opt(0.05, "share of the optimizer steps spent warming up linearly")
    scheduler: Literal["linear", "cosine", "constant"] = opt("cosine", "learning-rate decay after warm-up")
    max_grad_norm: float = opt(1.0, "gradient clipping; 0 = off")
    gradient_checkpointing: bool = opt(
        False, "recompute activations in backward (less memory, ~30 % slower)", runtime=True
    )
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = opt(
        "auto", "auto = bf16 on a GPU that supports it, fp32 on CPU"
    )
    cpu_threads: int = opt(0, "torch threads when training on CPU; 0 = torch's default", runtime=True)
    # bookkeeping
    log_every: int = opt(10, "optimizer steps between JSONL log rows", runtime=True)
    eval_every: int = opt(
        0, "optimizer steps between valid-loss evaluations; 0 = at the end of each epoch", runtime=True
    )
    save_every: int = opt(
        50, "optimizer steps between resumable checkpoints; 0 = at the end of each epoch", runtime=True
    )

    def __post_init__(self) -> None:
        positive = (
            "lora_r",
            "lora_alpha",
            "epochs",
            "batch_size",
            "grad_accum",
            "eval_batch_size",
            "log_every",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        counts = (
            "max_train_prompts",
            "max_valid_prompts",
            "max_steps",
            "cpu_threads",
            "eval_every",
            "save_every",
        )
        for name in counts:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.max_length < 8:
            raise ValueError(f"max_length must be >= 8 tokens, got {self.max_length}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if not self.target_modules:
            raise ValueError("target_modules must name at least one module")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0 or self.max_grad_norm < 0:
            raise ValueError("weight_decay and max_grad_norm must be >= 0")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
