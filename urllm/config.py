"""The root configuration: one typed section per stage, loaded from YAML plus ``key=value`` overrides."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from urllm.baselines.config import SASRecConfig
from urllm.configuration import (
    ConfigError,
    absolutize_path_overrides,
    dump_yaml,
    from_dict,
    merge,
    opt,
    parse_overrides,
    read_yaml,
)
from urllm.data.config import REPO_ROOT, DataConfig
from urllm.eval.config import EvalConfig
from urllm.graph.config import GraphConfig
from urllm.grounding.config import GroundingConfig
from urllm.infer.config import InferConfig
from urllm.llm.config import LLMConfig
from urllm.llm.finetune_config import FinetuneConfig
from urllm.pipeline.config import PipelineConfig
from urllm.prompts.config import PromptConfig
from urllm.retrieval.config import RetrievalConfig

__all__ = ["Config", "ConfigError", "load_config", "save_config"]


@dataclass
class Config:
    """Everything a run needs; each stage reads its own section."""

    run_dir: str = opt("", "where artifacts go; empty = runs/<data.name> in the repository", path=True)
    seed: int = opt(0, "global random seed")
    data: DataConfig = opt(factory=DataConfig, help="the dataset")
    eval: EvalConfig = opt(factory=EvalConfig, help="the evaluation protocol")
    sasrec: SASRecConfig = opt(factory=SASRecConfig, help="the SASRec baseline")
    llm: LLMConfig = opt(factory=LLMConfig, help="the language model")
    finetune: FinetuneConfig = opt(factory=FinetuneConfig, help="LoRA fine-tuning of the LLM")
    graph: GraphConfig = opt(factory=GraphConfig, help="the dual-graph cross-domain encoder")
    pipeline: PipelineConfig = opt(factory=PipelineConfig, help="stages and systems of `urllm pipeline`")
    retrieval: RetrievalConfig = opt(factory=RetrievalConfig, help="user encoder and user index")
    prompts: PromptConfig = opt(factory=PromptConfig, help="retrieval-augmented prompts and their budget")
    grounding: GroundingConfig = opt(factory=GroundingConfig, help="LLM output -> target-domain ranking")
    infer: InferConfig = opt(factory=InferConfig, help="batch LLM inference")

    @property
    def run_path(self) -> Path:
        return Path(self.run_dir) if self.run_dir else REPO_ROOT / "runs" / self.data.name


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults < YAML file (paths relative to it) < overrides (paths relative to the working dir)."""
    raw: dict = {}
    base_dir = Path.cwd()
    if path is not None:
        raw = read_yaml(path)
        base_dir = Path(path).resolve().parent
    over = absolutize_path_overrides(Config, parse_overrides(overrides or []), Path.cwd())
    try:
        return from_dict(Config, merge(raw, over), base_dir=base_dir)
    except ConfigError as exc:
        raise ConfigError(f"{path or 'config'}: {exc}") from None


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config (every key, absolute paths) beside an artifact."""
    dump_yaml(cfg, path)


def replace(cfg: Config, **changes) -> Config:
    return dataclasses.replace(cfg, **changes)
