"""Benchmark the hook path against a real `datasette claude-mem serve`, with baselines.

    python bench/bench_hooks.py [--quick] [--out bench/RESULTS-hooks.md]

What it measures, each beside a baseline taken in the same run so the ratios mean something:

* PostToolUse through POST /-/claude-mem/hooks with 1 KB, 100 KB and 1 MB tool responses:
  p50/p99 round trip over a kept-alive connection. Baselines: a bare uvicorn echo app (reads
  the same body, answers {}), Datasette's own floor (a POST the plugin refuses with 405,
  which reads no body and touches no database), and a bare write route added to the same
  server that stores the tool response through Datasette's write thread and does nothing
  else (what any plugin pays to store the body). Breakdown: the same payloads through
  handle_hook in process (no HTTP), and redaction alone.
* The command hook (`python -S hook_script.py`): whole-process wall time posting a 1 KB
  PostToolUse, against `curl` posting the same body and against `python -S -c pass`; also
  with the server down (the spool path) and for SessionStart (which prints the context).
* The SessionStart context over 100k observations (plus sessions, prompts, learnings, function
  map and call graph rows, built with executemany in one transaction): build_context in
  process, and GET /-/claude-mem/context over HTTP.

Targets: PostToolUse 100 KB p50 <= 3 ms; hook script <= 50 ms; context <= 20 ms. The report
goes to stdout and to --out. Nothing here asserts: it reports.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchlib import ServerProcess, free_port, machine, memory_env, percentile, versions

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from datasette_claude_mem.claude_code.context import build_context  # noqa: E402
from datasette_claude_mem.claude_code.events import handle_hook  # noqa: E402
from datasette_claude_mem.cli import create_token, ensure_secret  # noqa: E402
from datasette_claude_mem.redaction.redactor import DEFAULT as REDACTOR  # noqa: E402
from datasette_claude_mem.redaction.scrub import Scrubber  # noqa: E402
from datasette_claude_mem.settings import Config  # noqa: E402
from datasette_claude_mem.storage.models import new_id, utc_now  # noqa: E402
from datasette_claude_mem.storage.store import Store  # noqa: E402

HOOK_SCRIPT = ROOT / "datasette_claude_mem" / "claude_code" / "hook_script.py"
DATASETTE = Path(sys.executable).with_name("datasette")
HOOKS = "/-/claude-mem/hooks"
SIZES = {"1 KB": 1024, "100 KB": 100 * 1024, "1 MB": 1024 * 1024}
TARGETS = {
    "post_100k_p50_ms": 3.0,
    "script_p50_ms": 50.0,
    "context_p50_ms": 20.0,
    "redact_1mb_p50_ms": 5.0,
}
KEPT_HEADING = "## Analysis"  # from this heading on, the --out file is kept as it is

# Loaded into the memory server with --plugins-dir: a route that stores the tool response as
# it came through Datasette's write thread and does nothing else (no redaction, no queue or
# event rows), to show what Datasette's request handling and write path cost by themselves.
BARE_WRITE_PLUGIN = """
import json
from datasette import hookimpl
from datasette.utils.asgi import Response


def store(conn, text):
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("CREATE TABLE IF NOT EXISTS bench_bodies (id INTEGER PRIMARY KEY, body TEXT)")
    conn.execute("INSERT INTO bench_bodies (body) VALUES (?)", [text])
    conn.execute("COMMIT")


@hookimpl
def register_routes():
    async def write(request, datasette):
        event = json.loads(await request.post_body())
        text = json.dumps(event.get("tool_response"))
        db = datasette.get_database("claude-mem")
        await db.execute_write_fn(lambda conn: store(conn, text), transaction=False)
        return Response.json({})

    return [(r"^/-/bench/write$", write)]
"""


# Run as the server program for the breakdown: the same `datasette claude-mem serve`, with
# timers around the steps of the hook path, written out every 25 requests.
TIMED_SERVER = """
import collections, functools, json, sys, time
import datasette_claude_mem.claude_code.events as hooks
import datasette_claude_mem.plugin as server
import datasette_claude_mem.api.routes as views
OUT = sys.argv.pop()
totals = collections.defaultdict(list)

def dump():
    with open(OUT, "w") as handle:
        json.dump(totals, handle)

def timed(name, fn, is_async):
    if is_async:
        async def inner(*args, **kwargs):
            started = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                totals[name].append((time.perf_counter() - started) * 1000)
                if name == "answer" and len(totals[name]) % 25 == 0:
                    dump()
    else:
        def inner(*args, **kwargs):
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[name].append((time.perf_counter() - started) * 1000)
    return functools.wraps(fn)(inner)

views.answer = timed("answer", views.answer, True)
views.authorise = timed("authorise", views.authorise, True)
views._read_body = timed("read_body", views._read_body, True)
server.write = timed("write", server.write, True)
hooks.handle_hook = timed("handle_hook", hooks.handle_hook, False)
from datasette.cli import cli
cli()
"""

# Processes


def start_memory(
    base_dir: Path, timings: Path | None = None, worker: bool = False
) -> tuple[ServerProcess, str]:
    """`datasette claude-mem serve` over base_dir, its worker off unless asked for; returns
    it and a token.

    With `timings`, the server runs instrumented (TIMED_SERVER) and writes its step times there.
    """
    config = Config(base_dir=base_dir)
    config.ensure_dirs()
    token = create_token(ensure_secret(config))
    env = memory_env(base_dir, worker)
    port = free_port()
    plugins = base_dir / "bench-plugins"
    plugins.mkdir(exist_ok=True)
    (plugins / "bare_write.py").write_text(BARE_WRITE_PLUGIN, encoding="utf-8")
    args = [str(DATASETTE), "claude-mem", "serve", "--port", str(port)]
    args += ["--", "--plugins-dir", str(plugins)]
    if timings is not None:
        program = base_dir / "timed_server.py"
        program.write_text(TIMED_SERVER, encoding="utf-8")
        args = [sys.executable, str(program), *args[1:], str(timings)]
    server = ServerProcess("memory server", args, env, port, base_dir / "server.log")
    return server.wait("/-/claude-mem/openapi.json"), token


def start_echo(workdir: Path) -> ServerProcess:
    port = free_port()
    bench = str(Path(__file__).resolve().parent)
    args = [sys.executable, "-m", "uvicorn", "benchlib:echo_app", "--app-dir", bench,
            "--port", str(port), "--log-level", "warning", "--no-access-log"]  # fmt: skip
    return ServerProcess("echo app", args, dict(os.environ), port, workdir / "echo.log").wait("/")


# Payloads


def code_text(size: int, seed: int = 0) -> str:
    """Plausible tool output (source code and test output) of about `size` characters."""
    lines = []
    total = 0
    i = 0
    while total < size:
        line = (
            f"    rows_{seed}_{i} = conn.execute('SELECT id, amount FROM orders WHERE id = ?', "
            f"[{i}]).fetchall()  # check {i}"
        )
        lines.append(line)
        total += len(line) + 1
        i += 1
    return "\n".join(lines)[:size]


def post_tool_use(session_id: str, cwd: str, size: int, n: int) -> dict[str, Any]:
    return {
        "session_id": session_id,
        "transcript_path": f"/home/dev/.claude/projects/x/{session_id}.jsonl",
        "cwd": cwd,
        "permission_mode": "default",
        "hook_event_name": "PostToolUse",
        "tool_name": "Read",
        "tool_input": {"file_path": f"{cwd}/src/module_{n}.py"},
        "tool_response": {
            "type": "text",
            "file": {"filePath": f"{cwd}/src/module_{n}.py", "content": code_text(size, n)},
        },
        "tool_use_id": f"toolu_bench_{size}_{n}_{new_id()}",
    }


def event(session_id: str, cwd: str, name: str, **fields: Any) -> dict[str, Any]:
    return {"session_id": session_id, "transcript_path": "/tmp/t.jsonl", "cwd": cwd,
            "permission_mode": "default", "hook_event_name": name, **fields}  # fmt: skip


# Measuring


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": statistics.median(values),
        "p99": percentile(values, 0.99),
        "mean": statistics.fmean(values),
    }


def timed_posts(port: int, path: str, bodies: list[bytes], headers: dict[str, str],
                expect: int = 200, warmup: int = 5) -> dict[str, float]:  # fmt: skip
    """Round trips in ms over one kept-alive connection; the first `warmup` are not counted."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    times = []
    try:
        for i, body in enumerate(bodies):
            started = time.perf_counter()
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            elapsed = (time.perf_counter() - started) * 1000
            if response.status != expect:
                raise RuntimeError(f"{path} answered {response.status}, not {expect}")
            if i >= warmup:
                times.append(elapsed)
    finally:
        conn.close()
    return summary(times)


def timed_gets(port: int, path: str, headers: dict[str, str], n: int) -> dict[str, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    times = []
    try:
        for i in range(n + 3):
            started = time.perf_counter()
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            response.read()
            elapsed = (time.perf_counter() - started) * 1000
            if response.status != 200:
                raise RuntimeError(f"{path} answered {response.status}")
            if i >= 3:
                times.append(elapsed)
    finally:
        conn.close()
    return summary(times)


def timed_calls(fn: Callable[[int], Any], n: int, warmup: int = 3) -> dict[str, float]:
    times = []
    for i in range(n + warmup):
        started = time.perf_counter()
        fn(i)
        elapsed = (time.perf_counter() - started) * 1000
        if i >= warmup:
            times.append(elapsed)
    return summary(times)


def timed_runs(args: list[str], bodies: list[bytes], env: dict[str, str],
               shell: bool = False) -> dict[str, float]:  # fmt: skip
    times = []
    for i, body in enumerate(bodies):
        started = time.perf_counter()
        done = subprocess.run(args, input=body, env=env, capture_output=True, shell=shell)
        elapsed = (time.perf_counter() - started) * 1000
        if done.returncode != 0:
            raise RuntimeError(f"{args} failed: {done.stderr!r}")
        if i >= 2:
            times.append(elapsed)
    return summary(times)


# The three benchmarks


def bench_post_tool_use(work: Path, counts: dict[str, int], worker: bool = False) -> dict[str, Any]:
    results: dict[str, Any] = {}
    server, token = start_memory(work / "post", worker=worker)
    echo = start_echo(work)
    try:
        project = work / "repo"
        (project / ".git").mkdir(parents=True, exist_ok=True)
        cwd = str(project)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        start = json.dumps(event("bench", cwd, "SessionStart", source="startup")).encode()
        timed_posts(server.port, HOOKS, [start], headers, warmup=0)
        small = json.dumps(event("bench", cwd, "Stop", stop_hook_active=False)).encode()
        results["floor_405"] = timed_posts(
            server.port, "/-/claude-mem/openapi.json", [small] * counts["1 KB"], headers, 405
        )
        results["stop_event"] = timed_posts(server.port, HOOKS, [small] * counts["1 KB"], headers)
        for label, size in SIZES.items():
            n = counts[label]
            bodies = [
                json.dumps(post_tool_use("bench", cwd, size, i)).encode() for i in range(n + 5)
            ]
            results[f"echo {label}"] = timed_posts(echo.port, "/", bodies, headers)
            results[f"bare {label}"] = timed_posts(server.port, "/-/bench/write", bodies, headers)
            results[f"hook {label}"] = timed_posts(server.port, HOOKS, bodies, headers)
            results[f"bytes {label}"] = len(bodies[0])
        conn = sqlite3.connect(work / "post" / "claude-mem.db")
        durations = conn.execute(
            "SELECT json_extract(data, '$.tool_name'), duration_ms FROM event_log "
            "WHERE event_type = 'PostToolUse'"
        ).fetchall()
        conn.close()
        results["handler_duration_ms_logged"] = len(durations)
    finally:
        server.stop()
        echo.stop()
    if worker:
        return results  # the in-process parts below do not depend on the server's worker

    # The same payloads without HTTP: handle_hook on a Store, and redaction alone.
    with Store(work / "inproc.db") as store:
        cwd = str(work / "repo")
        handle_hook(store, event("inproc", cwd, "SessionStart", source="startup"),
                    with_context=False)  # fmt: skip
        for label, size in SIZES.items():
            n = counts[label]
            payloads = [post_tool_use("inproc", cwd, size, i) for i in range(n + 3)]
            results[f"handle_hook {label}"] = timed_calls(
                lambda i, p=payloads: handle_hook(store, p[i]), n
            )
            response = payloads[0]["tool_response"]
            results[f"redact {label}"] = timed_calls(lambda i, r=response: REDACTOR.value(r, {}), n)
    results["server steps"] = server_steps(work, counts)
    return results


def server_steps(work: Path, counts: dict[str, int]) -> dict[str, dict[str, float]]:
    """p50 ms of each step of the hook path, inside an instrumented server, per payload."""
    steps: dict[str, dict[str, float]] = {}
    cwd = str(work / "repo")
    for label, size in {"Stop": 0, "1 KB": SIZES["1 KB"], "100 KB": SIZES["100 KB"]}.items():
        timings = work / f"timings-{size}.json"
        server, token = start_memory(work / f"steps-{size}", timings)
        try:
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            start = json.dumps(event("steps", cwd, "SessionStart", source="startup")).encode()
            timed_posts(server.port, HOOKS, [start], headers, warmup=0)
            n = min(counts["100 KB"], 100) // 25 * 25 + 24  # the server writes every 25
            if size:
                payloads = [post_tool_use("steps", cwd, size, i) for i in range(n)]
            else:
                payloads = [event("steps", cwd, "Stop", stop_hook_active=False)] * n
            bodies = [json.dumps(p).encode() for p in payloads]
            client = timed_posts(server.port, HOOKS, bodies, headers)
        finally:
            server.stop()
        measured = json.loads(timings.read_text(encoding="utf-8"))
        steps[label] = {"client round trip": client["p50"]}
        for name, values in measured.items():
            steps[label][name] = statistics.median(values[5:] or values)
    return steps


def bench_hook_script(work: Path, runs: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    server, token = start_memory(work / "script")
    try:
        project = work / "repo"
        (project / ".git").mkdir(parents=True, exist_ok=True)
        cwd = str(project)
        url = f"http://127.0.0.1:{server.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLAUDE_MEM_")}
        env.update(CLAUDE_MEM_URL=url, CLAUDE_MEM_TOKEN=token, CLAUDE_MEM_DIR=str(work / "script"))
        start = json.dumps(event("script", cwd, "SessionStart", source="startup")).encode()
        subprocess.run([sys.executable, "-S", str(HOOK_SCRIPT)], input=start, env=env, check=True)
        bodies = [
            json.dumps(post_tool_use("script", cwd, 1024, i)).encode() for i in range(runs + 2)
        ]
        results["python -S -c pass"] = timed_runs(
            [sys.executable, "-S", "-c", "pass"], [b""] * (runs + 2), env
        )
        results["hook script, server up"] = timed_runs(
            [sys.executable, "-S", str(HOOK_SCRIPT)], bodies, env
        )
        curl = ["curl", "-s", "-o", "/dev/null", "-X", "POST", url + HOOKS,
                "-H", f"Authorization: Bearer {token}", "-H", "Content-Type: application/json",
                "--data-binary", "@-"]  # fmt: skip
        results["curl, server up"] = timed_runs(curl, bodies, env)
        starts = [
            json.dumps(event(f"script-{i}", cwd, "SessionStart", source="startup")).encode()
            for i in range(runs + 2)
        ]
        results["hook script, SessionStart"] = timed_runs(
            [sys.executable, "-S", str(HOOK_SCRIPT)], starts, env
        )
        down = dict(env, CLAUDE_MEM_URL=f"http://127.0.0.1:{free_port()}",
                    CLAUDE_MEM_DIR=str(work / "spooled"))  # fmt: skip
        results["hook script, server down (spools)"] = timed_runs(
            [sys.executable, "-S", str(HOOK_SCRIPT)], bodies, down
        )
        results["python -X importtime"] = import_costs(env, bodies[0])
    finally:
        server.stop()
    return results


def import_costs(env: dict[str, str], body: bytes) -> list[tuple[str, int]]:
    """Every module the script imports posting one event (cumulative µs), -X importtime."""
    done = subprocess.run(
        [sys.executable, "-S", "-X", "importtime", str(HOOK_SCRIPT)],
        input=body, env=env, capture_output=True,
    )  # fmt: skip
    costs = []
    for line in done.stderr.decode(errors="replace").splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit() and not parts[2].startswith("  "):
            costs.append((parts[2].strip(), int(parts[1])))
    return sorted(costs, key=lambda c: -c[1])[:8]


def build_big_memory(db_path: Path, observations: int) -> tuple[str, dict[str, int]]:
    """A memory with `observations` rows in one project (and some in another), fast."""
    project = "/home/dev/acme-api"
    other = "/home/dev/other"
    store = Store(db_path)
    conn = store.conn
    n_sessions = max(observations // 100, 10)
    started = time.perf_counter()
    base = datetime(2025, 1, 1, tzinfo=UTC).timestamp()

    def ts(seconds: float) -> str:
        moment = datetime.fromtimestamp(base + seconds, UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"

    conn.execute("BEGIN IMMEDIATE")
    sessions = [
        (f"s{i:06d}", project if i % 10 else other, f"{project}/src", ts(i * 600),
         ts(i * 600 + 500), "closed", f"Session {i}: worked on orders module {i % 50}")
        for i in range(n_sessions)
    ]  # fmt: skip
    conn.executemany(
        "INSERT INTO sessions (id, project, project_dir, started_at, ended_at, status, summary) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        sessions,
    )
    conn.executemany(
        "INSERT INTO event_log (id, project, session_id, event_type, data, created_at) "
        "VALUES (?, ?, ?, 'UserPromptSubmit', ?, ?)",
        [
            (new_id(), s[1], s[0], json.dumps({"prompt": f"Fix order bug {i}"}), s[3])
            for i, s in enumerate(sessions)
        ],
    )
    rows = []
    for i in range(observations):
        s = sessions[i % n_sessions]
        rows.append((
            new_id(), s[1], s[0], "Edit", f"Edited orders/module_{i % 500}.py",
            f"Changed the handler number {i} to log the customer id; tests pass.",
            f"detail {i}", json.dumps([f"src/orders/module_{i % 500}.py"]), "[]",
            1000, 100, f"hash-{i}", ts(i * 6),
        ))  # fmt: skip
    conn.executemany(
        "INSERT INTO observations (id, project, session_id, tool_name, title, summary, detail, "
        "files_touched, functions_changed, tokens_raw, tokens_compressed, content_hash, "
        "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    conn.executemany(
        "INSERT INTO learnings (id, project, category, content, confidence, is_active, "
        "created_at, updated_at) VALUES (?, ?, 'gotcha', ?, ?, 1, ?, ?)",
        [
            (new_id(), project if i % 5 else None, f"Learning {i}: run tests with -x",
             (i % 100) / 100, utc_now(), utc_now())
            for i in range(2000)
        ],
    )  # fmt: skip
    functions = []
    for i in range(5000):
        s = sessions[(i * 7) % n_sessions]
        functions.append((
            new_id(), s[1], s[0], f"src/orders/module_{i % 500}.py", f"handler_{i}", "function",
            f"handler_{i}(request, limit=10)", f"h{i}", "[]",
            ("new", "modified", "unchanged", "deleted")[i % 4], ts(i * 120),
        ))  # fmt: skip
    conn.executemany(
        "INSERT INTO function_map (id, project, session_id, file_path, qualified_name, kind, "
        "signature, body_hash, decorators, change_type, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        functions,
    )
    edges = []
    for i in range(20000):
        f = functions[i % 5000]
        edges.append((
            new_id(), f[1], f"src/callers/c_{i % 300}.py", f"caller_{i}", f[3], f[4], "import",
            0.9, 0, "ast", f[2], utc_now(),
        ))  # fmt: skip
    conn.executemany(
        "INSERT INTO call_graph (id, project, caller_file, caller_function, callee_file, "
        "callee_function, resolution, confidence, times_confirmed, source, session_id, "
        "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        edges,
    )
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("ANALYZE")
    store.close()
    sizes = {
        "sessions": n_sessions,
        "observations": observations,
        "learnings": 2000,
        "function_map": 5000,
        "call_graph": 20000,
        "build_seconds": round(time.perf_counter() - started, 1),
    }
    return project, sizes


def bench_context(work: Path, observations: int, runs: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    base = work / "context"
    db_path = base / "claude-mem.db"
    base.mkdir(parents=True)
    project, sizes = build_big_memory(db_path, observations)
    results["sizes"] = sizes
    with Store(db_path) as store:
        context = build_context(store, project)
        results["context_bytes"] = len(context.markdown.encode("utf-8"))
        results["context_tokens"] = context.tokens
        results["context_sections"] = context.sections
        results["build_context in process"] = timed_calls(
            lambda i: build_context(store, project), runs
        )
        parts = profile_context(store, project, runs)
        results["parts"] = parts
    server, token = start_memory(base)
    try:
        headers = {"Authorization": f"Bearer {token}"}
        from urllib.parse import quote

        results["GET /context"] = timed_gets(
            server.port, f"/-/claude-mem/context?project={quote(project)}", headers, runs
        )
        cwd = work / "ctx-repo"
        (cwd / ".git").mkdir(parents=True, exist_ok=True)
        starts = [
            json.dumps(event(f"new-{i}", project, "SessionStart", source="startup")).encode()
            for i in range(runs + 3)
        ]
        headers["Content-Type"] = "application/json"
        results["SessionStart hook"] = timed_posts(server.port, HOOKS, starts, headers, warmup=3)
    finally:
        server.stop()
    return results


def profile_context(store: Store, project: str, runs: int) -> dict[str, float]:
    """Median ms of each section's queries, to find where the context's time goes."""
    from datasette_claude_mem.claude_code import context as ctx

    changed = store.changed_functions(project, limit=40)
    parts = {
        "sessions (+ first prompts)": lambda i: ctx._sessions(store, project, None),
        "learnings": lambda i: ctx._learnings(store, project),
        "function map scan": lambda i: store.changed_functions(project, limit=40),
        "functions": lambda i: ctx._functions(changed),
        "call graph": lambda i: ctx._call_graph(store, project, changed),
        "observations": lambda i: ctx._observations(store, project),
    }
    return {name: timed_calls(fn, runs)["p50"] for name, fn in parts.items()}


# Report


REDACTION_HEADING = "## Redaction of 1 MB of tool output"


def secret_dense_text(size: int) -> str:
    """The test corpus's secrets (every kind, one of each) repeated to ``size`` characters."""
    sys.path.insert(0, str(ROOT / "tests" / "redaction"))
    from corpus import blob, make_corpus  # the shapes the tests prove are redacted

    one = blob(make_corpus(0)) + "\n"
    return (one * (size // len(one) + 1))[:size]


def bench_redaction(n: int) -> dict[str, Any]:
    """Redaction alone, in process, against one ``str.lower`` pass over the same megabyte."""
    size = SIZES["1 MB"]
    code = {"type": "text", "file": {"filePath": "/src/a.py", "content": code_text(size)}}
    dense = {"stdout": secret_dense_text(size), "stderr": "", "interrupted": False}
    taken: dict[str, int] = {}
    REDACTOR.value(dense, taken)
    plain = Scrubber()
    # The command hook's spool path, whole process: it loads the rules and redacts, then spools.
    spool_dir = Path(tempfile.mkdtemp(prefix="bench-spool-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAUDE_MEM_")}
    env.update(CLAUDE_MEM_URL=f"http://127.0.0.1:{free_port()}", CLAUDE_MEM_DIR=str(spool_dir))
    runs = max(10, n // 5)
    bodies = [json.dumps(post_tool_use("s", "/repo", 1024, i)).encode() for i in range(runs + 2)]
    try:
        passing = timed_runs([sys.executable, "-S", "-c", "pass"], [b""] * (runs + 2), env)
        spooling = timed_runs([sys.executable, "-S", str(HOOK_SCRIPT)], bodies, env)
    finally:
        shutil.rmtree(spool_dir, ignore_errors=True)
    return {
        "python -S -c pass": passing,
        "spooling": spooling,
        "lower": timed_calls(lambda i: code["file"]["content"].lower(), n),
        "code": timed_calls(lambda i: REDACTOR.value(code, {}), n),
        "dense": timed_calls(lambda i: REDACTOR.value(dense, {}), n),
        "stdlib code": timed_calls(lambda i: plain.value(code, {}), max(5, n // 4)),
        "dense secrets": sum(taken.values()),
    }


def redaction_section(red: dict[str, Any], stamp: str = "") -> list[str]:
    lower = red["lower"]
    return [
        REDACTION_HEADING,
        "",
        *([stamp, ""] if stamp else []),
        f"Target: p50 <= {TARGETS['redact_1mb_p50_ms']:g} ms for 1 MB of tool output: "
        f"{verdict(red['code']['p50'], TARGETS['redact_1mb_p50_ms'])}. In process, value by "
        "value with counts, as the hook path redacts a tool response. Ratio: to one "
        "`str.lower()` of the same megabyte in the same run.",
        "",
        "| what | n | p50 | p99 | mean | ratio |",
        "|---|---|---|---|---|---|",
        row("baseline: `str.lower()` of 1 MB", lower),
        row("**redaction, Read of 1 MB of source (server, RE2 gate)**", red["code"], lower),
        row(
            f"redaction, 1 MB of nothing but secrets ({red['dense secrets']:,} taken)",
            red["dense"],
            lower,
        ),  # fmt: skip
        row(
            "redaction, the same 1 MB source by the hook script's stdlib engine (spool path)",
            red["stdlib code"],
            lower,
        ),  # fmt: skip
        "",
        "The command hook with the server down (it loads the rules, redacts a 1 KB PostToolUse "
        "and spools it), whole process; ratio to `python -S -c pass`:",
        "",
        "| what | n | p50 | p99 | mean | ratio |",
        "|---|---|---|---|---|---|",
        row("`python -S -c pass`", red["python -S -c pass"]),
        row(
            "hook script, server down (redacts, spools)", red["spooling"], red["python -S -c pass"]
        ),  # fmt: skip
        "",
    ]


def with_redaction_section(before: str, section: str) -> str:
    """``before`` (a results file) with its redaction section replaced, or put before Analysis."""
    if REDACTION_HEADING in before:
        start = before.index(REDACTION_HEADING)
        end = before.find("\n## ", start + 1)
        return before[:start] + section + ("\n" + before[end + 1 :] if end >= 0 else "")
    if KEPT_HEADING in before:
        at = before.index(KEPT_HEADING)
        return before[:at] + section + "\n" + before[at:]
    return before.rstrip("\n") + "\n\n" + section


def run_versions() -> dict[str, str]:
    found = versions("datasette", "sqlite-utils", "pydantic", "uvicorn", "h11")
    curl = shutil.which("curl")
    if curl:
        found["curl"] = subprocess.run([curl, "--version"], capture_output=True, text=True)
        found["curl"] = found["curl"].stdout.split()[1]
    return found


def row(name: str, s: dict[str, float], base: dict[str, float] | None = None) -> str:
    ratio = f"{s['p50'] / base['p50']:.2f}x" if base else ""
    return f"| {name} | {s['n']} | {s['p50']:.2f} | {s['p99']:.2f} | {s['mean']:.2f} | {ratio} |"


def verdict(value: float, target: float) -> str:
    return f"{'met' if value <= target else 'MISSED'} ({value:.2f} ms vs <= {target:g} ms)"


def report(post: dict, script: dict, context: dict, red: dict, args: argparse.Namespace,
           load: tuple[tuple[float, ...], tuple[float, ...]], elapsed: float) -> str:  # fmt: skip
    v = run_versions()
    lines = [
        "# Hook path benchmark results",
        "",
        f"Written by `python bench/bench_hooks.py{' --quick' if args.quick else ''}` on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, in {elapsed:.0f} s.",
        "",
        f"- Machine: {machine()}; load average at start {load[0][0]:.2f} / end "
        f"{load[1][0]:.2f} (1 min)",
        "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        "- Server: `datasette claude-mem serve` (uvicorn, one process), its worker off; the "
        "client keeps one connection alive. Times are milliseconds of wall clock.",
        "",
        "## Targets",
        "",
        f"- PostToolUse, 100 KB tool response, p50: "
        f"{verdict(post['hook 100 KB']['p50'], TARGETS['post_100k_p50_ms'])}",
        f"- Command hook script, whole process, p50: "
        f"{verdict(script['hook script, server up']['p50'], TARGETS['script_p50_ms'])}",
        f"- Context over {context['sizes']['observations']:,} observations, p50: "
        f"{verdict(context['build_context in process']['p50'], TARGETS['context_p50_ms'])} "
        f"in process; {context['GET /context']['p50']:.2f} ms over HTTP",
        "",
        "## PostToolUse through POST /-/claude-mem/hooks",
        "",
        "Ratio: to the bare uvicorn echo app receiving the same body. The bare write route is "
        "a route added to the same server for this benchmark: it stores the tool response as "
        "it came through Datasette's write thread and does nothing else (no permission check, "
        "no redaction, no queue or event rows), which is what Datasette itself costs.",
        "",
        "| what | n | p50 | p99 | mean | ratio |",
        "|---|---|---|---|---|---|",
        row("Datasette floor: POST refused with 405 (no body, no DB)", post["floor_405"]),
        row("Stop event (small body, one event row)", post["stop_event"], post["floor_405"]),
    ]
    for label in SIZES:
        lines.append(
            row(f"echo app, {label} ({post[f'bytes {label}']:,} B)", post[f"echo {label}"])
        )
        lines.append(
            row(f"bare write route, {label}", post[f"bare {label}"], post[f"echo {label}"])
        )
        lines.append(row(f"**hook, {label}**", post[f"hook {label}"], post[f"echo {label}"]))
    lines += [
        "",
        "Breakdown, no HTTP: the same payloads through `handle_hook` on a Store on a file, and "
        "the redaction of the tool response alone (value by value, with counts, as the hook "
        "path does).",
        "",
        "| what | n | p50 | p99 | mean | share of the hook's p50 |",
        "|---|---|---|---|---|---|",
    ]
    for label in SIZES:
        hook_p50 = post[f"hook {label}"]
        lines.append(row(f"handle_hook, {label}", post[f"handle_hook {label}"], hook_p50))
        lines.append(row(f"redact, {label}", post[f"redact {label}"], hook_p50))
    steps = post["server steps"]
    names = ["client round trip", "answer", "authorise", "read_body", "write", "handle_hook"]
    lines += [
        "",
        "Inside the server (an instrumented run of the same server; p50 ms of each step): "
        "`answer` is the whole endpoint, of which `authorise` is Datasette's permission check, "
        "`read_body` reading and parsing the body, and `write` the call through Datasette's "
        "write thread (queueing, the hand-off and back) around `handle_hook`.",
        "",
        "| payload | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for label, values in steps.items():
        cells = " | ".join(f"{values.get(name, float('nan')):.2f}" for name in names)
        lines.append(f"| {label} | {cells} |")
    lines += [
        "",
        "(The Stop row's ratio is to the 405 floor; the breakdown's ratio is the share of the "
        "hook's round trip.)",
        "",
        "## The command hook script (`python -S hook_script.py`), whole process",
        "",
        "Ratio: to `curl` posting the same 1 KB PostToolUse body.",
        "",
        "| what | n | p50 | p99 | mean | ratio |",
        "|---|---|---|---|---|---|",
    ]
    curl = script["curl, server up"]
    for name in ("python -S -c pass", "curl, server up", "hook script, server up",
                 "hook script, SessionStart", "hook script, server down (spools)"):  # fmt: skip
        lines.append(row(name, script[name], curl))
    lines += [
        "",
        "Top-level imports while posting one event (`-X importtime`, cumulative µs; the "
        "interpreter's own start-up included): "
        + ", ".join(f"{name} {us}" for name, us in script["python -X importtime"]),
        "",
        f"## The SessionStart context over {context['sizes']['observations']:,} observations",
        "",
        "Memory: " + ", ".join(f"{k} {val:,}" for k, val in context["sizes"].items())
        + f". Context: {context['context_bytes']:,} bytes, {context['context_tokens']} tokens, "
        f"sections {context['context_sections']}.",
        "",
        "| what | n | p50 | p99 | mean | ratio |",
        "|---|---|---|---|---|---|",
        row("build_context, in process", context["build_context in process"]),
        row("GET /-/claude-mem/context", context["GET /context"],
            context["build_context in process"]),
        row("SessionStart hook (session row, event row, context)", context["SessionStart hook"],
            context["build_context in process"]),
        "",
        "Where build_context's time goes (p50 ms per section): "
        + ", ".join(f"{k} {val:.2f}" for k, val in context["parts"].items()),
        "",
    ]  # fmt: skip
    return "\n".join(lines + redaction_section(red))


def worker_on_section(off: dict, on: dict) -> str:
    """PostToolUse round trips with the in-server worker on (the default) beside off."""
    lines = [
        "## PostToolUse with the worker on (the default) and off",
        "",
        "The same measurement twice, on fresh servers: the worker on compresses every event",
        "in its worker process while the hooks keep coming.",
        "",
        "| tool response | worker off p50 | worker on p50 | on / off | off p99 | on p99 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label in SIZES:
        a, b = off[f"hook {label}"], on[f"hook {label}"]
        lines.append(
            f"| {label} | {a['p50']:.2f} | {b['p50']:.2f} | {b['p50'] / a['p50']:.2f}x "
            f"| {a['p99']:.2f} | {b['p99']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs; 100k rows either way")
    parser.add_argument("--out", default=str(ROOT / "bench" / "RESULTS-hooks.md"))
    parser.add_argument("--observations", type=int, default=100_000)
    parser.add_argument("--burst", type=int, default=500,
                        help="events in the worker off/on burst (0: none)")  # fmt: skip
    parser.add_argument(
        "--redaction", action="store_true", help="only the redaction part: update its section"
    )
    args = parser.parse_args()
    if args.redaction:
        red = bench_redaction(30 if args.quick else 200)
        stamp = (
            f"Written by `python bench/bench_hooks.py --redaction` on "
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {machine()}, load average "
            f"{os.getloadavg()[0]:.2f} (1 min)."
        )
        section = "\n".join(redaction_section(red, stamp))
        print(section)
        out = Path(args.out)
        before = out.read_text(encoding="utf-8") if out.exists() else ""
        out.write_text(with_redaction_section(before, section), encoding="utf-8")
        return 0
    if args.quick:
        counts, runs, context_runs = {"1 KB": 100, "100 KB": 100, "1 MB": 20}, 20, 20
    else:
        counts, runs, context_runs = {"1 KB": 500, "100 KB": 300, "1 MB": 60}, 60, 100
    started = time.perf_counter()
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="bench-hooks-"))
    try:
        post = bench_post_tool_use(work, counts)
        (work / "worker-on").mkdir()
        post_on = bench_post_tool_use(work / "worker-on", counts, worker=True)
        script = bench_hook_script(work, runs)
        context = bench_context(work, args.observations, context_runs)
        red = bench_redaction(runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    from burst import burst_section

    burst = burst_section(args.burst) if args.burst else ""
    text = report(post, script, context, red, args, (load_before, os.getloadavg()),
                  time.perf_counter() - started)  # fmt: skip
    text += "\n" + worker_on_section(post, post_on) + ("\n" + burst if burst else "")
    print(text)
    out = Path(args.out)
    kept = ""
    if out.exists():  # a hand-written analysis below the numbers survives a rerun
        before = out.read_text(encoding="utf-8")
        if KEPT_HEADING in before:
            kept = "\n" + before[before.index(KEPT_HEADING) :]
    out.write_text(text + kept, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
