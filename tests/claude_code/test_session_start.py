"""SessionStart with no server answering: the command hook starts one (once per memory
directory) and still answers the context, from the file itself when the server is not up.

Real processes throughout: the hook script run as Claude Code runs it, the server it starts
on a free loopback port, the memory file it reads. Every server a test starts is ended by
its process id (the hook writes it to server.pid).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import db_rows, free_port
from payloads import Repo, load, make_repo

from datasette_claude_mem.claude_code import session_start
from datasette_claude_mem.cli import create_token, ensure_secret
from datasette_claude_mem.names import HOOK_SCRIPT
from datasette_claude_mem.settings import Config
from datasette_claude_mem.storage.models import SessionStart
from datasette_claude_mem.storage.store import Store

BOUND = 90.0  # seconds: a hang guard, never a measurement


class Memory:
    """A memory directory with one earlier session to remember, and a port with no server."""

    def __init__(self, base: Path, repo: Repo) -> None:
        self.base = base
        self.repo = repo
        self.port = free_port()
        config = Config(base_dir=base)
        config.ensure_dirs()
        self.token = create_token(ensure_secret(config))
        with Store(config.db_path) as store:
            store.create_session(
                SessionStart(id="earlier", project_dir=str(repo.main), summary="Wrote the parser")
            )
            store.close_session("earlier")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db(self) -> Path:
        return self.base / "claude-mem.db"

    def hook(self, payload: dict[str, Any], **env: str) -> subprocess.CompletedProcess:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("CLAUDE_MEM_")}
        environment.update(
            CLAUDE_MEM_DIR=str(self.base),
            CLAUDE_MEM_TOKEN=self.token,
            CLAUDE_MEM_WORKER="0",
            CLAUDE_MEM_START_WAIT=str(BOUND),
        )
        environment.update(env)
        return subprocess.run(
            [sys.executable, "-S", str(HOOK_SCRIPT), self.url],
            input=json.dumps(payload).encode(),
            env=environment,
            capture_output=True,
            timeout=BOUND + 30,
        )

    def start_event(self, session_id: str, source: str = "startup") -> dict[str, Any]:
        return load("SessionStart.json", session_id=session_id, cwd=str(self.repo.main)) | {
            "source": source
        }

    def rows(self, sql: str, params: list[Any] | tuple = ()) -> list[dict[str, Any]]:
        return db_rows(self.db, sql, params)

    def server_pid(self) -> int | None:
        path = self.base / session_start.PID_NAME
        return int(path.read_text()) if path.exists() else None

    def stop_server(self) -> None:
        pid = self.server_pid()
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def context(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, done.stderr
    if not done.stdout.strip():
        return ""
    return json.loads(done.stdout)["hookSpecificOutput"]["additionalContext"]


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + BOUND
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.1)


@pytest.fixture
def memory(tmp_path: Path) -> Iterator[Memory]:
    made = Memory(tmp_path / "mem", make_repo(tmp_path / "work"))
    yield made
    made.stop_server()


def test_the_hook_starts_the_server_and_answers_through_it(memory: Memory) -> None:
    done = memory.hook(memory.start_event("now"))
    assert "Wrote the parser" in context(done)
    assert memory.server_pid() is not None
    # The event went to the server, not to the spool: it is in the file already.
    [row] = memory.rows("SELECT session_id FROM event_log WHERE event_type = 'SessionStart'")
    assert row == {"session_id": "now"}
    assert not (memory.base / "spool.jsonl").exists()
    # The session's later http hooks find the server.
    prompt = load("UserPromptSubmit.json", session_id="now", cwd=str(memory.repo.main))
    answer = httpx.post(
        memory.url + "/-/claude-mem/hooks",
        json=prompt,
        headers={"Authorization": f"Bearer {memory.token}"},
        timeout=30,
    )
    assert answer.status_code == 200 and answer.json() == {}
    log = (memory.base / "logs" / session_start.LOG_NAME).read_text()
    assert "Uvicorn running" in log
    assert oct((memory.base / "logs" / session_start.LOG_NAME).stat().st_mode & 0o777) == "0o600"


def test_two_sessions_starting_at_once_start_one_server(memory: Memory) -> None:
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(memory.hook, [memory.start_event("a"), memory.start_event("b")]))
    for done in results:
        assert "Wrote the parser" in context(done)
    log = (memory.base / "logs" / session_start.LOG_NAME).read_text()
    assert log.count("Started server process") == 1
    rows = memory.rows("SELECT session_id FROM event_log WHERE event_type = 'SessionStart'")
    assert sorted(r["session_id"] for r in rows) == ["a", "b"]


def test_a_server_slow_to_come_up_the_context_comes_from_the_file(memory: Memory) -> None:
    done = memory.hook(memory.start_event("now"), CLAUDE_MEM_START_WAIT="0")
    assert "Wrote the parser" in context(done)
    # Spooled, and taken in once by the server the hook started.
    wait_for(
        lambda: memory.rows("SELECT 1 FROM event_log WHERE event_type = 'SessionStart'"),
        "the spooled SessionStart",
    )
    wait_for(lambda: not (memory.base / "spool.jsonl").exists(), "the spool to be taken in")
    rows = memory.rows("SELECT session_id FROM event_log WHERE event_type = 'SessionStart'")
    assert rows == [{"session_id": "now"}]


def test_with_autostart_off_no_server_is_started_and_nothing_is_lost(memory: Memory) -> None:
    done = memory.hook(memory.start_event("now"), CLAUDE_MEM_AUTOSTART="0")
    assert "Wrote the parser" in context(done)
    assert memory.server_pid() is None
    [line] = (memory.base / "spool.jsonl").read_text().splitlines()
    assert json.loads(line)["payload"]["session_id"] == "now"


def test_from_the_file_a_resumed_session_hears_only_what_is_new(memory: Memory) -> None:
    with Store(memory.db) as store:
        store.create_session(SessionStart(id="now", project_dir=str(memory.repo.main)))
        store.mark_context("now", "2999-01-01T00:00:00.000Z")
    done = memory.hook(memory.start_event("now", "resume"), CLAUDE_MEM_AUTOSTART="0")
    assert context(done) == ""


def test_no_memory_file_yet_answers_nothing_and_spools(tmp_path: Path) -> None:
    memory = Memory.__new__(Memory)
    memory.base, memory.repo, memory.port = tmp_path / "empty", make_repo(tmp_path / "w"), 9
    memory.token = ""
    done = memory.hook(memory.start_event("now"), CLAUDE_MEM_AUTOSTART="0")
    assert done.returncode == 0 and done.stdout == b""
    assert len((memory.base / "spool.jsonl").read_text().splitlines()) == 1


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("http://127.0.0.1:8765", ("127.0.0.1", 8765)),
        ("http://localhost:9000/", ("localhost", 9000)),
        ("https://127.0.0.1:8765", None),
        ("http://memory.example.com:8765", None),
    ],
)
def test_only_a_plain_loopback_server_is_started_here(url: str, address: Any) -> None:
    assert session_start.server_address(url) == address
