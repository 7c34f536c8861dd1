"""A hook never waits long for the database: while another real process holds the write
lock, the server keeps each event in its own spool (fsynced) and answers at once; when the
lock frees every acknowledged event is stored exactly once, also across a crash."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import PROCESSES, MemServer, api_call, db_rows

from datasette_claude_mem.claude_code.hook_spool import server_spool_path
from datasette_claude_mem.claude_code.spool import INGESTING_SUFFIX
from datasette_claude_mem.storage.models import LearningCreate, SessionStart
from datasette_claude_mem.storage.store import Store


def tool_use(i: int, project: Path) -> dict:
    return {
        "hook_event_name": "PostToolUse",
        "session_id": "lock-session",
        "cwd": str(project),
        "tool_name": "Bash",
        "tool_use_id": f"tool-{i}",
        "tool_input": {"command": f"echo {i}"},
        "tool_response": {"stdout": f"out {i} ghp_" + "a" * 36},
    }


def hold_lock(db: Path, release: Path) -> subprocess.Popen:
    holder = subprocess.Popen(
        [sys.executable, str(PROCESSES / "lock_holder.py"), str(db), str(release)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
    return holder


def send_all(server: MemServer, events: list[dict]) -> list[int]:
    with ThreadPoolExecutor(len(events)) as pool:
        return [r.status_code for r in pool.map(server.hook, events)]


def stored_tool_uses(db: Path, expected: int, timeout: float = 90.0) -> list[str]:
    """The queue's tool use ids once it holds the expected number (or the time is up)."""
    deadline = time.monotonic() + timeout
    while True:
        ids = [r["tool_use_id"] for r in db_rows(db, "SELECT tool_use_id FROM pending_queue")]
        if len(ids) >= expected or time.monotonic() > deadline:
            return sorted(ids)
        time.sleep(0.2)


def test_hooks_are_answered_while_the_lock_is_held_and_stored_once_after(
    mem_server: MemServer, tmp_path: Path
) -> None:
    project = tmp_path / "repo"
    (project / ".git").mkdir(parents=True)
    release = tmp_path / "release"
    holder = hold_lock(mem_server.db_path, release)
    try:
        statuses = send_all(mem_server, [tool_use(i, project) for i in range(8)])
        # Every answer came while the other process still held the lock (it lets go only
        # when told), and the events wait, redacted, in the server's spool.
        assert holder.poll() is None
        spooled = server_spool_path(mem_server.db_path).read_text()
    finally:
        release.touch()
        holder.wait(30)
    assert statuses == [200] * 8
    assert spooled.count("\n") == 8 and "ghp_" not in spooled
    expected = sorted(f"tool-{i}" for i in range(8))
    assert stored_tool_uses(mem_server.db_path, 8) == expected
    # The writes that waited and the spool's pass stored each event once between them: once
    # the spool is taken in whole (its file and the one being read are gone), nothing more.
    spool = server_spool_path(mem_server.db_path)
    working = spool.with_name(spool.name + INGESTING_SUFFIX)
    deadline = time.monotonic() + 30
    while (spool.exists() or working.exists()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not spool.exists() and not working.exists(), "the spool was taken in"
    assert stored_tool_uses(mem_server.db_path, 8) == expected
    events = db_rows(
        mem_server.db_path, "SELECT id FROM event_log WHERE event_type = 'PostToolUse'"
    )
    assert len(events) == 8


def test_events_acknowledged_before_a_crash_are_taken_in_at_the_next_start(
    mem_server: MemServer, tmp_path: Path
) -> None:
    project = tmp_path / "repo"
    (project / ".git").mkdir(parents=True)
    release = tmp_path / "release"
    holder = hold_lock(mem_server.db_path, release)
    try:
        statuses = send_all(mem_server, [tool_use(i, project) for i in range(5)])
        assert mem_server.proc is not None
        mem_server.proc.send_signal(signal.SIGKILL)
        mem_server.proc.wait(15)
        mem_server.proc = None
    finally:
        release.touch()
        holder.wait(30)
    assert statuses == [200] * 5
    assert db_rows(mem_server.db_path, "SELECT tool_use_id FROM pending_queue") == []
    mem_server.start()
    assert stored_tool_uses(mem_server.db_path, 5) == sorted(f"tool-{i}" for i in range(5))
    assert not server_spool_path(mem_server.db_path).exists()


@pytest.mark.asyncio
async def test_a_session_start_kept_in_the_spool_still_gets_the_context(
    make_ds, memory_path: Path, tmp_path: Path
) -> None:
    """The context is read, not written: it is answered while the lock is held elsewhere."""
    project = tmp_path / "repo"
    (project / ".git").mkdir(parents=True)
    with Store(memory_path) as store:
        key = store.create_session(SessionStart(project_dir=str(project))).row.project
        store.create_learning(
            LearningCreate(category="gotcha", content="tests need -p no:cacheprovider", project=key)
        )
    ds = await make_ds(memory_path)
    token = await ds.create_token("claude-mem")
    release = tmp_path / "release"
    holder = hold_lock(memory_path, release)
    try:
        body = {
            "hook_event_name": "SessionStart",
            "session_id": "spooled-start",
            "cwd": str(project),
            "source": "startup",
        }
        response = await api_call(ds, "POST", "/hooks", body, token=token)
        assert holder.poll() is None
    finally:
        release.touch()
        holder.wait(30)
    assert response.status_code == 200, response.text
    context = response.json()["hookSpecificOutput"]["additionalContext"]
    assert "-p no:cacheprovider" in context
    assert '"spooled-start"' in server_spool_path(memory_path).read_text()
