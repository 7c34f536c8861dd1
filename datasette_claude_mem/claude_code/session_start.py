"""SessionStart when no server answers: start one, and give the session its context anyway.

The hook script hands over to this file (run as a script, not with -m, so the package and
Datasette are imported only when the context must be read from the file) for SessionStart
alone. It starts a server in the background, one per memory directory: an exclusive lock on
`server.lock` there is taken before the start and held by the server for its whole life,
so two sessions starting at once start one server. The server logs to `logs/server.log`.
If the server answers within CLAUDE_MEM_START_WAIT seconds (default 6) the event goes to it
as usual; if not, the event is spooled and the context is read straight from the file.

Settings as the hook script's, and CLAUDE_MEM_AUTOSTART=0 to never start a server.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

if __package__:
    from datasette_claude_mem.claude_code import hook_script
else:  # run as a file by the hook script: its neighbour, without the package's imports
    import hook_script

    # This directory's modules must not shadow top-level ones of the same names later.
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        del sys.path[0]

LOCK_NAME = "server.lock"
PID_NAME = "server.pid"
LOG_NAME = "server.log"
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
POLL_SECONDS = 0.05


def _wait_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get("CLAUDE_MEM_START_WAIT", "6")))
    except ValueError:
        return 6.0


def server_address(url: str) -> tuple[str, int] | None:
    """Host and port of a server this machine may start: plain http on loopback only."""
    scheme, _, rest = url.partition("://")
    if scheme != "http":
        return None
    name, port = hook_script._split_host(rest.split("/", 1)[0], 80)
    return (name, port) if name in LOOPBACK else None


def autostart_enabled() -> bool:
    return os.environ.get("CLAUDE_MEM_AUTOSTART", "1").lower() not in ("0", "false", "off", "no")


def _listening(host: str, port: int) -> bool:
    try:
        hook_script._connect(host, port, 0.5).close()
        return True
    except OSError:
        return False


def start_server(base: Path, host: str, port: int):
    """Start `datasette claude-mem serve` detached, unless one started by a hook holds the
    directory's lock; returns the process, or None when none was started."""
    import fcntl
    import subprocess

    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(base / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return None  # a server of this directory is running or starting
        logs = base / "logs"
        logs.mkdir(mode=0o700, exist_ok=True)
        # The log holds the server's sign-in link: readable by this user alone.
        log = os.open(logs / LOG_NAME, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            # The server inherits the locked descriptor, and so holds the lock until it ends.
            process = subprocess.Popen(
                [sys.executable, "-m", "datasette", "claude-mem", "serve"]
                + ["--host", host.strip("[]"), "--port", str(port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                pass_fds=(fd,),
                start_new_session=True,
                env={**os.environ, "CLAUDE_MEM_DIR": str(base)},
            )
        finally:
            os.close(log)
        (base / PID_NAME).write_text(f"{process.pid}\n", encoding="ascii")
        return process
    finally:
        os.close(fd)


def post_until(body: bytes, deadline: float, process: Any) -> bytes | None:
    """The server's answer once it is up; None if it is not up by the deadline (or the
    server this hook started ended)."""
    while True:
        try:
            return hook_script.post(body) or b""
        except OSError:
            pass
        if time.monotonic() >= deadline or (process is not None and process.poll() is not None):
            return None
        time.sleep(POLL_SECONDS)


def context_from_file(payload: dict[str, Any], db_path: Path) -> dict[str, Any]:
    """The SessionStart answer built from the memory file itself, read-only."""
    import sqlite3

    from datasette_claude_mem.claude_code.context import build_context
    from datasette_claude_mem.settings import Config
    from datasette_claude_mem.storage.project import project_key
    from datasette_claude_mem.storage.store import Store

    cwd = str(payload.get("cwd") or "")
    if not cwd or not db_path.exists():
        return {}
    conn = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True, timeout=2)
    conn.execute("PRAGMA busy_timeout=2000")
    try:
        store = Store(conn, migrate_schema=False, redact_text=str, redact_value=lambda v: v)
        session_id = str(payload.get("session_id") or "") or None
        since = None
        if payload.get("source") == "resume" and session_id:
            session = store.get_session(session_id)
            since = session.context_at.isoformat() if session and session.context_at else None
        context = build_context(
            store, project_key(cwd), config=Config.load(), current_session=session_id, since=since
        )
    finally:
        conn.close()
    if not context.markdown:
        return {}
    return {
        "hookSpecificOutput": {
            "hookEventName": "SessionStart",
            "additionalContext": context.with_tools_line(session_id),
        }
    }


def main(body: bytes) -> bytes:
    """What to print for this SessionStart event."""
    url = hook_script.server_url()
    base = Path(hook_script.base_dir())
    deadline = time.monotonic() + _wait_seconds()
    address = server_address(url)
    answer = None
    if address is not None and autostart_enabled():
        # Something listening is a server that is busy or still starting: wait for it.
        process = None if _listening(*address) else start_server(base, *address)
        answer = post_until(body, deadline, process)
    if answer is not None:
        return answer
    hook_script.spool(body)  # the server takes it in when it comes up
    try:
        output = context_from_file(json.loads(body), base / "claude-mem.db")
    except Exception as error:  # noqa: BLE001 - a hook must never fail the agent
        sys.stderr.write(f"claude-mem: no context from the memory file: {error}\n")
        return b""
    return json.dumps(output).encode("utf-8") if output else b""


if __name__ == "__main__":
    try:
        sys.stdout.buffer.write(main(sys.stdin.buffer.read()))
    except Exception as error:  # noqa: BLE001 - a hook must never fail the agent
        sys.stderr.write(f"claude-mem: {error}\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
