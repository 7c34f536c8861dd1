"""The server's worker process, in real `datasette claude-mem serve` processes.

Compression and source parsing run in a child process of the server: the observations'
batches name that process, it is started again when it dies (the death shows at /-/tasks
and on the dashboard), it leaves with the server however the server ends, and a burst of
hooks posted while it is busy with 1 MB items costs the server far less CPU than the
worker process spends on those items.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from helpers import db_rows

SESSION = "process-session"


def read_hook(path: Path, content: str, n: int, project: Path) -> dict:
    return {
        "session_id": SESSION,
        "cwd": str(project),
        "hook_event_name": "PostToolUse",
        "tool_name": "Read",
        "tool_use_id": f"read-{n}",
        "tool_input": {"file_path": str(path)},
        "tool_response": {"type": "text", "file": {"filePath": str(path), "content": content}},
    }


def bash_hook(n: int, project: Path) -> dict:
    return {
        "session_id": SESSION,
        "cwd": str(project),
        "hook_event_name": "PostToolUse",
        "tool_name": "Bash",
        "tool_use_id": f"bash-{n}",
        "tool_input": {"command": f"echo {n}"},
        "tool_response": {"stdout": f"{n}\n", "stderr": "", "interrupted": False},
    }


def wait_until(check, what: str, timeout: float = 60.0):
    """Poll (bounded) until check() gives something true; the deadline only ends a failure."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def batches(server) -> list[dict]:
    rows = db_rows(
        server.db_path,
        "SELECT data FROM event_log WHERE event_type = 'worker_batch' ORDER BY rowid",
    )
    return [json.loads(row["data"]) for row in rows]


def done_count(server) -> int:
    rows = db_rows(server.db_path, "SELECT count(*) AS n FROM pending_queue WHERE status = 'done'")
    return rows[0]["n"]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has ended; only its parent has not collected it yet.
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tasks(server) -> list[dict]:
    """/-/tasks.json as root, signed in through the link serve printed."""
    [link] = [
        line.strip()
        for line in server.log_path.read_text(errors="replace").splitlines()
        if "/-/auth-token?token=" in line
    ][-1:]
    with httpx.Client(timeout=30) as client:
        client.get(link)
        answer = client.get(server.url + "/-/tasks.json")
    assert answer.status_code == 200, answer.text
    return answer.json()["tasks"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    return root


def test_items_are_compressed_in_a_worker_process_started_again_when_it_dies(
    mem_server_factory, project: Path
) -> None:
    server = mem_server_factory(worker=True)
    assert server.hook(bash_hook(0, project)).status_code == 200
    wait_until(lambda: done_count(server) == 1, "the first observation")
    wait_until(lambda: batches(server), "the first batch's log")
    [first] = batches(server)
    child = first["process"]
    assert first["worker"] == f"server:{server.proc.pid}"
    assert child != server.proc.pid and alive(child)

    page = server.request("GET", "/-/claude-mem/").text
    assert f"pid {child}" in page and "restarted" not in page

    os.kill(child, signal.SIGKILL)
    assert server.hook(bash_hook(1, project)).status_code == 200
    wait_until(lambda: done_count(server) == 2, "an observation after the worker process died")
    # The batch is logged just after its items are done.
    wait_until(lambda: len(batches(server)) == 2, "the second batch's log")
    second = batches(server)[-1]
    assert second["done"] == 1 and second["process"] not in (child, server.proc.pid)
    assert alive(second["process"])

    listed = {t["name"]: t for t in tasks(server)}
    assert listed["claude-mem-worker"]["state"] == "running"
    died = listed["claude-mem-worker-process"]
    assert died["state"] == "crashed"
    assert f"worker process {child} exited with -9" in died["exception"]
    assert listed["claude-mem-worker-process-2"]["state"] == "running"
    page = server.request("GET", "/-/claude-mem/").text
    assert f"pid {second['process']}" in page and "restarted 1 time" in page


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["stopped", "killed"])
def test_the_worker_process_leaves_with_the_server(mem_server_factory, project, how) -> None:
    server = mem_server_factory(worker=True)
    assert server.hook(bash_hook(0, project)).status_code == 200
    wait_until(lambda: done_count(server) == 1, "the first observation")
    child = batches(server)[0]["process"]
    server.proc.send_signal(how)
    server.proc.wait(timeout=30)
    # A stopped server stops its child; a killed one closes its stdin, and the child leaves.
    wait_until(lambda: not alive(child), "the worker process to leave", timeout=30)


def test_a_burst_of_hooks_never_waits_on_compression(mem_server_factory, project: Path) -> None:
    # Items of 1 MB, each touching a 300 KB Python module on disk (90 long functions, so
    # its code index is a few rows): every one costs the worker process the compression
    # plus a full parse of the module.
    module = project / "big.py"
    line = "    total = total * 3 + {} - (total // 7) ^ (total << 2)\n"
    lines = "".join(line.format(j) for j in range(60))
    body = "".join(f"def step_{k}(total):\n{lines}    return total\n\n\n" for k in range(300))
    module.write_text(body[:300_000].rsplit("\n\n\n", 1)[0] + "\n")
    content = body[:1_000_000]
    server = mem_server_factory(worker=True)
    heavy = 4
    for n in range(heavy):
        assert server.hook(read_hook(module, content + f"# {n}\n", n, project)).status_code == 200
    wait_until(
        lambda: db_rows(server.db_path, "SELECT 1 FROM pending_queue WHERE status = 'processing'"),
        "the worker to start on the 1 MB items",
    )
    before = cpu_seconds(server.proc.pid)
    burst = 50
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=60) as client:
        for n in range(burst):
            assert client.post("/-/claude-mem/hooks", json=bash_hook(n, project)).status_code == 200
    wait_until(lambda: done_count(server) == heavy + burst, "every item to be observed", 120)
    server_cpu = cpu_seconds(server.proc.pid) - before

    made = batches(server)
    assert {b["process"] for b in made} - {server.proc.pid} == {b["process"] for b in made}
    heavy_rows = db_rows(
        server.db_path,
        "SELECT p.created_at AS queued, o.created_at AS observed FROM pending_queue p "
        "JOIN observations o ON o.queue_item_id = p.id WHERE p.tool_name = 'Read'",
    )
    first_bash = db_rows(
        server.db_path,
        "SELECT min(created_at) AS t FROM pending_queue WHERE tool_name = 'Bash'",
    )[0]["t"]
    # The burst came in while the worker process was still busy with the 1 MB items ...
    assert max(row["observed"] for row in heavy_rows) > first_bash
    # ... and the work those items took in the worker process is far more CPU than the
    # server spent on the whole burst and on claiming and finishing everything: had it
    # compressed or parsed in its own process, its CPU would include all of that work.
    work_cpu = sum(b["work_cpu_ms"] for b in made) / 1000
    assert work_cpu > 2 * server_cpu, (work_cpu, server_cpu)
