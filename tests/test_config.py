"""Typed config: unknown keys and wrong types name the dotted key, overrides, paths, shipped configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from urllm.config import load_config
from urllm.configuration import ConfigError, parse_overrides
from urllm.data.config import DATA_DIR_ENV, DataConfig, default_data_root

REPO = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "yaml_text, key",
    [
        ("data:\n  recbole:\n    bogus: 1\n", "data.recbole.bogus"),
        ("data:\n  amazon:\n    kcore: 5\n", "data.amazon.kcore"),
        ("evaluation:\n  ks: [1]\n", "evaluation"),
    ],
)
def test_unknown_key_names_the_dotted_key(tmp_path, yaml_text, key):
    cfg_file = write(tmp_path / "c.yaml", yaml_text)
    with pytest.raises(ConfigError, match=f"unknown config key {key}") as exc:
        load_config(cfg_file)
    assert str(cfg_file) in str(exc.value)


@pytest.mark.parametrize(
    "yaml_text, key",
    [
        ("data:\n  recbole:\n    max_users: many\n", "data.recbole.max_users"),
        ("data:\n  recbole:\n    min_rating: [1]\n", "data.recbole.min_rating"),
        ("data:\n  recbole:\n    domain_values: {x: Action}\n", "data.recbole.domain_values.x"),
        ("data:\n  recbole:\n    fetch: 'yes'\n", "data.recbole.fetch"),
        ("data:\n  format: csv\n", "data.format"),
        ("eval:\n  ks: [1, ten]\n", r"eval.ks\[1\]"),
    ],
)
def test_wrong_type_names_the_key(tmp_path, yaml_text, key):
    with pytest.raises(ConfigError, match=key):
        load_config(write(tmp_path / "c.yaml", yaml_text))


@pytest.mark.parametrize(
    "yaml_text, words",
    [
        (
            "data:\n  recbole:\n    valid_frac: 0.6\n    test_frac: 0.5\n",
            "data.recbole: valid_frac and test_frac",
        ),
        ("data:\n  recbole:\n    min_per_domain: 0\n", "data.recbole: min_per_domain"),
        ("data:\n  recbole:\n    rating_field: ''\n    min_rating: 4\n", "min_rating needs a rating_field"),
        ("data:\n  amazon:\n    k_core: 0\n", "data.amazon: k_core"),
        ("data:\n  domains: [a, a]\n", "data: domains must name two different"),
    ],
)
def test_invalid_values_name_the_section(tmp_path, yaml_text, words):
    with pytest.raises(ConfigError, match=words):
        load_config(write(tmp_path / "c.yaml", yaml_text))


def test_override_parsing():
    assert parse_overrides(["a.b=1", "a.c=[1, 2]", "d=x", "e=", "f.g=true", "h=0.5"]) == {
        "a": {"b": 1, "c": [1, 2]},
        "d": "x",
        "e": "",
        "f": {"g": True},
        "h": 0.5,
    }
    for bad in (["novalue"], ["=3"], ["a=1", "a.b=2"]):
        with pytest.raises(ConfigError):
            parse_overrides(bad)


def test_overrides_beat_yaml_beats_defaults(tmp_path):
    cfg_file = write(tmp_path / "c.yaml", "seed: 3\ndata:\n  recbole:\n    max_users: 10\n")
    cfg = load_config(cfg_file, ["data.recbole.max_users=20", "eval.ks=[1,20]"])
    assert (cfg.seed, cfg.data.recbole.max_users, cfg.eval.ks) == (3, 20, [1, 20])
    assert cfg.data.recbole.max_history == 50  # the default
    with pytest.raises(ConfigError, match="data.recbole.nope"):
        load_config(cfg_file, ["data.recbole.nope=1"])


def test_relative_paths_resolve_against_the_config_file(tmp_path, monkeypatch):
    cfg_file = write(tmp_path / "configs" / "c.yaml", "run_dir: ../runs/x\ndata:\n  root: ../data\n")
    monkeypatch.chdir("/")  # the working directory must not matter for YAML paths
    cfg = load_config(cfg_file)
    assert Path(cfg.data.root) == tmp_path / "data" and Path(cfg.run_dir) == tmp_path / "runs" / "x"
    assert cfg.data.path("ml-1m/ml-1m.inter") == tmp_path / "data" / "ml-1m" / "ml-1m.inter"
    assert cfg.data.path("/abs/file") == Path("/abs/file")
    monkeypatch.chdir(tmp_path)  # ... but command-line paths are relative to the working directory
    cfg = load_config(cfg_file, ["data.root=elsewhere"])
    assert Path(cfg.data.root) == tmp_path / "elsewhere"


def test_data_dir_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert default_data_root() == tmp_path.resolve()
    assert DataConfig().path("art-office/train_F2.txt") == tmp_path.resolve() / "art-office" / "train_F2.txt"
    assert DataConfig(root="/somewhere").root_dir == Path("/somewhere")  # an explicit root wins
    monkeypatch.delenv(DATA_DIR_ENV)
    assert default_data_root() == (REPO.parent / "shared" / "data").resolve()


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    assert cfg.data.name
    assert path.read_text().startswith("#")  # each config opens with the command that runs it


def test_movielens_config_uses_a_writable_repo_local_root():
    cfg = load_config(REPO / "configs" / "movielens.yaml")
    assert Path(cfg.data.root) == REPO / ".cache" / "data"
    assert cfg.data.format == "recbole" and set(cfg.data.recbole.domain_values) == set(cfg.data.domains)


@pytest.mark.parametrize(
    "override, words",
    [
        ("pipeline.systems=[graph,urllm-fre]", r"pipeline.systems\[1\]: unknown system 'urllm-fre'"),
        ("grounding.backbone=grahp", "grounding.backbone: unknown system 'grahp'"),
        ("grounding.backbone=urllm", "grounding.backbone: 'urllm' is a llm system, not a non-LLM system"),
        ("retrieval.encoder=svdd", "retrieval.encoder: unknown system 'svdd'"),
        ("retrieval.encoder=popularity", "retrieval.encoder: 'popularity' is a baseline system"),
        ("prompts.candidates_system=nope", "prompts.candidates_system: unknown system 'nope'"),
        ("llm.dtype=bf16", r"llm.dtype: expected one of \['auto', 'float32', 'bfloat16', 'float16'\]"),
        ("grounding.mode=beam", "grounding.mode: expected one of"),
        ("grounding.refiner.steps=[exact,fuzzy]", r"grounding.refiner.steps\[1\]: expected one of"),
        ("infer.prompt_source=csv", "infer.prompt_source: expected one of"),
        ("pipeline.split=train", "pipeline.split: expected one of"),
        ("llm.model=/nonexistent/model", "llm.model: /nonexistent/model does not exist"),
    ],
)
def test_names_and_closed_sets_fail_at_load_naming_the_key(override, words):
    with pytest.raises(ConfigError, match=words) as exc:
        load_config(REPO / "configs" / "art_office.yaml", [override])
    assert str(exc.value).startswith("command line")  # blamed on the override, not the YAML file


def test_a_typo_in_the_file_is_blamed_on_the_file(tmp_path):
    cfg_file = write(tmp_path / "c.yaml", "graph:\n  epochz: 3\n")
    with pytest.raises(ConfigError, match=f"{cfg_file}: unknown config key graph.epochz"):
        load_config(cfg_file, ["seed=1"])
    with pytest.raises(ConfigError, match="^command line.*unknown config key graph.epochz"):
        load_config(REPO / "configs" / "art_office.yaml", ["graph.epochz=3"])


def test_llm_model_that_is_a_file_or_a_missing_gguf(tmp_path):
    (tmp_path / "model.bin").write_text("x")
    with pytest.raises(ConfigError, match="is not a folder"):
        load_config(None, [f"llm.model={tmp_path / 'model.bin'}"])
    empty_cache = f"llm.cache_dir={tmp_path / 'cache'}"
    with pytest.raises(ConfigError, match="llm.gguf_package: 'no_such_pkg' is not installed"):
        load_config(None, [empty_cache, "llm.gguf_package=no_such_pkg"])
    with pytest.raises(ConfigError, match="llm.gguf_file: nope.gguf not found"):
        load_config(None, [empty_cache, "llm.gguf_file=nope.gguf", "llm.gguf_package=urllm"])


def test_system_registry_kinds():
    from urllm.recommender import KINDS, REGISTRY, is_llm_system, llm_systems
    from urllm.systems import make_system

    assert {s.kind for s in REGISTRY.values()} <= set(KINDS)
    assert is_llm_system("urllm-no-retrieval") and not is_llm_system("graph") and not is_llm_system("nope")
    assert llm_systems(["popularity", "urllm", "graph", "urllm-rerank"]) == ["urllm", "urllm-rerank"]
    assert REGISTRY["svd"].embeds_users and REGISTRY["graph"].kind == "graph"
    with pytest.raises(ConfigError, match="unknown system 'nope'"):
        make_system("nope", load_config(None))


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
    return out


def test_gpu_config_is_the_base_plus_its_sizes():
    from urllm.configuration import to_dict

    cpu = _flat(to_dict(load_config(REPO / "configs" / "art_office.yaml")))
    gpu = _flat(to_dict(load_config(REPO / "configs" / "art_office_gpu.yaml")))
    differ = {k for k in cpu if cpu[k] != gpu[k]}
    sizes = {
        "max_train_prompts", "max_valid_prompts", "epochs", "batch_size", "grad_accum", "eval_batch_size",
        "lr", "warmup_ratio", "log_every", "eval_every", "save_every",
    }  # fmt: skip
    assert differ == {"run_dir"} | {f"finetune.{k}" for k in sizes}
    assert (
        gpu["run_dir"].endswith("runs/art-office-gpu")
        and gpu["graph.graph_folds"] == cpu["graph.graph_folds"]
    )


def test_base_include_merges_and_resolves_paths_per_file(tmp_path):
    write(tmp_path / "a" / "base.yaml", "run_dir: ../runs/base\nseed: 1\neval:\n  ks: [1, 5]\n  seed: 3\n")
    child = write(tmp_path / "b" / "child.yaml", "base: ../a/base.yaml\nseed: 2\neval:\n  ks: [10]\n")
    cfg = load_config(child)
    assert (cfg.seed, cfg.eval.ks, cfg.eval.seed) == (2, [10], 3)  # mappings merge, lists are replaced
    assert Path(cfg.run_dir) == tmp_path / "runs" / "base"  # relative to a/, the file that set it
    write(tmp_path / "a" / "base.yaml", "base: ../b/child.yaml\n")
    with pytest.raises(ConfigError, match="include cycle"):
        load_config(child)
    write(tmp_path / "c.yaml", "base: nowhere.yaml\n")
    with pytest.raises(ConfigError, match="base: config file not found"):
        load_config(tmp_path / "c.yaml")


def test_config_that_is_a_directory(tmp_path):
    with pytest.raises(ConfigError, match="is a directory; give a YAML file"):
        load_config(tmp_path)
