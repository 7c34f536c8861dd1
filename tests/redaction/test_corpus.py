"""Secrets never stored: a corpus of real-shaped secrets through every Claude Code event shape.

The corpus (corpus.py, fresh values each run) goes through each event that carries text, in
the fields Claude Code really fills (prompts; tool_input and tool_response of Read, Bash,
Edit, MultiEdit, Write, Grep, WebFetch and an MCP tool; PostToolUseFailure's error; Stop's
last_assistant_message; compact summaries), and is then looked for in the database file, its
-wal and -shm, the spool, observations the worker made, the context, the pages and search
results. Ordinary text that only looks like secrets must come back as it went in.
"""

from __future__ import annotations

import json
import re
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest
from corpus import SEED, Secret, blob, make_corpus, ordinary
from datasette.app import Datasette
from helpers import api_call, db_rows, mcp_client
from payloads import load
from test_secrets import (
    ROUTES,
    _run_hook_script,
    _wait_for_the_worker,
    checkpoint,
    leaks,
    memory_files,
)

from datasette_claude_mem.claude_code.events import handle_hook
from datasette_claude_mem.names import PREFIX
from datasette_claude_mem.redaction.keys import marker
from datasette_claude_mem.redaction.redactor import DEFAULT, redact, redact_value
from datasette_claude_mem.redaction.scrub import Scrubber
from datasette_claude_mem.worker.session_summary import SUMMARY_TOOL

CORPUS = make_corpus()
ORDINARY = ordinary()
RUN = f"TEST_SECRETS_SEED={SEED}"


def test_the_corpus_is_sound() -> None:
    kinds = [s.kind for s in CORPUS]
    assert len(set(kinds)) == len(kinds) >= 60
    for secret in CORPUS:
        assert secret.needles, secret.kind
        for needle in secret.needles:
            assert len(needle) >= 10 and needle in secret.text, secret.kind
    assert make_corpus(SEED + 1)[0].needles != CORPUS[0].needles  # fresh values each seed


def test_every_kind_is_redacted_and_ordinary_text_survives(record_property) -> None:
    leaked = [s.kind for s in CORPUS if any(n in redact(s.text) for n in s.needles)]
    changed = [name for name, text in ORDINARY if redact(text) != text]
    report = (
        f"secrets: {len(CORPUS) - len(leaked)} of {len(CORPUS)} kinds redacted; "
        f"ordinary texts: {len(ORDINARY) - len(changed)} of {len(ORDINARY)} unchanged"
    )
    record_property("redaction", report)
    print(report)
    assert leaked == [], (report, leaked, RUN)
    assert changed == [], (report, changed)


def test_the_hook_scripts_engine_redacts_exactly_as_the_server() -> None:
    """The stdlib engine (no RE2 gate) is what the command hook script spools with."""
    plain = Scrubber()
    for text in [s.text for s in CORPUS] + [t for _, t in ORDINARY] + [blob(CORPUS)]:
        assert plain.text(text) == DEFAULT.text(text), text[:200]


def test_one_scan_of_a_text_is_a_scan_of_each_of_its_lines() -> None:
    """Bar the multi-line shapes (PEM blocks, .netrc), every rule stops at a line break."""
    multi_line = ("pem", "openssh", "pgp", "netrc")
    lines = blob([s for s in CORPUS if not s.kind.startswith(multi_line)]).split("\n")
    assert redact("\n".join(lines)) == "\n".join(redact(line) for line in lines)


def test_values_are_redacted_not_their_json_encoding() -> None:
    """The root of the old leak: a line after an escaped newline in a tool response."""
    # With a digit, so it never reads as a variable name (`password = api_token` is code).
    secret = CORPUS[0].needles[0][:15] + "7"
    response = {"stdout": f"a\npassword = {secret}\n", "interrupted": False}
    assert redact_value(response) == {
        "stdout": f"a\npassword = {marker('password')}\n",
        "interrupted": False,
    }


def test_a_secret_named_key_takes_its_value_whatever_it_looks_like() -> None:
    value = {
        "webhookSigningToken": "plain words, no shape at all",
        "credentials": {"user": "deploy", "pass": "x"},
        "dsn": "postgres://db.internal/orders",
        "pin_password": 48213907,
        "max_tokens": 4096,
        "auth": True,
        "api_key": "$API_KEY",
        "token_count": 12,
        "password_reset_url": "https://acme.dev/reset",
    }
    counts: dict[str, int] = {}
    assert DEFAULT.value(value, counts) == {
        "webhookSigningToken": marker("secret"),
        "credentials": {"user": marker("secret"), "pass": marker("secret")},
        "dsn": marker("secret"),
        "pin_password": marker("password"),
        "max_tokens": 4096,
        "auth": True,
        "api_key": "$API_KEY",
        "token_count": 12,
        "password_reset_url": "https://acme.dev/reset",
    }
    assert counts == {"secret": 4, "password": 1}


def test_the_lines_of_a_patch_are_scanned_as_one_text() -> None:
    pem = next(s for s in CORPUS if s.kind == "pem-rsa")
    patch = {"lines": [" import os", *("+" + line for line in pem.text.split("\n")), " x = 1"]}
    out = redact_value({"structuredPatch": [patch]})
    lines = [" import os", "+" + marker("private_key"), " x = 1"]
    assert out == {"structuredPatch": [{"lines": lines}]}
    # Each line alone would not do: only the first names a key.
    assert any(n in json.dumps([redact(line) for line in patch["lines"]]) for n in pem.needles)


def test_a_token_alone_on_a_line_of_a_diff_is_redacted_as_it_is_alone() -> None:
    """A token file edited: "-ghp_..." on a removed line is a token after a diff mark."""
    tried = 0
    for secret in CORPUS:
        for needle in secret.needles:
            token = re.search(rf"[^\s=:\"',]*{re.escape(needle)}[^\s\"',;]*", secret.text)[0]
            if needle in redact(token):
                continue  # a bare value no rule can know without its key
            tried += 1
            for line in ("-" + token, "+" + token, " " + token):
                assert needle not in redact(f"@@ -1 +1 @@\n{line}\n"), (secret.kind, line)
    assert tried >= 20


def test_a_key_begun_and_not_ended_is_redacted_to_the_end() -> None:
    head = next(s for s in CORPUS if s.kind == "pem-head-5")
    text = "$ head -5 deploy.pem\n" + head.text + "\nand whatever follows it"
    assert redact(text) == "$ head -5 deploy.pem\n" + marker("private_key")


# Every Claude Code event shape that carries text


def claude_code_events(session_id: str, cwd: str, text: str) -> list[dict[str, Any]]:
    """One event of each shape, the text in every field Claude Code fills with content."""
    lines = text.split("\n")
    common = {"session_id": session_id, "cwd": cwd}

    def tool(file: str, tool_name: str, tool_input: Any, response: Any, n: int):
        return load(file, **common, tool_name=tool_name, tool_input=tool_input,
                    tool_response=response, tool_use_id=f"toolu_{session_id}_{n}")  # fmt: skip

    edit = {"file_path": f"{cwd}/.env", "old_string": text, "new_string": text}
    changed = ["-" + line for line in lines] + ["+" + line for line in lines]
    n = len(lines)
    patch = [{"oldStart": 1, "oldLines": n, "newStart": 1, "newLines": n, "lines": changed}]
    events = [
        load("SessionStart.json", **common),
        load("UserPromptSubmit.json", **common, prompt=text),
        {
            **tool("PostToolUse-Bash.json", "Bash", {"command": text}, None, 0),
            "hook_event_name": "PreToolUse",
        },  # fmt: skip
        tool(
            "PostToolUse-Read.json",
            "Read",
            {"file_path": f"{cwd}/.env"},
            {
                "type": "text",
                "file": {
                    "filePath": f"{cwd}/.env",
                    "content": text,
                    "numLines": len(lines),
                    "startLine": 1,
                },
            },
            1,
        ),  # fmt: skip
        tool(
            "PostToolUse-Bash.json",
            "Bash",
            {"command": text, "description": text},
            {"stdout": text, "stderr": text, "interrupted": False},
            2,
        ),  # fmt: skip
        tool(
            "PostToolUse-Edit.json",
            "Edit",
            edit,
            {
                "filePath": f"{cwd}/.env",
                "oldString": text,
                "newString": text,
                "originalFile": text,
                "structuredPatch": patch,
            },
            3,
        ),  # fmt: skip
        tool(
            "PostToolUse-MultiEdit.json",
            "MultiEdit",
            {"file_path": f"{cwd}/a.py", "edits": [{"old_string": text, "new_string": text}]},
            {
                "filePath": f"{cwd}/a.py",
                "edits": [{"old_string": text, "new_string": text}],
                "originalFileContents": text,
                "structuredPatch": patch,
            },
            4,
        ),  # fmt: skip
        tool(
            "PostToolUse-Write.json",
            "Write",
            {"file_path": f"{cwd}/.env", "content": text},
            {
                "type": "create",
                "filePath": f"{cwd}/.env",
                "content": text,
                "structuredPatch": patch,
            },
            5,
        ),  # fmt: skip
        tool(
            "PostToolUse-Grep.json",
            "Grep",
            {"pattern": "KEY", "output_mode": "content"},
            {
                "mode": "content",
                "numFiles": 1,
                "filenames": [f"{cwd}/.env"],
                "content": text,
                "numLines": len(lines),
            },
            6,
        ),  # fmt: skip
        tool(
            "PostToolUse-Bash.json",
            "WebFetch",
            {"url": "https://docs.acme.dev/setup", "prompt": text},
            {
                "bytes": len(text),
                "code": 200,
                "codeText": "OK",
                "result": text,
                "url": "https://docs.acme.dev/setup",
            },
            7,
        ),  # fmt: skip
        tool(
            "PostToolUse-mcp.json",
            "mcp__vault__read_secret",
            {"path": "kv/ci", "note": text},
            [{"type": "text", "text": text}],
            8,
        ),  # fmt: skip
        {
            **load(
                "PostToolUse-Bash.json",
                **common,
                tool_input={"command": text},
                tool_use_id=f"toolu_{session_id}_9",
            ),
            "hook_event_name": "PostToolUseFailure",
            "error": text,
            "is_interrupt": False,
        },  # noqa
        load("Notification.json", **common, message=text),
        load("PreCompact.json", **common, custom_instructions=text),
        {
            **load("PreCompact.json", **common),
            "hook_event_name": "PostCompact",
            "compact_summary": text,
        },  # fmt: skip
        load("SubagentStop.json", **common, last_assistant_message=text),
        load("Stop.json", **common, last_assistant_message=text),
        load("SessionEnd.json", **common),
    ]
    for event in events:
        if event["hook_event_name"] != "PostToolUse":
            event.pop("tool_response", None)  # PreToolUse and failures have none
    return events


def test_every_event_shape_is_covered() -> None:
    events = claude_code_events("s", "/r", "TEXT")
    names = {e["hook_event_name"] for e in events}
    tools = {e.get("tool_name") for e in events if e["hook_event_name"] == "PostToolUse"}
    assert {"UserPromptSubmit", "PreToolUse", "PostToolUse", "PostToolUseFailure", "Stop",
            "SubagentStop", "PreCompact", "PostCompact", "Notification"} <= names  # fmt: skip
    assert {"Read", "Bash", "Edit", "MultiEdit", "Write", "Grep", "WebFetch"} <= tools
    assert any(t.startswith("mcp__") for t in tools)
    assert all("TEXT" in json.dumps(e) for e in events if e["hook_event_name"] not in
               ("SessionStart", "SessionEnd"))  # fmt: skip


def _repo(tmp_path: Path) -> Path:
    project_dir = tmp_path / "repo"
    (project_dir / ".git").mkdir(parents=True)
    return project_dir


def _text_leaks(text: str, where: str, secrets: list[Secret] = CORPUS) -> list[str]:
    return [f"{s.kind} in {where}" for s in secrets if any(n in text for n in s.needles)]


async def _get(ds: Datasette, path: str, token: str) -> str:
    response = await ds.client.get(path, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, (path, response.text[:300])
    return response.text


@pytest.mark.asyncio
async def test_no_event_shape_stores_a_secret(
    ds: Datasette, token: str, memory_path: Path, tmp_path: Path
) -> None:
    project_dir = _repo(tmp_path)
    text = blob(CORPUS)
    events = claude_code_events("shapes", str(project_dir), text)
    for payload in events:
        response = await api_call(ds, "POST", "/hooks", payload, token=token)
        assert response.status_code == 200, response.text[:300]

    found = leaks(memory_files(memory_path, memory_path.parent / "logs"), CORPUS)
    conn = sqlite3.connect(memory_path)
    try:
        rows = conn.execute("SELECT event_type, data FROM event_log ORDER BY created_at").fetchall()
        # The tool uses' payloads; Stop's summary item holds the (redacted) last message.
        payloads = conn.execute(
            "SELECT p.raw_output, p.tool_input FROM pending_payloads p "
            "JOIN pending_queue q ON q.id = p.item_id WHERE q.tool_name != ?",
            [SUMMARY_TOOL],
        ).fetchall()
    finally:
        conn.close()
    # What was taken is counted on each event row, by kind, and the text around it kept.
    per_row = [json.loads(data).get("redactions", {}) for _, data in rows]
    counted = {kind: json.loads(data).get("redactions", {}) for kind, data in rows}
    for event in ("UserPromptSubmit", "PostToolUse", "PostToolUseFailure", "Stop", "PostCompact"):
        assert counted[event].get("private_key", 0) >= 5, (event, counted[event])
    assert all(isinstance(n, int) and n > 0 for c in counted.values() for n in c.values())
    tool_events = [
        e for e in events if e["hook_event_name"] in ("PostToolUse", "PostToolUseFailure")
    ]
    assert len(payloads) == len(tool_events) == 9  # a failure's error is queued as its output
    assert all("DATABASE_URL=postgres://orders_app:" in raw for raw, _ in payloads)

    # The dashboard sums the counts by kind.
    totals: dict[str, int] = {}
    for c in per_row:
        for kind, n in c.items():
            totals[kind] = totals.get(kind, 0) + n
    dashboard = await _get(ds, PREFIX + "/", token)
    for kind, n in totals.items():
        events = sum(1 for c in per_row if kind in c)
        assert f'<dt>{kind}</dt><dd>{n:,} <span class="cm-muted">in {events} event' in dashboard
    assert f"{sum(totals.values()):,} in all." in dashboard

    # What a person reads: the pages, the context, the table views and searches.
    [(project,)] = (
        sqlite3.connect(memory_path)
        .execute("SELECT project FROM sessions WHERE id = 'shapes'")
        .fetchall()
    )
    for path in (
        PREFIX + "/",
        f"{PREFIX}/sessions/shapes",
        f"{PREFIX}/context-preview?project={project}",
        f"{PREFIX}/context?project={project}",
        "/claude-mem/event_log.json?_shape=array&_size=max",
        "/claude-mem/pending_payloads.json?_shape=array&_size=max",
        "/claude-mem/pending_queue.json?_shape=array&_size=max",
    ):
        found += _text_leaks(await _get(ds, path, token), path)
    assert found == [], RUN
    checkpoint(memory_path)
    assert leaks(memory_files(memory_path, memory_path.parent / "logs"), CORPUS) == [], RUN


@pytest.mark.asyncio
@pytest.mark.parametrize("route", ROUTES)
async def test_no_route_stores_a_secret_of_the_corpus(
    route, ds: Datasette, token: str, memory_path: Path, tmp_path: Path
) -> None:
    """Every JSON route that stores text: observations, queue, learnings, events, sessions'
    summaries, the function map and the hooks."""
    await route(ds, token, _repo(tmp_path), blob(CORPUS))
    assert leaks(memory_files(memory_path, memory_path.parent / "logs"), CORPUS) == [], RUN
    checkpoint(memory_path)
    assert leaks(memory_files(memory_path, memory_path.parent / "logs"), CORPUS) == [], RUN


def test_counts_never_hold_the_secret(store, tmp_path: Path) -> None:
    project_dir = _repo(tmp_path)
    secret = next(s for s in CORPUS if s.kind == "env-password")
    payload = load("UserPromptSubmit.json", session_id="c", cwd=str(project_dir),
                   prompt=secret.text + "\n" + secret.text)  # fmt: skip
    handle_hook(store, payload)
    [row] = store.db.execute("SELECT data FROM event_log WHERE session_id = 'c'").fetchall()
    data = json.loads(row[0])
    assert data["redactions"] == {"password": 2}
    assert data["prompt"] == f"DB_PASSWORD={marker('password')}\nDB_PASSWORD={marker('password')}"


# Over a real server: its worker's observations, its logs, and the command hook's spool


def test_a_real_server_its_worker_and_the_spool_keep_no_secret(
    mem_server_factory, tmp_path: Path
) -> None:
    mem_server = mem_server_factory(worker=True)  # observations are made from the queue too
    project_dir = _repo(tmp_path)
    text = blob(CORPUS)
    for payload in claude_code_events("over-http", str(project_dir), text):
        assert mem_server.hook(payload).status_code == 200

    # Stopped only once its worker is idle: a batch it held would stay leased (5 min) and
    # outlast the wait for the restarted server's worker below.
    _wait_for_the_worker(mem_server.db_path)
    mem_server.stop()  # the command hook spools what it cannot send: redacted
    spooled = claude_code_events("spooled", str(project_dir), text)
    for payload in spooled:
        _run_hook_script(mem_server, payload)
    spool = mem_server.base_dir / "spool.jsonl"
    assert stat.S_IMODE(spool.stat().st_mode) == 0o600
    assert stat.S_IMODE(spool.parent.stat().st_mode) == 0o700
    assert leaks([spool], CORPUS) == [], RUN
    assert len(spool.read_bytes().splitlines()) == len(spooled)

    mem_server.start()  # takes the spool in
    rows = mem_server.request(
        "GET", "/claude-mem/event_log.json?_shape=array&session_id=spooled&_size=max"
    ).json()
    assert len(rows) == len(spooled)
    # Counted alike whether the server or the command hook took them.
    by_session: dict[str, list] = {"over-http": [], "spooled": []}
    for row in db_rows(
        mem_server.db_path,
        "SELECT session_id, event_type, data FROM event_log "
        "WHERE session_id IN ('over-http', 'spooled') ORDER BY created_at, id",
    ):
        by_session[row["session_id"]].append(
            (row["event_type"], json.loads(row["data"]).get("redactions"))
        )  # fmt: skip
    assert by_session["spooled"] == by_session["over-http"]
    assert sum(bool(c) for _, c in by_session["spooled"]) >= 15
    _wait_for_the_worker(mem_server.db_path)
    observations = mem_server.request(
        "GET", "/claude-mem/observations.json?_shape=array&_size=max"
    ).json()
    assert len(observations) >= 8
    found = _text_leaks(json.dumps(observations), "observations")
    files = memory_files(mem_server.db_path, mem_server.base_dir / "logs")
    files.append(mem_server.log_path)  # before the searches below put the words in its log
    found += leaks(files, CORPUS)
    conn = sqlite3.connect(mem_server.db_path)
    try:  # the full-text indexes know none of the secrets' words, and do know the rest
        sql = "SELECT count(*) FROM observations_fts WHERE observations_fts MATCH 'postgres'"
        assert conn.execute(sql).fetchone()[0] > 0
        for s in CORPUS:
            for word in (n for n in s.needles if n.isalnum()):
                for fts in ("observations_fts", "learnings_fts"):
                    sql = f"SELECT count(*) FROM {fts} WHERE {fts} MATCH ?"
                    assert conn.execute(sql, [f'"{word}"']).fetchone()[0] == 0, (s.kind, RUN)
    finally:
        conn.close()
    assert found == [], RUN
    mem_server.stop()
    checkpoint(mem_server.db_path)
    assert leaks(memory_files(mem_server.db_path, mem_server.base_dir / "logs"), CORPUS) == [], RUN


ROW_ID = re.compile(r"^[→ ]*([0-9a-f-]{36}) · ", re.M)


@pytest.mark.asyncio
async def test_mcp_remember_and_answers_keep_no_secret(
    ds: Datasette, token: str, memory_path: Path, tmp_path: Path
) -> None:
    """The MCP tools: remember stores text; search, timeline, get and context answer with it."""
    project_dir = _repo(tmp_path)
    text = blob(CORPUS)
    for payload in claude_code_events("mcp", str(project_dir), text):
        assert (await api_call(ds, "POST", "/hooks", payload, token=token)).status_code == 200
    answers = []
    async with mcp_client(ds, token) as client:

        async def tool(name: str, **arguments: Any) -> str:
            result = await client.call_tool(name, arguments)
            assert not result.is_error, result.content[0].text[:300]
            answers.append(result.content[0].text)
            return answers[-1]

        for kind in ("note", "learning"):
            await tool("remember", text=text[:20_000], kind=kind, session_id="mcp")
        found = []
        for query in ("DATABASE_URL", "password", "token", "REDACTED", "postgres"):
            found += ROW_ID.findall(await tool("search", query=query, session_id="mcp"))
        assert found  # the searches do find the rows, redacted
        await tool("get", ids=sorted(set(found))[:20], session_id="mcp")
        await tool("timeline", session_id="mcp")
        await tool("context", session_id="mcp")
    leaked = [leak for answer in answers for leak in _text_leaks(answer, "an MCP answer")]
    assert leaked == [], RUN
    assert any("[REDACTED:" in answer for answer in answers)
    assert leaks(memory_files(memory_path, memory_path.parent / "logs"), CORPUS) == [], RUN
