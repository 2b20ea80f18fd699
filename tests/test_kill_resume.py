"""Kill a tiny graph training and a tiny LoRA fine-tune before each of their writes; the rerun must end
with the same result as a run that was never interrupted (slow: one forked process per kill point).

A child process counts the write operations it starts (``open`` for writing, ``torch.save``,
safetensors, ``os.replace``/``rename``, ``shutil.rmtree``) and dies with ``os._exit`` — no cleanup, no
``finally`` — just before the k-th one; the parent then reruns the job to completion in a fresh child
and compares the final weights and training history with the uninterrupted reference.
"""

from __future__ import annotations

import builtins
import io
import json
import multiprocessing as mp
import os
import re
import shutil
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

KILLED = 77  # exit status of a child killed at its injected point
EARLIER_EVERY = 4  # before the last checkpoint, kill before every 4th write (the same kinds repeat)


def _install_kill_switch(kill_at: int) -> list[str]:
    """Make the process die just before its ``kill_at``-th write (0: never); returns the list of the
    writes it started (kind and path), filled as they happen."""
    import accelerate.utils.other as acc_other
    import safetensors.torch

    n: list[str] = []

    def event(what: str) -> None:
        n.append(what)
        if len(n) == kill_at:
            os._exit(KILLED)

    def wrap(fn, arg: int = 0):
        def wrapped(*a, **k):
            target = a[arg] if len(a) > arg else ""
            event(f"{fn.__name__} {getattr(target, 'name', target)}")
            return fn(*a, **k)

        return wrapped

    real_open = builtins.open

    def open_(file, mode="r", *a, **k):
        if any(c in mode for c in "wax+"):
            event(f"open({mode}) {file}")
        return real_open(file, mode, *a, **k)

    builtins.open = io.open = open_  # io.open: what pathlib's write_text / open call
    torch.save = wrap(torch.save, 1)
    os.replace = wrap(os.replace, 1)
    os.rename = wrap(os.rename, 1)
    shutil.rmtree = wrap(shutil.rmtree)
    safetensors.torch.save_file = wrap(safetensors.torch.save_file, 1)
    acc_other.safe_save_file = wrap(acc_other.safe_save_file, 1)
    try:
        import peft.peft_model

        peft.peft_model.safe_save_file = wrap(peft.peft_model.safe_save_file, 1)
    except ImportError:
        pass
    return n


def _count_file(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    return run_dir.parent / (run_dir.name + ".writes")


# --------------------------------------------------------------------------- graph training


def _graph_job(run_dir: str, kill_at: int) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    from urllm.data.synthetic import make_synthetic
    from urllm.graph.config import GraphConfig
    from urllm.graph.system import GraphSystem

    cfg = GraphConfig(
        prior_items=1, hidden=16, semantic_dim=4, max_len=6, batch_size=16, epochs=2, patience=0,
        progress=False, max_attr_frac=1.0, ce_shared=0.5, contrastive=0.1, align=0.1, align_items=6,
        transition_prior=0.5, dropout=0.1,
    )  # fmt: skip
    data = make_synthetic()
    n = _install_kill_switch(kill_at)
    GraphSystem(cfg).fit(data, Path(run_dir))
    _count_file(run_dir).write_text("\n".join(n))


def _graph_result(run_dir: Path) -> tuple[dict, list]:
    blob = torch.load(run_dir / "model.pt", weights_only=True)
    newest = sorted(run_dir.glob("checkpoint-*"))[-1]
    history = json.loads((newest / "train_state.json").read_text())["history"]
    return blob["state_dict"], [{k: v for k, v in h.items() if not k.endswith("_s")} for h in history]


# --------------------------------------------------------------------------- LoRA fine-tuning


def _finetune_job(run_dir: str, kill_at: int, tiny_dir: str) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    from test_finetune import _config

    from urllm.llm.config import LLMConfig
    from urllm.llm.model import load_tokenizer
    from urllm.systems import finetune_lora as finetune

    tok = load_tokenizer(LLMConfig())
    root = Path(run_dir)
    over = ("finetune.task=title", "finetune.epochs=2", "finetune.save_every=3", "finetune.lora_dropout=0.1")
    cfg = _config(root.parent / "prompts-home", Path(tiny_dir), tok, str(root), *over)
    n = _install_kill_switch(kill_at)
    finetune(cfg)
    _count_file(run_dir).write_text("\n".join(n))


def _finetune_result(run_dir: Path) -> tuple[dict, list]:
    from safetensors.torch import load_file

    from urllm.llm.train_state import read_log

    weights = load_file(run_dir / "finetune" / "adapter" / "adapter_model.safetensors")
    rows = [
        {k: v for k, v in r.items() if k in ("step", "epoch", "loss", "valid_loss")}
        for r in read_log(run_dir / "finetune" / "train_log.jsonl")
    ]
    return weights, rows


# --------------------------------------------------------------------------- the driver


def _run(ctx, target, *args) -> int:
    p = ctx.Process(target=target, args=args)
    p.start()
    p.join(600)
    return p.exitcode


def _same(a: tuple[dict, list], b: tuple[dict, list], what: str) -> None:
    assert a[0].keys() == b[0].keys(), what
    for k in a[0]:
        assert torch.equal(a[0][k], b[0][k]), f"{what}: {k} differs"
    assert a[1] == b[1], f"{what}: history differs"


def kill_points(writes: list[str], every: int = EARLIER_EVERY) -> list[int]:
    """Every write (1-based) from just before the last checkpoint on (its model.pt or log lines, its
    staging folder, the commit and what follows), and every ``every``-th write before that."""
    staged = [
        (i, m.group(1)) for i, w in enumerate(writes) if (m := re.search(r"\.(checkpoint-\d+)\.partial", w))
    ]
    last = staged[-1][1]
    start = max(0, min(i for i, tag in staged if tag == last) - 3)
    return sorted({*range(start + 1, len(writes) + 1), *range(1, start + 1, every)})


def _kill_everywhere(ctx, tmp: Path, job, result, extra=()) -> int:
    ref = tmp / "reference"
    assert _run(ctx, job, str(ref), 0, *extra) == 0
    writes = _count_file(ref).read_text().splitlines()
    n_writes = len(writes)
    expected = result(ref)
    points = kill_points(writes)
    print(f"{n_writes} writes, killing before {len(points)}: {points}")
    for k in points:
        run = tmp / f"kill-{k}"
        assert _run(ctx, job, str(run), k, *extra) == KILLED, f"write {k} of {n_writes}"
        assert _run(ctx, job, str(run), 0, *extra) == 0, f"rerun after a kill before write {k}"
        _same(result(run), expected, f"killed before write {k} of {n_writes}")
        shutil.rmtree(run)
    return n_writes


@pytest.fixture(scope="module")
def ctx():
    c = mp.get_context("forkserver")  # children fork from a clean server that imported these once
    c.set_forkserver_preload(["torch", "accelerate", "urllm.graph.system", "transformers", "peft"])
    return c


def test_graph_training_killed_before_every_write(ctx, tmp_path):
    n = _kill_everywhere(ctx, tmp_path, _graph_job, _graph_result)
    assert n >= 10  # config, graphs, model.pt and 3 checkpoints of several files each


def test_graph_training_falls_back_from_a_damaged_checkpoint(ctx, tmp_path, caplog):
    ref, run = tmp_path / "reference", tmp_path / "damaged"
    assert _run(ctx, _graph_job, str(ref), 0) == 0
    shutil.copytree(ref, run)
    newest = sorted(run.glob("checkpoint-*"))[-1]
    assert newest.name == "checkpoint-000002"
    opt = newest / "optimizer.bin"
    opt.write_bytes(opt.read_bytes()[: opt.stat().st_size // 2])  # a half-written optimizer state
    (run / "model.pt").unlink()  # so the finished run is not simply reused: it must resume
    import logging

    from urllm.atomic import CheckpointSeries

    with caplog.at_level(logging.WARNING):
        assert CheckpointSeries(run).load_latest(lambda p: p)[0].name == "checkpoint-000001"
    assert "checkpoint-000002 is damaged: optimizer.bin has" in caplog.text
    assert _run(ctx, _graph_job, str(run), 0) == 0
    _same(_graph_result(run), _graph_result(ref), "resumed from the previous checkpoint")


def test_finetune_killed_before_every_write(ctx, tmp_path):
    from test_finetune import _write_prompts  # noqa: F401 (the helpers the job uses must exist)

    from urllm.configuration import ConfigError
    from urllm.llm.config import LLMConfig
    from urllm.llm.model import load_tokenizer
    from urllm.llm.tiny import tiny_llama

    try:
        tok = load_tokenizer(LLMConfig())
    except ConfigError as exc:
        pytest.skip(f"SmolLM2 tokenizer unavailable: {exc}")
    tiny = tmp_path / "tiny-llama"
    tiny_llama(hidden=16, heads=2, kv_heads=1).save_pretrained(tiny)
    tok.save_pretrained(tiny)
    n = _kill_everywhere(ctx, tmp_path, _finetune_job, _finetune_result, extra=(str(tiny),))
    assert n >= 10


def test_the_kill_switch_kills_before_the_write(ctx, tmp_path):
    assert _run(ctx, _graph_job, str(tmp_path / "a"), 1) == KILLED
    assert not (tmp_path / "a" / "config.yaml").exists() and not _count_file(tmp_path / "a").exists()
