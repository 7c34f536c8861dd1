"""Export and import (storage/portable.py): round trips give equal rows in every table,
imports are idempotent, bad files change nothing, and old rows are redacted on the way in."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from helpers import MEMORY_TABLES, dump, fill

from datasette_claude_mem.storage import portable
from datasette_claude_mem.storage.errors import StoreError
from datasette_claude_mem.storage.models import LearningCreate
from datasette_claude_mem.storage.store import Store


def export_bytes(store: Store, **kwargs: Any) -> bytes:
    return b"".join(portable.export_lines(store.conn, **kwargs))


def records(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.splitlines()]


@pytest.fixture
def full(store: Store, tmp_path: Path) -> tuple[Store, list[str]]:
    projects = [fill(store, tmp_path / "repos", name) for name in ("alpha", "beta")]
    return store, projects


def fresh(tmp_path: Path, name: str = "fresh") -> Store:
    return Store(tmp_path / name / "claude-mem.db")


def test_round_trip_with_the_queue_gives_equal_rows_in_every_table(full, tmp_path: Path):
    source, _ = full
    data = export_bytes(source, with_queue=True)
    before = dump(Path(source.db.conn.execute("PRAGMA database_list").fetchone()[2]))
    assert all(before[t] for t in MEMORY_TABLES), "every table holds a row to carry"

    target = fresh(tmp_path)
    report = portable.import_lines(target, io.BytesIO(data))
    assert report.total_added == sum(len(rows) for rows in before.values())
    assert report.total_skipped == 0
    assert dump(target_path(target)) == before
    # The full-text index came along with the rows.
    hits = target.search(full[1][0], "tokenizer")
    assert sorted(h.kind for h in hits) == ["learning", "observation"]


def target_path(store: Store) -> Path:
    return Path(store.conn.execute("PRAGMA database_list").fetchone()[2])


def test_importing_the_same_file_again_adds_nothing(full, tmp_path: Path):
    source, _ = full
    data = export_bytes(source, with_queue=True)
    target = fresh(tmp_path)
    portable.import_lines(target, io.BytesIO(data))
    once = dump(target_path(target))

    again = portable.import_lines(target, io.BytesIO(data))
    assert again.total_added == 0
    assert again.total_skipped == sum(len(rows) for rows in once.values())
    assert dump(target_path(target)) == once
    # Into the memory it came from: nothing new either.
    assert portable.import_lines(source, io.BytesIO(data)).total_added == 0
    assert dump(target_path(source)) == once


def test_same_content_under_another_id_is_not_added_twice(full, tmp_path: Path):
    """Rows are matched by their unique keys as well as their ids: an observation with the
    same content hash, or a function already mapped, is the same memory."""
    source, _ = full
    lines = records(export_bytes(source))
    for record in lines:
        if record.get("table") in ("observations", "function_map", "call_graph"):
            record["row"]["id"] = "another-" + record["row"]["id"]
    data = b"".join(json.dumps(r).encode() + b"\n" for r in lines)
    report = portable.import_lines(source, io.BytesIO(data))
    assert report.total_added == 0


def test_without_the_queue_only_memory_travels(full, tmp_path: Path):
    source, _ = full
    data = export_bytes(source)
    header = records(data)[0]
    assert header["format"] == "claude-mem-export" and header["version"] == portable.VERSION
    assert set(header["tables"]) == set(portable.MEMORY_TABLES)
    before = dump(target_path(source))

    target = fresh(tmp_path)
    portable.import_lines(target, io.BytesIO(data))
    after = dump(target_path(target))
    assert after["pending_queue"] == [] and after["pending_payloads"] == []
    for table in portable.MEMORY_TABLES:
        expected = before[table]
        if table == "observations":
            # The queue item an observation came from did not come along.
            expected = [{**row, "queue_item_id": None} for row in expected]
        assert after[table] == expected, table


def test_project_export_holds_that_project_alone(full, tmp_path: Path):
    source, (alpha, beta) = full
    # A global learning belongs to no project.
    source.create_learning(LearningCreate(category="convention", content="global rule"))
    data = export_bytes(source, project=alpha, with_queue=True)
    assert records(data)[0]["project"] == alpha
    before = dump(target_path(source))

    target = fresh(tmp_path)
    portable.import_lines(target, io.BytesIO(data))
    after = dump(target_path(target))
    alpha_sessions = {r["id"] for r in before["sessions"] if r["project"] == alpha}
    for table in MEMORY_TABLES:
        if table == "pending_payloads":
            items = {r["id"] for r in after["pending_queue"]}
            expected = [r for r in before[table] if r["item_id"] in items]
            assert len(expected) == 2
        else:
            expected = [r for r in before[table] if r["project"] == alpha]
        assert after[table] == expected, table
        assert expected, table
    assert all(r["session_id"] in alpha_sessions for r in after["observations"])
    assert beta not in json.dumps(after, default=repr)


def test_unknown_project_is_refused(full):
    source, _ = full
    with pytest.raises(StoreError, match="no project 'nope'"):
        export_bytes(source, project="nope")
    # A project with no session, only a learning of its own, is still found.
    source.create_learning(LearningCreate(category="convention", content="c", project="solo"))
    lines = records(export_bytes(source, project="solo"))
    assert [r["row"]["content"] for r in lines if r.get("table") == "learnings"] == ["c"]


def test_columns_added_by_a_later_migration_travel_without_code_changes(full, tmp_path: Path):
    source, _ = full
    target = fresh(tmp_path)
    for store in (source, target):
        store.conn.execute("ALTER TABLE learnings ADD COLUMN pinned INTEGER")
        store.conn.execute("ALTER TABLE sessions ADD COLUMN branch TEXT")
    source.conn.execute("UPDATE learnings SET pinned = 1")
    source.conn.execute("UPDATE sessions SET branch = 'main'")
    portable.import_lines(target, io.BytesIO(export_bytes(source)))
    conn = target.conn
    assert conn.execute("SELECT DISTINCT pinned FROM learnings").fetchall() == [(1,)]
    assert conn.execute("SELECT DISTINCT branch FROM sessions").fetchall() == [("main",)]


def test_a_column_the_target_lacks_is_refused(full, tmp_path: Path):
    source, _ = full
    source.conn.execute("ALTER TABLE learnings ADD COLUMN pinned INTEGER")
    target = fresh(tmp_path)
    with pytest.raises(portable.ImportRefused, match="learnings has no column pinned"):
        portable.import_lines(target, io.BytesIO(export_bytes(source)))
    assert all(rows == [] for rows in dump(target_path(target)).values())


def _broken(data: bytes, how: str) -> bytes:
    lines = data.splitlines(keepends=True)
    if how == "version":
        header = json.loads(lines[0])
        header["version"] = 99
        return json.dumps(header).encode() + b"\n" + b"".join(lines[1:])
    if how == "no header":
        return b"".join(lines[1:])
    if how == "malformed":
        return (
            b"".join(lines[:5])
            + b'{"type": "row", "table": "learnings", "row": {\n'
            + b"".join(lines[5:])
        )
    if how == "cut short":
        return b"".join(lines[:-3])
    if how == "wrong count":
        end = json.loads(lines[-1])
        end["rows"]["sessions"] += 1
        return b"".join(lines[:-1]) + json.dumps(end).encode() + b"\n"
    if how == "bad value":
        record = json.loads(lines[3])
        record["row"][next(iter(record["row"]))] = [1, 2]
        return b"".join(lines[:3]) + json.dumps(record).encode() + b"\n" + b"".join(lines[4:])
    if how == "check fails":
        out = []
        for line in lines:
            record = json.loads(line)
            if record.get("table") == "learnings":
                record["row"]["confidence"] = 7
            out.append(json.dumps(record).encode() + b"\n")
        return b"".join(out)
    if how == "missing session":
        return b"".join(line for line in lines if b'"table":"sessions"' not in line)
    raise AssertionError(how)


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("version", "format version 99"),
        ("no header", "first line is not its header"),
        ("malformed", "line 6: not JSON"),
        ("cut short", "no end line"),
        ("wrong count", "the end line counts"),
        ("bad value", "line 4"),
        ("check fails", "CHECK constraint"),
        ("missing session", "neither in the file before it nor in this memory"),
    ],
)
def test_a_bad_file_is_refused_and_changes_nothing(full, tmp_path: Path, how: str, message: str):
    source, (alpha, _) = full
    data = export_bytes(source, with_queue=True)
    target = fresh(tmp_path)
    # The target already holds a part of the memory: none of it may change either.
    portable.import_lines(target, io.BytesIO(export_bytes(source, project=alpha)))
    before = dump(target_path(target))
    with pytest.raises(portable.ImportRefused, match=message):
        portable.import_lines(target, io.BytesIO(_broken(data, how)))
    assert dump(target_path(target)) == before
    assert not target.conn.in_transaction


def test_rows_from_an_older_version_are_redacted_on_the_way_in(full, tmp_path: Path):
    """A file written before a redaction rule existed still holds the secret: import catches it."""
    source, (alpha, _) = full
    secret = "sk-ant-api03-" + "A1b2C3d4" * 8
    lines = records(export_bytes(source, project=alpha))
    for record in lines:
        row = record.get("row") or {}
        if record.get("table") == "observations":
            row["summary"] = f"used key {secret} here"
        if record.get("table") == "event_log":
            row["data"] = json.dumps({"password": "hunter2-is-long", "ok": "fine"})
    data = b"".join(json.dumps(r).encode() + b"\n" for r in lines)
    target = fresh(tmp_path)
    portable.import_lines(target, io.BytesIO(data))
    stored = dump(target_path(target))
    assert secret not in json.dumps(stored, default=repr)
    assert all("[REDACTED:" in r["summary"] for r in stored["observations"])
    [event] = stored["event_log"]
    assert json.loads(event["data"]) == {"password": "[REDACTED:password]", "ok": "fine"}
    # Searching the redacted text finds the row, through the index the import kept.
    assert target.search(alpha, "used key")
