"""Configuration of batch LLM inference (``accelerate launch -m urllm.infer.batch``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from urllm.configuration import opt

PROMPT_SOURCES = ("auto", "parquet", "history")


@dataclass
class InferConfig:
    """Where prompts come from, which adapter is loaded, how records are batched and where results go."""

    batch_size: int = opt(8, "prompts per forward pass on each process", runtime=True)
    out_dir: str = opt("", "JSONL outputs; empty = <run_dir>/infer", path=True)
    prompts_dir: str = opt(
        "", "retrieval-augmented prompts {split}.parquet; empty = <run_dir>/prompts", path=True
    )
    prompts_dir_no_retrieval: str = opt(
        "",
        "prompts without similar users (urllm-no-retrieval); empty = <run_dir>/prompts-no-retrieval",
        path=True,
    )
    prompt_source: Literal["auto", "parquet", "history"] = opt(
        "auto",
        "parquet (the prompts stage) | history (history-only prompts from the prompt builder) | auto (parquet if present)",
    )
    adapter_dir: str = opt("", "LoRA adapter; empty = <run_dir>/finetune/adapter when it exists", path=True)
    no_retrieval_adapter_dir: str = opt(
        "",
        "LoRA adapter of urllm-no-retrieval, fine-tuned on history-only prompts; empty = urllm's adapter "
        "(the ablation then shares it: its evaluate JSON names the adapter)",
        path=True,
    )
    use_adapter: bool = opt(True, "load the adapter (false: the base model, e.g. to measure it)")
    limit: int = opt(0, "infer only the first N records of each target domain (0 = all); a documented subset")
    run_missing: bool = opt(
        True, "score() runs inference in-process for records missing from the JSONL", runtime=True
    )
    overwrite: bool = opt(
        False, "discard a JSONL written with different settings instead of failing", runtime=True
    )
    eval_target_shortcut: bool = opt(
        False,
        "evaluation only, rank mode: lists without the target get no forward pass (their fused rank is the "
        "backbone's whatever the LLM says; rows marked llm_skipped). Reads the target: never for serving",
    )
    threads: int = opt(0, "torch CPU threads per process (0 = leave torch's default)", runtime=True)

    def __post_init__(self) -> None:
        if self.prompt_source not in PROMPT_SOURCES:
            raise ValueError(
                f"prompt_source must be one of {list(PROMPT_SOURCES)}, got {self.prompt_source!r}"
            )
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.limit < 0 or self.threads < 0:
            raise ValueError("limit and threads must be >= 0")
