"""An installed wheel carries what `datasette claude-mem serve` needs beside the code, and
finds it: the top-level templates/ and metadata.yml reach the package without links."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from datasette_claude_mem import names

ROOT = Path(__file__).resolve().parents[1]
FIND = (
    "import json; from datasette_claude_mem import names; "
    "print(json.dumps({'templates': str(names.TEMPLATES_DIR), 'metadata': str(names.METADATA),"
    " 'metadata_is_file': names.METADATA.is_file(),"
    " 'html': sorted(p.name for p in names.TEMPLATES_DIR.glob('*.html'))}))"
)


def test_the_wheel_holds_templates_static_metadata_and_configuration(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )  # fmt: skip
    [wheel] = tmp_path.glob("datasette_claude_mem-*.whl")
    names_in_wheel = set(zipfile.ZipFile(wheel).namelist())
    package = "datasette_claude_mem/"
    for needed in (
        "datasette.yaml",
        "metadata.yml",
        "claude_code/hook_script.py",
        "static/claude-mem.css",
    ):
        assert package + needed in names_in_wheel, needed
    templates = {p.name for p in (ROOT / "templates").glob("*.html")}
    assert templates, "the top-level templates/ folder is empty"
    in_wheel = {
        n.removeprefix(package + "templates/")
        for n in names_in_wheel
        if "/templates/" in n and n.endswith(".html")
    }
    assert in_wheel == templates
    entry_points = next(n for n in names_in_wheel if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[datasette]" in text and "datasette_claude_mem" in text

    # Unpacked and imported from there (-S keeps this checkout's editable install away), the
    # package finds its templates and metadata beside its code.
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    path = os.pathsep.join([str(site), sysconfig.get_paths()["purelib"]])
    found = json.loads(
        subprocess.run(
            [sys.executable, "-S", "-c", FIND],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": path},
            capture_output=True,
            check=True,
            text=True,
        ).stdout
    )
    assert Path(found["templates"]) == site / "datasette_claude_mem" / "templates"
    assert found["metadata_is_file"] and Path(found["metadata"]).resolve() == (
        site / "datasette_claude_mem" / "metadata.yml"
    )
    assert set(found["html"]) == templates


def test_an_editable_install_reads_the_top_level_folders() -> None:
    assert names.TEMPLATES_DIR.resolve() == (ROOT / "templates").resolve()
    assert names.METADATA.resolve() == (ROOT / "metadata.yml").resolve()
    assert not (ROOT / "datasette_claude_mem" / "templates").exists()
    assert not any(p.is_symlink() for p in (ROOT / "datasette_claude_mem").rglob("*"))
