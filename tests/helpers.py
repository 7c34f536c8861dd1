"""What the tests share beside their fixtures: the memory's tables and the context's section
titles, rows read straight from a memory file, requests to the plugin's API, Datasette's error
shape, real `datasette claude-mem serve` processes (MemServer), and a project with a row in
every table (fill) with every row of a memory file (dump) to compare."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml
from datasette.app import Datasette

from datasette_claude_mem.claude_code.context import SECTIONS
from datasette_claude_mem.names import PREFIX, SERVE_CONFIG
from datasette_claude_mem.settings import Config

PROCESSES = Path(__file__).parent / "processes"


def free_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


MEMORY_TABLES = frozenset(
    {
        "sessions",
        "observations",
        "function_map",
        "call_graph",
        "learnings",
        "pending_queue",
        "pending_payloads",
        "event_log",
        "memory_entries",
    }
)


# The context's Markdown headings, and the section each one stands for.
CONTEXT_SECTIONS = {title: key for key, title in SECTIONS}


def db_rows(db_path: Path, sql: str, params: list[Any] | tuple = ()) -> list[dict[str, Any]]:
    """Rows straight from a memory file, on a connection of the test's own."""
    conn = sqlite3.connect(db_path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def stop_process(proc: subprocess.Popen) -> None:
    """Terminate, and kill what does not end within 15 seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(15)


SECRET = "test-secret-for-claude-mem"


API = PREFIX


MakeDs = Callable[..., Awaitable[Datasette]]


def load_serve_config() -> dict[str, Any]:
    return yaml.safe_load(SERVE_CONFIG.read_text(encoding="utf-8"))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def empty_sqlite_file(path: Path) -> Path:
    """Datasette opens files read-write but will not create them: make an empty one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sqlite3.connect(path).close()
    return path


async def api_call(
    ds: Datasette,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    content: bytes | str | None = None,
):
    """One request to the plugin's API (path relative to /-/claude-mem)."""
    all_headers = dict(headers or {})
    if token is not None:
        all_headers.update(bearer(token))
    kwargs: dict[str, Any] = {"headers": all_headers}
    if content is not None:
        kwargs["content"] = content
    elif body is not None:
        kwargs["json"] = body
    return await ds.client.request(method, API + path, **kwargs)


async def query_rows(
    ds: Datasette, sql: str, params: Any = None, database: str = "claude-mem"
) -> list[dict[str, Any]]:
    """Rows straight from the memory database, not through the API."""
    db = ds.get_database(database)
    return [dict(row) for row in (await db.execute(sql, params or [])).rows]


def assert_error(response: Any, status: int, *mentions: str, case: Any = None) -> dict[str, Any]:
    """An error in Datasette's shape, with this status, whose messages mention each word.

    `case` (the input that was sent) is shown when the check fails, for tests that loop.
    """
    where = f"case {case!r}: " if case is not None else ""
    assert response.status_code == status, f"{where}{response.status_code} {response.text}"
    body = response.json()
    assert body["ok"] is False, where
    assert body["status"] == status, where
    assert isinstance(body["errors"], list) and body["errors"], where
    assert isinstance(body["error"], str) and body["error"], where
    text = " ".join(body["errors"])
    for word in mentions:
        assert word in text, f"{where}{word!r} not mentioned in {body['errors']!r}"
    return body


class MemServer:
    """One `datasette claude-mem serve` over CLAUDE_MEM_DIR=base_dir on a free loopback port.

    Stopped (and restarted) on demand; the `mem_server_factory` fixture always terminates it.
    Its own worker is off unless asked for, so queue items stay as the hooks left them.
    """

    def __init__(self, base_dir: Path, log_path: Path, *, worker: bool = False) -> None:
        from datasette_claude_mem.cli import create_token, ensure_secret

        self.base_dir = base_dir
        self.log_path = log_path
        config = Config(base_dir=base_dir)
        config.ensure_dirs()
        self.token = create_token(ensure_secret(config))
        self.port = free_port()
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("CLAUDE_MEM_", "DATASETTE_"))
        }
        self.env.update(CLAUDE_MEM_DIR=str(base_dir), CLAUDE_MEM_WORKER="1" if worker else "0")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db_path(self) -> Path:
        return self.base_dir / "claude-mem.db"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def start(self, timeout: float = 60.0) -> MemServer:
        import httpx

        assert self.proc is None, "already running"
        datasette = Path(sys.executable).with_name("datasette")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(datasette), "claude-mem", "serve", "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                output = self.log_path.read_text(errors="replace")
                self.proc = None
                raise RuntimeError(f"the server exited at start:\n{output}")
            try:
                if httpx.get(self.url + "/-/claude-mem/openapi.json", timeout=2).is_success:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the server did not answer within {timeout} s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is None:
            return
        stop_process(self.proc)
        self.proc = None

    def restart(self) -> MemServer:
        self.stop()
        return self.start()

    def request(self, method: str, path: str, **kwargs: Any):
        import httpx

        headers = {**self.headers, **kwargs.pop("headers", {})}
        return httpx.request(method, self.url + path, headers=headers, timeout=60, **kwargs)

    def hook(self, payload: Any = None, **kwargs: Any):
        """POST one hook event (a dict as JSON, or raw content=...) to the hooks route."""
        if payload is not None:
            kwargs["json"] = payload
        return self.request("POST", "/-/claude-mem/hooks", **kwargs)


def mcp_client(target: Datasette | str, token: str | None = None, **headers: str):
    """The MCP SDK's own client over Streamable HTTP, with the handshake Claude Code uses:
    to a Datasette in this process (through an ASGI transport, as datasette.client) or to
    a server's base URL."""
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    sent = {**(bearer(token) if token else {}), **headers}
    if isinstance(target, str):
        base = target
        http = httpx2.AsyncClient(headers=sent, timeout=60)
    else:
        base = "http://localhost"
        transport = httpx2.ASGITransport(app=target.app())
        http = httpx2.AsyncClient(transport=transport, base_url=base, headers=sent)
    transport = streamable_http_client(f"{base}{PREFIX}/mcp", http_client=http)
    return Client(transport, mode="legacy", cache=None)


def fill(store: Any, root: Path, name: str) -> str:
    """A project with a row in every table of the memory; returns its key."""
    from datasette_claude_mem.storage.models import (
        EdgeInput,
        EdgesAdd,
        FunctionInput,
        FunctionMapUpsert,
        LearningCreate,
        MemoryEntrySave,
        ObservationCreate,
        QueueItemCreate,
        SessionStart,
    )

    project_dir = root / name
    (project_dir / ".git").mkdir(parents=True)
    session = store.create_session(SessionStart(project_dir=str(project_dir))).row
    item = store.enqueue(
        QueueItemCreate(
            session_id=session.id,
            tool_use_id="tu-1",
            tool_name="Edit",
            tool_input={"file_path": "src/app.py", "note": "naïve ✓"},
            raw_output="x" * 3000,
            files_touched=["src/app.py"],
        )
    ).row
    store.enqueue(QueueItemCreate(session_id=session.id, tool_use_id="tu-2", tool_name="Bash"))
    [claimed] = store.claim(1, worker="w", project=session.project)
    assert claimed.id == item.id
    store.complete(
        item.id,
        "w",
        ObservationCreate(
            session_id=session.id,
            tool_name="Edit",
            title=f"tokenizer change in {name}",
            summary="the parser splits on unicode whitespace",
            detail="line one\nline two",
            files_touched=["src/app.py"],
            functions_changed=["parse"],
            embedding=[0.25, -1.5, 3.0],
            embedding_model="m",
            embedding_version="1",
        ),
    )
    store.create_observation(
        ObservationCreate(session_id=session.id, tool_name="Read", title="read", summary="s")
    )
    store.create_learning(
        LearningCreate(
            category="gotcha",
            content=f"tokenizer gotcha {name}",
            confidence=0.7,
            project=session.project,
            source_session_id=session.id,
        )
    )
    store.upsert_functions(
        FunctionMapUpsert(
            session_id=session.id,
            file_path="src/app.py",
            functions=[
                FunctionInput(
                    qualified_name="Parser.parse",
                    kind="method",
                    signature="(self, text)",
                    body_hash=name,
                    decorators=["staticmethod"],
                )
            ],
        )
    )
    store.add_edges(
        EdgesAdd(
            session_id=session.id,
            edges=[
                EdgeInput(
                    caller_file="src/app.py",
                    caller_function="main",
                    callee_file="src/lib.py",
                    callee_function="parse",
                    resolution="direct",
                    confidence=0.9,
                )
            ],
        )
    )
    store.log_event("hook", {"n": 1, "nested": {"a": [1, 2]}}, session_id=session.id,
                    project=session.project, duration_ms=12)  # fmt: skip
    for value in ("first decision", "the decision revised"):
        store.save_entry(
            MemoryEntrySave(
                namespace=f"project:{name}/decisions",
                key="parser",
                value=f"{value} in {name}",
                project=session.project,
                session_id=session.id,
            )
        )
    store.close_session(session.id, summary=f"done with {name}")
    return session.project


def dump(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Every row of every memory table, in primary key order."""
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        found = {}
        for table in sorted(MEMORY_TABLES):
            key = "item_id" if table == "pending_payloads" else "id"
            found[table] = [dict(r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY {key}")]
        return found
    finally:
        conn.close()


LONG_AGO = "2000-01-01T00:00:00.000Z"


def finished_long_ago(store: Any, session_id: str, n: int, size: int) -> list[str]:
    """n tool uses of `size` bytes each, compressed long ago: retention's to remove."""
    from datasette_claude_mem.storage.models import QueueItemCreate

    ids = []
    for i in range(n):
        item = QueueItemCreate(
            session_id=session_id, tool_name="Bash", raw_output=f"{i:08d}" * (size // 8)
        )
        ids.append(store.enqueue(item).row.id)
    marks = ", ".join("?" for _ in ids)
    with store.write() as conn:
        conn.execute(
            f"UPDATE pending_queue SET status = 'done', completed_at = ? WHERE id IN ({marks})",
            [LONG_AGO, *ids],
        )
    return ids


def mount_tmpfs(target: Path, size: str = "2m") -> bool:
    """A real tmpfs of `size` at target, for faults of a real file system (full, read-only);
    False where the machine refuses it (not root, no mount in a container)."""
    if os.geteuid() != 0:
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(target)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def remount(target: Path, options: str) -> None:
    """Mount the tmpfs at target again with options ("ro", "rw")."""
    subprocess.run(["mount", "-o", f"remount,{options}", str(target)], check=True)


def unmount(target: Path) -> None:
    subprocess.run(["umount", "-l", str(target)], check=False)
