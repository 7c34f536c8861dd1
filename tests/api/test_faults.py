"""Faults of the disk, met for real: a read-only file system, a full one, another program
holding the write lock. Each answers JSON in Datasette's error shape, 503 with Retry-After,
naming the cause and the file; reads go on; nothing acknowledged is lost."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from datasette.app import Datasette
from helpers import PROCESSES, MakeDs, api_call, assert_error, db_rows, remount

from datasette_claude_mem.storage.store import Store


def fresh_memory(directory: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A migrated memory file with one event, closed (so its WAL is folded in and gone)."""
    monkeypatch.setenv("CLAUDE_MEM_DIR", str(directory))
    monkeypatch.setenv("CLAUDE_MEM_WORKER", "0")
    path = directory / "claude-mem.db"
    with Store(path) as store:
        store.log_event("before", {"n": 1})
    return path


def hook_event(i: int, size: int = 100) -> dict:
    return {
        "hook_event_name": "PostToolUse",
        "session_id": "faults-session",
        "cwd": "/nonexistent/faults",
        "tool_name": "Bash",
        "tool_use_id": f"tool-{i}",
        "tool_input": {"command": f"echo {i}"},
        "tool_response": {"stdout": os.urandom(size // 2).hex()},
    }


async def event_types(ds: Datasette) -> list[str]:
    """The event log as a person signed in sees it on Datasette's table page."""
    cookies = {"ds_actor": ds.client.actor_cookie({"id": "root"})}
    read = await ds.client.get("/claude-mem/event_log.json?_shape=array", cookies=cookies)
    assert read.status_code == 200, read.text
    return [row["event_type"] for row in read.json()]


def assert_unavailable(response, *mentions: str) -> None:
    assert_error(response, 503, *mentions)
    assert int(response.headers["retry-after"]) > 0
    assert response.headers["content-type"].startswith("application/json")


@pytest.mark.asyncio
async def test_a_read_only_file_system_warns_at_start_serves_reads_and_refuses_writes(
    make_ds: MakeDs,
    tmpfs: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    path = fresh_memory(tmpfs, monkeypatch)
    remount(tmpfs, "ro")
    ds: Datasette = await make_ds(path)
    warning = capfd.readouterr().err
    assert "read-only" in warning and str(path) in warning
    assert len([line for line in warning.splitlines() if "read-only" in line]) == 1
    token = await ds.create_token("claude-mem")

    assert await event_types(ds) == ["before"]
    for route, body in (("/events", {"event_type": "e"}), ("/hooks", hook_event(1))):
        response = await api_call(ds, "POST", route, body, token=token)
        assert_unavailable(response, "read-only", str(path))
    assert await event_types(ds) == ["before"]


@pytest.mark.skipif(os.geteuid() == 0, reason="file modes do not stop root")
@pytest.mark.asyncio
@pytest.mark.parametrize("what", ["file", "directory"])
async def test_a_chmod_read_only_memory_is_found_at_start(
    make_ds: MakeDs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, what: str
) -> None:
    path = fresh_memory(tmp_path / "mem", monkeypatch)
    (path if what == "file" else path.parent).chmod(0o500 if what == "directory" else 0o400)
    try:
        ds = await make_ds(path)
        token = await ds.create_token("claude-mem")
        assert "before" in await event_types(ds)
        response = await api_call(ds, "POST", "/events", {"event_type": "e"}, token=token)
        assert_unavailable(response, "read-only", str(path))
    finally:
        path.parent.chmod(0o700)
        path.chmod(0o600)


@pytest.mark.asyncio
async def test_a_full_disk_answers_503_and_recovers_when_space_is_freed(
    make_ds: MakeDs, tmpfs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = fresh_memory(tmpfs, monkeypatch)
    ds = await make_ds(path)
    token = await ds.create_token("claude-mem")
    filler = tmpfs / "filler"
    filler.write_bytes(b"\0" * (1024 * 1024))
    acknowledged: list[str] = []
    refused = None
    for i in range(200):
        response = await api_call(ds, "POST", "/hooks", hook_event(i, 20_000), token=token)
        if response.status_code == 503:
            refused = response
            break
        assert response.status_code == 200, response.text
        acknowledged.append(f"tool-{i}")
    assert refused is not None, "the disk never filled"
    assert_unavailable(refused, "disk is full", str(path))
    # Reads still answer while the disk is full.
    assert "before" in await event_types(ds)

    filler.unlink()
    response = await api_call(ds, "POST", "/hooks", hook_event(999, 2_000), token=token)
    assert response.status_code == 200, response.text
    acknowledged.append("tool-999")
    kept = {r["tool_use_id"] for r in db_rows(path, "SELECT tool_use_id FROM pending_queue")}
    assert set(acknowledged) <= kept


@pytest.mark.asyncio
async def test_a_lock_held_past_the_deadline_answers_503_naming_the_lock(
    make_ds: MakeDs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = fresh_memory(tmp_path / "mem", monkeypatch)
    ds = await make_ds(path, plugin={"write_timeout_seconds": 0.5, "busy_timeout_ms": 100})
    token = await ds.create_token("claude-mem")
    release = tmp_path / "release"
    holder = subprocess.Popen(
        [sys.executable, str(PROCESSES / "lock_holder.py"), str(path), str(release)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        response = await api_call(ds, "POST", "/events", {"event_type": "e"}, token=token)
        assert_unavailable(response, "write lock", str(path))
        assert holder.poll() is None  # the lock was still held when the answer came
    finally:
        release.touch()
        holder.wait(30)
    assert holder.returncode == 0
    response = await api_call(ds, "POST", "/events", {"event_type": "after"}, token=token)
    assert response.status_code == 201, response.text
    types = {r["event_type"] for r in db_rows(path, "SELECT event_type FROM event_log")}
    assert types == {"before", "external", "after"}


@pytest.mark.asyncio
async def test_the_upkeeps_writes_outside_a_transaction_meet_the_same_fault_handling(
    make_ds: MakeDs, tmpfs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The vacuum's writes skip the write queue, not its read-only check or its faults."""
    import sqlite3

    from datasette_claude_mem import plugin
    from datasette_claude_mem.storage.errors import DiskError, ReadOnly

    path = fresh_memory(tmpfs, monkeypatch)
    ds = await make_ds(path)
    db = plugin.memory_database(ds)
    assert db is not None
    upkeep = plugin._ServerUpkeep(ds, db)

    def failing(store: Store) -> int:
        raise sqlite3.OperationalError("disk I/O error")

    with pytest.raises(DiskError, match=str(path)):
        await upkeep.outside(failing)
    ds.close()

    remount(tmpfs, "ro")
    ro_ds = await make_ds(path)
    ro_db = plugin.memory_database(ro_ds)
    assert ro_db is not None
    ran: list[int] = []
    with pytest.raises(ReadOnly, match=str(path)):
        await plugin._ServerUpkeep(ro_ds, ro_db).outside(lambda store: ran.append(1))
    assert ran == []
