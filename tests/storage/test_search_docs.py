"""A project's own documents: indexed by heading, refreshed by content hash, searchable."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from datasette.cli import cli
from helpers import db_rows

from datasette_claude_mem.storage.documents import chunk_markdown, index_docs
from datasette_claude_mem.storage.store import Store

GUIDE = """# Shop

Intro line.

## Running the tests

Use `pytest -q`; the cart tests need a database.

```python
# not a heading: code
```

## Deploying

Deploys happen on Fridays.
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "shop"
    (root / ".git").mkdir(parents=True)
    (root / "docs" / "ops").mkdir(parents=True)
    (root / ".claude").mkdir()
    (root / "README.md").write_text(GUIDE)
    (root / "CLAUDE.md").write_text("# Conventions\n\nMoney is kept in cents.\n")
    (root / "docs" / "ops" / "backup.md").write_text("# Backups\n\nNightly snapshot at 02:00.\n")
    (root / ".claude" / "notes.md").write_text("# Notes\n\nAsk before a migration.\n")
    (root / "docs" / "ignored.txt").write_text("# Not markdown\n\nbackups\n")
    (root / "src").mkdir()
    (root / "src" / "notes.md").write_text("# Elsewhere\n\nnightly\n")  # not under the globs
    return root


def test_markdown_is_cut_at_headings_with_line_ranges() -> None:
    chunks = [(c.heading, c.line_start, c.line_end) for c in chunk_markdown(GUIDE)]
    assert chunks == [("Shop", 1, 4), ("Running the tests", 5, 12), ("Deploying", 13, 15)]
    assert "# not a heading: code" in chunk_markdown(GUIDE)[1].body


def test_index_docs_makes_documents_chunks_and_a_run(store: Store, project: Path) -> None:
    run = index_docs(store, project)
    assert run["status"] == "done"
    assert (run["files_seen"], run["files_indexed"], run["files_unchanged"]) == (4, 4, 0)
    assert run["chunks"] == 6 and json.loads(run["errors"]) == []
    paths = [r[0] for r in store.conn.execute("SELECT path FROM documents ORDER BY path")]
    assert paths == [".claude/notes.md", "CLAUDE.md", "README.md", "docs/ops/backup.md"]
    (hit,) = store.search(run["project"], "fridays")
    assert (hit.kind, hit.title, hit.file) == ("doc", "Deploying", "README.md")
    assert store.search(run["project"], "nightly", kinds="doc")[0].file == "docs/ops/backup.md"


def test_unchanged_files_are_skipped_and_gone_ones_removed(store: Store, project: Path) -> None:
    first = index_docs(store, project)
    (project / "CLAUDE.md").write_text("# Conventions\n\nMoney is kept in integer cents.\n")
    (project / ".claude" / "notes.md").unlink()
    second = index_docs(store, project)
    assert (second["files_indexed"], second["files_unchanged"], second["files_removed"]) == (
        1,
        2,
        1,
    )
    assert store.search(first["project"], "migration") == []
    assert [h.snippet for h in store.search(first["project"], "integer")] == [
        "Money is kept in [integer] cents."
    ]
    runs = store.conn.execute("SELECT count(*) FROM index_runs").fetchone()[0]
    assert runs == 2


def test_unreadable_files_are_errors_of_the_run(store: Store, project: Path) -> None:
    (project / "docs" / "broken.md").write_bytes(b"# Bad\n\xff\xfe not utf-8\n")
    run = index_docs(store, project)
    assert run["files_indexed"] == 4
    assert [e.split(":")[0] for e in json.loads(run["errors"])] == ["docs/broken.md"]


def test_secrets_in_documents_are_redacted(store: Store, project: Path) -> None:
    secret = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
    (project / "docs" / "setup.md").write_text(f"# Setup\n\nexport GITHUB_TOKEN={secret}\n")
    index_docs(store, project)
    bodies = " ".join(r[0] for r in store.conn.execute("SELECT body FROM doc_chunks"))
    assert secret not in bodies


def test_the_index_docs_command(config, project: Path) -> None:
    result = CliRunner().invoke(cli, ["claude-mem", "index-docs", str(project)])
    assert result.exit_code == 0, result.output
    assert "4 files, 4 indexed, 0 unchanged, 0 removed, 6 chunks" in result.output
    again = CliRunner().invoke(
        cli, ["claude-mem", "index-docs", str(project), "--glob", "docs/**/*.md"]
    )
    assert "1 files, 0 indexed, 1 unchanged, 3 removed" in again.output
    assert [r["path"] for r in db_rows(config.db_path, "SELECT path FROM documents")] == [
        "docs/ops/backup.md"
    ]


def test_a_missing_root_is_an_error_and_removes_nothing(store: Store, project: Path) -> None:
    first = index_docs(store, project)
    run = index_docs(store, project / "gone", first["project"])
    assert run["status"] == "error" and "not a directory" in run["errors"]
    assert store.conn.execute("SELECT count(*) FROM documents").fetchone()[0] == 4


def test_the_servers_worker_indexes_documents_a_session_wrote(mem_server_factory, project):
    server = mem_server_factory(worker=True)
    started = server.request(
        "POST", "/-/claude-mem/sessions", json={"id": "s1", "project_dir": str(project)}
    )
    assert started.status_code == 201, started.text
    written = server.request(
        "POST",
        "/-/claude-mem/observations",
        json={
            "session_id": "s1",
            "tool_name": "Write",
            "title": "Wrote the deploy notes",
            "summary": "docs",
            "files_touched": [str(project / "docs" / "ops" / "backup.md")],
        },
    )
    assert written.status_code == 201, written.text
    for _ in range(1200):  # bounded: two minutes at most
        if db_rows(server.db_path, "SELECT id FROM index_runs WHERE status = 'done'"):
            break
        time.sleep(0.1)
    found = server.request("GET", "/-/claude-mem/search?q=snapshot&kinds=doc&mode=keyword").json()
    assert [hit["file"] for hit in found["hits"]] == ["docs/ops/backup.md"]
