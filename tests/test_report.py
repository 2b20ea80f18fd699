"""`urllm report` from a pipeline run: tables with n and paired intervals, plots with whiskers."""

import json

from conftest import write_tiny_config

from urllm.config import load_config
from urllm.pipeline.runner import run_pipeline
from urllm.pipeline.stages import all_stages
from urllm.run_layout import RunLayout


def make_run(tmp_path, synthetic):
    """A pipeline run on tiny data with a baseline, simulated cold start and two fake LLM systems."""
    path = write_tiny_config(
        tmp_path,
        synthetic,
        "pipeline:\n  systems: [popularity, transition]\n  baseline: popularity\n"
        "eval:\n  cold_start: [0, 1]\n  bootstrap_resamples: 200\n",
    )
    cfg = load_config(path)
    run_pipeline(cfg, all_stages(cfg), ["prepare", "evaluate"], "valid")
    (cfg.run_path / "finetune").mkdir()
    (cfg.run_path / "finetune" / "train_log.jsonl").write_text(
        "\n".join(
            json.dumps({"step": e, "loss": 1.0 / (e + 1), "valid_loss": 1.2 / (e + 1)}) for e in range(4)
        )
    )
    results_path = cfg.run_path / "evaluate" / "valid" / "results.json"
    results = json.loads(results_path.read_text())
    for name, raw in (("urllm-free", 0.25), ("urllm-no-grounding", 0.3)):
        res = json.loads(json.dumps(results["systems"]["transition"]))
        for m in res["per_domain"].values():
            m.update(ood_rate=0.0, raw_ood_rate=raw, raw_valid_title_rate=raw, raw_in_history_rate=raw)
        results["systems"][name] = res
    results_path.write_text(json.dumps(results))
    return RunLayout.of(cfg)


def test_report_shows_n_intervals_and_simulated_cold_start(tmp_path, synthetic):
    from urllm.report import write_report

    report = write_report(make_run(tmp_path, synthetic), "valid")
    text = report.read_text()
    assert "all records; art n = " in text
    assert "MRR vs popularity (95 % CI)" in text and "(baseline)" in text
    table = text.split("### art")[1].split("###")[0]
    transition = next(line for line in table.splitlines() if line.startswith("| transition |"))
    assert transition.count("[") == 2 and "%" in transition  # MRR and NDCG@10 intervals, better/worse
    assert "## Simulated cold start" in text and "N = 0" in text and "N = 1" in text
    assert "(n=" in text.split("## Cold start")[1]
    for png in ("metrics.png", "cold_start.png", "curves.png", "ood.png"):
        assert (report.parent / png).stat().st_size > 1000
