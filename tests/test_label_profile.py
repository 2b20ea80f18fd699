"""scripts/label_profile.py: does a listwise ranker's answer depend on its prompt?"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "label_profile.py"


def write(path: Path, rows: dict[str, list[float]], skipped: int = 2) -> Path:
    lines = [json.dumps({"key": k, "label_logprobs": v}) for k, v in rows.items()]
    lines += [
        json.dumps({"key": f"s{i}", "label_logprobs": [0.0] * 3, "llm_skipped": True}) for i in range(skipped)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def run(*args) -> dict:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def test_a_prompt_blind_ranker_and_a_reading_one(tmp_path):
    rng = np.random.default_rng(0)
    blind = {f"r{i}": [-1.0, -0.5, -2.0] for i in range(6)}  # the same answer whatever the prompt
    reads = {f"r{i}": rng.normal(size=3).tolist() for i in range(6)}
    got = run(write(tmp_path / "a.jsonl", blind), "--against", write(tmp_path / "b.jsonl", reads))
    assert got["n"] == 6 and got["label_share"] == 1.0 and got["argmax_counts"] == [0, 6, 0]
    assert got["against_label_share"] < 1.0
    same = run(write(tmp_path / "c.jsonl", reads), "--against", tmp_path / "b.jsonl")
    assert same["corr"] == 1.0 and same["same_top_answer"] == 1.0


def test_bad_line_names_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"key": "a", "label_logprobs": [1, 2]}\nnot json\n')
    out = subprocess.run([sys.executable, str(SCRIPT), str(bad)], capture_output=True, text=True)
    assert out.returncode != 0 and f"{bad}:2: not a JSON line" in out.stderr
