"""Batch inference and the LLM systems on synthetic data with a tiny random Llama: resume after a killed
run, settings checks, a 2-process split, and every system end to end through ``evaluate()``."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from urllm.config import load_config
from urllm.configuration import ConfigError
from urllm.data.schema import TwoDomainData
from urllm.eval.evaluate import evaluate
from urllm.infer import engine as engine_mod
from urllm.infer.batch import run_inference as run_with_setup
from urllm.infer.jobs import record_key
from urllm.infer.store import JsonlStore
from urllm.infer.variants import Variant, out_path
from urllm.llm.config import LLMConfig
from urllm.llm.tiny import tiny_llama
from urllm.systems import infer_setup, make_system


def run_inference(cfg, *args, **kwargs):
    """:func:`urllm.infer.batch.run_inference` with the setup the root config makes."""
    return run_with_setup(infer_setup(cfg), *args, **kwargs)


@pytest.fixture(scope="module")
def tok():
    from urllm.llm.model import load_tokenizer

    return load_tokenizer(LLMConfig())


@pytest.fixture(scope="module")
def llm(tok):
    torch.manual_seed(0)
    return tiny_llama(seed=1), tok, None


@pytest.fixture()
def small(synthetic) -> TwoDomainData:
    """The synthetic data with 4 valid records per target domain (a documented subset)."""
    valid = [r for d in (0, 1) for r in synthetic.records("valid") if r.domain == d][:0]
    for d in (0, 1):
        valid += [r for r in synthetic.records("valid") if r.domain == d][:4]
    return TwoDomainData(
        synthetic.name, synthetic.catalogue, {"train": synthetic.records("train"), "valid": valid}
    )


def make_cfg(tmp_path, *extra):
    return load_config(
        None,
        [
            f"run_dir={tmp_path}",
            "grounding.backbone=transition",
            "grounding.num_beams=3",
            "grounding.top_n=5",
            "grounding.free_max_new_tokens=8",
            "grounding.refiner.steps=[exact,bm25]",  # the kNN step is covered in test_grounding
            "infer.batch_size=3",
            "prompts.max_tokens=200",
            "infer.prompt_source=history",  # no prompts stage here: history-only prompts, asked for
            "grounding.fusion_holdout_users=3",
            *extra,
        ],
    )


def read_rows(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_resume_after_a_killed_run(tmp_path, small, llm, monkeypatch):
    cfg = make_cfg(tmp_path)
    v = Variant("constrained")
    path = run_inference(cfg, small, "valid", v, llm=llm)
    full = read_rows(path)
    assert [r["key"] for r in full] == [record_key(r, small.catalogue) for r in small.records("valid")]
    # a kill: two complete lines and half of the third survive
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:2]) + lines[2][: len(lines[2]) // 2])
    seen = []
    real_run = engine_mod.Engine.run
    monkeypatch.setattr(
        engine_mod.Engine, "run", lambda self, jobs: seen.extend(jobs) or real_run(self, jobs)
    )
    run_inference(cfg, small, "valid", v, llm=llm)
    assert len(seen) == len(full) - 2  # only the missing records ran again
    again = read_rows(path)
    assert [r["key"] for r in again] == [r["key"] for r in full]
    for a, b in zip(again, full, strict=True):
        assert [g["items"] for g in a["grounded"]] == [g["items"] for g in b["grounded"]]
    seen.clear()
    run_inference(cfg, small, "valid", v, llm=llm)
    assert seen == []  # nothing left to do


def test_jsonl_store_repairs_a_line_without_newline(tmp_path):
    store = JsonlStore(tmp_path / "x.jsonl", {"a": 1})
    store.append([{"key": "k1"}])
    with open(store.path, "a") as f:
        f.write('{"key": "k2"}')  # complete row, newline lost
    store.append([{"key": "k3"}])
    assert list(store.load()) == ["k1", "k2", "k3"]
    store.path.write_text('{"key": "k1"}\nnot json\n{"key": "k3"}\n')
    with pytest.raises(Exception, match=r"x.jsonl:2"):
        store.load()


def test_changed_settings_are_refused_or_overwritten(tmp_path, small, llm):
    run_inference(make_cfg(tmp_path), small, "valid", Variant("rerank"), llm=llm)
    with pytest.raises(ConfigError, match="other settings"):
        run_inference(make_cfg(tmp_path, "grounding.top_n=4"), small, "valid", Variant("rerank"), llm=llm)
    path = run_inference(
        make_cfg(tmp_path, "grounding.top_n=4", "infer.overwrite=true"),
        small,
        "valid",
        Variant("rerank"),
        llm=llm,
    )
    assert all(len(r["candidates"]) == 4 for r in read_rows(path))


def test_rerank_reads_candidates_and_prompts_from_the_parquet(tmp_path, small, llm):
    from datasets import Dataset

    cat = small.catalogue
    recs = small.records("valid")
    cands = [list(cat.domain_range(r.domain))[-6:][::-1] for r in recs]
    (tmp_path / "prompts").mkdir()
    Dataset.from_dict(
        {
            "prompt": [
                f"<|im_start|>user\nrecommend {i}<|im_end|>\n<|im_start|>assistant\n"
                for i in range(len(recs))
            ],
            "completion": [cat.titles[r.target] for r in recs],
            "user": [r.user for r in recs],
            "target": [r.target for r in recs],
            "target_domain": [cat.domains[r.domain] for r in recs],
            "candidates": cands,
        }
    ).to_parquet(str(tmp_path / "prompts" / "valid.parquet"))
    path = run_inference(
        make_cfg(tmp_path, "infer.prompt_source=parquet"), small, "valid", Variant("rerank"), llm=llm
    )
    rows = read_rows(path)
    assert [r["candidates"] for r in rows] == [c[:5] for c in cands]
    assert len({r["prompt_tokens"] for r in rows}) <= 2  # the short parquet prompts, not history prompts


SYSTEMS = [
    "urllm",
    "urllm-constrained",
    "urllm-free",
    "urllm-rerank",
    "urllm-no-retrieval",
    "urllm-no-grounding",
]


@pytest.mark.parametrize("fusion", ["calibrated", "llm_first", "weighted"])
def test_llm_systems_end_to_end(tmp_path, small, llm, fusion):
    cfg = make_cfg(tmp_path, f"grounding.fusion={fusion}")
    cat = small.catalogue
    for name in SYSTEMS:
        system = make_system(name, cfg)
        system.llm = llm
        system.fit(small, tmp_path / "systems" / name)
        result = evaluate(system, small, "valid", cfg.eval, name)
        for d in cat.domains:
            m = result["per_domain"][d]
            assert m["n"] == 4 and 0 <= m["MRR"] <= 1
            assert m["ood_rate"] == 0.0  # after grounding, by construction and by this check
            if system.variant.mode in ("rank", "rerank"):
                assert m["raw_ood_rate"] is None and m["raw_valid_title_rate"] is None
            else:
                assert 0 <= m["raw_ood_rate"] <= 1 and 0 <= m["raw_valid_title_rate"] <= 1
            if system.variant.mode == "constrained":
                assert m["raw_valid_title_rate"] == 1.0 and m["raw_ood_rate"] == 0.0
            if system.variant.mode not in ("rank", "rerank"):  # oracle: raw outputs matched to a history item
                recs = {record_key(r, cat): r for r in small.records("valid") if cat.domains[r.domain] == d}
                rows = [
                    row
                    for row in read_rows(out_path(infer_setup(cfg).paths, "valid", system.variant))
                    if row["key"] in recs
                ]
                hits = [
                    bool(set(recs[row["key"]].history) & {*g["items"], *g["dropped"]})
                    for row in rows
                    for g in row["grounded"]
                ]
                assert m["raw_in_history_rate"] == pytest.approx(sum(hits) / len(hits))
        # complete rankings of the target domain, LLM picks first (llm_first)
        for d in (0, 1):
            recs = [r for r in small.records("valid") if r.domain == d]
            scores = system.score(recs, d)
            assert scores.shape == (len(recs), cat.domain_size(d)) and np.isfinite(scores).all()
    runs = sorted(p.name for p in (tmp_path / "infer" / "valid").glob("*.jsonl"))
    assert runs == [
        "constrained.jsonl",
        "free.jsonl",
        "rank-no-retrieval.jsonl",
        "rank.jsonl",
        "rerank.jsonl",
    ]


def test_free_mode_records_what_the_refiner_did(tmp_path, small, llm):
    path = run_inference(make_cfg(tmp_path), small, "valid", Variant("free"), llm=llm)
    for row in read_rows(path):
        assert len(row["outputs"]) == len(row["grounded"]) == 3
        for out, g in zip(row["outputs"], row["grounded"], strict=True):
            assert g["method"] in ("exact", "bm25", "none", "empty")
            assert np.isfinite(out["score"])
            assert all(
                small.catalogue.domains[small.catalogue.item_domain[i]] == row["domain"] for i in g["items"]
            )


def test_score_without_rows_fails_clearly_when_not_allowed(tmp_path, small, llm):
    cfg = make_cfg(tmp_path, "infer.run_missing=false")
    system = make_system("urllm-rerank", cfg)
    system.fit(small, tmp_path)
    with pytest.raises(Exception, match="run_missing"):
        system.score(small.records("valid")[:2], 0)


def _two_process_job(run_dir: str, seed_data):
    """Runs in each of 2 processes started by conftest.spawn_launcher."""
    import os

    from accelerate import PartialState

    from urllm.llm.model import load_tokenizer

    # the launcher initialises gloo before calling us: tell accelerate our rank, and drop any
    # single-process state left from before
    os.environ["RANK"] = os.environ["LOCAL_RANK"] = str(torch.distributed.get_rank())
    PartialState._reset_state()
    state = PartialState(cpu=True)
    assert state.num_processes == 2
    torch.manual_seed(0)
    llm = (tiny_llama(seed=1), load_tokenizer(LLMConfig()), None)
    cfg = make_cfg(run_dir, "infer.batch_size=2", "infer.out_dir=" + run_dir + "/two")
    run_inference(cfg, seed_data, "valid", Variant("rerank"), llm=llm, state=state)


def test_two_processes_split_and_gather(tmp_path, small, llm):
    from conftest import spawn_launcher

    one = read_rows(run_inference(make_cfg(tmp_path), small, "valid", Variant("rerank"), llm=llm))
    spawn_launcher(_two_process_job, args=(str(tmp_path), small), num_processes=2)
    two = read_rows(
        out_path(
            infer_setup(make_cfg(tmp_path, f"infer.out_dir={tmp_path}/two")).paths, "valid", Variant("rerank")
        )
    )
    assert sorted(r["key"] for r in two) == sorted(r["key"] for r in one)  # each record once, padding trimmed
    by_key = {r["key"]: r for r in one}
    for r in two:
        assert r["candidates"] == by_key[r["key"]]["candidates"]
        np.testing.assert_allclose(r["candidate_scores"], by_key[r["key"]]["candidate_scores"], atol=1e-4)


def test_batch_entry_point_help():
    out = subprocess.run(
        [sys.executable, "-m", "urllm.recipes.infer", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "--systems" in out.stdout


def test_no_retrieval_variant_can_have_its_own_adapter(tmp_path):
    from urllm.infer.config import InferConfig
    from urllm.infer.engine import adapter_path, shared_llm

    ft, own = tmp_path / "finetune", tmp_path / "own"
    for d in (ft / "adapter", own):
        d.mkdir(parents=True)
        (d / "adapter_config.json").write_text("{}")
    plain = InferConfig()
    assert adapter_path(plain, ft) == adapter_path(plain, ft, retrieval=False) == ft / "adapter"
    split = InferConfig(no_retrieval_adapter_dir=str(own))
    assert adapter_path(split, ft) == ft / "adapter" and adapter_path(split, ft, retrieval=False) == own
    with pytest.raises(ConfigError, match="no_retrieval_adapter_dir"):
        adapter_path(InferConfig(no_retrieval_adapter_dir=str(tmp_path)), ft, retrieval=False)
    assert adapter_path(InferConfig(use_adapter=False, no_retrieval_adapter_dir=str(own)), ft, False) is None
    llm = ("model", "tok", ft / "adapter")
    assert shared_llm(llm, ft / "adapter") is llm  # the loaded model carries the asked adapter
    assert shared_llm(llm, own) is None  # another adapter: load it
    assert shared_llm(("m", "t", None), own) is None  # the base model is not the adapter asked for
    assert shared_llm(llm, None) is llm  # nothing asked: whatever is loaded
