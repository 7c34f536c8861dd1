"""The write API against its floor, side by side in one run, each a real server process.

    python bench/bench_api.py [--quick] [--requests N] [--no-write]

Four servers, on free 127.0.0.1 ports, each over a fresh memory file:

- floor: a bare ASGI app (in this script, served by uvicorn) that parses the JSON body and
  runs the store's observation INSERT with sqlite3 (same pragmas, same statement, BEGIN
  IMMEDIATE, the session's project looked up in the same transaction);
- plugin: `datasette claude-mem serve`, POST /-/claude-mem/observations;
- write-floor: the same server, POST /-/bench/observations: a route added for this benchmark
  (with --plugins-dir) that runs the floor's SQL through Datasette's write thread and nothing
  else, to show what Datasette's request handling and write path cost by themselves;
- no-rename-check: a second plugin server with Datasette's own write_wrapper (the one in
  datasette.events, which reads sqlite_master before and after every write to notice renamed
  tables) taken out, measured on both routes: what that check costs each write;
- datasette-insert: `datasette claude-mem serve` with a configuration that grants insert-row
  to the token actor, POST /claude-mem/observations/-/insert (Datasette's own write API).

Each is measured at concurrency 1 and 8 (threads, one keep-alive connection each): p50, p99 and
requests per second; then POST /-/claude-mem/queue/claim of 5 items on the plugin server.
The results table goes into bench/RESULTS-api.md between its markers; the rest of that file
(the analysis) is kept.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchlib import (
    ServerProcess,
    free_port,
    machine,
    memory_env,
    read_body,
    serve_lifespan,
    versions,
)

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RESULTS = Path(__file__).with_name("RESULTS-api.md")
PACKAGES = ("datasette", "sqlite-utils", "uvicorn", "pydantic", "datasette-claude-mem")
START = "<!-- results:start -->"
END = "<!-- results:end -->"

TARGET_RATIO = 2.5  # plugin write p50 / floor p50
TARGET_RPS = 500.0  # plugin writes per second at concurrency 8
TARGET_CLAIM_MS = 2.0  # claim of 5, p50
SLICE = 50  # requests per server in each round of the round robin

INSERT_SQL = (
    "INSERT INTO observations (id, project, session_id, queue_item_id, tool_name, "
    "title, summary, detail, files_touched, functions_changed, tokens_raw, "
    "tokens_compressed, content_hash, embedding, embedding_model, "
    "embedding_version, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT(content_hash) DO NOTHING"
)


# The floor: a bare ASGI app


def floor_insert(conn: sqlite3.Connection, data: dict) -> str:
    """The floor's write: the observation INSERT with the session's project, in BEGIN
    IMMEDIATE, as the store does it but with nothing else around it."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    files = json.dumps(data.get("files_touched", []))
    functions = json.dumps(data.get("functions_changed", []))
    content_hash = hashlib.sha256(
        json.dumps(
            [
                data["session_id"],
                data["tool_name"],
                data["title"],
                data["summary"],
                data.get("detail"),
                files,
                functions,
            ]
        ).encode()
    ).hexdigest()
    row_id = str(uuid.uuid4())
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = conn.execute(
            "SELECT project FROM sessions WHERE id = ?", [data["session_id"]]
        ).fetchone()
        conn.execute(
            INSERT_SQL,
            [
                row_id,
                found[0],
                data["session_id"],
                None,
                data["tool_name"],
                data["title"],
                data["summary"],
                data.get("detail"),
                files,
                functions,
                data.get("tokens_raw", 0),
                data.get("tokens_compressed", 0),
                content_hash,
                None,
                None,
                None,
                now,
            ],
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return row_id


# The same write as a Datasette plugin route with nothing else around it: what Datasette's
# request handling and its write thread cost by themselves. Loaded into the plugin's server
# with --plugins-dir.
WRITE_FLOOR_PLUGIN = """\
import json
import os
import sys

sys.path.insert(0, {bench!r})
from bench_api import floor_insert
from datasette import hookimpl
from datasette.utils.asgi import Response


if os.environ.get("BENCH_NO_RENAME_CHECK"):
    # Datasette's own write_wrapper (datasette.events) reads sqlite_master before and after
    # every write to notice renamed tables. Here it is taken out, to measure what it costs.
    import datasette.events
    from datasette.plugins import pm

    pm.unregister(datasette.events)

    class Events:
        @hookimpl
        def register_events(self):
            return datasette.events.register_events()

    pm.register(Events(), name="events-without-write-wrapper")


@hookimpl
def register_routes():
    async def insert(request, datasette):
        data = json.loads(await request.post_body())
        db = datasette.get_database("claude-mem")
        row_id = await db.execute_write_fn(lambda conn: floor_insert(conn, data), transaction=False)
        return Response.json({{"ok": True, "row": {{"id": row_id}}}}, status=201)

    return [(r"^/-/bench/observations$", insert)]
"""


def floor_app(db_path: str) -> Callable:
    conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    for pragma in ("busy_timeout=5000", "foreign_keys=ON", "recursive_triggers=ON"):
        conn.execute(f"PRAGMA {pragma}")
    conn.execute("PRAGMA synchronous=NORMAL")

    async def respond(send: Callable, status: int, body: dict) -> None:
        payload = json.dumps(body).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def app(scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
            return
        if scope["method"] == "GET":
            await respond(send, 200, {"ok": True})
            return
        row_id = floor_insert(conn, json.loads(await read_body(receive)))
        await respond(send, 201, {"ok": True, "row": {"id": row_id}})

    return app


def serve_floor(port: int, db_path: str) -> None:
    import uvicorn

    uvicorn.run(floor_app(db_path), host="127.0.0.1", port=port, log_level="info")


# Servers


def request(
    port: int, method: str, path: str, body: Any = None, headers: dict | None = None
) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(
            method, path, body=json.dumps(body) if body is not None else None, headers=headers or {}
        )
        response = conn.getresponse()
        raw = response.read()
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, raw
    finally:
        conn.close()


def start(name: str, args: list[str], env: dict[str, str], work: Path, port: int) -> ServerProcess:
    return ServerProcess(name, args, env, port, work / f"{name}.log")


# Whether the memory servers run their in-server worker (--worker); on is what users run.
WORKER = {"on": True}


def start_memory_server(
    name: str,
    base: Path,
    work: Path,
    config: str | None = None,
    plugins_dir: Path | None = None,
    env: dict[str, str] | None = None,
) -> ServerProcess:
    base.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (base / "datasette.yaml").write_text(config)
    port = free_port()
    extra = ["--", "--plugins-dir", str(plugins_dir)] if plugins_dir else []
    server = start(
        name,
        [str(BIN / "datasette"), "claude-mem", "serve", "-p", str(port), *extra],
        {**memory_env(base, WORKER["on"]), **(env or {})},
        work,
        port,
    )
    return server.wait("/-/claude-mem/openapi.json")


def cli_token(server: ServerProcess) -> str:
    out = subprocess.run(
        [str(BIN / "datasette"), "claude-mem", "token"],
        env=server.env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return out.stdout.strip()


INSERT_CONFIG = """\
plugins:
  datasette-claude-mem:
    database: claude-mem
databases:
  claude-mem:
    allow:
      id: [root, claude-mem]
    permissions:
      claude-mem-write:
        id: [root, claude-mem]
      insert-row:
        id: [claude-mem]
"""


# Load


@dataclass
class Cell:
    server: str
    concurrency: int
    requests: int
    latencies_ms: list[float]
    seconds: float
    errors: int

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms)

    @property
    def p99(self) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def load(
    name: str,
    port: int,
    path: str,
    make_body: Callable[[int], Any],
    headers: dict[str, str],
    n: int,
    concurrency: int,
    warmup: int,
    expect: int = 201,
) -> Cell:
    counter = iter(range(n + warmup))
    lock = threading.Lock()
    latencies: list[float] = []
    spans: list[tuple[float, float]] = []
    errors = [0]
    headers = {"Content-Type": "application/json", **headers}
    gate = threading.Barrier(concurrency)

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        gate.wait()
        mine: list[tuple[float, float]] = []
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            body = json.dumps(make_body(i))
            began = time.perf_counter()
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            ended = time.perf_counter()
            if response.status != expect:
                with lock:
                    errors[0] += 1
            if i >= warmup:
                mine.append((began, ended))
        conn.close()
        with lock:
            spans.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies = [(end - begin) * 1000 for begin, end in spans]
    # Requests per second over the timed requests: from the first one sent to the last answer.
    seconds = max(end for _, end in spans) - min(begin for begin, _ in spans)
    return Cell(name, concurrency, n, latencies, seconds, errors[0])


def observation(session_id: str, tag: str) -> Callable[[int], dict]:
    def make(i: int) -> dict:
        return {
            "session_id": session_id,
            "tool_name": "Edit",
            "title": f"{tag} observation {i}",
            "summary": f"Changed the parser, step {i}; callers updated",
            "files_touched": ["src/parser.py"],
            "functions_changed": ["parse"],
            "tokens_raw": 1200,
            "tokens_compressed": 90,
        }

    return make


def claim_bench(server: ServerProcess, token: str, session_id: str, rounds: int) -> list[float]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)

    def post(path: str, body: dict) -> tuple[int, dict]:
        conn.request("POST", path, body=json.dumps(body), headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read())

    times = []
    for r in range(rounds + 5):
        for k in range(5):
            status, _ = post(
                "/-/claude-mem/queue",
                {
                    "session_id": session_id,
                    "tool_use_id": f"c{r}-{k}",
                    "tool_name": "Read",
                    "tool_input": {"file_path": "src/parser.py"},
                    "raw_output": "x" * 2000,
                },
            )
            assert status == 201, status
        began = time.perf_counter()
        status, body = post("/-/claude-mem/queue/claim", {"worker": "bench", "n": 5})
        elapsed = (time.perf_counter() - began) * 1000
        assert status == 200 and len(body["rows"]) == 5, (status, body)
        if r >= 5:
            times.append(elapsed)
        # A worker's cycle: finish what it claimed (untimed), so only in-flight items are
        # processing, as in use.
        for item in body["rows"]:
            status, _ = post(f"/-/claude-mem/queue/{item['id']}/complete", {"worker": "bench"})
            assert status == 200, status
    conn.close()
    return times


def breakdown(rounds: int) -> list[tuple[str, float]]:
    """Where a plugin write's time goes, stage by stage, in this process (no sockets).

    Each stage is timed on its own, p50 over `rounds` calls: the floor's SQL alone, the
    store's whole write, a hop to Datasette's write thread, the permission check, and the
    whole request through the ASGI app (token, guard, routing, permission, body, write, JSON).
    """
    import asyncio

    sys.path.insert(0, str(ROOT))
    os.environ["CLAUDE_MEM_WORKER"] = "0"
    import yaml
    from datasette.app import Datasette
    from datasette.resources import DatabaseResource

    from datasette_claude_mem import plugin as plugin_server
    from datasette_claude_mem.storage.database import connect
    from datasette_claude_mem.storage.models import ObservationCreate, QueueItemCreate, SessionStart
    from datasette_claude_mem.storage.store import Store

    def p50(times: list[float]) -> float:
        return statistics.median(times)

    def body(i: int, tag: str) -> dict:
        return observation("s", tag)(i)

    async def run(tmp: Path) -> list[tuple[str, float]]:
        os.environ["CLAUDE_MEM_DIR"] = str(tmp)
        path = tmp / "claude-mem.db"
        with Store(path) as store:
            store.create_session(SessionStart(id="s", project_dir=str(tmp), project="/bench"))
        results: list[tuple[str, float]] = []

        # The floor's database work: one BEGIN IMMEDIATE / SELECT / INSERT / COMMIT.
        conn = connect(path)
        times = []
        for i in range(rounds):
            began = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            project = conn.execute("SELECT project FROM sessions WHERE id = 's'").fetchone()[0]
            conn.execute(INSERT_SQL, [str(uuid.uuid4()), project, "s", None, "Edit", f"raw {i}",
                                      "summary", None, "[]", "[]", 0, 0, f"raw-{i}", None, None,
                                      None, "2024-01-01T00:00:00.000Z"])  # fmt: skip
            conn.execute("COMMIT")
            times.append((time.perf_counter() - began) * 1000)
        conn.close()
        results.append(("floor's SQL (BEGIN, SELECT project, INSERT, COMMIT)", p50(times)))

        with Store(path) as store:
            times = []
            for i in range(rounds):
                data = ObservationCreate.model_validate(body(i, "store"))
                began = time.perf_counter()
                store.create_observation(data)
                times.append((time.perf_counter() - began) * 1000)
        results.append(("Store.create_observation (redact, hash, SQL, read back)", p50(times)))

        config = yaml.safe_load((ROOT / "datasette_claude_mem" / "datasette.yaml").read_text())
        ds = Datasette([str(path)], config=config, secret="bench")
        await ds.invoke_startup()
        token = await ds.create_token("claude-mem")
        db = ds.get_database("claude-mem")
        actor = {"id": "claude-mem", "token": "dstok"}

        async def timed(fn: Callable[[int], Any]) -> float:
            times = []
            for i in range(rounds):
                began = time.perf_counter()
                await fn(i)
                times.append((time.perf_counter() - began) * 1000)
            return p50(times)

        async def hop(i: int) -> None:
            await db.execute_write_fn(lambda conn: None, transaction=False)

        async def hop_and_store(i: int) -> None:
            data = ObservationCreate.model_validate(body(i, "hop"))
            await plugin_server.write(ds, lambda store: store.create_observation(data))

        async def allowed(i: int) -> None:
            resource = DatabaseResource("claude-mem")
            assert await ds.allowed(action="claude-mem-write", resource=resource, actor=actor)

        async def verify(i: int) -> None:
            assert await ds.verify_token(token)

        results.append(("Datasette write-thread hop (no-op execute_write_fn)", await timed(hop)))
        results.append(
            ("server.write(create_observation): hop + store", await timed(hop_and_store))
        )
        results.append(
            ("datasette.allowed(claude-mem-write): permission SQL", await timed(allowed))
        )
        results.append(("datasette.verify_token", await timed(verify)))

        app = ds.app()
        headers = [(b"host", b"127.0.0.1:8765"), (b"content-type", b"application/json"),
                   (b"authorization", f"Bearer {token}".encode())]  # fmt: skip

        async def call(path: str, payload: dict) -> int:
            raw = json.dumps(payload).encode()
            scope = {
                "type": "http", "http_version": "1.1", "method": "POST", "path": path,
                "raw_path": path.encode(), "query_string": b"", "root_path": "",
                "scheme": "http", "server": ("127.0.0.1", 8765), "client": ("127.0.0.1", 1),
                "headers": [*headers, (b"content-length", str(len(raw)).encode())],
            }  # fmt: skip
            messages = [{"type": "http.request", "body": raw, "more_body": False}]
            status = []

            async def receive() -> dict:
                if messages:
                    return messages.pop()
                await asyncio.sleep(3600)
                return {"type": "http.disconnect"}

            async def send(message: dict) -> None:
                if message["type"] == "http.response.start":
                    status.append(message["status"])

            await app(scope, receive, send)
            return status[0]

        async def post_observation(i: int) -> None:
            assert await call("/-/claude-mem/observations", body(i, "asgi")) == 201

        results.append(
            ("whole POST /observations through the ASGI app", await timed(post_observation))
        )

        def enqueue_five(store: Store, prefix: str) -> None:
            for k in range(5):
                item = QueueItemCreate(
                    session_id="s", tool_use_id=f"{prefix}-{k}", tool_name="Read",
                    raw_output="x" * 2000,
                )  # fmt: skip
                store.enqueue(item)

        # Claims: enqueue five (untimed), then claim them.
        claim_times, store_claims = [], []
        with Store(path) as store:
            for r in range(rounds):
                enqueue_five(store, f"s{r}")
                began = time.perf_counter()
                claimed = store.claim(5, worker="bench")
                store_claims.append((time.perf_counter() - began) * 1000)
                assert len(claimed) == 5
                for item in claimed:
                    store.complete(item.id, "bench")
                enqueue_five(store, f"a{r}")
                began = time.perf_counter()
                assert await call("/-/claude-mem/queue/claim", {"worker": "b", "n": 5}) == 200
                claim_times.append((time.perf_counter() - began) * 1000)
                store.conn.execute(
                    "UPDATE pending_queue SET status = 'done', lease_owner = NULL, "
                    "lease_expires_at = NULL WHERE status = 'processing'"
                )
        results.append(("Store.claim(5)", p50(store_claims)))
        results.append(("whole POST /queue/claim (5) through the ASGI app", p50(claim_times)))
        ds.close()
        return results

    with tempfile.TemporaryDirectory(prefix="bench-api-breakdown-") as tmp:
        return asyncio.run(run(Path(tmp)))


# Report


def run_description() -> str:
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{machine()}; load average {load1:.1f} at start"


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def report(
    cells: list[Cell],
    claims: list[float],
    stages: list[tuple[str, float]],
    quick: bool,
    started: str,
    where: str,
) -> str:
    by = {(c.server, c.concurrency): c for c in cells}
    lines = [
        START,
        f"Run {started} ({'--quick' if quick else 'full'}): {where}.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions(*PACKAGES).items()) + ".",
        "",
        "| server | concurrency | requests | p50 ms | p99 ms | req/s | errors |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cells:
        lines.append(
            f"| {c.server} | {c.concurrency} | {c.requests} | {c.p50:.2f} | "
            f"{c.p99:.2f} | {c.rps:.0f} | {c.errors} |"
        )
    claim_p50 = statistics.median(claims)
    claim_p99 = sorted(claims)[min(len(claims) - 1, int(len(claims) * 0.99))]
    lines += [
        "",
        f"POST /-/claude-mem/queue/claim of 5 items (plugin, concurrency 1, {len(claims)} "
        f"claims): p50 {claim_p50:.2f} ms, p99 {claim_p99:.2f} ms.",
        "",
        "| target | measured | |",
        "|---|---|---|",
    ]
    for conc in (1, 8):
        ratio = by[("plugin", conc)].p50 / by[("floor", conc)].p50
        lines.append(
            f"| plugin write p50 <= {TARGET_RATIO}x the floor (concurrency {conc}) | "
            f"{ratio:.2f}x ({by[('plugin', conc)].p50:.2f} vs {by[('floor', conc)].p50:.2f} ms)"
            f" | {verdict(ratio <= TARGET_RATIO)} |"
        )
    rps = by[("plugin", 8)].rps
    lines.append(
        f"| >= {TARGET_RPS:.0f} plugin writes/s at concurrency 8 | {rps:.0f}/s | "
        f"{verdict(rps >= TARGET_RPS)} |"
    )
    lines.append(
        f"| claim of 5 <= {TARGET_CLAIM_MS} ms p50 | {claim_p50:.2f} ms | "
        f"{verdict(claim_p50 <= TARGET_CLAIM_MS)} |"
    )
    ds_ratio = by[("datasette-insert", 1)].p50 / by[("floor", 1)].p50
    wf = {conc: by[("write-floor", conc)].p50 for conc in (1, 8)}

    def unchecked(name: str) -> float:
        return by[(name, 1)].p50 / by[("floor", 1)].p50

    lines += [
        "",
        f"Datasette's own insert API, for comparison: {ds_ratio:.2f}x the floor at p50 "
        "(concurrency 1).",
        "",
        "The floor's own write as a bare plugin route in the same server (`write-floor`: "
        "Datasette's request handling and token check, then the floor's SQL through "
        "`execute_write_fn`, nothing else) is "
        + ", ".join(
            f"{wf[conc] / by[('floor', conc)].p50:.2f}x the floor at concurrency {conc}"
            for conc in (1, 8)
        )
        + "; the plugin's write is "
        + ", ".join(
            f"{by[('plugin', conc)].p50 / wf[conc]:.2f}x that route at concurrency {conc}"
            for conc in (1, 8)
        )
        + ".",
        "",
        "In a server where Datasette's rename check (the write_wrapper of `datasette.events`, "
        "which reads sqlite_master before and after every write) is taken out, at concurrency "
        f"1: the bare route is {unchecked('write-floor, no rename check'):.2f}x the floor "
        f"and the plugin's write {unchecked('plugin, no rename check'):.2f}x.",
        "",
        "Where a plugin write's time goes, each stage timed alone in one process (p50):",
        "",
        "| stage | p50 ms |",
        "|---|---:|",
        *[f"| {name} | {ms:.3f} |" for name, ms in stages],
        END,
    ]
    return "\n".join(lines)


def write_results(block: str) -> None:
    if RESULTS.exists():
        text = RESULTS.read_text()
        if START in text and END in text:
            head, rest = text.split(START, 1)
            _, tail = rest.split(END, 1)
            RESULTS.write_text(head + block + tail)
            return
    RESULTS.write_text("# Write API benchmark\n\n" + block + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 requests per cell")
    parser.add_argument("--requests", type=int, help="requests per cell")
    parser.add_argument("--no-write", action="store_true", help=f"do not update {RESULTS.name}")
    parser.add_argument("--floor-server", nargs=2, metavar=("PORT", "DB"), help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=("on", "off"), default="on",
                        help="the memory servers' in-server worker (on: the default)")  # fmt: skip
    parser.add_argument("--burst", type=int, default=500,
                        help="events in the worker off/on burst (0: none)")  # fmt: skip
    args = parser.parse_args()
    WORKER["on"] = args.worker == "on"
    if args.floor_server:
        serve_floor(int(args.floor_server[0]), args.floor_server[1])
        return

    sys.path.insert(0, str(ROOT))
    from datasette_claude_mem.storage.models import SessionStart
    from datasette_claude_mem.storage.store import Store

    n = args.requests or (200 if args.quick else 500)
    warmup = 20 if args.quick else 50
    rounds = 100 if args.quick else 200
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    where = run_description()
    servers: list[ServerProcess] = []
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        work = Path(tmp)
        try:
            floor_db = work / "floor" / "claude-mem.db"
            with Store(floor_db) as store:
                floor_session = store.create_session(
                    SessionStart(id="bench", project_dir=str(work), project="/bench")
                ).row.id
            floor_port = free_port()
            command = [sys.executable, __file__, "--floor-server", str(floor_port), str(floor_db)]
            floor = start("floor", command, os.environ.copy(), work, floor_port)
            servers.append(floor)
            floor.wait("/")
            plugins_dir = work / "bench-plugins"
            plugins_dir.mkdir()
            (plugins_dir / "write_floor.py").write_text(
                WRITE_FLOOR_PLUGIN.format(bench=str(Path(__file__).resolve().parent))
            )
            plugin = start_memory_server("plugin", work / "plugin", work, plugins_dir=plugins_dir)
            unwrapped = start_memory_server(
                "no-rename-check",
                work / "unwrapped",
                work,
                plugins_dir=plugins_dir,
                env={"BENCH_NO_RENAME_CHECK": "1"},
            )
            servers.append(plugin)
            inserter = start_memory_server("datasette-insert", work / "insert", work, INSERT_CONFIG)
            servers.append(inserter)
            servers.append(unwrapped)

            sessions = {}
            tokens = {}
            for server in (plugin, inserter, unwrapped):
                tokens[server.name] = cli_token(server)
                status, body = request(
                    server.port,
                    "POST",
                    "/-/claude-mem/sessions",
                    {"id": "bench", "project_dir": str(work), "project": "/bench"},
                    {"Authorization": f"Bearer {tokens[server.name]}"},
                )
                assert status in (200, 201), body
                sessions[server.name] = body["row"]["id"]

            targets = [
                (
                    "floor",
                    floor.port,
                    "/observations",
                    {},
                    lambda tag: observation(floor_session, tag),
                ),
                *[
                    (
                        name,
                        server.port,
                        path,
                        {"Authorization": f"Bearer {tokens[server.name]}"},
                        lambda tag, server=server: observation(sessions[server.name], tag),
                    )
                    for name, server, path in (
                        ("plugin", plugin, "/-/claude-mem/observations"),
                        ("write-floor", plugin, "/-/bench/observations"),
                        ("write-floor, no rename check", unwrapped, "/-/bench/observations"),
                        ("plugin, no rename check", unwrapped, "/-/claude-mem/observations"),
                    )
                ],
                (
                    "datasette-insert",
                    inserter.port,
                    "/claude-mem/observations/-/insert",
                    {"Authorization": f"Bearer {tokens['datasette-insert']}"},
                    lambda tag: (
                        lambda i: {"row": observation(sessions["datasette-insert"], tag)(i)}
                    ),
                ),
            ]
            cells = []
            for concurrency in (1, 8):
                # Round robin in slices, so that whatever else the machine does at a given
                # moment weighs on every server alike.
                parts: dict[str, list[Cell]] = {name: [] for name, *_ in targets}
                for name, port, path, headers, make in targets:
                    load(
                        name,
                        port,
                        path,
                        make(f"warm{concurrency}"),
                        headers,
                        warmup,
                        concurrency,
                        0,
                    )
                for start_at in range(0, n, SLICE):
                    count = min(SLICE, n - start_at)
                    for name, port, path, headers, make in targets:
                        tag = f"c{concurrency}s{start_at}"
                        parts[name].append(
                            load(name, port, path, make(tag), headers, count, concurrency, 0)
                        )
                for name, *_ in targets:
                    done = parts[name]
                    cells.append(
                        Cell(
                            name,
                            concurrency,
                            sum(c.requests for c in done),
                            [ms for c in done for ms in c.latencies_ms],
                            sum(c.seconds for c in done),
                            sum(c.errors for c in done),
                        )
                    )
                for cell in cells[-len(targets) :]:
                    print(
                        f"{cell.server:>16} c={cell.concurrency}: p50 {cell.p50:6.2f} ms  "
                        f"p99 {cell.p99:7.2f} ms  {cell.rps:6.0f} req/s  errors {cell.errors}",
                        flush=True,
                    )
            claims = claim_bench(plugin, tokens["plugin"], sessions["plugin"], rounds)
            print(f"claim of 5: p50 {statistics.median(claims):.2f} ms", flush=True)
        finally:
            for server in servers:
                server.stop()
    stages = breakdown(rounds)
    for name, ms in stages:
        print(f"{name:>60}: {ms:.3f} ms", flush=True)
    block = report(cells, claims, stages, args.quick, started, where)
    block = block.replace("\n\n", f"\n\nMemory servers ran with their worker {args.worker}.\n\n", 1)
    if args.burst:
        from burst import burst_section

        block = block.replace(END, burst_section(args.burst) + END)
    print(block)
    if not args.no_write:
        write_results(block)
        print(f"\nwritten to {RESULTS}")


if __name__ == "__main__":
    main()
