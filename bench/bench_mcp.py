"""The MCP search tool against the bare stored search query, side by side in one run.

    python bench/bench_mcp.py [--quick] [--requests N] [--sizes 10000,100000]

For each size, a fresh memory file gets that many observations (two projects, nine in ten
in the one searched, titles and summaries drawn from a 2,000-word vocabulary), a learning
per fifty observations, a session and a prompt per fifty. One `datasette claude-mem serve`
on a free 127.0.0.1 port serves it; over one keep-alive connection, alternating request by
request, the same queries go as

- mcp: POST /-/claude-mem/mcp, JSON-RPC tools/call of `search` (limit 10), as Claude Code
  sends it after the handshake (stateless server: no session to set up first);
- stored: GET /claude-mem/search_memory.json?q=...&project=...&_shape=array, Datasette's own
  JSON answer of the stored full-text query over observations and learnings (100 rows).

It reports p50 and p99 of each and their ratio, and the tokens (characters / 4) of each
search answer, of a `get` of its first three hits and of a `timeline` around the first.
The table goes into bench/RESULTS-mcp.md between its markers; the analysis there is kept.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import re
import sqlite3
import statistics
import sys
import tempfile
import time
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchlib import ServerProcess, free_port, machine, memory_env, percentile, versions

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from datasette_claude_mem.cli import create_token, ensure_secret  # noqa: E402
from datasette_claude_mem.settings import Config  # noqa: E402
from datasette_claude_mem.storage import recall as lookup  # noqa: E402
from datasette_claude_mem.storage.models import new_id  # noqa: E402
from datasette_claude_mem.storage.store import Store  # noqa: E402

BIN = Path(sys.executable).parent
RESULTS = Path(__file__).with_name("RESULTS-mcp.md")
PACKAGES = ("datasette", "sqlite-utils", "mcp", "datasette-claude-mem")
HIT_ID = re.compile(r"^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}) · ", re.M)
START, END = "<!-- results:start -->", "<!-- results:end -->"
PROJECT, OTHER = "bench/alpha", "bench/beta"
HEADERS = {
    "Content-Type": "application/json",
    "Accept": "application/json, text/event-stream",
    "MCP-Protocol-Version": "2025-06-18",
}


def vocabulary(rng: random.Random, n: int = 2000) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    words: set[str] = set()
    while len(words) < n:
        words.add("".join(rng.choice(letters) for _ in range(rng.randint(4, 9))))
    return sorted(words)


def fill(path: Path, size: int, rng: random.Random, words: list[str]) -> None:
    """The memory, written in a few large transactions straight through SQL (the FTS
    triggers index it as they would any insert)."""
    Store(path).close()  # migrated
    conn = sqlite3.connect(path)
    now = datetime.now(UTC)

    def ts(i: int) -> str:
        return (now - timedelta(seconds=size - i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"

    def text(n: int) -> str:
        return " ".join(rng.choice(words) for _ in range(n))

    sessions = [(f"s{i}", PROJECT if i % 10 else OTHER) for i in range(max(1, size // 50))]
    with conn:
        conn.executemany(
            "INSERT INTO sessions (id, project, project_dir, started_at, status, summary) "
            "VALUES (?, ?, '/work', ?, 'closed', ?)",
            [(sid, project, ts(i * 50), text(12)) for i, (sid, project) in enumerate(sessions)],
        )
        conn.executemany(
            "INSERT INTO event_log (id, project, session_id, event_type, data, created_at) "
            "VALUES (?, ?, ?, 'UserPromptSubmit', ?, ?)",
            [(new_id(), p, sid, json.dumps({"prompt": text(15)}), ts(i * 50))
             for i, (sid, p) in enumerate(sessions)],
        )  # fmt: skip
    batch = []
    for i in range(size):
        sid, project = sessions[i // 50 % len(sessions)]
        batch.append((new_id(), project, sid, rng.choice(["Edit", "Read", "Bash"]), text(6),
                      text(30), json.dumps([f"src/{rng.choice(words)}.py"]), ts(i)))  # fmt: skip
        if len(batch) == 10_000 or i == size - 1:
            with conn:
                conn.executemany(
                    "INSERT INTO observations (id, project, session_id, tool_name, title, "
                    "summary, files_touched, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    batch,
                )
            batch = []
    with conn:
        conn.executemany(
            "INSERT INTO learnings (id, project, category, content, created_at, updated_at) "
            "VALUES (?, ?, 'pattern', ?, ?, ?)",
            [(new_id(), PROJECT, text(20), ts(i), ts(i)) for i in range(max(1, size // 50))],
        )
    conn.execute("PRAGMA optimize")
    conn.close()


class Client:
    """One keep-alive HTTP connection to the server."""

    def __init__(self, port: int, token: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.auth = {"Authorization": f"Bearer {token}"}
        self.next_id = 0

    def call(self, method: str, path: str, body: bytes | None = None) -> tuple[float, bytes]:
        headers = {**self.auth, **(HEADERS if body is not None else {})}
        started = time.perf_counter()
        self.conn.request(method, path, body=body, headers=headers)
        response = self.conn.getresponse()
        data = response.read()
        elapsed = (time.perf_counter() - started) * 1000
        if response.status != 200:
            raise RuntimeError(f"{method} {path}: {response.status} {data[:300]!r}")
        return elapsed, data

    def tool(self, name: str, arguments: dict) -> tuple[float, str]:
        self.next_id += 1
        body = {"jsonrpc": "2.0", "id": self.next_id, "method": "tools/call",
                "params": {"name": name, "arguments": arguments}}  # fmt: skip
        elapsed, data = self.call("POST", "/-/claude-mem/mcp", json.dumps(body).encode())
        result = json.loads(data)["result"]
        if result.get("isError"):
            raise RuntimeError(f"{name}: {result['content'][0]['text']}")
        return elapsed, result["content"][0]["text"]

    def stored(self, query: str) -> tuple[float, bytes]:
        params = urllib.parse.urlencode({"q": query, "project": PROJECT, "_shape": "array"})
        return self.call("GET", f"/claude-mem/search_memory.json?{params}")


def tokens(text: str) -> int:
    return (len(text) + 3) // 4


def measure(size: int, requests: int, rng: random.Random, work: Path) -> dict:
    words = vocabulary(rng)
    base = work / f"mem-{size}"
    base.mkdir()
    started = time.perf_counter()
    fill(base / "claude-mem.db", size, rng, words)
    fill_seconds = time.perf_counter() - started
    token = create_token(ensure_secret(Config(base_dir=base)))
    port = free_port()
    server = ServerProcess(
        f"memory server ({size})",
        [str(BIN / "datasette"), "claude-mem", "serve", "--port", str(port)],
        memory_env(base),
        port,
        work / f"server-{size}.log",
    ).wait("/-/claude-mem/openapi.json")
    try:
        client = Client(port, token)
        queries = [" ".join(rng.sample(words, rng.choice([1, 1, 2]))) for _ in range(requests)]
        for q in queries[:20]:  # warm the caches and the permission answers
            client.tool("search", {"query": q, "project": PROJECT})
            client.stored(q)
        mcp_ms, stored_ms, answer_tokens, hits, get_tokens, timeline_tokens = [], [], [], [], [], []
        for i, q in enumerate(queries):
            first, second = ("mcp", "stored") if i % 2 else ("stored", "mcp")
            for which in (first, second):
                if which == "mcp":
                    elapsed, text = client.tool("search", {"query": q, "project": PROJECT})
                    mcp_ms.append(elapsed)
                    ids = HIT_ID.findall(text)
                    hits.append(len(ids))
                    if len(ids) == 10:
                        answer_tokens.append(tokens(text))
                else:
                    stored_ms.append(client.stored(q)[0])
            if ids and len(get_tokens) < 50:
                get_tokens.append(
                    tokens(client.tool("get", {"ids": ids[:3], "project": PROJECT})[1])
                )
                timeline_tokens.append(
                    tokens(client.tool("timeline", {"id": ids[0], "project": PROJECT})[1])
                )
        client.conn.close()
    finally:
        server.stop()
    store_ms, adapter_ms = in_process(base / "claude-mem.db", queries[:100])
    return {
        "size": size,
        "store_ms": store_ms,
        "adapter_ms": adapter_ms,
        "fill_s": fill_seconds,
        "requests": requests,
        "mcp_p50": percentile(mcp_ms, 0.5),
        "mcp_p99": percentile(mcp_ms, 0.99),
        "stored_p50": percentile(stored_ms, 0.5),
        "stored_p99": percentile(stored_ms, 0.99),
        "hits_mean": statistics.mean(hits),
        "ten_hit_answers": len(answer_tokens),
        "tokens_10_mean": statistics.mean(answer_tokens) if answer_tokens else 0,
        "tokens_10_max": max(answer_tokens) if answer_tokens else 0,
        "get3_tokens_mean": statistics.mean(get_tokens) if get_tokens else 0,
        "timeline_tokens_mean": statistics.mean(timeline_tokens) if timeline_tokens else 0,
    }


def in_process(path: Path, queries: list[str]) -> tuple[float, float]:
    """Mean ms of the store's full-text search (ten hits) and of the tool's whole search
    (every kind) on the same file, in this process: where the time of a search goes."""
    with Store(path) as store:
        runs = (
            lambda q: store.search(PROJECT, q, limit=10),
            lambda q: lookup.search(store, PROJECT, q, limit=10),
        )
        totals = [0.0, 0.0]
        for q in queries[:10]:  # warm the page cache for both
            for fn in runs:
                fn(q)
        for i, q in enumerate(queries):
            for which in (0, 1) if i % 2 else (1, 0):
                started = time.perf_counter()
                runs[which](q)
                totals[which] += (time.perf_counter() - started) * 1000
    return totals[0] / len(queries), totals[1] / len(queries)


def table(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}; "
        + ", ".join(f"{k} {v}" for k, v in versions(*PACKAGES).items())
        + f"; {args.requests} queries per size, one keep-alive connection, alternating.",
        "",
        "| observations | search p50 ms | p99 | stored query p50 ms | p99 | ratio p50 | "
        "hits mean | 10-hit answer tokens mean / max | get(3) tokens | timeline tokens | "
        "in process: store search ms / tool search ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']:,} | {r['mcp_p50']:.2f} | {r['mcp_p99']:.2f} | "
            f"{r['stored_p50']:.2f} | {r['stored_p99']:.2f} | "
            f"{r['mcp_p50'] / r['stored_p50']:.2f}x | {r['hits_mean']:.1f} | "
            f"{r['tokens_10_mean']:.0f} / {r['tokens_10_max']} ({r['ten_hit_answers']} answers) | "
            f"{r['get3_tokens_mean']:.0f} | {r['timeline_tokens_mean']:.0f} | "
            f"{r['store_ms']:.2f} / {r['adapter_ms']:.2f} |"
        )
    biggest = rows[-1]
    ratio = biggest["mcp_p50"] / biggest["stored_p50"]
    lines += [
        "",
        f"Goals at {biggest['size']:,}: search p50 {biggest['mcp_p50']:.2f} ms (goal ≤ 15): "
        f"{'met' if biggest['mcp_p50'] <= 15 else 'missed'}; {ratio:.2f}x the stored query "
        f"(goal ≤ 1.5x): {'met' if ratio <= 1.5 else 'missed'}; a 10-hit answer at most "
        f"{biggest['tokens_10_max']} tokens (goal ≤ 800): "
        f"{'met' if biggest['tokens_10_max'] <= 800 else 'missed'}.",
    ]
    return "\n".join(lines)


def write_results(text: str) -> None:
    current = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else f"{START}\n{END}\n"
    head, rest = current.split(START, 1)
    _, tail = rest.split(END, 1)
    RESULTS.write_text(f"{head}{START}\n{text}\n{END}{tail}", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 and 10,000, 100 queries")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--no-write", action="store_true", help="print, do not write results")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.quick:
        sizes, args.requests = [1000, 10_000], 100
    rng = random.Random(12)
    with tempfile.TemporaryDirectory() as work:
        rows = [measure(size, args.requests, rng, Path(work)) for size in sizes]
    text = table(rows, args)
    print(text)
    if not args.no_write and not args.quick:
        write_results(text)


if __name__ == "__main__":
    main()
