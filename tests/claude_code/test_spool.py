"""Taking in the command hook's spool: in order, once, whatever was left half done.

The spool's lines are written as hook_script.spool() writes them (its ids, its shape).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from datasette.app import Datasette
from helpers import empty_sqlite_file, query_rows
from payloads import load, scripted_session

from datasette_claude_mem.claude_code.spool import INGESTING_SUFFIX, ingest_spool
from datasette_claude_mem.names import HOOK_SCRIPT
from datasette_claude_mem.settings import Config
from datasette_claude_mem.storage.store import Store

_spec = importlib.util.spec_from_file_location("hook_script", HOOK_SCRIPT)
assert _spec is not None and _spec.loader is not None
hook_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hook_script)


def spool_line(payload: dict[str, Any]) -> str:
    return json.dumps({"id": hook_script.spool_id(), "spooled_at": 0.0, "payload": payload})


def write_spool(path: Path, payloads: list[dict[str, Any]], extra: list[str] = ()) -> list[str]:
    lines = [spool_line(p) for p in payloads] + list(extra)
    with path.open("a", encoding="utf-8") as handle:
        for line in lines:
            handle.write(line + "\n")
    return lines


def event_types(store: Store, session_id: str) -> list[str]:
    rows = store.conn.execute(
        "SELECT event_type FROM event_log WHERE session_id = ? ORDER BY created_at, id",
        [session_id],
    )
    return [r[0] for r in rows]


def counts(store: Store) -> tuple[int, ...]:
    return tuple(
        store.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        for table in ("sessions", "event_log", "pending_queue", "pending_payloads")
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    (path / ".git").mkdir(parents=True)
    return path


def test_a_spooled_session_is_taken_in_order_once(
    store: Store, config: Config, project: Path
) -> None:
    events = scripted_session("spooled", project, tools=30)
    write_spool(config.spool_path, events)
    assert ingest_spool(store, config.spool_path) == len(events)
    assert not config.spool_path.exists()
    assert not config.spool_path.with_name("spool.jsonl" + INGESTING_SUFFIX).exists()
    assert event_types(store, "spooled") == [e["hook_event_name"] for e in events]
    queued = store.conn.execute(
        "SELECT tool_use_id FROM pending_queue ORDER BY created_at, id"
    ).fetchall()
    assert [q[0] for q in queued] == [e["tool_use_id"] for e in events if "tool_use_id" in e]
    assert store.get_session("spooled").status == "closed"
    assert ingest_spool(store, config.spool_path) == 0


def test_the_spooled_line_ids_become_the_event_ids(
    store: Store, config: Config, project: Path
) -> None:
    lines = write_spool(config.spool_path, [load("Stop.json", session_id="s", cwd=str(project))])
    ingest_spool(store, config.spool_path)
    [row] = store.query_events(session_id="s")
    assert row.id == json.loads(lines[0])["id"]


def test_a_pass_interrupted_halfway_is_finished_without_doubles(
    store: Store, config: Config, project: Path
) -> None:
    """A server killed while taking the spool in leaves .ingesting; the next start ends it."""
    events = scripted_session("halfway", project, tools=10)
    lines = [spool_line(e) for e in events]
    working = config.spool_path.with_name("spool.jsonl" + INGESTING_SUFFIX)
    # The pass that died had renamed eight lines aside and stored five of them...
    config.spool_path.write_text("\n".join(lines[:5]) + "\n")
    ingest_spool(store, config.spool_path)
    working.write_text("\n".join(lines[:8]) + "\n")
    # ...and hooks spooled the rest into a new spool meanwhile.
    config.spool_path.write_text("\n".join(lines[8:]) + "\n")

    assert ingest_spool(store, config.spool_path) == len(events)
    assert not working.exists() and not config.spool_path.exists()
    assert event_types(store, "halfway") == [e["hook_event_name"] for e in events]
    assert counts(store)[2] == 10  # each tool use queued once


def test_bad_lines_are_skipped_and_the_rest_taken_in(
    store: Store, config: Config, project: Path, capsys: pytest.CaptureFixture
) -> None:
    good = [load(n, session_id="good", cwd=str(project)) for n in
            ("SessionStart.json", "UserPromptSubmit.json", "SessionEnd.json")]  # fmt: skip
    bad = [
        "{not json",
        json.dumps({"id": "x"}),
        json.dumps({"id": "y", "payload": ["not", "an", "object"]}),
        # An event the store refuses: a tool use of a session it never heard of, no cwd.
        spool_line(load("PostToolUse-Read.json", session_id="ghost", cwd=None)),
    ]
    config.spool_path.write_text(
        "\n".join([spool_line(good[0]), *bad, spool_line(good[1]), "", spool_line(good[2])]) + "\n"
    )
    assert ingest_spool(store, config.spool_path) == 3
    assert event_types(store, "good") == ["SessionStart", "UserPromptSubmit", "SessionEnd"]
    assert store.query_events(session_id="ghost") == []
    assert not config.spool_path.exists()
    err = capsys.readouterr().err
    assert err.count("skipped spool line") == 4


def test_a_line_that_is_not_utf8_is_skipped(
    store: Store, config: Config, project: Path, capsys: pytest.CaptureFixture
) -> None:
    good = spool_line(load("Stop.json", session_id="s", cwd=str(project))).encode()
    config.spool_path.write_bytes(b'{"id": "bad", "payload": {"x": "\xff\xfe"}}\n' + good + b"\n")
    assert ingest_spool(store, config.spool_path) == 1
    assert event_types(store, "s") == ["Stop"]
    assert "skipped spool line 1" in capsys.readouterr().err


def test_a_busy_database_leaves_the_rest_for_the_next_pass(
    config: Config, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datasette_claude_mem.storage.database as store_module

    monkeypatch.setattr(store_module, "WRITE_RETRY_SECONDS", 0.2)
    events = scripted_session("busy", project, tools=4)
    write_spool(config.spool_path, events)
    working = config.spool_path.with_name("spool.jsonl" + INGESTING_SUFFIX)
    with Store(config.db_path, busy_timeout_ms=20) as store:
        blocker = sqlite3.connect(config.db_path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            assert ingest_spool(store, config.spool_path) == 0
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert working.exists()  # nothing skipped, nothing lost
        assert counts(store) == (0, 0, 0, 0)
        assert ingest_spool(store, config.spool_path) == len(events)
        assert event_types(store, "busy") == [e["hook_event_name"] for e in events]
        assert not working.exists()


def test_excluded_projects_in_the_spool_are_not_remembered(
    store: Store, config: Config, project: Path
) -> None:
    write_spool(config.spool_path, scripted_session("private", project, tools=3))
    excluding = Config(base_dir=config.base_dir, excluded_projects=(str(project),))
    ingest_spool(store, config.spool_path, config=excluding)
    assert counts(store) == (0, 0, 0, 0)


# At server start


@pytest.mark.asyncio
async def test_the_server_takes_the_spool_in_at_start(
    make_ds, config: Config, project: Path
) -> None:
    events = scripted_session("at-start", project, tools=5)
    write_spool(config.spool_path, events)
    write_spool(config.spool_path, [], ["{broken line"])
    ds: Datasette = await make_ds(empty_sqlite_file(config.db_path))
    rows = await query_rows(
        ds, "SELECT event_type FROM event_log WHERE session_id = 'at-start' ORDER BY created_at, id"
    )
    assert [r["event_type"] for r in rows] == [e["hook_event_name"] for e in events]
    assert not config.spool_path.exists()


@pytest.mark.asyncio
async def test_a_spool_with_an_event_the_store_refuses_does_not_stop_the_server(
    make_ds, config: Config, project: Path
) -> None:
    ghost = load("PostToolUse-Read.json", session_id="ghost", cwd=None)
    write_spool(config.spool_path, [ghost, load("Stop.json", session_id="s", cwd=str(project))])
    ds: Datasette = await make_ds(empty_sqlite_file(config.db_path))
    rows = await query_rows(ds, "SELECT session_id, event_type FROM event_log")
    assert rows == [{"session_id": "s", "event_type": "Stop"}]


@pytest.mark.asyncio
async def test_a_memory_elsewhere_leaves_the_spool_alone(
    make_ds, config: Config, project: Path, memory_path: Path
) -> None:
    assert memory_path.parent != config.base_dir
    write_spool(config.spool_path, [load("Stop.json", session_id="s", cwd=str(project))])
    ds: Datasette = await make_ds(memory_path)
    assert await query_rows(ds, "SELECT * FROM event_log") == []
    assert config.spool_path.exists()


def test_the_spool_is_private_to_the_user_until_taken_in(
    config: Config, store: Store, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLAUDE_MEM_DIR", str(config.base_dir))
    hook_script.spool(json.dumps(load("Stop.json", cwd=str(project))).encode())
    assert config.spool_path.stat().st_mode & 0o777 == 0o600
    ingest_spool(store, config.spool_path)
    assert not config.spool_path.exists()
    assert sqlite3.connect(config.db_path).execute("SELECT count(*) FROM event_log").fetchone()


def test_a_spool_in_clear_from_an_older_hook_is_redacted_when_taken_in(
    config: Config, store: Store, project: Path
) -> None:
    """Its lines hold events as they came; the store still never sees the secret."""
    secret = os.urandom(12).hex() + "Zq"
    prompt = load("UserPromptSubmit.json", session_id="old", cwd=str(project),
                  prompt=f"connect with\nDB_PASSWORD={secret}\nplease")  # fmt: skip
    write_spool(config.spool_path, [prompt])
    assert ingest_spool(store, config.spool_path) == 1
    [(data,)] = store.conn.execute("SELECT data FROM event_log WHERE session_id = 'old'")
    assert secret not in data
    stored = json.loads(data)
    assert stored["prompt"] == "connect with\nDB_PASSWORD=[REDACTED:password]\nplease"
    assert stored["redactions"] == {"password": 1}
    store.checkpoint()
    assert secret.encode() not in config.db_path.read_bytes()


def test_the_hooks_counts_are_kept_and_nonsense_counts_dropped(
    config: Config, store: Store, project: Path
) -> None:
    """A spooled line says what the hook took; only kind -> positive count is believed."""
    payloads = [
        load("Stop.json", session_id=f"n{i}", cwd=str(project), last_assistant_message="done")
        for i in range(2)
    ]
    lines = [
        json.dumps({"id": hook_script.spool_id(), "spooled_at": 0.0, "payload": payloads[0],
                    "redactions": {"password": 2, "jwt": "x", "secret": -1, "age_key": True}}),
        json.dumps({"id": hook_script.spool_id(), "spooled_at": 0.0, "payload": payloads[1],
                    "redactions": ["password"]}),
    ]  # fmt: skip
    config.spool_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert ingest_spool(store, config.spool_path) == 2
    rows = store.conn.execute("SELECT data FROM event_log ORDER BY session_id").fetchall()
    assert [json.loads(r[0]).get("redactions") for r in rows] == [{"password": 2}, None]
