import json

import pytest
from conftest import GRAPH_TINY as GRAPH_TINY_BASE

from urllm.config import load_config
from urllm.data.art_office import write_art_office
from urllm.pipeline.runner import Stage, run_pipeline
from urllm.pipeline.stages import all_stages


@pytest.fixture()
def tiny_config(tmp_path, synthetic):
    """A config that reads the synthetic data as Art-Office-format files."""
    files = write_art_office(synthetic, tmp_path / "data")
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(
        f"""
run_dir: run
data:
  name: tiny
  root: data
  item_files: [{files["items_0"]}, {files["items_1"]}]
  train_file: {files["train"]}
  valid_file: {files["valid"]}
  test_file: {files["test"]}
pipeline:
  systems: [popularity, transition]
"""
    )
    return cfg


def test_art_office_writer_round_trip(tiny_config, synthetic):
    from urllm.data.load import load_data_from_config

    data = load_data_from_config(load_config(tiny_config).data)
    for split in ("train", "valid", "test"):
        assert data.records(split) == synthetic.records(split)
    assert data.catalogue.titles == synthetic.catalogue.titles


def test_pipeline_runs_skips_and_reruns_on_change(tiny_config, caplog):
    cfg = load_config(tiny_config)
    fps = run_pipeline(cfg, all_stages(), ["evaluate"], "valid")
    results = json.loads((cfg.run_path / "evaluate" / "valid" / "results.json").read_text())
    assert set(results["systems"]) == {"popularity", "transition"}
    assert (
        results["systems"]["transition"]["overall"]["MRR"]
        > results["systems"]["popularity"]["overall"]["MRR"]
    )

    caplog.clear()
    with caplog.at_level("INFO"):
        assert run_pipeline(cfg, all_stages(), ["evaluate"], "valid") == fps
    assert caplog.text.count("up to date, skipped") == 2

    changed = load_config(tiny_config, ["eval.ks=[1,10]"])
    new = run_pipeline(changed, all_stages(), ["evaluate"], "valid")
    assert new["prepare"] == fps["prepare"] and new["evaluate"] != fps["evaluate"]
    results = json.loads((cfg.run_path / "evaluate" / "valid" / "results.json").read_text())
    assert "HR@5" not in results["systems"]["popularity"]["overall"]


def test_test_split_reuses_training_stages(tiny_config):
    cfg = load_config(tiny_config)
    fps = run_pipeline(cfg, all_stages(), ["evaluate"], "valid")
    test_fps = run_pipeline(cfg, all_stages(), ["evaluate"], "test")
    assert test_fps["prepare"] == fps["prepare"]
    assert (cfg.run_path / "evaluate" / "test" / "results.json").is_file()


def test_killed_stage_resumes(tiny_config):
    cfg = load_config(tiny_config)
    calls = []

    def flaky(ctx):
        calls.append(1)
        (ctx.dir / "partial").write_text("x")
        if len(calls) == 1:
            raise KeyboardInterrupt  # killed mid-stage
        assert (ctx.dir / "partial").is_file()  # same inputs: its partial work is still there
        return {"ok": True}

    stages = [*all_stages(), Stage("flaky", ("seed",), ("prepare",), flaky)]
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(cfg, stages, ["flaky"], "valid")
    run_pipeline(cfg, stages, ["flaky"], "valid")
    run_pipeline(cfg, stages, ["flaky"], "valid")
    assert len(calls) == 2
    manifest = json.loads((cfg.run_path / "flaky" / "manifest.json").read_text())
    assert manifest["status"] == "done" and manifest["versions"]["torch"]


def test_unknown_stage_is_an_error(tiny_config):
    from urllm.configuration import ConfigError

    with pytest.raises(ConfigError, match="unknown stage 'nope'"):
        run_pipeline(load_config(tiny_config), all_stages(), ["nope"], "valid")


def test_report_renders_tables_and_plots(tiny_config):
    from urllm.report import write_report
    from urllm.run_layout import RunLayout

    cfg = load_config(tiny_config)
    run_pipeline(cfg, all_stages(), ["evaluate"], "valid")
    (cfg.run_path / "graph").mkdir()
    (cfg.run_path / "graph" / "train_log.jsonl").write_text(
        "\n".join(json.dumps({"epoch": e, "loss": 1.0 / (e + 1), "valid_MRR": 0.1 * e}) for e in range(3))
    )
    # LLM systems as `urllm evaluate` reports them: free generation has raw rates, re-ranking has None
    path = cfg.run_path / "evaluate" / "valid" / "results.json"
    results = json.loads(path.read_text())
    for name, raw in (("urllm-free", 0.25), ("urllm-rerank", None)):
        res = json.loads(json.dumps(results["systems"]["transition"]))
        for m in res["per_domain"].values():
            m.update(ood_rate=0.0, raw_ood_rate=raw, raw_valid_title_rate=raw, raw_in_history_rate=raw)
        results["systems"][name] = res
    path.write_text(json.dumps(results))
    report = write_report(RunLayout.of(cfg), "valid")
    text = report.read_text()
    assert "| transition |" in text and "## Cold start" in text and "## Training curves" in text
    assert "| urllm-free | " in text and "| urllm-rerank | " not in text.split("## Out-of-domain")[1]
    for png in ("metrics.png", "cold_start.png", "curves.png", "ood.png"):
        assert (report.parent / png).stat().st_size > 1000


def test_evaluate_cli_scores_several_systems(tiny_config, tmp_path):
    from urllm.cli import main

    both, one = tmp_path / "both.json", tmp_path / "one.json"
    assert (
        main(
            [
                "evaluate",
                "--config",
                str(tiny_config),
                "--system",
                "popularity,transition",
                "--out",
                str(both),
            ]
        )
        == 0
    )
    assert main(["evaluate", "--config", str(tiny_config), "--system", "transition", "--out", str(one)]) == 0
    results = json.loads(both.read_text())["systems"]
    assert list(results) == ["popularity", "transition"]
    assert results["transition"] == json.loads(one.read_text())  # a single system keeps the plain format


GRAPH_TINY = [*GRAPH_TINY_BASE, "retrieval.encoder=graph", "pipeline.systems=[popularity,graph]"]
RUNTIME_KNOBS = [
    "graph.threads=1", "graph.progress=true", "graph.eval_batch_size=7", "eval.batch_size=5",
    "retrieval.batch_size=3", "prompts.batch_size=9", "infer.batch_size=3", "infer.threads=1",
    "finetune.log_every=3", "finetune.save_every=5", "finetune.cpu_threads=1", "sasrec.device=cpu",
    "grounding.rerank_chunk=4", "llm.cache_dir=elsewhere",
]  # fmt: skip


def _tree(root):
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_runtime_knobs_rerun_nothing_and_delete_nothing(tiny_config, caplog):
    """A finished pipeline rerun with only runtime fields changed skips every stage and touches no file;
    a changed graph.epochs re-runs the graph stage in its kept folder (training continues)."""
    from urllm.config import Config
    from urllm.configuration import marked_keys

    assert {k.split("=")[0] for k in RUNTIME_KNOBS} <= set(marked_keys(Config, "runtime"))
    cfg = load_config(tiny_config, GRAPH_TINY)
    stages = ["prepare", "graph", "index", "evaluate"]
    fps = run_pipeline(cfg, all_stages(cfg), stages, "valid")
    before = _tree(cfg.run_path)
    assert "graph/model.pt" in before and "index/hit_rate.json" in before

    knobs = load_config(tiny_config, [*GRAPH_TINY, *RUNTIME_KNOBS])
    caplog.clear()
    with caplog.at_level("INFO"):
        assert run_pipeline(knobs, all_stages(knobs), stages, "valid") == fps
    assert caplog.text.count("up to date, skipped") == len(stages) and "clearing" not in caplog.text
    assert _tree(cfg.run_path) == before  # nothing re-made, nothing deleted

    longer = load_config(tiny_config, [*GRAPH_TINY, "graph.epochs=2"])
    caplog.clear()
    with caplog.at_level("INFO"):
        new = run_pipeline(longer, all_stages(longer), ["graph"], "valid")
    assert new["graph"] != fps["graph"]
    assert "graph.epochs 1 -> 2" in caplog.text and "keeping" in caplog.text
    # extended: epoch 1 is not trained again
    assert "resuming graph training after epoch 1" in caplog.text and "graph epoch 2:" in caplog.text
    assert "graph epoch 1:" not in caplog.text


def test_a_changed_result_field_clears_with_a_reason(tiny_config, caplog):
    cfg = load_config(tiny_config)
    run_pipeline(cfg, all_stages(cfg), ["evaluate"], "valid")
    (cfg.run_path / "evaluate" / "valid" / "stale.txt").write_text("x")
    changed = load_config(tiny_config, ["eval.ks=[1,10]"])
    with caplog.at_level("INFO"):
        run_pipeline(changed, all_stages(changed), ["evaluate"], "valid")
    assert "config changed (eval.ks [1, 5, 10] -> [1, 10]); clearing" in caplog.text
    assert not (cfg.run_path / "evaluate" / "valid" / "stale.txt").exists()


def test_manifest_from_before_the_runtime_marks_is_migrated(tiny_config, caplog):
    """A manifest whose fingerprint also covered a runtime field (older code) is not re-run."""
    from urllm.pipeline.manifest import Manifest

    cfg = load_config(tiny_config)
    fps = run_pipeline(cfg, all_stages(cfg), ["evaluate"], "valid")
    for stage in ("prepare", "evaluate/valid"):
        m = Manifest(cfg.run_path / stage)
        old = m.read()
        old["fingerprint"] = "0ld" + old["fingerprint"][3:]
        if "eval" in old["config"]:
            old["config"]["eval"]["batch_size"] = 99  # recorded by the old code, now runtime
        old["upstream"] = {k: "0ld" + v[3:] for k, v in old["upstream"].items()}
        m._write(old)
    with caplog.at_level("INFO"):
        assert run_pipeline(cfg, all_stages(cfg), ["evaluate"], "valid") == fps
    assert caplog.text.count("up to date, skipped") == 2
    assert "0ld" + fps["prepare"][3:] in Manifest(cfg.run_path / "prepare").read()["aliases"]


SASREC_TINY = [
    "sasrec.hidden=16",
    "sasrec.layers=1",
    "sasrec.epochs=1",
    "sasrec.max_len=8",
    "sasrec.batch_size=64",
]


def _evaluate(cfg_file, systems, *over):
    from urllm.cli import main

    return main(["evaluate", "--config", str(cfg_file), "--system", systems, *over])


def test_editing_an_input_file_invalidates_the_caches(tiny_config, caplog):
    """systems/<name> caches are keyed by the data they were fitted on: an edited training file clears
    them (logged) instead of reusing a model trained on other data."""
    cfg = load_config(tiny_config)
    assert _evaluate(tiny_config, "sasrec,popularity", *SASREC_TINY) == 0
    stamp = json.loads((cfg.run_path / "systems" / "sasrec" / "cache.json").read_text())
    assert stamp["fitted"] and stamp["key"]["system"] == "sasrec"
    caplog.clear()
    with caplog.at_level("INFO"):
        assert _evaluate(tiny_config, "sasrec", *SASREC_TINY, "sasrec.device=cpu") == 0  # runtime knob
    assert "clearing" not in caplog.text and "reusing the finished SASRec checkpoint" in caplog.text

    train = cfg.data.path(cfg.data.train_file)
    lines = train.read_text().splitlines(keepends=True)
    train.write_text("".join(lines[:-5]))  # an edited input file
    caplog.clear()
    with caplog.at_level("INFO"):
        assert _evaluate(tiny_config, "sasrec", *SASREC_TINY) == 0
    assert (
        "system sasrec" in caplog.text
        and "was made from other inputs (data changed); clearing" in caplog.text
    )
    assert "reusing the finished SASRec checkpoint" not in caplog.text
    new = json.loads((cfg.run_path / "systems" / "sasrec" / "cache.json").read_text())
    assert new["key"]["data"] != stamp["key"]["data"]

    with caplog.at_level("INFO"):  # ... and in the pipeline: the prepare stage and the caches
        run_pipeline(cfg, all_stages(cfg), ["evaluate"], "valid")
        train.write_text("".join(lines))
        caplog.clear()
        run_pipeline(cfg, all_stages(cfg), ["evaluate"], "valid")
    assert "prepare: input file changed" in caplog.text


def test_evaluate_loads_the_graph_stage_read_only(tiny_config, caplog):
    """Downstream users of the graph (the evaluate stage, `urllm evaluate`) load it; they never rewrite
    the graph stage's folder."""
    cfg = load_config(tiny_config, GRAPH_TINY)
    run_pipeline(cfg, all_stages(cfg), ["graph"], "valid")
    before = _tree(cfg.run_path / "graph")
    with caplog.at_level("INFO"):
        run_pipeline(cfg, all_stages(cfg), ["evaluate"], "valid")
        assert _evaluate(tiny_config, "graph", *GRAPH_TINY) == 0
    assert caplog.text.count("loaded") >= 2 and "read-only" in caplog.text
    assert _tree(cfg.run_path / "graph") == before
    assert not (cfg.run_path / "systems" / "graph" / "model.pt").exists()  # no second graph trained


def test_lora_folder_of_other_settings_is_never_resumed(tmp_path):
    from urllm.cache import check_signature, lora_signature
    from urllm.configuration import ConfigError
    from urllm.run_layout import RunLayout
    from urllm.systems import finetune_lora

    def output_dir(cfg):
        return RunLayout.of(cfg).finetune

    def prompts_dir(cfg):
        return RunLayout.of(cfg).finetune_prompts

    base = [f"run_dir={tmp_path / 'run'}", "finetune.task=title"]
    cfg = load_config(None, base)
    check_signature(
        output_dir(cfg), lora_signature(cfg.finetune, cfg.llm, cfg.seed, prompts_dir(cfg)), "finetune"
    )  # a first run
    knobs = load_config(
        None, [*base, "finetune.log_every=7", "finetune.save_every=3", "finetune.cpu_threads=1"]
    )
    check_signature(
        output_dir(knobs),
        lora_signature(knobs.finetune, knobs.llm, knobs.seed, prompts_dir(knobs)),
        "finetune",
    )  # runtime: fine
    other = load_config(None, [*base, "finetune.lr=0.5", "finetune.lora_r=4"])
    with pytest.raises(ConfigError, match=r"finetune\.lora_r, finetune\.lr differ"):
        finetune_lora(other)  # refused before any model is loaded or any file is touched
    prompts = prompts_dir(cfg)
    prompts.mkdir(parents=True)
    (prompts / "train.parquet").write_bytes(b"one")
    check_signature(
        output_dir(cfg), lora_signature(cfg.finetune, cfg.llm, cfg.seed, prompts), "finetune"
    )  # digest recorded
    (prompts / "train.parquet").write_bytes(b"two")  # other training prompts
    with pytest.raises(ConfigError, match="prompts_train differ"):
        check_signature(output_dir(cfg), lora_signature(cfg.finetune, cfg.llm, cfg.seed, prompts), "finetune")


def test_data_digest_memo_is_by_identity_never_by_a_recycled_id(synthetic):
    import copy
    import dataclasses

    from urllm.cache import data_digest

    first = data_digest(synthetic)
    assert data_digest(synthetic) == first  # memo hit: the same objects
    twin = copy.deepcopy(synthetic)  # equal content, other objects (equal numpy arrays: no truth-value error)
    assert data_digest(twin) == first
    fewer = dataclasses.replace(twin, splits={**twin.splits, "train": twin.splits["train"][:-1]})
    assert data_digest(fewer) != first
    twin.splits["train"] = twin.splits["train"][:-1]  # a split swapped in place: recomputed
    assert data_digest(twin) == data_digest(fewer)
    assert data_digest(synthetic, ("train",)) != first  # other splits: another digest
