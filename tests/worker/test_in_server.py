"""The worker inside a real `datasette claude-mem serve` process.

Hooks are posted over HTTP with a token from `datasette claude-mem token`; the in-server
worker (a Datasette background task, its poll interval set with
`-- -s plugins.datasette-claude-mem.worker '{"interval": 0.1}'`) turns them into observations
and refreshes the code index. /-/tasks (as the root user, through the sign-in link serve
prints) shows it running; CLAUDE_MEM_WORKER=0 or `worker: false` switches it off.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from helpers import free_port

DATASETTE = str(Path(sys.executable).parent / "datasette")
FAST_WORKER = ["-s", "plugins.datasette-claude-mem.worker", '{"interval": 0.1}']
SOURCE = """def parse(text):
    return [line.strip() for line in text.splitlines()]


def main(path):
    return parse(open(path).read())
"""


@dataclass
class Server:
    proc: subprocess.Popen
    base: str
    base_dir: Path
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    @property
    def db_path(self) -> Path:
        return self.base_dir / "claude-mem.db"

    def root_link(self) -> str:
        for line in self.lines:
            if "/-/auth-token?token=" in line:
                return line.strip()
        raise AssertionError(f"no sign-in link in {self.lines!r}")

    def query(self, sql: str, params=()) -> list[tuple]:
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def wait_for(self, sql: str, expected, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            got = self.query(sql)
            if got == expected:
                return
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"{sql}: {got!r}, not {expected!r}\n" + "".join(self.lines))
            time.sleep(0.05)


def cli_env(base_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAUDE_MEM_", "DATASETTE_"))}
    return {**env, "CLAUDE_MEM_DIR": str(base_dir), **extra}


def hook_token(base_dir: Path) -> str:
    run = subprocess.run(
        [DATASETTE, "claude-mem", "token"],
        capture_output=True,
        text=True,
        env=cli_env(base_dir),
        timeout=60,
        check=True,
    )
    return run.stdout.strip()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator:
    started: list[Server] = []

    def start(*datasette_args: str, name: str = "mem", **env: str) -> Server:
        base_dir = tmp_path / name
        port = free_port()
        proc = subprocess.Popen(
            [DATASETTE, "claude-mem", "serve", "--port", str(port), "--", *datasette_args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=cli_env(base_dir, **env),
        )
        server = Server(proc, f"http://127.0.0.1:{port}", base_dir)
        started.append(server)
        assert proc.stdout is not None
        server.reader = threading.Thread(
            target=lambda: server.lines.extend(iter(proc.stdout.readline, "")), daemon=True
        )
        server.reader.start()
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(server.base + "/-/versions.json", timeout=2)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        "server did not start:\n" + "".join(server.lines)
                    ) from None
                time.sleep(0.1)
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.proc.send_signal(signal.SIGINT)
            try:
                server.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.proc.kill()
                server.proc.wait()


def post_hooks(server: Server, token: str, project: Path, uses: int) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    module = project / "tool.py"
    with httpx.Client(base_url=server.base, headers=headers, timeout=30) as client:
        for n in range(uses):
            if n == 0:
                tool, tool_input = "Read", {"file_path": str(module)}
                response = {"type": "text", "file": {"filePath": str(module), "content": SOURCE}}
            else:
                tool, tool_input = "Bash", {"command": f"echo step {n}"}
                response = {"stdout": f"step {n}\n", "stderr": "", "interrupted": False}
            answer = client.post(
                "/-/claude-mem/hooks",
                json={
                    "session_id": "served-session",
                    "cwd": str(project),
                    "hook_event_name": "PostToolUse",
                    "tool_name": tool,
                    "tool_use_id": f"use-{n}",
                    "tool_input": tool_input,
                    "tool_response": response,
                },
            )
            assert answer.status_code == 200, answer.text


def tasks(server: Server) -> list[dict]:
    """/-/tasks.json as root, signed in through the link serve printed."""
    with httpx.Client(timeout=10) as client:
        client.get(server.root_link())
        answer = client.get(server.base + "/-/tasks.json")
    assert answer.status_code == 200, answer.text
    return answer.json()["tasks"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / "tool.py").write_text(SOURCE)
    return root


def test_in_server_worker_turns_hooks_into_observations(serve, project: Path) -> None:
    server = serve(*FAST_WORKER)
    post_hooks(server, hook_token(server.base_dir), project, uses=6)

    server.wait_for("SELECT status, count(*) FROM pending_queue GROUP BY status", [("done", 6)])
    rows = server.query(
        "SELECT o.title, o.queue_item_id = p.id FROM observations o "
        "JOIN pending_queue p ON p.id = o.queue_item_id ORDER BY p.tool_use_id"
    )
    assert [ok for _, ok in rows] == [1] * 6
    assert rows[0][0] == f"Read {project / 'tool.py'}"
    assert rows[1][0] == "Run: echo step 1"
    # The file the Read touched is in the function map (read, so unchanged) and the call graph.
    assert server.query(
        "SELECT file_path, qualified_name, change_type FROM function_map ORDER BY 2"
    ) == [("tool.py", "main", "unchanged"), ("tool.py", "parse", "unchanged")]
    assert server.query(
        "SELECT caller_function, callee_file, callee_function FROM call_graph "
        "WHERE resolution = 'direct'"
    ) == [("main", "tool.py", "parse")]
    batches = server.query("SELECT data, tokens_in, tokens_out FROM event_log "
                           "WHERE event_type = 'worker_batch'")  # fmt: skip
    assert batches
    data = [json.loads(d) for d, _, _ in batches]
    assert {d["worker"] for d in data} == {f"server:{server.proc.pid}"}
    assert sum(d["done"] for d in data) == 6
    assert all(tokens_in > 0 and tokens_out > 0 for _, tokens_in, tokens_out in batches)

    [task] = [t for t in tasks(server) if t["name"] == "claude-mem-worker"]
    assert task["state"] == "running" and task["exception"] is None

    # Stopped with SIGINT, the server cancels its worker and shuts down cleanly.
    server.proc.send_signal(signal.SIGINT)
    server.proc.wait(timeout=15)
    server.reader.join(timeout=10)
    output = "".join(server.lines)
    assert "Application shutdown complete" in output
    assert "Traceback" not in output


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (tuple(FAST_WORKER), {"CLAUDE_MEM_WORKER": "0"}),
        (("-s", "plugins.datasette-claude-mem.worker", "false"), {}),
    ],
    ids=["env", "config"],
)
def test_worker_switched_off(serve, project: Path, args, env) -> None:
    server = serve(*args, **env)
    post_hooks(server, hook_token(server.base_dir), project, uses=2)
    assert all(not t["name"].startswith("claude-mem-worker") for t in tasks(server))
    # Half a second is five polls of a worker that was on: the queue is left alone.
    time.sleep(0.5)
    assert server.query("SELECT status, count(*) FROM pending_queue GROUP BY status") == [
        ("raw", 2)
    ]
    assert server.query("SELECT count(*) FROM event_log WHERE event_type = 'worker_batch'") == [
        (0,)
    ]
