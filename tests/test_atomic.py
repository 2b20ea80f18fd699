"""Atomic files and checkpoint folders: a kill or a full disk leaves the previous state usable."""

import errno
import json
import logging
import os

import pytest
import torch

from urllm import atomic
from urllm.atomic import (
    CheckpointSeries,
    NoSpaceError,
    atomic_torch_save,
    atomic_write_json,
    atomic_write_text,
    read_json,
)


def _full_disk(monkeypatch):
    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", fsync)


def test_write_json_round_trip_and_no_temp_left(tmp_path):
    p = tmp_path / "sub" / "a.json"
    atomic_write_json(p, {"x": [1, 2], "é": "ü"})
    assert read_json(p, "result") == {"x": [1, 2], "é": "ü"}
    assert sorted(os.listdir(p.parent)) == ["a.json"]


def test_full_disk_names_the_path_and_keeps_the_old_file(tmp_path, monkeypatch):
    p = tmp_path / "a.txt"
    atomic_write_text(p, "old\n")
    _full_disk(monkeypatch)
    with pytest.raises(NoSpaceError, match=f"^no space left on {p}$"):
        atomic_write_text(p, "new\n")
    assert p.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["a.txt"]  # the temporary file is gone


def test_torch_short_write_becomes_no_space(tmp_path, monkeypatch):
    p = tmp_path / "m.pt"
    atomic_torch_save({"w": torch.ones(2)}, p)

    def short_write(obj, f):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", short_write)
    with pytest.raises(NoSpaceError, match="no space left on"):
        atomic_torch_save({"w": torch.zeros(2)}, p)
    monkeypatch.undo()
    assert torch.equal(torch.load(p)["w"], torch.ones(2))


def test_other_errors_pass_through(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.EIO, "io")))
    with pytest.raises(OSError, match="io"):
        atomic_write_text(tmp_path / "a.txt", "x")


def test_read_json_half_written_is_missing_with_a_warning(tmp_path, caplog):
    p = tmp_path / "r.json"
    p.write_text('{"mrr": 0.1')
    with caplog.at_level(logging.WARNING):
        assert read_json(p, "evaluation") is None
    assert "evaluation" in caplog.text and str(p) in caplog.text
    assert read_json(tmp_path / "absent.json") is None


def _write(series, tag, payload):
    stage = series.staging(tag)
    (stage / "weights.bin").write_bytes(payload)
    (stage / "state.json").write_text(json.dumps({"epoch": tag}))
    return series.commit(tag)


def _load(folder):
    return json.loads((folder / "state.json").read_text())["epoch"], (folder / "weights.bin").read_bytes()


def test_series_keeps_previous_and_prunes(tmp_path):
    s = CheckpointSeries(tmp_path, keep=2)
    for t in (1, 2, 3):
        _write(s, t, bytes([t]) * 10)
    assert [p.name for p in s.folders()] == ["checkpoint-000003", "checkpoint-000002"]
    assert s.load_latest(_load)[1] == (3, b"\x03" * 10)


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete_file", "no_manifest"])
def test_damaged_newest_falls_back_with_warning(tmp_path, caplog, damage):
    s = CheckpointSeries(tmp_path)
    _write(s, 1, b"a" * 100)
    newest = _write(s, 2, b"b" * 100)
    w = newest / "weights.bin"
    if damage == "truncate":
        w.write_bytes(w.read_bytes()[:37])
    elif damage == "flip":
        w.write_bytes(b"c" + w.read_bytes()[1:])
    elif damage == "delete_file":
        w.unlink()
    else:
        (newest / atomic.MANIFEST).unlink()
    with caplog.at_level(logging.WARNING):
        folder, (epoch, _) = s.load_latest(_load)
    assert epoch == 1 and folder.name == "checkpoint-000001"
    assert "checkpoint-000002 is damaged" in caplog.text


def test_loader_failure_falls_back(tmp_path, caplog):
    s = CheckpointSeries(tmp_path)
    _write(s, 1, b"a")
    _write(s, 2, b"b")

    def picky(folder):
        if folder.name.endswith("2"):
            raise RuntimeError("PytorchStreamReader failed reading zip archive")
        return _load(folder)

    with caplog.at_level(logging.WARNING):
        assert s.load_latest(picky)[1][0] == 1
    assert "PytorchStreamReader" in caplog.text


def test_kill_before_commit_leaves_previous(tmp_path):
    s = CheckpointSeries(tmp_path)
    _write(s, 1, b"a")
    stage = s.staging(2)
    (stage / "weights.bin").write_bytes(b"half")  # killed here: never committed
    assert s.load_latest(_load)[1][0] == 1
    _write(s, 2, b"b")  # the rerun writes tag 2 again over the leftover
    assert s.load_latest(_load)[1][0] == 2
    assert not list(tmp_path.glob(".*partial"))


def test_commit_on_full_disk_keeps_previous(tmp_path, monkeypatch):
    s = CheckpointSeries(tmp_path)
    _write(s, 1, b"a")
    stage = s.staging(2)
    (stage / "weights.bin").write_bytes(b"b")
    _full_disk(monkeypatch)
    with pytest.raises(NoSpaceError, match="no space left on .*checkpoint-000002"):
        s.commit(2)
    monkeypatch.undo()
    assert s.load_latest(_load)[1][0] == 1
    assert not stage.exists()
    assert s.load_latest(_load) is not None and CheckpointSeries(tmp_path / "none").load_latest(_load) is None


def test_lora_log_with_a_half_written_last_line(tmp_path, caplog):
    from urllm.data.schema import DataError
    from urllm.llm.train_state import JsonlLog, read_log

    log = tmp_path / "train_log.jsonl"
    log.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n{"step": 3, "lo')
    with caplog.at_level(logging.WARNING):
        assert [r["step"] for r in read_log(log)] == [1, 2]
    assert f"{log}:3: ignoring a partial last line" in caplog.text
    JsonlLog(log, resume_step=2, enabled=True)  # a resume repairs the file
    assert log.read_text() == '{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n'
    log.write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(DataError, match=f"{log}:2: not valid JSON"):
        read_log(log)
