"""``kill -9`` the MovieLens demo pipeline inside each of its stages; rerun it; the metrics must equal those of
a run that was never interrupted (slow: ~9 small pipeline runs, about half an hour on 2 CPU cores).

The demo config (``configs/movielens.yaml``) runs with its sizes cut (fewer users, one epoch, a handful of
fine-tune prompts, 3 records per domain) so every stage still does its real work: prepare, graph, index,
prompts, finetune, infer, evaluate. An uninterrupted reference run logs each stage's duration; then, per
stage, a fresh run is killed (SIGKILL to its process group: no cleanup, no ``finally``) at a quarter of that
stage's reference duration after the stage logged ``running``, and rerun to the end in the same folder.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "movielens.yaml"
STAGES = ("prepare", "graph", "index", "prompts", "finetune", "infer", "evaluate")
SMALL = [
    "data.recbole.max_users=300",
    "graph.epochs=1",
    "sasrec.epochs=1",
    "finetune.max_train_prompts=8",
    "finetune.max_valid_prompts=4",
    "finetune.save_every=1",
    "infer.limit=3",
    "grounding.fusion_holdout_users=10",
    "eval.bootstrap_resamples=100",
]
LINE = re.compile(r"\[(\d+)/(\d+)\] (\w+)(?:/\w+)?: (running|done in ([\d.]+) s|up to date)")


def _command(run_dir: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "urllm.cli", "pipeline", "--config", str(CONFIG), "--out", str(out),
            f"run_dir={run_dir}", *SMALL]  # fmt: skip


def _env() -> dict[str, str]:
    return os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _run(run_dir: Path, out: Path, log: Path) -> dict[str, float]:
    """Run the pipeline to the end; the duration of each stage it ran (seconds)."""
    with open(log, "a") as f:
        proc = subprocess.run(
            _command(run_dir, out), cwd=REPO, env=_env(), stdout=f, stderr=subprocess.STDOUT
        )
    text = log.read_text()
    assert proc.returncode == 0, f"pipeline failed, log {log}:\n{text[-3000:]}"
    return {m.group(3): float(m.group(5)) for m in LINE.finditer(text) if m.group(5)}


def _kill_in(stage: str, after_s: float, run_dir: Path, out: Path, log: Path) -> bool:
    """Start the pipeline, SIGKILL it ``after_s`` seconds after ``stage`` starts; False if it ended first."""
    with open(log, "w") as f:
        proc = subprocess.Popen(
            _command(run_dir, out), cwd=REPO, env=_env(), stdout=f, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    started = None
    while proc.poll() is None:
        if started is None and re.search(rf"\] {stage}(/\w+)?: running", log.read_text()):
            started = time.monotonic()
        if started is not None and time.monotonic() - started >= after_s:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.1)
    return False


def _metrics(out: Path) -> dict[str, dict[str, float]]:
    """system -> {domain.metric: value} for every finite number of the evaluate JSON."""
    flat: dict[str, dict[str, float]] = {}

    def walk(prefix: str, node, into: dict) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v, into)
        elif isinstance(node, (int, float)) and not isinstance(node, bool) and math.isfinite(node):
            into[prefix] = float(node)

    for name, result in json.loads(out.read_text())["systems"].items():
        walk("", result, flat.setdefault(name, {}))
    return flat


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    if not (REPO / ".cache" / "data" / "ml-1m").is_dir():
        pytest.skip(
            "MovieLens-1M not fetched: run `urllm data fetch-movielens --config configs/movielens.yaml`"
        )
    root = tmp_path_factory.mktemp("reference")
    out = root / "out.json"
    durations = _run(root / "run", out, root / "log.txt")
    assert set(STAGES) <= set(durations), f"stages not run: {set(STAGES) - set(durations)}"
    return durations, _metrics(out)


@pytest.mark.parametrize("stage", STAGES)
def test_kill_9_in_each_stage_resumes_to_the_same_metrics(stage, reference, tmp_path):
    durations, expected = reference
    run_dir, out, log = tmp_path / "run", tmp_path / "out.json", tmp_path / "log.txt"
    killed = _kill_in(stage, 0.25 * durations[stage], run_dir, out, log)
    assert killed, f"the pipeline ended before {stage} was killed (log {log})"
    assert not out.exists(), "a killed run wrote its result"
    _run(run_dir, out, log)
    got = _metrics(out)
    assert got.keys() == expected.keys()
    for system, values in expected.items():
        diff = {
            k: (v, got[system].get(k)) for k, v in values.items() if got[system].get(k) != pytest.approx(v)
        }
        assert not diff, f"{system} after a kill in {stage}: {dict(list(diff.items())[:5])}"
