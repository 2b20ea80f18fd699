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
    cfg.write_text("data:\n  root: /nonexistent\n")
    assert main(["evaluate", "--config", str(cfg), "--system", "nope"]) == 2
    assert "unknown system 'nope'" in caplog.text
