"""`datasette claude-mem serve` stopped and started cleanly: a stop (SIGTERM, Ctrl-C) folds
the WAL into the file and leaves no -wal or -shm, exits quietly and gives the worker's leases
back; a memory on a read-only file system is served for reading."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
from helpers import MakeDs, MemServer, api_call, db_rows, remount

from datasette_claude_mem.worker import in_server


def tool_use(i: int, cwd: Path) -> dict:
    return {
        "hook_event_name": "PostToolUse",
        "session_id": "stop-session",
        "cwd": str(cwd),
        "tool_name": "Bash",
        "tool_use_id": f"tool-{i}",
        "tool_input": {"command": f"echo {i}"},
        "tool_response": {"stdout": f"{i} " * 20_000},
    }


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_clean_stop_leaves_the_file_alone_and_says_nothing_of_an_abort(
    mem_server: MemServer, tmp_path: Path, stop: signal.Signals
) -> None:
    for i in range(10):
        assert mem_server.hook(tool_use(i, tmp_path)).status_code == 200
    wal = mem_server.db_path.with_name(mem_server.db_path.name + "-wal")
    assert wal.stat().st_size > 0  # there was something to fold in
    assert mem_server.proc is not None
    mem_server.proc.send_signal(stop)
    assert mem_server.proc.wait(30) == 0
    mem_server.proc = None
    log = mem_server.log_path.read_text(errors="replace")
    assert "Aborted" not in log and "Traceback" not in log
    assert sorted(p.name for p in mem_server.base_dir.iterdir() if "claude-mem.db" in p.name) == [
        "claude-mem.db"
    ]
    stored = db_rows(mem_server.db_path, "SELECT tool_use_id FROM pending_queue")
    assert len(stored) == 10


@pytest.mark.asyncio
async def test_shutdown_gives_the_workers_leases_back(
    make_ds: MakeDs,
    memory_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker holds an item (its compression never ends) when the server stops: the item
    waits again at once, the unfinished claim not counted as an attempt."""
    started = asyncio.Event()

    async def endless(self, worker, item, root, grant=None, mapped=frozenset()):
        started.set()
        await asyncio.Event().wait()

    monkeypatch.setattr(in_server.InServerWorker, "work", endless)
    monkeypatch.setenv("CLAUDE_MEM_WORKER", "1")
    ds = await make_ds(memory_path)
    await ds.start_background_tasks()
    token = await ds.create_token("claude-mem")
    response = await api_call(ds, "POST", "/hooks", tool_use(1, tmp_path), token=token)
    assert response.status_code == 200
    await asyncio.wait_for(started.wait(), 60)
    [held] = db_rows(memory_path, "SELECT status, lease_owner, attempts FROM pending_queue")
    assert held["status"] == "processing" and held["lease_owner"] and held["attempts"] == 1

    await ds.invoke_shutdown()
    [given_back] = db_rows(memory_path, "SELECT * FROM pending_queue")
    assert given_back["status"] == "raw"
    assert given_back["lease_owner"] is None and given_back["lease_expires_at"] is None
    assert given_back["attempts"] == 0


def test_serve_over_a_read_only_file_system_serves_reads_and_answers_writes_503(
    mem_server_factory, tmpfs: Path, tmp_path: Path
) -> None:
    """The memory, its secret and all, on a file system mounted read-only since: `serve`
    starts, says so in one line, answers reads and refuses writes with a 503."""
    server: MemServer = mem_server_factory(tmpfs)
    assert server.hook(tool_use(1, tmp_path)).status_code == 200
    server.stop()
    remount(tmpfs, "ro")
    server.start()
    log = server.log_path.read_text(errors="replace")
    assert len([line for line in log.splitlines() if "read-only" in line]) == 1
    search = server.request("GET", "/-/claude-mem/search?q=echo")
    assert search.status_code == 200, search.text
    refused = server.hook(tool_use(2, tmp_path))
    assert refused.status_code == 503 and "read-only" in refused.json()["error"]
    assert str(server.db_path) in refused.json()["error"]
    assert refused.headers["retry-after"]
    server.stop()
    remount(tmpfs, "rw")
    assert [r["tool_use_id"] for r in db_rows(server.db_path, "SELECT * FROM pending_queue")] == [
        "tool-1"
    ]
