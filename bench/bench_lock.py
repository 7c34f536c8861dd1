"""Benchmark hooks while another program holds the memory's write lock, with baselines.

    python bench/bench_lock.py [--hold 20] [--out bench/RESULTS-lock.md]

A real `datasette claude-mem serve`; another process takes the write lock (BEGIN IMMEDIATE,
as a long `sqlite-utils` run or script would) and keeps it `--hold` seconds while PostToolUse
hooks arrive four a second, each on its own connection, as Claude Code sends them. Measured,
in the same run:

* the baseline: the same hooks with nobody holding the lock;
* the server as shipped (`hook_wait_seconds` 1): hook latency during the hold, how many
  answers took longer than Claude Code's 5 s hook timeout, and whether every acknowledged
  event is in the memory afterwards (and how long after the lock freed);
* the server told to wait for the lock as it did before (`hook_wait_seconds` 60): the same;
* beside a server taking 100 KB hooks as fast as eight clients send them: the longest it
  holds the write lock, and how many of 20 `sqlite-utils insert` runs fail, and with what.

Nothing here asserts: it reports, to stdout and to --out.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from benchlib import ServerProcess, free_port, machine, memory_env, percentile, versions

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from datasette_claude_mem.cli import create_token, ensure_secret  # noqa: E402
from datasette_claude_mem.settings import Config  # noqa: E402

DATASETTE = Path(sys.executable).with_name("datasette")
SQLITE_UTILS = Path(sys.executable).with_name("sqlite-utils")
HOOKS = "/-/claude-mem/hooks"
CLAUDE_CODE_HOOK_TIMEOUT_S = 5.0
RATE_PER_S = 4

HOLDER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60)
conn.execute("BEGIN IMMEDIATE")
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


def start_server(base: Path, hook_wait: float, worker: bool = False) -> tuple[ServerProcess, str]:
    config = Config(base_dir=base)
    config.ensure_dirs()
    token = create_token(ensure_secret(config))
    port = free_port()
    args = [str(DATASETTE), "claude-mem", "serve", "--port", str(port), "--"]
    args += ["-s", "plugins.datasette-claude-mem.hook_wait_seconds", json.dumps(hook_wait)]
    env = memory_env(base, worker)
    server = ServerProcess("memory server", args, env, port, base / "server.log")
    return server.wait("/-/claude-mem/openapi.json"), token


def event(i: int, tag: str, cwd: str) -> bytes:
    return json.dumps(
        {
            "hook_event_name": "PostToolUse",
            "session_id": f"bench-{tag}",
            "cwd": cwd,
            "tool_name": "Bash",
            "tool_use_id": f"{tag}-{i}",
            "tool_input": {"command": f"pytest -k case_{i}"},
            "tool_response": {"stdout": f"case {i}: passed\n" * 60},
        }
    ).encode()


def post(port: int, token: str, body: bytes, timeout: float = 90.0) -> tuple[int, float]:
    """One hook on a fresh connection: its status and milliseconds."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(
            "POST",
            HOOKS,
            body=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        response = conn.getresponse()
        response.read()
        status = response.status
    except OSError:
        status = 0
    finally:
        conn.close()
    return status, (time.perf_counter() - started) * 1000


def stored(db: Path, tag: str) -> int:
    conn = sqlite3.connect(db, timeout=30)
    try:
        return conn.execute(
            "SELECT count(*) FROM pending_queue WHERE tool_use_id LIKE ?", [f"{tag}-%"]
        ).fetchone()[0]
    finally:
        conn.close()


def hooks_during(
    server: ServerProcess, token: str, tag: str, seconds: float, cwd: str, hold: float | None
) -> dict:
    """Hooks at RATE_PER_S for `seconds`, with the lock held `hold` seconds (None: not)."""
    db = Path(server.env["CLAUDE_MEM_DIR"]) / "claude-mem.db"
    holder = None
    if hold is not None:
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(db), str(hold)], stdout=subprocess.PIPE, text=True
        )
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
    count = int(seconds * RATE_PER_S)
    with ThreadPoolExecutor(count) as pool:
        futures = []
        for i in range(count):
            futures.append(pool.submit(post, server.port, token, event(i, tag, cwd)))
            time.sleep(1 / RATE_PER_S)
        results = [f.result() for f in futures]
    released = time.monotonic()
    if holder is not None:
        holder.wait(hold + 60)
        released = time.monotonic()
    acknowledged = sum(1 for status, _ in results if 200 <= status < 300)
    deadline = time.monotonic() + 120
    while stored(db, tag) < acknowledged and time.monotonic() < deadline:
        time.sleep(0.1)
    latencies = [ms for _, ms in results]
    return {
        "n": count,
        "acknowledged": acknowledged,
        "statuses": sorted({status for status, _ in results}),
        "stored": stored(db, tag),
        "p50": percentile(latencies, 0.5),
        "p99": percentile(latencies, 0.99),
        "max": max(latencies),
        "over_timeout": sum(1 for ms in latencies if ms > CLAUDE_CODE_HOOK_TIMEOUT_S * 1000),
        "stored_after_s": time.monotonic() - released,
    }


PROBE = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=0)
end = time.monotonic() + float(sys.argv[2])
longest, since = 0.0, None
while time.monotonic() < end:
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("COMMIT")
        if since is not None:
            longest, since = max(longest, time.monotonic() - since), None
    except sqlite3.OperationalError:
        since = since or time.monotonic()
    time.sleep(0.001)
print(round(longest * 1000))
"""


def big_event(i: int, tag: str, cwd: str) -> bytes:
    """A PostToolUse of ~100 KB; every 50th event of a client ends its session (which
    checkpoints the WAL)."""
    if i % 50 == 49:
        return json.dumps({"hook_event_name": "SessionEnd", "session_id": tag, "cwd": cwd}).encode()
    body = json.loads(event(i, tag, cwd))
    body["session_id"] = tag
    body["tool_response"] = {"stdout": f"line {i} of the output\n" * 4500}
    return json.dumps(body).encode()


def sqlite_utils_beside_busy_server(server: ServerProcess, token: str, cwd: str) -> dict:
    """While eight clients post 100 KB hooks back to back (the worker on): the longest the
    server kept the write lock (a probe trying BEGIN IMMEDIATE every millisecond for 10 s),
    then 20 `sqlite-utils insert` runs, each into a new table."""
    db = Path(server.env["CLAUDE_MEM_DIR"]) / "claude-mem.db"
    stop = threading.Event()

    def load(client: int) -> None:
        i = 0
        while not stop.is_set():
            post(server.port, token, big_event(i, f"busy{client}", cwd))
            i += 1

    threads = [threading.Thread(target=load, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    failures: list[str] = []
    runs = 20
    try:
        time.sleep(2)
        probe = subprocess.run(
            [sys.executable, "-c", PROBE, str(db), "10"], capture_output=True, text=True
        )
        longest_ms = int(probe.stdout.strip() or -1)
        for table in [f"bench_notes_{i}" for i in range(runs)] + ["bench_notes"] * runs:
            done = subprocess.run(
                [str(SQLITE_UTILS), "insert", str(db), table, "-"],
                input=json.dumps({"text": "a note " * 50}),
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                lines = done.stderr.strip().splitlines()
                last = lines[-1] if lines else "?"
                said = next((ln for ln in lines if ln.startswith("Error")), last)
                sql = next((ln for ln in lines if ln.startswith("sql = ")), "")
                sql = re.sub(r"bench_notes_\d+", "bench_notes_N", sql.removeprefix("sql = "))
                kind = "new" if table != "bench_notes" else "existing"
                failures.append(f"{kind}: {said[:60]}, at `{sql[:40].strip()}`")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    return {
        "runs": runs,
        "failed_new": sum(1 for f in failures if f.startswith("new")),
        "failed_existing": sum(1 for f in failures if f.startswith("existing")),
        "messages": sorted(set(failures)),
        "longest_ms": longest_ms,
    }


def row(name: str, result: dict) -> str:
    return (
        f"| {name} | {result['n']} | {result['p50']:.1f} | {result['p99']:.1f} | "
        f"{result['max']:.1f} | {result['over_timeout']} | {result['acknowledged']} | "
        f"{result['stored']} | {result['stored_after_s']:.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hold", type=float, default=20.0, help="seconds the lock is held")
    parser.add_argument("--out", default=str(ROOT / "bench" / "RESULTS-lock.md"))
    args = parser.parse_args()
    started = time.monotonic()
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as work:
        work_dir = Path(work)
        project = work_dir / "repo"
        (project / ".git").mkdir(parents=True)
        cwd = str(project)
        results = {}
        server, token = start_server(work_dir / "shipped", 1.0)
        try:
            post(server.port, token, event(0, "warm", cwd))
            results["baseline"] = hooks_during(server, token, "free", 10, cwd, None)
            results["shipped"] = hooks_during(server, token, "held", args.hold, cwd, args.hold)
        finally:
            server.stop()
        server, token = start_server(work_dir / "busy", 1.0, worker=True)
        try:
            busy = sqlite_utils_beside_busy_server(server, token, cwd)
        finally:
            server.stop()
        server, token = start_server(work_dir / "waiting", 60.0)
        try:
            post(server.port, token, event(0, "warm", cwd))
            results["waiting"] = hooks_during(server, token, "held", args.hold, cwd, args.hold)
        finally:
            server.stop()
    load_end = os.getloadavg()[0]
    elapsed = time.monotonic() - started
    found = versions("datasette", "sqlite-utils")
    lines = [
        "# Hooks while another program holds the write lock",
        "",
        f"Written by `python bench/bench_lock.py --hold {args.hold:g}` on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, in {elapsed:.0f} s.",
        "",
        f"- Machine: {machine()}; load average at start {load_start:.2f} / end "
        f"{load_end:.2f} (1 min)",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in found.items()),
        f"- PostToolUse hooks ({RATE_PER_S} a second, each on a new connection, ~1 KB tool "
        "response) to a real `datasette claude-mem serve`, its worker off; another process "
        f"holds BEGIN IMMEDIATE for {args.hold:g} s from the first hook on. Times are "
        "milliseconds of wall clock; 'over 5 s' counts answers Claude Code would have given "
        "up on; 'stored after' is seconds from the lock's release (or the last answer) until "
        "every acknowledged event was in the memory.",
        "",
        "| server | hooks | p50 | p99 | max | over 5 s | acknowledged | stored | "
        "stored after (s) |",
        "|---|---|---|---|---|---|---|---|---|",
        row("nobody holds the lock (baseline)", results["baseline"]),
        row("**lock held, as shipped (hook_wait_seconds 1)**", results["shipped"]),
        row("lock held, waiting for it (hook_wait_seconds 60, as before)", results["waiting"]),
        "",
        f"p50 while the lock is held, as shipped: "
        f"{results['shipped']['p50'] / results['baseline']['p50']:.0f}x the baseline's; "
        f"waiting for the lock: "
        f"{results['waiting']['p50'] / results['baseline']['p50']:.0f}x.",
        "",
        "## sqlite-utils beside a busy server",
        "",
        "Eight clients post 100 KB PostToolUse hooks back to back (every 50th a SessionEnd, "
        "which checkpoints), the in-server worker on. The longest the server held the write "
        f"lock in 10 s (a probe trying BEGIN IMMEDIATE every millisecond): "
        f"{busy['longest_ms']} ms. Then {busy['runs']} runs of "
        f"`sqlite-utils insert DB bench_notes_N -`, each making its table: "
        f"{busy['failed_new']} failed; {busy['runs']} runs into one table that exists: "
        f"{busy['failed_existing']} failed. The messages:",
        "",
    ]
    for message in busy["messages"]:
        lines.append(f"- {message}")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
