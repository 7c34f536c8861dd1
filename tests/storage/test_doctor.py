"""`datasette claude-mem doctor`: a file that hands changed is found out and put right."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from datasette.cli import cli
from helpers import db_rows

from datasette_claude_mem.storage import doctor
from datasette_claude_mem.storage.migrations import migrations
from datasette_claude_mem.storage.models import LearningCreate, ObservationCreate, SessionStart
from datasette_claude_mem.storage.store import Store

SQLITE_UTILS = str(Path(sys.executable).parent / "sqlite-utils")
TWO_ROWS = json.dumps(
    [
        {"category": "gotcha", "content": "Money is kept in cents"},
        {"category": "convention", "content": "Cents are integers", "confidence": 0.9},
    ]
)


def sqlite_utils(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SQLITE_UTILS, *args], input=stdin, capture_output=True, text=True, timeout=60
    )


def run_doctor(*args: str):
    return CliRunner().invoke(cli, ["claude-mem", "doctor", *args])


@pytest.fixture
def memory(tmp_path: Path) -> Path:
    path = tmp_path / "memory.db"
    with Store(path) as store:
        session = store.create_session(SessionStart(id="s1", project_dir="/p", project="/p"))
        store.create_learning(LearningCreate(category="gotcha", content="Discounts before tax"))
        store.create_observation(
            ObservationCreate(
                session_id=session.row.id, tool_name="Edit", title="Fixed rounding", summary="x"
            )
        )
    return path


def schema(path: Path) -> list[tuple]:
    return [tuple(r.values()) for r in db_rows(path, "SELECT * FROM sqlite_master ORDER BY name")]


def test_a_fresh_memory_is_healthy(memory: Path) -> None:
    result = run_doctor(str(memory))
    assert result.exit_code == 0, result.output
    assert "ok" in result.output


def test_a_transform_is_found_out_and_repaired(memory: Path) -> None:
    transformed = sqlite_utils(
        "transform", str(memory), "learnings", "--default", "confidence", "0.5"
    )
    assert transformed.returncode == 0, transformed.stderr
    # The damage a user meets: multi-row inserts fail, and new rows never reach search.
    failed = sqlite_utils("insert", str(memory), "learnings", "-", stdin=TWO_ROWS)
    assert failed.returncode != 0 and "NOT NULL constraint failed" in failed.stderr
    one = json.dumps({"category": "pattern", "content": "Unindexed lesson"})
    assert sqlite_utils("insert", str(memory), "learnings", "-", stdin=one).returncode == 0
    with Store(memory) as store:
        assert store.search(None, "unindexed") == []

    found = run_doctor(str(memory))
    assert found.exit_code == 1
    for mention in (
        "trigger learnings_ai on learnings: is missing",
        "learnings.id: lost NOT NULL ON CONFLICT REPLACE",
        "learnings.confidence: default is '0.5', not 0.5",
        "doctor --repair",
    ):
        assert mention in found.output, found.output
    before = db_rows(memory, "SELECT * FROM learnings ORDER BY id")

    repaired = run_doctor("--repair", str(memory))
    assert repaired.exit_code == 0, repaired.output
    assert "rebuilt table learnings" in repaired.output
    assert db_rows(memory, "SELECT * FROM learnings ORDER BY id") == before
    with Store(memory) as store:
        assert [h.snippet for h in store.search(None, "unindexed")] == ["[Unindexed] lesson"]
    inserted = sqlite_utils("insert", str(memory), "learnings", "-", stdin=TWO_ROWS)
    assert inserted.returncode == 0, inserted.stderr
    with Store(memory) as store:
        assert len(store.search(None, "cents")) == 2
        assert doctor.check(store.conn) == []
        assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_dropped_triggers_and_indexes_are_named_and_put_back(memory: Path) -> None:
    with Store(memory) as store:
        store.conn.execute("DROP TRIGGER observations_ai")
        store.conn.execute("DROP INDEX idx_obs_project")
        store.create_observation(
            ObservationCreate(session_id="s1", tool_name="Bash", title="Missed run", summary="y")
        )
        quick = [str(p) for p in doctor.check(store.conn, full=False)]
        assert "trigger observations_ai on observations: is missing" in quick
        assert "index idx_obs_project on observations: is missing" in quick
        assert "observations_fts: indexes 1 rows of observations's 2" in quick
        full = [str(p) for p in doctor.check(store.conn, full=True)]
        assert any(p.startswith("observations_fts: disagrees with observations") for p in full)
        assert store.search("/p", "missed") == []
        done = doctor.repair(store.conn)
        assert "created trigger observations_ai" in done
        assert doctor.check(store.conn) == []
        assert [h.title for h in store.search("/p", "missed")] == ["Missed run"]


def test_a_changed_trigger_is_replaced(memory: Path) -> None:
    with Store(memory) as store:
        store.conn.execute("DROP TRIGGER learnings_au")
        store.conn.execute(
            "CREATE TRIGGER learnings_au AFTER UPDATE ON learnings BEGIN SELECT 1; END"
        )
        assert [str(p) for p in doctor.check(store.conn)] == [
            "trigger learnings_au on learnings: differs from what the migrations make"
        ]
        assert "recreated trigger learnings_au" in doctor.repair(store.conn)
        assert doctor.check(store.conn) == []


def test_a_renamed_column_is_reported_and_left_alone(memory: Path) -> None:
    renamed = sqlite_utils("transform", str(memory), "learnings", "--rename", "content", "body")
    assert renamed.returncode == 0, renamed.stderr
    before = db_rows(memory, "SELECT * FROM learnings")
    repaired = run_doctor("--repair", str(memory))
    assert repaired.exit_code == 1
    assert "learnings.content: column is missing (renamed?) (not repairable)" in repaired.output
    assert "left table learnings as it is" in repaired.output
    assert db_rows(memory, "SELECT * FROM learnings") == before


def test_extra_columns_survive_a_repair(memory: Path) -> None:
    added = sqlite_utils("add-column", str(memory), "learnings", "reviewer", "text")
    assert added.returncode == 0, added.stderr
    sqlite_utils("transform", str(memory), "learnings", "--default", "confidence", "0.5")
    with Store(memory) as store:
        store.conn.execute("UPDATE learnings SET reviewer = 'ana'")
        doctor.repair(store.conn)
        assert doctor.check(store.conn) == []
        assert store.conn.execute("SELECT reviewer FROM learnings").fetchall() == [("ana",)]


def test_a_file_behind_its_migrations_is_reported(tmp_path: Path) -> None:
    from sqlite_utils import Database

    path = tmp_path / "old.db"
    old = Database(path)
    migrations.apply(old, stop_before="m007_rebuild_search_index")
    old.close()
    result = run_doctor(str(path))
    assert result.exit_code == 1
    assert "migrations not applied: m007_rebuild_search_index" in result.output
    assert run_doctor("--repair", str(path)).exit_code == 0


@pytest.mark.parametrize("content", [b"not a database at all", None])
def test_what_is_not_a_memory_gives_a_clear_error(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "file.db"
    if content is not None:
        path.write_bytes(content)
    result = run_doctor(str(path))
    assert result.exit_code == 1
    assert ("not a database" if content else "no such file") in result.output
    assert (path.read_bytes() if content else None) == content


@pytest.mark.asyncio
async def test_the_server_warns_in_one_line_at_startup(
    make_ds, memory: Path, capsys: pytest.CaptureFixture
) -> None:
    capsys.readouterr()
    await make_ds(memory, plugin={"database": "memory"})
    assert capsys.readouterr().err == ""
    conn = sqlite3.connect(memory)
    conn.execute("DROP TRIGGER learnings_ai")
    conn.commit()
    conn.close()
    await make_ds(memory, plugin={"database": "memory"})
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert "learnings_ai" in lines[0] and "doctor --repair" in lines[0]
