"""An installed wheel carries what `datasette claude-mem serve` needs beside the code."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_holds_templates_static_metadata_and_configuration(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )  # fmt: skip
    [wheel] = tmp_path.glob("datasette_claude_mem-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    package = "datasette_claude_mem/"
    for needed in ("datasette.yaml", "metadata.yml", "hook_script.py", "static/claude-mem.css"):
        assert package + needed in names, needed
    templates = {p.name for p in (ROOT / "templates").glob("*.html")}
    assert templates, "the top-level templates/ folder is empty"
    assert {n.removeprefix(package + "templates/") for n in names if "/templates/" in n} == (
        templates
    )
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[datasette]" in text and "datasette_claude_mem" in text
