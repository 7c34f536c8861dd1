"""The burst a user meets: PostToolUse events back to back, with the worker on and off.

    python bench/burst.py [--events 500] [--rounds 1] [--disk-events 1000]

Each run starts a fresh `datasette claude-mem serve` (its in-server worker on, the default,
or off with CLAUDE_MEM_WORKER=0) and posts events over one kept-alive connection, in the mix
of a coding session: per 10 events, 6 with a 1 KB tool output, 3 with 100 KB, 1 with 1 MB.
It reports the burst's total time, per-event round trip p50/p99/max, the CPU the server's
process used during the burst (from /proc, its worker process counted apart), and, with
the worker on, how long after the last event every event was an observation. The disk run
posts the same mix (worker off) and reports the memory file's size after a checkpoint.

bench_hooks.py and bench_api.py import `run_burst` and report it beside their own figures.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import ServerProcess, free_port, memory_env, percentile

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from datasette_claude_mem.cli import create_token, ensure_secret  # noqa: E402
from datasette_claude_mem.settings import Config  # noqa: E402

DATASETTE = Path(sys.executable).with_name("datasette")
HOOKS = "/-/claude-mem/hooks"
MIX = [1024] * 6 + [100 * 1024] * 3 + [1024 * 1024]  # per 10 events
SESSION = "burst-session"


def source_text(size: int, seed: int) -> str:
    """Python-looking file content of about `size` characters, different for every seed."""
    out, total, k = [], 0, 0
    while total < size:
        chunk = (
            f"def handler_{seed}_{k}(request, rows):\n"
            f'    """Handle step {k} of request {seed}."""\n'
            f"    kept = [r for r in rows if r.get('id') != {k}]\n"
            f"    return render(request, kept, page={k})\n\n\n"
        )
        out.append(chunk)
        total += len(chunk)
        k += 1
    return "".join(out)[:size]


def event_body(n: int, cwd: str) -> bytes:
    size = MIX[n % len(MIX)]
    path = f"{cwd}/src/module_{n}.py"
    return json.dumps(
        {
            "session_id": SESSION,
            "transcript_path": f"/home/dev/.claude/projects/x/{SESSION}.jsonl",
            "cwd": cwd,
            "permission_mode": "default",
            "hook_event_name": "PostToolUse",
            "tool_name": "Read",
            "tool_input": {"file_path": path},
            "tool_response": {
                "type": "text",
                "file": {"filePath": path, "content": source_text(size, n)},
            },
            "tool_use_id": f"toolu_burst_{n}",
        }
    ).encode()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(p) for p in text]
    return found


def start_server(base: Path, worker: bool) -> tuple[ServerProcess, str]:
    config = Config(base_dir=base)
    config.ensure_dirs()
    token = create_token(ensure_secret(config))
    port = free_port()
    args = [str(DATASETTE), "claude-mem", "serve", "--port", str(port)]
    if worker:
        args += ["--", "-s", "plugins.datasette-claude-mem.worker", '{"interval": 0.2}']
    server = ServerProcess("memory server", args, memory_env(base, worker), port, base / "log")
    return server.wait("/-/claude-mem/openapi.json"), token


def _count(db: Path, sql: str) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


def run_burst(work: Path, *, worker: bool, events: int = 500) -> dict[str, Any]:
    """One burst against a fresh server; see the module's docstring for what is measured."""
    base = Path(tempfile.mkdtemp(dir=work))
    project = base / "project"
    (project / ".git").mkdir(parents=True)
    bodies = [event_body(n, str(project)) for n in range(events)]
    server, token = start_server(base / "mem", worker)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    db = base / "mem" / "claude-mem.db"
    try:
        # Warm up the hook path (first-request startup, imports) outside the measurement.
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        warm = json.dumps({"session_id": SESSION, "cwd": str(project),
                           "hook_event_name": "UserPromptSubmit", "prompt": "go"})  # fmt: skip
        conn.request("POST", HOOKS, body=warm, headers=headers)
        conn.getresponse().read()
        worker_pids = children(server.proc.pid)
        cpu_before = cpu_seconds(server.proc.pid)
        times = []
        started = time.perf_counter()
        for body in bodies:
            sent = time.perf_counter()
            conn.request("POST", HOOKS, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            times.append((time.perf_counter() - sent) * 1000)
            if response.status != 200:
                raise RuntimeError(f"the hook answered {response.status}")
        total = time.perf_counter() - started
        cpu_burst = cpu_seconds(server.proc.pid) - cpu_before
        conn.close()
        observed_after = None
        if worker:
            # Polled every 20 ms; bounded, so a stuck worker ends the run instead of hanging.
            deadline = time.perf_counter() + 300
            sql = "SELECT count(*) FROM observations"
            while _count(db, sql) < events and time.perf_counter() < deadline:
                time.sleep(0.02)
            observed_after = time.perf_counter() - started - total
            if _count(db, sql) < events:
                observed_after = None
        cpu_total = cpu_seconds(server.proc.pid) - cpu_before
        worker_cpu = sum(cpu_seconds(p) for p in children(server.proc.pid))
    finally:
        server.stop()
    times.sort()
    return {
        "worker": worker,
        "events": events,
        "total_s": total,
        "p50_ms": percentile(times, 0.50),
        "p99_ms": percentile(times, 0.99),
        "max_ms": times[-1],
        "server_cpu_burst_s": cpu_burst,
        "server_cpu_until_observed_s": cpu_total,
        "worker_process_cpu_s": worker_cpu if worker_pids else None,
        "observed_after_s": observed_after,
    }


def disk_run(work: Path, events: int = 1000) -> dict[str, Any]:
    """The memory file's size after `events` events of the mix (worker off, checkpointed)."""
    base = Path(tempfile.mkdtemp(dir=work))
    project = base / "project"
    (project / ".git").mkdir(parents=True)
    server, token = start_server(base / "mem", worker=False)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    sent_bytes = 0
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        for n in range(events):
            body = event_body(n, str(project))
            sent_bytes += len(body)
            conn.request("POST", HOOKS, body=body, headers=headers)
            conn.getresponse().read()
        conn.close()
    finally:
        server.stop()
    db = base / "mem" / "claude-mem.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    payloads = conn.execute(
        "SELECT coalesce(sum(length(CAST(raw_output AS BLOB))), 0) FROM pending_payloads"
    ).fetchone()[0]
    conn.close()
    return {
        "events": events,
        "sent_mb": sent_bytes / 1e6,
        "file_mb": db.stat().st_size / 1e6,
        "payload_mb": payloads / 1e6,
    }


def burst_table(results: list[dict[str, Any]]) -> str:
    last_off: dict[str, Any] | None = None
    lines = [
        "| worker | events | total s | vs worker off (same round) | p50 ms | p99 ms | max ms "
        "| server CPU s (burst) | server CPU s (until observed) | worker process CPU s "
        "| all observed after last event |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if not r["worker"]:
            last_off = r
        ratio = r["total_s"] / last_off["total_s"] if last_off and r["worker"] else None
        after = r["observed_after_s"]
        worker_cpu = r["worker_process_cpu_s"]
        lines.append(
            f"| {'on' if r['worker'] else 'off'} | {r['events']} | {r['total_s']:.2f} "
            f"| {f'{ratio:.2f}x' if ratio else '-'} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} "
            f"| {r['max_ms']:.1f} | {r['server_cpu_burst_s']:.2f} "
            f"| {r['server_cpu_until_observed_s']:.2f} "
            f"| {'-' if worker_cpu is None else f'{worker_cpu:.2f}'} "
            f"| {'-' if after is None else f'{after:.2f} s'} |"
        )
    return "\n".join(lines)


def burst_section(events: int = 500) -> str:
    """The burst with the worker off then on, as a Markdown section for a results file."""
    with tempfile.TemporaryDirectory(prefix="bench-burst-") as tmp:
        results = [run_burst(Path(tmp), worker=w, events=events) for w in (False, True)]
    return (
        f"## The burst: {events} PostToolUse back to back, worker off and on\n\n"
        "Per 10 events: 6 with a 1 KB tool output, 3 with 100 KB, 1 with 1 MB "
        "(bench/burst.py). Goals: worker on <= 1.3x worker off in total, <= 50 ms an event, "
        "all observed within 15 s of the last event.\n\n" + burst_table(results) + "\n"
    )


def disk_line(disk: dict[str, Any]) -> str:
    return (
        f"{disk['events']} events, {disk['sent_mb']:.1f} MB posted: memory file "
        f"{disk['file_mb']:.1f} MB, of which kept tool outputs {disk['payload_mb']:.1f} MB"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=1, help="off/on pairs, interleaved")
    parser.add_argument("--disk-events", type=int, default=1000, help="0: no disk run")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-burst-") as tmp:
        for _ in range(args.rounds):
            for worker in (False, True):
                results.append(run_burst(Path(tmp), worker=worker, events=args.events))
                print(json.dumps(results[-1]), file=sys.stderr)
        disk = disk_run(Path(tmp), args.disk_events) if args.disk_events else None
    print(burst_table(results))
    if disk:
        print(disk_line(disk))
    if args.json:
        args.json.write_text(json.dumps({"bursts": results, "disk": disk}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
