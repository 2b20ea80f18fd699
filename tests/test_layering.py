"""No library module below the pipeline, the CLI and the entry points reads the root config: library code
takes its config sections, explicit paths (from RunLayout) and built objects (urllm/systems.py builds
them from the root config)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "urllm"
# the top of the package: the config itself, the entry points, and the one module that builds systems
# from the root config
TOP = ("config.py", "cli.py", "pipeline/", "recipes/", "run_layout.py", "serve/", "systems.py")


def root_config_imports(path: Path) -> list[str]:
    """Every import of ``urllm.config`` in ``path`` (``TYPE_CHECKING`` blocks and function bodies too),
    and every use of the root config's ``run_path`` (a run path computed below the top)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and node.attr == "run_path":
            found.append(f"line {node.lineno}: .run_path")
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            if node.module == "urllm" and any(a.name == "config" for a in node.names):
                found.append(f"line {node.lineno}: from urllm import config")
            elif node.module == "urllm.config" or any(n == "urllm.config" for n in names[1:]):
                found.append(f"line {node.lineno}: from {node.module} import ...")
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "urllm.config" or a.name.startswith("urllm.config."):
                    found.append(f"line {node.lineno}: import {a.name}")
    return found


def test_no_library_module_imports_the_root_config_or_computes_a_run_path():
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith(TOP):
            continue
        bad += [f"urllm/{rel} {hit}" for hit in root_config_imports(path)]
    assert not bad, "library modules reading the root Config or its run path:\n" + "\n".join(bad)


def test_the_check_sees_every_form_of_import(tmp_path):
    src = tmp_path / "m.py"
    src.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from urllm.config import Config\n"
        "def f():\n    import urllm.config\n    from urllm import config\n"
        "from urllm.configuration import opt\n"  # the config machinery is not the root config
        "def g(cfg):\n    return cfg.run_path / 'graph'\n"
    )
    assert root_config_imports(src) == [
        "line 3: from urllm.config import ...",
        "line 5: import urllm.config",
        "line 6: from urllm import config",
        "line 9: .run_path",
    ]
