"""The command hook (`python -S hook_script.py`): post stdin, print the answer, or spool.

Run as Claude Code runs it: a child process with the event on stdin, against a real
`datasette claude-mem serve`, or against nothing at all.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from helpers import db_rows, free_port
from payloads import Repo, load, make_repo, scripted_session

from datasette_claude_mem.names import HOOK_SCRIPT

SCRIPT = HOOK_SCRIPT


def run_script(
    stdin: bytes | dict[str, Any], *, url: str, base_dir: Path, token: str = "", **env: str
) -> subprocess.CompletedProcess:
    if isinstance(stdin, dict):
        stdin = json.dumps(stdin).encode("utf-8")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CLAUDE_MEM_")}
    # No server is started for a SessionStart that finds none (test_session_start does that).
    environment.update(CLAUDE_MEM_URL=url, CLAUDE_MEM_DIR=str(base_dir), CLAUDE_MEM_AUTOSTART="0")
    environment.update(env)
    if token:
        environment["CLAUDE_MEM_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-S", str(SCRIPT)],
        input=stdin,
        env=environment,
        capture_output=True,
        timeout=60,  # a hang guard, not a measurement
    )


def spooled(base_dir: Path) -> list[dict[str, Any]]:
    path = base_dir / "spool.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return make_repo(tmp_path / "work")


# With a server


def test_with_a_server_it_prints_the_answer_and_exits_0(mem_server, repo: Repo) -> None:
    first = load("SessionStart.json", session_id="first", cwd=str(repo.main))
    done = run_script(first, url=mem_server.url, base_dir=mem_server.base_dir,
                      token=mem_server.token)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {}  # nothing remembered yet
    prompt = load("UserPromptSubmit.json", session_id="first", cwd=str(repo.main))
    done = run_script(prompt, url=mem_server.url, base_dir=mem_server.base_dir,
                      token=mem_server.token)  # fmt: skip
    assert done.returncode == 0 and json.loads(done.stdout) == {}

    second = load("SessionStart.json", session_id="second", cwd=str(repo.sub))
    done = run_script(second, url=mem_server.url, base_dir=mem_server.base_dir,
                      token=mem_server.token)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == b""
    output = json.loads(done.stdout)
    context = output["hookSpecificOutput"]["additionalContext"]
    assert output["hookSpecificOutput"]["hookEventName"] == "SessionStart"
    assert "`first`" in context and prompt["prompt"][:40] in context
    assert len(context.encode("utf-8")) < 10_000
    assert spooled(mem_server.base_dir) == []


def test_an_answer_the_server_refuses_is_reported_not_spooled(mem_server, repo: Repo) -> None:
    event = load("Stop.json", session_id="s", cwd=str(repo.main))
    done = run_script(event, url=mem_server.url, base_dir=mem_server.base_dir, token="bad")
    assert done.returncode == 0
    assert done.stdout == b""
    assert b"401" in done.stderr
    assert spooled(mem_server.base_dir) == []


# Without a server


def test_with_no_server_it_exits_0_and_spools_the_event(tmp_path: Path, repo: Repo) -> None:
    base = tmp_path / "not-yet"  # the spool's directory is made, private
    event = load("PostToolUse-Read.json", cwd=str(repo.main))
    done = run_script(event, url=f"http://127.0.0.1:{free_port()}", base_dir=base)
    assert done.returncode == 0
    assert done.stdout == b"" and done.stderr == b""
    [line] = spooled(base)
    assert line["payload"] == event
    assert isinstance(line["spooled_at"], float)
    assert base.stat().st_mode & 0o777 == 0o700
    assert (base / "spool.jsonl").stat().st_mode & 0o777 == 0o600


def test_a_pretty_printed_event_is_spooled_on_one_line(tmp_path: Path) -> None:
    event = load("PostToolUse-Edit.json", note="line\nbreak\r\nin a string", emoji="漢🙂")
    body = json.dumps(event, indent=2, ensure_ascii=False).replace("\n", "\r\n").encode()
    done = run_script(body, url=f"http://127.0.0.1:{free_port()}", base_dir=tmp_path)
    assert done.returncode == 0
    raw = (tmp_path / "spool.jsonl").read_bytes()
    assert raw.count(b"\n") == 1 and b"\r" not in raw
    [line] = spooled(tmp_path)
    assert line["payload"] == event


def test_spooled_ids_sort_in_the_order_events_happened(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for i in range(12):
        event = load("UserPromptSubmit.json", prompt=f"prompt {i}")
        assert run_script(event, url=url, base_dir=tmp_path).returncode == 0
    lines = spooled(tmp_path)
    assert [line["payload"]["prompt"] for line in lines] == [f"prompt {i}" for i in range(12)]
    ids = [line["id"] for line in lines]
    assert ids == sorted(ids) and len(set(ids)) == 12
    assert all(i[14] == "7" for i in ids)  # UUIDv7


def test_many_hooks_spooling_at_once_write_whole_lines(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    big = "x" * 200_000  # several pipe buffers' worth per line

    def one(i: int) -> int:
        event = load("PostToolUse-Bash.json", tool_use_id=f"t{i}", tool_response=big + str(i))
        return run_script(event, url=url, base_dir=tmp_path).returncode

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(one, range(24))) == [0] * 24
    lines = spooled(tmp_path)
    assert sorted(line["payload"]["tool_use_id"] for line in lines) == sorted(
        f"t{i}" for i in range(24)
    )
    for line in lines:
        assert line["payload"]["tool_response"] == big + line["payload"]["tool_use_id"][1:]


@pytest.mark.parametrize("stdin", [b"", b"  \n", b"not json at all"])
def test_nothing_worth_keeping_is_not_spooled(tmp_path: Path, stdin: bytes) -> None:
    done = run_script(stdin, url=f"http://127.0.0.1:{free_port()}", base_dir=tmp_path)
    assert done.returncode == 0
    assert spooled(tmp_path) == []


def test_a_spool_it_cannot_write_still_exits_0(tmp_path: Path) -> None:
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("in the way")
    event = load("Stop.json")
    done = run_script(event, url=f"http://127.0.0.1:{free_port()}", base_dir=blocked)
    assert done.returncode == 0
    assert b"claude-mem" in done.stderr


class QuietHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def serving(handler: type[http.server.BaseHTTPRequestHandler], host: str) -> Iterator[str]:
    """A stand-in server on a free loopback port, for as long as the caller iterates."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def busy_server() -> Iterator[str]:
    """A server that answers every POST with 503, as the memory does when SQLite is busy."""

    class Busy(QuietHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(503)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    yield from serving(Busy, "127.0.0.1")


def test_a_busy_server_gets_the_event_spooled(busy_server: str, tmp_path: Path) -> None:
    event = load("UserPromptSubmit.json")
    done = run_script(event, url=busy_server, base_dir=tmp_path)
    assert done.returncode == 0 and done.stdout == b""
    assert [line["payload"] for line in spooled(tmp_path)] == [event]


@pytest.fixture
def chunked_server() -> Iterator[str]:
    """A server that answers in chunks, as an ASGI server may when it knows no length."""

    class Chunked(QuietHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            for piece in (b'{"hookSpecificOutput": ', b'{"additionalContext": "x"}', b"}"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")

    yield from serving(Chunked, "localhost")


def test_a_chunked_answer_is_printed_whole(chunked_server: str, tmp_path: Path) -> None:
    done = run_script(load("SessionStart.json"), url=chunked_server, base_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"hookSpecificOutput": {"additionalContext": "x"}}


def test_posting_imports_neither_http_client_nor_json(mem_server, repo: Repo) -> None:
    """Its start-up is its cost: the way to the server needs only the C socket module."""
    event = load("Stop.json", session_id="lean", cwd=str(repo.main))
    done = run_script(event, url=mem_server.url, base_dir=mem_server.base_dir,
                      token=mem_server.token, PYTHONPROFILEIMPORTTIME="1")  # fmt: skip
    assert done.returncode == 0 and json.loads(done.stdout) == {}
    imported = {line.split("|")[-1].strip() for line in done.stderr.decode().splitlines()}
    assert "_socket" in imported
    assert not imported & {"http.client", "json", "ssl", "socket", "email", "urllib"}
    assert db_rows(mem_server.db_path, "SELECT event_type FROM event_log") == [
        {"event_type": "Stop"}
    ]


# A whole session, with the server stopped halfway through


def test_a_session_with_the_server_down_halfway_is_stored_once_in_order(
    mem_server_factory, repo: Repo
) -> None:
    server = mem_server_factory()
    session_id = "e2e-command-hook"
    events = scripted_session(session_id, repo.main, tools=50)
    stop_at, restart_at = 20, 38  # event indexes
    answers = []
    for i, event in enumerate(events):
        if i == stop_at:
            server.stop()
        if i == restart_at:
            assert len(spooled(server.base_dir)) == restart_at - stop_at
            server.start()  # takes the spool in before it answers
            assert not (server.base_dir / "spool.jsonl").exists()
        done = run_script(event, url=server.url, base_dir=server.base_dir, token=server.token)
        assert done.returncode == 0, (i, done.stderr)
        answers.append(done.stdout)
    assert all(json.loads(a) == {} for a in answers[:stop_at] + answers[restart_at:])
    assert all(a == b"" for a in answers[stop_at:restart_at])

    def stored() -> tuple[list[dict], list[dict]]:
        rows = db_rows(
            server.db_path,
            "SELECT * FROM event_log WHERE session_id = ? ORDER BY created_at, id",
            [session_id],
        )
        queue = db_rows(
            server.db_path,
            "SELECT * FROM pending_queue WHERE session_id = ? ORDER BY created_at, id",
            [session_id],
        )
        return rows, queue

    rows, queue = stored()
    assert [r["event_type"] for r in rows] == [e["hook_event_name"] for e in events]
    assert all(r["duration_ms"] is not None for r in rows)
    prompts = [
        json.loads(r["data"])["prompt"] for r in rows if r["event_type"] == "UserPromptSubmit"
    ]
    assert prompts == [e["prompt"] for e in events if e["hook_event_name"] == "UserPromptSubmit"]
    tool_uses = [e["tool_use_id"] for e in events if e["hook_event_name"] == "PostToolUse"]
    assert [q["tool_use_id"] for q in queue] == tool_uses
    by_id = {q["id"]: q["tool_use_id"] for q in queue}
    logged = [
        json.loads(r["data"])["queue_item_id"] for r in rows if r["event_type"] == "PostToolUse"
    ]
    assert [by_id[i] for i in logged] == tool_uses
    [session] = db_rows(server.db_path, "SELECT * FROM sessions WHERE id = ?", [session_id])
    assert session["status"] == "closed" and session["project"] == str(repo.main)

    server.restart()  # a second start stores nothing twice
    assert stored() == (rows, queue)


def test_the_url_after_the_script_wins_over_the_environment(mem_server, repo: Repo) -> None:
    """install writes a non-default URL into the SessionStart command line."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CLAUDE_MEM_")}
    environment.update(
        CLAUDE_MEM_URL=f"http://127.0.0.1:{free_port()}",  # nothing there
        CLAUDE_MEM_DIR=str(mem_server.base_dir),
        CLAUDE_MEM_TOKEN=mem_server.token,
        CLAUDE_MEM_AUTOSTART="0",
    )
    prompt = load("UserPromptSubmit.json", session_id="by-arg", cwd=str(repo.main))
    done = subprocess.run(
        [sys.executable, "-S", str(SCRIPT), mem_server.url],
        input=json.dumps(prompt).encode(),
        env=environment,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0 and json.loads(done.stdout) == {}, done.stderr
    assert not (mem_server.base_dir / "spool.jsonl").exists()
    rows = db_rows(mem_server.db_path, "SELECT event_type FROM event_log WHERE session_id = ?",
                   ["by-arg"])  # fmt: skip
    assert rows == [{"event_type": "UserPromptSubmit"}]


def _fresh(n: int) -> str:
    return os.urandom(n).hex()[:n] + "Q7"


def test_secrets_are_redacted_before_they_are_spooled(tmp_path: Path, repo: Repo) -> None:
    """Value by value, with the server's own rules, loaded by `python -S` from the package."""
    password, token, key_body = _fresh(16), "gh" + "p_" + _fresh(34), _fresh(60)
    pem = f"-----BEGIN {'OPENSSH PRIVATE'} KEY-----\n{key_body}\n"  # cut short, as `head` does
    read = {"type": "text", "file": {"filePath": f"{repo.main}/.env", "content":
            f"# local\npassword = {password}\nGITHUB_TOKEN={token}\n"}}  # fmt: skip
    event = load("PostToolUse-Read.json", cwd=str(repo.main), tool_response=read,
                 tool_input={"file_path": f"{repo.main}/.env", "api_key": _fresh(20)})  # fmt: skip
    prompt = load("UserPromptSubmit.json", cwd=str(repo.main), prompt="my key:\n" + pem)
    url = f"http://127.0.0.1:{free_port()}"
    for payload in (event, prompt):
        done = run_script(payload, url=url, base_dir=tmp_path)
        assert done.returncode == 0 and done.stderr == b""
    raw = (tmp_path / "spool.jsonl").read_bytes()
    for secret in (password, token, key_body, event["tool_input"]["api_key"]):
        assert secret.encode() not in raw
    first, second = spooled(tmp_path)
    content = first["payload"]["tool_response"]["file"]["content"]
    assert content == (
        "# local\npassword = [REDACTED:password]\nGITHUB_TOKEN=[REDACTED:github_token]\n"
    )
    assert first["payload"]["tool_input"]["api_key"] == "[REDACTED:secret]"
    assert first["payload"]["cwd"] == str(repo.main)  # where it came from stays as it was
    assert second["payload"]["prompt"] == "my key:\n[REDACTED:private_key]"


def test_an_event_is_not_spooled_when_the_rules_cannot_be_loaded(tmp_path: Path) -> None:
    """A copy of the script away from its package must not spool secrets in clear."""
    alone = tmp_path / "alone" / "hook_script.py"
    alone.parent.mkdir()
    alone.write_bytes(SCRIPT.read_bytes())
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAUDE_MEM_")}
    env.update(CLAUDE_MEM_URL=f"http://127.0.0.1:{free_port()}", CLAUDE_MEM_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-S", str(alone)], env=env, capture_output=True,
                          input=json.dumps(load("Stop.json")).encode(), timeout=60)  # fmt: skip
    assert done.returncode == 0
    assert b"redaction rules" in done.stderr
    assert not (tmp_path / "spool.jsonl").exists()


def test_a_spool_made_loose_is_made_private(tmp_path: Path) -> None:
    base = tmp_path / "loose"
    base.mkdir(mode=0o755)
    os.chmod(base, 0o755)
    (base / "spool.jsonl").write_bytes(b"")
    os.chmod(base / "spool.jsonl", 0o644)
    done = run_script(load("Stop.json"), url=f"http://127.0.0.1:{free_port()}", base_dir=base)
    assert done.returncode == 0
    assert base.stat().st_mode & 0o777 == 0o700
    assert (base / "spool.jsonl").stat().st_mode & 0o777 == 0o600
    assert len(spooled(base)) == 1
