import subprocess
import sys

import pytest

from urllm.cli import build_parser, main


def _subcommands(parser, prefix=()):
    for action in parser._subparsers._group_actions if parser._subparsers else []:
        for name, sub in action.choices.items():
            yield (*prefix, name), sub
            yield from _subcommands(sub, (*prefix, name))


def test_help_is_instant_and_lists_commands():
    out = subprocess.run(
        [sys.executable, "-m", "urllm", "--help"], capture_output=True, text=True, check=True
    )
    assert "evaluate" in out.stdout


@pytest.mark.parametrize("path", [p for p, _ in _subcommands(build_parser())], ids=" ".join)
def test_every_subcommand_help_exits_zero(path):
    with pytest.raises(SystemExit) as exc:
        main([*path, "--help"])
    assert exc.value.code == 0


def test_unknown_config_key_is_a_clear_error(tmp_path, caplog):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data:\n  nmae: x\n")
    assert main(["data", "stats", "--config", str(cfg)]) == 2
    assert "data.nmae" in caplog.text


def test_unknown_system_is_a_clear_error(tmp_path, caplog):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"run_dir: {tmp_path / 'run'}\ndata:\n  root: /nonexistent\n")
    assert main(["evaluate", "--config", str(cfg), "--system", "nope"]) == 2
    assert "unknown system 'nope'" in caplog.text


def test_recipes_run_in_process_and_fail_in_one_line(tmp_path, caplog):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"run_dir: {tmp_path / 'run'}\n")
    # no <run_dir>/prompts/train.parquet: a one-line data error, exit code 2
    assert main(["finetune", "--config", str(cfg), "--in-process", "finetune.task=title"]) == 2
    assert "train.parquet" in caplog.text and "Traceback" not in caplog.text
    caplog.clear()
    assert main(["infer", "--config", str(cfg), "--systems", "graph", "--in-process"]) == 2
    assert "'graph' is not an LLM system" in caplog.text
    caplog.clear()
    assert main(["finetune", "--config", str(cfg), "finetune.lrr=1"]) == 2  # before any launch
    assert "command line" in caplog.text and "finetune.lrr" in caplog.text


def test_recipe_launch_command(tmp_path):
    from urllm.recipes.launch import launch_command

    args = build_parser().parse_args(
        ["infer", "--config", "c.yaml", "--split", "test", "--systems", "urllm", "infer.limit=3"]
    )
    args.verbose = False
    cmd = launch_command(args)
    assert cmd[1:3] == ["launch", "--config_file"] and cmd[3].endswith("configs/accelerate/cpu.yaml")
    i = cmd.index("-m")
    assert cmd[i + 1] == "urllm.recipes.infer"
    assert cmd[i + 2 :][:6] == ["--config", "c.yaml", "--split", "test", "--systems", "urllm"]
    assert cmd[-1] == "infer.limit=3"


def test_recipe_module_help_exits_zero():
    for module in ("urllm.recipes.finetune", "urllm.recipes.infer", "urllm.recipes.generate"):
        out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True)
        assert out.returncode == 0 and "--config" in out.stdout, module


def test_verbose_flag_after_the_subcommand_and_spaces_in_system_lists(tmp_path, caplog):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data:\n  nmae: x\n")
    assert main(["data", "stats", "--config", str(cfg), "-v"]) == 2  # -v after the subcommand
    assert "data.nmae" in caplog.text


def test_outputs_checked_before_work(tmp_path, caplog):
    cfg = tmp_path / "c.yaml"
    (tmp_path / "file").write_text("x")
    cfg.write_text(f"run_dir: {tmp_path / 'file'}\npipeline:\n  systems: [popularity]\n")
    assert main(["pipeline", "--config", str(cfg), "--stages", "prepare"]) == 2
    assert f"run_dir: {tmp_path / 'file'} is a file, not a folder" in caplog.text
    caplog.clear()
    cfg.write_text(f"run_dir: {tmp_path / 'run'}\n")
    assert main(["evaluate", "--config", str(cfg), "--system", "popularity", "--out", str(tmp_path)]) == 2
    assert f"--out {tmp_path} is a folder" in caplog.text
    caplog.clear()
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        import os

        if os.access(locked, os.W_OK):  # root ignores permissions
            return
        out = locked / "x.json"
        assert main(["evaluate", "--config", str(cfg), "--system", "popularity", "--out", str(out)]) == 2
        assert f"{locked} is not writable" in caplog.text
    finally:
        locked.chmod(0o700)
