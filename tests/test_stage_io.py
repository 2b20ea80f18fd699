"""Stages load what upstream stages made and write only into their own folder; a stage re-runs only when
what it reads changed (the fine-tune: its prompts' text, not their candidates column)."""

from __future__ import annotations

import pytest
from conftest import GRAPH_TINY as GRAPH_TINY_BASE
from conftest import write_tiny_config

from urllm.config import load_config
from urllm.configuration import ConfigError
from urllm.llm.config import LLMConfig
from urllm.pipeline.runner import run_pipeline
from urllm.pipeline.stages import all_stages

GRAPH_TINY = [*GRAPH_TINY_BASE, "retrieval.encoder=svd", "retrieval.svd.dim=8"]
LISTWISE_TINY = [
    "grounding.mode=rank", "grounding.backbone=prior", "grounding.top_n=4",
    "grounding.fusion_holdout_users=4", "finetune.task=rank", "prompts.n_neighbours=2",
    "prompts.n_candidates=5", "prompts.candidates_system=svd", "prompts.max_tokens=400",
    "prompts.title_max_words=3", "finetune.lora_r=2", "finetune.lora_alpha=4", "finetune.batch_size=8",
    "finetune.max_train_prompts=16", "finetune.max_valid_prompts=4", "finetune.log_every=1",
]  # fmt: skip


def _tree(root):
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A tiny random Llama saved with SmolLM2's tokenizer (no download)."""
    from urllm.llm.model import load_tokenizer
    from urllm.llm.tiny import tiny_llama

    try:
        tok = load_tokenizer(LLMConfig())
    except ConfigError as exc:
        pytest.skip(f"SmolLM2 tokenizer unavailable: {exc}")
    path = tmp_path_factory.mktemp("tiny-llama")
    tiny_llama(hidden=8).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    from accelerate.state import AcceleratorState, GradientState

    yield
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def test_the_adapter_is_found_where_the_finetune_wrote_it(tmp_path):
    """``finetune.output_dir`` moves the adapter; inference looks for it there (RunLayout)."""
    from urllm.infer.engine import adapter_path
    from urllm.run_layout import RunLayout

    out = tmp_path / "elsewhere"
    cfg = load_config(None, [f"run_dir={tmp_path / 'run'}", f"finetune.output_dir={out}"])
    finetune_dir = RunLayout.of(cfg).finetune
    assert finetune_dir == out
    assert adapter_path(cfg.infer, finetune_dir) is None  # nothing trained yet: the base model
    (out / "adapter").mkdir(parents=True)
    (out / "adapter" / "adapter_config.json").write_text("{}")
    assert adapter_path(cfg.infer, finetune_dir) == out / "adapter"
    assert adapter_path(cfg.infer, RunLayout(tmp_path / "run").finetune) is None  # not the default place
    given = load_config(None, [f"run_dir={tmp_path / 'run'}", f"infer.adapter_dir={tmp_path / 'none'}"])
    with pytest.raises(ConfigError, match="infer.adapter_dir: no adapter_config.json"):
        adapter_path(given.infer, finetune_dir)


def test_prompts_load_the_index_stage_and_write_only_their_own_folder(tmp_path, synthetic, tiny_dir):
    from datasets import Dataset

    from urllm.data.schema import load_data
    from urllm.retrieval.neighbours import UserRetriever
    from urllm.systems import fitted_embedder

    path = write_tiny_config(tmp_path, synthetic)
    cfg = load_config(path, [*GRAPH_TINY, *LISTWISE_TINY, f"llm.model={tiny_dir}"])
    run_pipeline(cfg, all_stages(cfg), ["index"], "valid")
    before = {s: _tree(cfg.run_path / s) for s in ("graph", "index")}
    run_pipeline(cfg, all_stages(cfg), ["prompts"], "valid")
    assert {s: _tree(cfg.run_path / s) for s in ("graph", "index")} == before  # upstream untouched

    data = load_data(cfg.run_path / "prepare")
    retriever = UserRetriever.load(cfg.run_path / "index", cfg.retrieval)
    records = data.records("valid")
    want, _ = retriever.search(fitted_embedder(cfg, data), records, k=2)
    got = Dataset.from_parquet(str(cfg.run_path / "prompts" / "valid.parquet"))["neighbours"]
    assert got == want  # the index stage's neighbours


def _listwise_run(tmp_path, synthetic, tiny_dir):
    path = write_tiny_config(tmp_path, synthetic)
    over = [*GRAPH_TINY, *LISTWISE_TINY, f"llm.model={tiny_dir}"]
    cfg = load_config(path, over)
    fps = run_pipeline(cfg, all_stages(cfg), ["finetune"], "valid")
    assert (cfg.run_path / "finetune" / "adapter" / "adapter_model.safetensors").is_file()
    return path, over, cfg, fps


def test_a_changed_candidates_count_keeps_the_adapter(tmp_path, synthetic, tiny_dir, caplog):
    """prompts.n_candidates rewrites the prompts' candidates column, which the listwise fine-tune does not
    read: the adapter is kept. A finetune manifest of the older code (fingerprinted with the prompts
    stage's fingerprint) is re-labelled, not re-run."""
    from urllm.pipeline.manifest import Manifest, fingerprint

    path, over, cfg, fps = _listwise_run(tmp_path, synthetic, tiny_dir)
    before = _tree(cfg.run_path / "finetune")
    fewer = load_config(path, [*over, "prompts.n_candidates=3"])
    caplog.clear()
    with caplog.at_level("INFO"):
        new = run_pipeline(fewer, all_stages(fewer), ["finetune"], "valid")
    assert new["prompts"] != fps["prompts"] and new["finetune"] == fps["finetune"]
    assert "prompts: config changed (prompts.n_candidates 5 -> 3); clearing" in caplog.text
    assert "finetune: up to date, skipped" in caplog.text
    assert "finetune: " not in caplog.text.replace("finetune: up to date", "")  # nothing else said
    assert _tree(cfg.run_path / "finetune") == before

    m = Manifest(cfg.run_path / "finetune")
    old = m.read()
    old["upstream"] = {"prompts": new["prompts"]}
    old["fingerprint"] = fingerprint(old["config"], old["inputs"], old["upstream"])  # older code's
    m._write(old)
    caplog.clear()
    with caplog.at_level("INFO"):
        assert run_pipeline(fewer, all_stages(fewer), ["finetune"], "valid") == new
    assert "re-labelled" in caplog.text and "finetune: up to date, skipped" in caplog.text
    assert old["fingerprint"] in Manifest(cfg.run_path / "finetune").read()["aliases"]


@pytest.mark.slow
def test_what_the_listwise_finetune_reads_re_makes_it(tmp_path, synthetic, tiny_dir, caplog):
    """grounding.top_n shapes the listwise training lists: the rank data and the adapter are re-made."""
    path, over, cfg, _ = _listwise_run(tmp_path, synthetic, tiny_dir)
    shorter = load_config(path, [*over, "grounding.top_n=3"])
    caplog.clear()
    with caplog.at_level("INFO"):
        run_pipeline(shorter, all_stages(shorter), ["finetune"], "valid")
    assert "finetune: upstream stage re-made (rank_inputs); clearing" in caplog.text
    assert "prompts-rank was made from other inputs; rebuilding it" in caplog.text
    assert (cfg.run_path / "finetune" / "adapter" / "adapter_model.safetensors").is_file()
