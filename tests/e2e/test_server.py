"""A real `datasette claude-mem serve` process: token from the CLI, writes over HTTP, reads
through the stored queries, a row added with the sqlite-utils CLI while it runs, and the
sign-in link it prints."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from helpers import free_port, stop_process

BIN = Path(sys.executable).parent
START_TIMEOUT = 60.0


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Server:
    port: int
    base_dir: Path
    env: dict[str, str]
    output: Path
    proc: subprocess.Popen

    @property
    def db_path(self) -> Path:
        return self.base_dir / "claude-mem.db"

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data, headers=headers or {})
            response = conn.getresponse()
            return Answer(response.status, response.headers, response.read())
        finally:
            conn.close()

    def printed(self) -> str:
        return self.output.read_text(errors="replace")


def clean_env(base_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAUDE_MEM_", "DATASETTE_"))}
    # The in-server worker is off, so queue items stay as this test leaves them.
    env.update(CLAUDE_MEM_DIR=str(base_dir), CLAUDE_MEM_WORKER="0")
    return env


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for this module's tests (each writes under a project of its own)."""
    tmp_path = tmp_path_factory.mktemp("e2e")
    base_dir = tmp_path / "claude-mem"
    env = clean_env(base_dir)
    port = free_port()
    output = tmp_path / "serve.log"
    with output.open("wb") as log:
        proc = subprocess.Popen(
            [str(BIN / "datasette"), "claude-mem", "serve", "-p", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    running = Server(port, base_dir, env, output, proc)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the server exited at start:\n{running.printed()}")
            try:
                if running.request("GET", "/-/claude-mem/openapi.json").status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not answer in {START_TIMEOUT} s:\n{running.printed()}")
            time.sleep(0.05)
        yield running
    finally:
        stop_process(proc)


@pytest.fixture(scope="module")
def token(server: Server) -> str:
    """A token from `datasette claude-mem token`, run as a user would, beside the server."""
    result = subprocess.run(
        [str(BIN / "datasette"), "claude-mem", "token"],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    token = result.stdout.strip()
    assert token.startswith("dstok_"), result
    return token


def test_write_over_http_and_read_back(server: Server, token: str, tmp_path: Path):
    assert server.db_path.exists()
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def post(path: str, body: Any, expect: int = 201) -> dict:
        answer = server.request("POST", "/-/claude-mem" + path, body, auth)
        assert answer.status == expect, (path, answer.status, answer.body[:500])
        return answer.json()

    def query(name: str, **params: str) -> list[dict]:
        path = f"/claude-mem/{name}.json"
        if params:
            path += "?" + urlencode(params)
        answer = server.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        assert answer.status == 200, (name, answer.status, answer.body[:500])
        return answer.json()["rows"]

    project_dir = tmp_path / "repo"
    (project_dir / ".git").mkdir(parents=True)
    session = post("/sessions", {"id": "e2e-1", "project_dir": str(project_dir)})["row"]
    project = session["project"]
    assert project == str(project_dir.resolve())
    post("/sessions", {"id": "e2e-1", "project_dir": str(project_dir)}, expect=200)

    for title in ("Tokenizer rewritten", "Benchmarks added"):
        post(
            "/observations",
            {"session_id": "e2e-1", "tool_name": "Edit", "title": title, "summary": title},
        )
    for tool_use_id in ("tu-1", "tu-2", "tu-3"):
        post(
            "/queue",
            {"session_id": "e2e-1", "tool_use_id": tool_use_id, "tool_name": "Read",
             "raw_output": "x" * 100},
        )  # fmt: skip
    post("/queue", {"session_id": "e2e-1", "tool_use_id": "tu-1", "tool_name": "Read"}, 200)
    post(
        "/learnings",
        {"category": "gotcha", "content": "The tokenizer needs a flush", "project": project},
    )

    sessions = query("recent_sessions", project=project)
    assert [(s["id"], s["observation_count"]) for s in sessions] == [("e2e-1", 2)]
    hits = query("search_memory", q="tokenizer", project=project)
    assert {(h["kind"], h["title"]) for h in hits} == {
        ("observation", "Tokenizer rewritten"),
        ("learning", "gotcha"),
    }
    (stats,) = query("queue_stats", project=project)
    assert stats["waiting"] == 3 and stats["done"] == 0
    timeline = query("session_timeline", session_id="e2e-1")
    assert sorted(r["kind"] for r in timeline) == ["observation"] * 2 + ["tool_use"] * 3

    # A row added by hand, with the sqlite-utils CLI, while the server runs.
    row = tmp_path / "learning.json"
    row.write_text(
        json.dumps({"category": "convention", "content": "Hand-written tokenizer note",
                    "project": project, "confidence": 0.6})
    )  # fmt: skip
    subprocess.run(
        [str(BIN / "sqlite-utils"), "insert", str(server.db_path), "learnings", str(row)],
        env=server.env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    learnings = query("active_learnings", project=project)
    by_content = {r["content"]: r for r in learnings}
    assert set(by_content) == {"The tokenizer needs a flush", "Hand-written tokenizer note"}
    by_hand = by_content["Hand-written tokenizer note"]
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", by_hand["id"]
    )
    assert by_hand["created_at"].endswith("Z")
    hits = query("search_memory", q="hand written", project=project)
    assert [h["kind"] for h in hits] == ["learning"]

    # The hand-written learning can be changed through the API like any other.
    answer = server.request(
        "PATCH", f"/-/claude-mem/learnings/{by_hand['id']}", {"confidence": 0.9}, auth
    )
    assert answer.status == 200, answer.body
    assert answer.json()["row"]["confidence"] == 0.9


def test_the_sign_in_link_works(server: Server):
    match = re.search(r"http://\S+/-/auth-token\?token=\w+", server.printed())
    assert match, server.printed()
    link = urlsplit(match.group(0))
    assert link.port == server.port

    # Without signing in, the memory is private.
    assert server.request("GET", "/claude-mem").status == 403
    assert server.request("GET", "/claude-mem/sessions.json").status == 403

    answer = server.request("GET", f"{link.path}?{link.query}")
    assert answer.status in (301, 302, 303, 307), answer.body[:300]
    cookies = answer.headers.get_all("Set-Cookie") or []
    actor = next((c for c in cookies if c.startswith("ds_actor=")), None)
    assert actor, cookies
    cookie = actor.split(";", 1)[0]

    signed_in = server.request("GET", "/claude-mem", headers={"Cookie": cookie})
    assert signed_in.status == 200, signed_in.body[:300]
    assert b"sessions" in signed_in.body
    actor_json = server.request("GET", "/-/actor.json", headers={"Cookie": cookie})
    assert actor_json.json()["actor"]["id"] == "root"
    # The link signs in once.
    again = server.request("GET", f"{link.path}?{link.query}")
    assert again.status == 403 or b"ds_actor" not in str(again.headers).encode()


def test_the_server_refuses_other_hosts_and_cross_site_writes(server: Server, token: str):
    auth = {"Authorization": f"Bearer {token}"}
    rebinding = server.request("GET", "/claude-mem", headers={"Host": "evil.example"})
    assert rebinding.status == 400
    cross = server.request(
        "POST",
        "/-/claude-mem/sessions",
        {"project_dir": "/x"},
        {**auth, "Origin": "https://evil.example"},
    )
    assert cross.status == 403
    ok = server.request(
        "POST", "/-/claude-mem/sessions", {"project_dir": "/x"},
        {**auth, "Host": f"localhost:{server.port}"},
    )  # fmt: skip
    assert ok.status == 201, ok.body
