"""README.md's layout table matches the tree: every path it lists exists (and every file it names inside
a listed folder), and every top-level module and package of ``urllm/`` is listed."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# names inside a listed folder that the "what" column mentions as files or folders
FILE_NAME = re.compile(r"^[\w.-]+(\.py|\.yaml|\.sh|/)$")


def layout_rows(readme: Path = ROOT / "README.md") -> list[tuple[list[str], list[str]]]:
    """(paths, names mentioned) of each row of the table under ``## Layout``."""
    text = readme.read_text()
    if "\n## Layout\n" not in text:
        raise AssertionError(f"{readme}: no '## Layout' section")
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if (
            not line.startswith("|")
            or len(cells) < 2
            or cells[0] in ("path", "---")
            or set(cells[0]) <= {"-"}
        ):
            continue
        rows.append((re.findall(r"`([^`]+)`", cells[0]), re.findall(r"`([^`]+)`", cells[1])))
    return rows


def test_every_path_the_layout_table_lists_exists():
    rows = layout_rows()
    assert len(rows) >= 10
    missing = []
    for paths, names in rows:
        for p in paths:
            if not (ROOT / p).exists():
                missing.append(p)
        folders = [p for p in paths if p.endswith("/")]
        for name in (n for n in names if FILE_NAME.match(n)):
            # a file named in a folder's row lies in that folder (or below it)
            if folders and not any(list((ROOT / f).rglob(name.rstrip("/"))) for f in folders):
                missing.append(f"{name} (in {', '.join(folders)})")
    assert not missing, f"README.md layout table lists paths that do not exist: {missing}"


def test_every_top_level_module_and_package_is_in_the_layout_table():
    listed = {p.rstrip("/") for paths, _ in layout_rows() for p in paths}
    entries = [
        p
        for p in sorted((ROOT / "urllm").iterdir())
        if (p.suffix == ".py" and p.name != "__init__.py") or (p.is_dir() and (p / "__init__.py").is_file())
    ]
    absent = [str(p.relative_to(ROOT)) for p in entries if str(p.relative_to(ROOT)) not in listed]
    assert not absent, f"README.md layout table does not list: {absent}"
