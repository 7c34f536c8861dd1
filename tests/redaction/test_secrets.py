"""No secret and no <private> text reaches the memory's files, whatever route it came by.

A corpus of real-shaped fake secrets (made at run time, random each run, so no real-looking
secret sits in this file) is posted through every route that stores text; then the raw
bytes of the database file, its -wal file and the logs directory are searched for each
secret's random part, before and after a `PRAGMA wal_checkpoint(TRUNCATE)`.
"""

from __future__ import annotations

import base64
import json
import os
import random
import sqlite3
import string
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from corpus import ALNUM, Secret, _b64url, _rand
from datasette.app import Datasette
from helpers import api_call
from payloads import load

from datasette_claude_mem.names import HOOK_SCRIPT


def make_secrets(seed: int) -> list[Secret]:
    rng = random.Random(seed)
    r = lambda n, a=ALNUM: _rand(rng, n, a)  # noqa: E731
    upper = string.ascii_uppercase + string.digits
    out = []

    def add(kind: str, text: str, *needles: str) -> None:
        out.append(Secret(kind, text, list(needles)))

    body = r(93, ALNUM + "-_")
    add("anthropic", "sk-" + "ant-" + "api03-" + body + "AA", body)
    body = r(48, ALNUM + "-_")
    add("openai_project", "sk-" + "proj-" + body, body)
    body = r(48)
    add("openai_classic", "sk-" + body, body)
    body = r(16, upper)
    add("aws_access_key", "AK" + "IA" + body, "AKIA" + body)
    body = r(40, ALNUM + "+/")
    add("aws_secret_key", "aws_secret_access_key = " + body, body)
    body = r(36)
    add("github_classic", "gh" + "p_" + body, body)
    body = r(22) + "_" + r(59)
    add("github_fine_grained", "github" + "_pat_" + body, body)
    body = r(20, ALNUM + "-_")
    add("gitlab", "gl" + "pat-" + body, body)
    body = "-".join([r(12, string.digits), r(13, string.digits), r(24)])
    add("slack_bot", "xo" + "xb-" + body, body)
    body = r(35, ALNUM + "-_")
    add("google", "AI" + "za" + body, body)
    body = r(24)
    add("stripe_live", "sk" + "_live_" + body, body)
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = _b64url(json.dumps({"sub": r(16), "exp": 1900000000}).encode())
    signature = _b64url(rng.randbytes(32))
    add("jwt", f"{header}.{claims}.{signature}", claims, signature)
    lines = [base64.b64encode(rng.randbytes(48)).decode() for _ in range(12)]
    pem_head = "-----BEGIN " + "RSA PRIVATE" + " KEY-----"
    pem_tail = "-----END " + "RSA PRIVATE" + " KEY-----"
    add("pem", "\n".join([pem_head, *lines, pem_tail]), *lines)
    body = r(40, ALNUM + "-._~")
    add("bearer_header", "Authorization: " + "Bearer " + body, body)
    body = r(18)
    add("password_assignment", "password=" + body, body)
    body = r(20)
    add("url_credentials", "postgres://orders_app:" + body + "@db.internal:5432/orders", body)
    body = "home address is " + r(14) + " and my PIN " + r(10, string.digits)
    add("private_block", "<private>" + body + "</private>", body)
    return out


# Random each run; a failure names its seed, and TEST_SECRETS_SEED=N repeats that run.
SEED = int(os.environ.get("TEST_SECRETS_SEED") or random.SystemRandom().randrange(2**32))
SECRETS = make_secrets(SEED)


def blob(secrets: list[Secret] = SECRETS) -> str:
    """Every secret, in the places they turn up in tool output, commands and prompts."""
    by = {s.kind: s.text for s in secrets}
    return "\n".join(
        [
            "$ cat .env",
            f"ANTHROPIC_API_KEY={by['anthropic']}",
            f"OPENAI_API_KEY={by['openai_project']}",
            f'openai.api_key = "{by["openai_classic"]}"',
            "[default]",
            f"aws_access_key_id = {by['aws_access_key']}",
            by["aws_secret_key"],
            f"GITHUB_TOKEN={by['github_classic']}",
            f"git clone https://{by['github_fine_grained']}@github.com/acme/api.git",
            f"CI_JOB_TOKEN: {by['gitlab']}",
            f"SLACK_BOT_TOKEN={by['slack_bot']}",
            f'const mapsKey = "{by["google"]}";',
            f"STRIPE_SECRET_KEY={by['stripe_live']}",
            f'{{"id_token": "{by["jwt"]}"}}',
            by["pem"],
            f'curl -H "{by["bearer_header"]}" https://api.acme.dev/v1/orders',
            f"db {by['password_assignment']}",
            f"DATABASE_URL={by['url_credentials']}",
            f"Note to self: {by['private_block']} (do not store)",
        ]
    )


def needles(secrets: list[Secret] = SECRETS) -> list[str]:
    return [n for s in secrets for n in s.needles]


def test_the_corpus_is_sound() -> None:
    text = blob()
    for secret in SECRETS:
        assert secret.text in text
        for needle in secret.needles:
            assert len(needle) >= 10 and needle in text
    assert len({s.kind for s in SECRETS}) == len(SECRETS) == 17


# Searching the files


def memory_files(db_path: Path, log_dir: Path | None) -> list[Path]:
    files = [p for p in db_path.parent.iterdir() if p.name.startswith(db_path.name)]
    if log_dir is not None and log_dir.exists():
        files += [p for p in log_dir.rglob("*") if p.is_file()]
    return files


def leaks(files: list[Path], secrets: list[Secret] = SECRETS) -> list[str]:
    """'<kind> in <file>' for every secret whose random part is in any of the files."""
    found = []
    for path in files:
        data = path.read_bytes()
        for secret in secrets:
            for needle in secret.needles:
                forms = {needle, json.dumps(needle)[1:-1]}
                if any(form.encode("utf-8") in data for form in forms):
                    found.append(f"{secret.kind} in {path.name}")
                    break
    return sorted(set(found))


def checkpoint(db_path: Path) -> None:
    conn = sqlite3.connect(db_path)
    try:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0
    finally:
        conn.close()


def assert_no_leaks(db_path: Path, log_dir: Path | None = None) -> None:
    """Before and after folding the WAL into the file, no secret in any of them."""
    wal = db_path.with_name(db_path.name + "-wal")
    assert leaks(memory_files(db_path, log_dir)) == [], f"TEST_SECRETS_SEED={SEED}"
    checkpoint(db_path)
    assert not wal.exists() or wal.stat().st_size == 0
    assert leaks(memory_files(db_path, log_dir)) == [], f"TEST_SECRETS_SEED={SEED}"


# Every route, one at a time, in process


def _hook_events(session_id: str, cwd: str, text: str) -> list[dict[str, Any]]:
    events = [
        load("SessionStart.json", session_id=session_id, cwd=cwd, source=text),
        load("UserPromptSubmit.json", session_id=session_id, cwd=cwd, prompt=text),
        load(
            "PostToolUse-Bash.json",
            session_id=session_id,
            cwd=cwd,
            tool_input={"command": text, "description": text, "env": {"API_KEY": text}},
            tool_response={"stdout": text, "stderr": text, "interrupted": False},
        ),
        load(
            "PostToolUse-Write.json",
            session_id=session_id,
            cwd=cwd,
            tool_input={"file_path": f"{cwd}/.env", "content": text},
            tool_response=text,
            tool_use_id="toolu_write_secret",
        ),
        load("Notification.json", session_id=session_id, cwd=cwd, message=text),
        load("PreCompact.json", session_id=session_id, cwd=cwd, custom_instructions=text),
        load("SubagentStop.json", session_id=session_id, cwd=cwd, last_message=text),
        load("Stop.json", session_id=session_id, cwd=cwd, last_message=text),
        load("SessionEnd.json", session_id=session_id, cwd=cwd, reason=text),
    ]
    unknown = load("Stop.json", session_id=session_id, cwd=cwd, hook_event_name="Future")
    unknown["anything"] = {"nested": [text]}
    return [*events, unknown]


async def _post_ok(ds: Datasette, token: str, method: str, path: str, body: Any) -> dict:
    response = await api_call(ds, method, path, body, token=token)
    assert response.status_code in (200, 201), (path, response.text[:300])
    return response.json()


async def _start(ds: Datasette, token: str, project_dir: Path, session_id: str = "s") -> None:
    await _post_ok(
        ds, token, "POST", "/sessions", {"id": session_id, "project_dir": str(project_dir)}
    )


async def route_hooks(ds: Datasette, token: str, project_dir: Path, text: str) -> None:
    for payload in _hook_events("hooked", str(project_dir), text):
        await _post_ok(ds, token, "POST", "/hooks", payload)


async def route_observations(ds: Datasette, token: str, project_dir: Path, text: str) -> None:
    await _start(ds, token, project_dir)
    body = {"session_id": "s", "tool_name": "Bash", "title": text, "summary": text, "detail": text}
    await _post_ok(ds, token, "POST", "/observations", body)


async def route_queue(ds: Datasette, token: str, project_dir: Path, text: str) -> None:
    await _start(ds, token, project_dir)
    body = {
        "session_id": "s",
        "tool_name": "Bash",
        "tool_input": {"command": text, "headers": {"Authorization": text}, "password": text},
        "raw_output": text,
    }
    await _post_ok(ds, token, "POST", "/queue", body)
    claimed = await _post_ok(ds, token, "POST", "/queue/claim", {"worker": "w"})
    item = claimed["rows"][0]["id"]
    await _post_ok(ds, token, "POST", f"/queue/{item}/fail", {"worker": "w", "error": text})
    await _post_ok(ds, token, "POST", "/queue/retry", {"dead_letters": True})
    await _post_ok(ds, token, "POST", "/queue/claim", {"worker": "w"})
    observation = {"session_id": "s", "tool_name": "Bash", "title": text, "summary": text}
    done = {"worker": "w", "observation": observation}
    await _post_ok(ds, token, "POST", f"/queue/{item}/complete", done)


async def route_learnings(ds: Datasette, token: str, project_dir: Path, text: str) -> None:
    body = {"category": "gotcha", "content": text, "project": str(project_dir)}
    made = await _post_ok(ds, token, "POST", "/learnings", body)
    edit = {"content": "Edited: " + text}
    await _post_ok(ds, token, "PATCH", f"/learnings/{made['row']['id']}", edit)


async def route_events(ds: Datasette, token: str, project_dir: Path, text: str) -> None:
    await _start(ds, token, project_dir)
    body = {"event_type": "Custom", "session_id": "s", "data": {"text": text, "list": [text]}}
    await _post_ok(ds, token, "POST", "/events", body)


async def route_session_start_summary(
    ds: Datasette, token: str, project_dir: Path, text: str
) -> None:
    body = {"id": "s", "project_dir": str(project_dir), "summary": text}
    await _post_ok(ds, token, "POST", "/sessions", body)


async def route_session_close_summary(
    ds: Datasette, token: str, project_dir: Path, text: str
) -> None:
    await _start(ds, token, project_dir)
    await _post_ok(ds, token, "POST", "/sessions/s/close", {"summary": text})


async def route_functions(ds: Datasette, token: str, project_dir: Path, text: str) -> None:
    await _start(ds, token, project_dir)
    function = {"qualified_name": "connect", "kind": "function", "signature": text,
                "docstring": text, "body_hash": "h1"}  # fmt: skip
    body = {"session_id": "s", "file_path": "src/db.py", "functions": [function]}
    await _post_ok(ds, token, "POST", "/functions", body)


ROUTES = [
    pytest.param(route_hooks, id="hooks-every-event"),
    pytest.param(route_observations, id="observations"),
    pytest.param(route_queue, id="queue-enqueue-fail-complete"),
    pytest.param(route_learnings, id="learnings-create-update"),
    pytest.param(route_events, id="events"),
    pytest.param(route_session_start_summary, id="sessions-summary"),
    pytest.param(route_session_close_summary, id="sessions-close-summary"),
    pytest.param(route_functions, id="functions"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize("route", ROUTES)
async def test_no_route_stores_a_secret(
    route, ds: Datasette, token: str, memory_path: Path, tmp_path: Path
) -> None:
    project_dir = tmp_path / "repo"
    (project_dir / ".git").mkdir(parents=True)
    await route(ds, token, project_dir, blob())
    assert_no_leaks(memory_path, memory_path.parent / "logs")


@pytest.mark.asyncio
async def test_what_is_stored_says_what_was_there(
    ds: Datasette, token: str, tmp_path: Path
) -> None:
    """Redaction leaves markers naming each kind, and the text around the secrets."""
    project_dir = tmp_path / "repo"
    (project_dir / ".git").mkdir(parents=True)
    await route_hooks(ds, token, project_dir, blob())
    db = ds.get_database("claude-mem")
    [prompt] = (
        await db.execute(
            "SELECT json_extract(data, '$.prompt') FROM event_log "
            "WHERE event_type = 'UserPromptSubmit'"
        )
    ).rows
    stored = prompt[0]
    for kind in ("anthropic_key", "openai_key", "aws_access_key", "aws_secret_key",
                 "github_token", "gitlab_token", "slack_token", "google_api_key", "stripe_key",
                 "jwt", "private_key", "bearer_token", "password", "url_password"):  # fmt: skip
        assert f"[REDACTED:{kind}]" in stored, kind
    assert "[private]" in stored
    assert "DATABASE_URL=postgres://orders_app:" in stored
    assert "https://api.acme.dev/v1/orders" in stored


# Everything at once, over a real server, its hook script and its spool


def _run_hook_script(server, payload: dict[str, Any]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAUDE_MEM_")}
    env.update(CLAUDE_MEM_URL=server.url, CLAUDE_MEM_TOKEN=server.token,
               CLAUDE_MEM_DIR=str(server.base_dir))  # fmt: skip
    env["CLAUDE_MEM_AUTOSTART"] = "0"  # a server that is down stays down: the hook spools
    done = subprocess.run(
        [sys.executable, "-S", str(HOOK_SCRIPT)],
        input=json.dumps(payload).encode(),
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def _wait_for_the_worker(db_path: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while True:
        conn = sqlite3.connect(db_path)
        try:
            waiting = conn.execute(
                "SELECT count(*) FROM pending_queue WHERE status IN ('raw', 'processing')"
            ).fetchone()[0]
        finally:
            conn.close()
        if waiting == 0:
            return
        assert time.monotonic() < deadline, f"{waiting} queue items never compressed"
        time.sleep(0.1)


def test_a_real_server_its_worker_and_its_spool_keep_no_secret(
    mem_server_factory, tmp_path: Path
) -> None:
    mem_server = mem_server_factory(worker=True)  # observations are made from the queue too
    project_dir = tmp_path / "repo"
    (project_dir / ".git").mkdir(parents=True)
    text = blob()
    for payload in _hook_events("over-http", str(project_dir), text):
        assert mem_server.hook(payload).status_code == 200
    body = {"category": "gotcha", "content": text, "project": str(project_dir)}
    assert mem_server.request("POST", "/-/claude-mem/learnings", json=body).status_code == 201

    # Stopped only once its worker is idle: a batch it held would stay leased (5 min) and
    # outlast the wait for the restarted server's worker below.
    _wait_for_the_worker(mem_server.db_path)
    mem_server.stop()  # the command hook spools what it cannot send
    for payload in _hook_events("spooled", str(project_dir), text):
        _run_hook_script(mem_server, payload)
    spool = mem_server.base_dir / "spool.jsonl"
    assert spool.stat().st_mode & 0o077 == 0  # private while it holds them
    mem_server.start()  # takes the spool in, and removes it

    rows = mem_server.request(
        "GET", "/claude-mem/event_log.json?_shape=array&session_id=spooled&_size=max"
    ).json()
    assert len(rows) == len(_hook_events("x", "y", "z"))
    assert [p.name for p in mem_server.base_dir.iterdir() if p.name.startswith("spool")] == []
    _wait_for_the_worker(mem_server.db_path)
    conn = sqlite3.connect(mem_server.db_path)
    try:
        assert conn.execute("SELECT count(*) FROM observations").fetchone()[0] >= 2
    finally:
        conn.close()
    files = memory_files(mem_server.db_path, mem_server.base_dir / "logs")
    files.append(mem_server.log_path)  # the server's own output
    assert leaks(files) == [], f"TEST_SECRETS_SEED={SEED}"
    mem_server.stop()
    checkpoint(mem_server.db_path)
    after = memory_files(mem_server.db_path, mem_server.base_dir / "logs")
    assert leaks(after) == [], f"TEST_SECRETS_SEED={SEED}"
