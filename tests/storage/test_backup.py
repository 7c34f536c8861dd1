"""Backups (storage/backup.py) taken while another OS process writes are consistent and open
as a memory; a backup never replaces a file unasked; a restore brings the memory back."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from helpers import PROCESSES, stop_process
from processes.common import check_observation

from datasette_claude_mem.storage import backup
from datasette_claude_mem.storage.models import LearningCreate, SessionStart, decode_embedding
from datasette_claude_mem.storage.store import Store


def observation_total(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT count(*) FROM observations").fetchone()[0]
    finally:
        conn.close()


def wait_for_more(path: Path, than: int, timeout: float = 60.0) -> int:
    """Wait (bounded) until the writer has committed more observations than `than`."""
    deadline = time.monotonic() + timeout
    while (total := observation_total(path)) <= than:
        assert time.monotonic() < deadline, "the writer made no progress"
        time.sleep(0.01)
    return total


def assert_consistent_memory(path: Path, session_id: str, project: str) -> int:
    """The copy passes integrity checks, its counts agree, and it opens as a memory."""
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall()[0][0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        for fts in ("observations_fts", "learnings_fts"):
            conn.execute(f"INSERT INTO {fts}({fts}, rank) VALUES ('integrity-check', 1)")
        rows = [dict(r) for r in conn.execute("SELECT * FROM observations")]
        # The trigger-kept count was copied from the same moment as the rows it counts.
        [(count,)] = conn.execute(
            "SELECT observation_count FROM sessions WHERE id = ?", [session_id]
        )
    finally:
        conn.close()
    assert count == len(rows)
    for row in rows:
        row["files_touched"] = json.loads(row["files_touched"])
        row["functions_changed"] = json.loads(row["functions_changed"])
        row["embedding"] = decode_embedding(row["embedding"])
        assert check_observation(row, {"bk": session_id}, project) is None
    with Store(path) as copy:
        assert copy.get_session(session_id) is not None
        if rows:
            assert copy.search(project, "summary")
    return len(rows)


def test_backup_while_another_process_writes_is_consistent(
    store: Store, tmp_path: Path, python: str
):
    project_dir = tmp_path / "repo"
    (project_dir / ".git").mkdir(parents=True)
    session = store.create_session(SessionStart(project_dir=str(project_dir))).row
    db_path = Path(store.conn.execute("PRAGMA database_list").fetchone()[2])
    stop = tmp_path / "stop"
    writer = subprocess.Popen(
        [python, str(PROCESSES / "continuous_writer.py"), db_path, session.id, "bk", stop],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        seen = wait_for_more(db_path, 0)
        copied = []
        for n in range(3):
            report = backup.backup(db_path, tmp_path / f"copy-{n}.db")
            # The writer was still at work when the copy finished.
            assert writer.poll() is None
            copied.append(assert_consistent_memory(report.path, session.id, session.project))
            assert report.rows["observations"] == copied[-1]
            seen = wait_for_more(db_path, max(seen, copied[-1]))
    finally:
        stop.touch()
        out, err = writer.communicate(timeout=60)
        stop_process(writer)
    assert writer.returncode == 0, err
    assert 0 < copied[0] <= copied[1] <= copied[2] <= int(out)


def test_backup_refuses_to_replace_a_file_unless_forced(store: Store, tmp_path: Path):
    db_path = Path(store.conn.execute("PRAGMA database_list").fetchone()[2])
    target = tmp_path / "backup.db"
    target.write_bytes(b"precious")
    with pytest.raises(backup.BackupError, match="exists; pass --force"):
        backup.backup(db_path, target)
    assert target.read_bytes() == b"precious"
    report = backup.backup(db_path, target, force=True)
    assert report.rows["sessions"] == 0 and backup.check(target) == report.rows
    assert list(tmp_path.glob(".backup.db.partial-*")) == []


def test_check_refuses_files_that_are_not_a_memory(tmp_path: Path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(backup.BackupError, match="not a readable SQLite database"):
        backup.check(junk)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(backup.BackupError, match="not a claude-mem memory"):
        backup.check(other)


def test_restore_brings_the_backup_back_and_keeps_the_memory_it_replaced(
    store: Store, tmp_path: Path
):
    db_path = Path(store.conn.execute("PRAGMA database_list").fetchone()[2])
    store.create_learning(LearningCreate(category="gotcha", content="kept in the backup"))
    backup.backup(db_path, tmp_path / "b.db")
    store.create_learning(LearningCreate(category="gotcha", content="made after the backup"))

    report, kept = backup.restore(tmp_path / "b.db", db_path)
    contents = [r[0] for r in store.conn.execute("SELECT content FROM learnings")]
    # The store's own open connection sees the restored memory.
    assert contents == ["kept in the backup"]
    assert report.rows["learnings"] == 1
    assert kept is not None
    with Store(kept) as before:
        assert sorted(r[0] for r in before.conn.execute("SELECT content FROM learnings")) == [
            "kept in the backup",
            "made after the backup",
        ]


def test_restore_refuses_a_bad_backup_and_changes_nothing(store: Store, tmp_path: Path):
    db_path = Path(store.conn.execute("PRAGMA database_list").fetchone()[2])
    store.create_learning(LearningCreate(category="gotcha", content="still here"))
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"x" * 8192)
    with pytest.raises(backup.BackupError):
        backup.restore(bad, db_path)
    assert [r[0] for r in store.conn.execute("SELECT content FROM learnings")] == ["still here"]
    assert list(db_path.parent.glob("*.before-restore-*")) == []


def _tool_use(n: int, project: Path) -> dict:
    return {
        "session_id": "backup-live",
        "cwd": str(project),
        "hook_event_name": "PostToolUse",
        "tool_name": "Bash",
        "tool_use_id": f"bash-{n}",
        "tool_input": {"command": f"echo {n}"},
        "tool_response": {"stdout": f"{n}\n" * 500, "stderr": "", "interrupted": False},
    }


def test_the_backup_command_copies_a_running_server_while_hooks_write(
    mem_server, tmp_path: Path
) -> None:
    """Every copy is one moment of the server's memory: each queued tool use has its payload
    and its event row, and it holds at least every event acknowledged before it began."""
    import threading

    from click.testing import CliRunner
    from datasette.cli import cli as datasette_cli

    project = tmp_path / "repo"
    (project / ".git").mkdir(parents=True)
    acknowledged: list[int] = []
    stop = threading.Event()

    def post() -> None:
        n = 0
        while not stop.is_set():
            assert mem_server.hook(_tool_use(n, project)).status_code == 200
            acknowledged.append(n)
            n += 1

    poster = threading.Thread(target=post)
    poster.start()
    try:
        deadline = time.monotonic() + 60
        while len(acknowledged) < 5:
            assert time.monotonic() < deadline and poster.is_alive(), "no hook was answered"
            time.sleep(0.01)
        copies = []
        for n in range(3):
            before = len(acknowledged)
            target = tmp_path / f"live-{n}.db"
            result = CliRunner(env={"CLAUDE_MEM_DIR": str(mem_server.base_dir)}).invoke(
                datasette_cli, ["claude-mem", "backup", str(target)], catch_exceptions=False
            )
            assert result.exit_code == 0, result.output
            counts = backup.check(target)
            assert counts["pending_queue"] == counts["pending_payloads"] >= before
            conn = sqlite3.connect(target)
            try:
                uses = conn.execute(
                    "SELECT count(*) FROM event_log WHERE event_type = 'PostToolUse'"
                ).fetchone()[0]
            finally:
                conn.close()
            assert uses == counts["pending_queue"]
            copies.append(uses)
            while len(acknowledged) <= before + 3:
                assert poster.is_alive()
                time.sleep(0.01)
        assert poster.is_alive(), "the server kept answering while it was copied"
    finally:
        stop.set()
        poster.join(timeout=60)
    assert copies == sorted(copies) and copies[-1] > copies[0]


def test_a_running_server_makes_the_daily_backup(mem_server_factory, tmp_path: Path) -> None:
    server = mem_server_factory(worker=True, start=False)
    server.env["CLAUDE_MEM_BACKUP_DIR"] = str(tmp_path / "daily")
    server.env["CLAUDE_MEM_BACKUP_KEEP"] = "2"
    server.start()
    deadline = time.monotonic() + 60
    while not (made := backup.daily_backups(server.db_path, tmp_path / "daily")):
        assert time.monotonic() < deadline, "no daily backup within a minute"
        time.sleep(0.1)
    [copy] = made
    assert copy.name.startswith("claude-mem-") and backup.check(copy)["sessions"] == 0
