"""Benchmark the store against raw sqlite3 running the same SQL, side by side in one run.

    python bench/bench_store.py [--quick] [--out bench/RESULTS-store.md]

What it measures, each for the store and for a bare sqlite3 connection (same pragmas, same
file layout, same statements, same triggers) so the ratio is the store's own overhead:

* one observation insert (the whole write transaction, its triggers and its read-back);
* claim(5) and list_observations(session, 100) on tables of 10k and 1M rows
  (--quick: 100k), built quickly with executemany in one transaction;
* migrating a fresh file;
* 3, 10 and 50 writer processes x 200 writes each: errors, rows lost, throughput.

The results table goes to stdout and to the --out file, with the targets and whether each
was met. Nothing here asserts: it reports.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from benchlib import machine, percentile, versions

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from datasette_claude_mem.storage.database import connect  # noqa: E402
from datasette_claude_mem.storage.models import ObservationCreate, new_id  # noqa: E402
from datasette_claude_mem.storage.store import Store  # noqa: E402

SUMMARY = "Changed the tokenizer so identifiers split on unicode boundaries; tests pass."
OBS_COLUMNS = (
    "id, project, session_id, queue_item_id, tool_name, title, summary, detail, files_touched, "
    "functions_changed, tokens_raw, tokens_compressed, content_hash, embedding, "
    "embedding_model, embedding_version, created_at"
)
# The statements Store.create_observation runs, in order.
INSERT_OBSERVATION = (
    f"INSERT INTO observations ({OBS_COLUMNS}) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT(content_hash) DO NOTHING"
)
# The statements Store.claim and Store.list_observations run.
EXPIRE_LEASES = (
    "UPDATE pending_queue SET "
    "status = CASE WHEN attempts >= max_attempts THEN 'error' ELSE 'raw' END, "
    "last_error = 'lease of ' || coalesce(lease_owner, '?') || ' expired', "
    "lease_owner = NULL, lease_expires_at = NULL, available_at = ?1, "
    "updated_at = ?1 "
    "WHERE status = 'processing' AND lease_expires_at < ?1"
)
CLAIM = (
    "UPDATE pending_queue SET status = 'processing', attempts = attempts + 1, "
    "lease_owner = :worker, lease_expires_at = :expires, updated_at = :now "
    "WHERE id IN (SELECT id FROM pending_queue "
    "WHERE status = 'raw' AND available_at <= :now "
    "ORDER BY available_at, id LIMIT :n) AND status = 'raw' RETURNING *"
)
LIST_BY_SESSION = (
    "SELECT * FROM observations WHERE session_id = ? ORDER BY created_at, rowid LIMIT ?"
)

TARGETS = {
    "insert_ratio": 2.5,  # store p50 / raw p50
    "dequeue_p50_ms": 0.2,  # at the largest size
    "list_p50_ms": 1.0,  # warm, at the largest size
    "migrate_p50_ms": 50.0,
}


def ts(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def now_ts() -> str:
    return ts(time.time_ns() // 1_000_000)


def summary(values: list[float]) -> dict[str, float]:
    """Milliseconds."""
    return {"p50": statistics.median(values) * 1000, "p99": percentile(values, 0.99) * 1000}


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def fresh_store(path: Path) -> Store:
    return Store(path)


def raw_connection(path: Path) -> sqlite3.Connection:
    """A bare connection with the store's settings, and nothing else."""
    return connect(path)


# Single insert


def bench_insert(work: Path, n: int) -> dict:
    store = fresh_store(work / "insert-store.db")
    Store(work / "insert-raw.db").close()
    raw = raw_connection(work / "insert-raw.db")
    for target in (store.conn, raw):
        target.execute(
            "INSERT INTO sessions (id, project, project_dir) VALUES ('s1', 'bench', '/bench')"
        )

    counter = iter(range(10**9))

    def store_op() -> None:
        i = next(counter)
        store.create_observation(
            ObservationCreate(
                session_id="s1",
                tool_name="Edit",
                title=f"Edited tokenizer step {i}",
                summary=SUMMARY,
                files_touched=["src/tokenizer.py"],
                functions_changed=["split"],
                tokens_raw=1200,
                tokens_compressed=90,
            )
        )

    def raw_op() -> None:
        i = next(counter)
        title = f"Edited tokenizer step {i}"
        content_hash = hashlib.sha256(title.encode()).hexdigest()
        raw.execute("BEGIN IMMEDIATE")
        project = raw.execute("SELECT project FROM sessions WHERE id = ?", ["s1"]).fetchone()[0]
        raw.execute(
            INSERT_OBSERVATION,
            [
                str(uuid.uuid4()),
                project,
                "s1",
                None,
                "Edit",
                title,
                SUMMARY,
                None,
                '["src/tokenizer.py"]',
                '["split"]',
                1200,
                90,
                content_hash,
                None,
                None,
                None,
                now_ts(),
            ],
        )
        raw.execute("SELECT changes()").fetchone()
        raw.execute("SELECT * FROM observations WHERE content_hash = ?", [content_hash]).fetchone()
        raw.execute("COMMIT")

    result = side_by_side(store_op, raw_op, n, warmup=100)
    store.close()
    raw.close()
    return result


def side_by_side(store_op, raw_op, n: int, warmup: int = 20, block: int = 50) -> dict:
    """Alternate blocks of each, so drift (cache, WAL size, CPU) hits both alike."""
    for _ in range(warmup):
        store_op()
        raw_op()
    store_t: list[float] = []
    raw_t: list[float] = []
    while len(store_t) < n:
        for _ in range(min(block, n - len(store_t))):
            store_t.append(timed(store_op))
        for _ in range(min(block, n - len(raw_t))):
            raw_t.append(timed(raw_op))
    s, r = summary(store_t), summary(raw_t)
    return {"store": s, "raw": r, "ratio": s["p50"] / r["p50"], "n": n}


# Large tables


RAW_ITEMS = 6000  # waiting queue items at every size: enough for every dequeue measured
PER_SESSION = 100
EMBEDDED_SESSIONS = 20  # the first sessions' observations carry a 384-d embedding
EMBEDDING = struct.pack("<384f", *(((i * 37) % 101) / 101 for i in range(384)))


def build(path: Path, rows: int) -> float:
    """A file with `rows` observations (100 per session) and `rows` queue items.

    The observations' FTS trigger is set aside for the bulk insert and the index rebuilt in
    one pass after (same result, ten times faster); every other trigger runs as usual.
    """
    start = time.perf_counter()
    Store(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-1000000")
    fts_trigger = conn.execute(
        "SELECT sql FROM sqlite_master WHERE name = 'observations_ai'"
    ).fetchone()[0]
    conn.execute("DROP TRIGGER observations_ai")
    conn.execute("BEGIN")
    sessions = rows // PER_SESSION
    base_ms = 1_750_000_000_000
    conn.executemany(
        "INSERT INTO sessions (id, project, project_dir, started_at, status) "
        "VALUES (?, 'bench', '/bench', ?, 'closed')",
        ((f"s{i:07d}", ts(base_ms + i * 60_000)) for i in range(sessions)),
    )

    def observations():
        for i in range(rows):
            ms = base_ms + i * 600
            yield (
                f"{ms:012x}-0000-7000-8000-{i:012x}",
                "bench",
                f"s{i // PER_SESSION:07d}",
                "Edit",
                f"Edited module {i % 997} function {i % 113}",
                f"case {i}: {SUMMARY}",
                '["src/tokenizer.py"]',
                '["split"]',
                1200,
                90,
                f"{i:064x}",
                ts(ms),
            )

    conn.executemany(
        "INSERT INTO observations (id, project, session_id, tool_name, title, summary, "
        "files_touched, functions_changed, tokens_raw, tokens_compressed, content_hash, "
        "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        observations(),
    )
    waiting_from = rows - RAW_ITEMS

    def queue():
        for i in range(rows):
            ms = base_ms + i * 600
            waiting = i >= waiting_from
            yield (
                f"{ms:012x}-0000-7000-9000-{i:012x}",
                "bench",
                f"s{i // PER_SESSION:07d}",
                f"tu-{i}",
                "Bash",
                "raw" if waiting else "done",
                0 if waiting else 1,
                ts(ms),
                None if waiting else ts(ms + 5000),
            )

    conn.executemany(
        "INSERT INTO pending_queue (id, project, session_id, tool_use_id, tool_name, status, "
        "attempts, available_at, completed_at, created_at, updated_at) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?8, ?8)",
        queue(),
    )
    conn.execute(
        "INSERT INTO pending_payloads (item_id, tool_input, raw_output) "
        "SELECT id, '{\"command\": \"pytest -q\"}', printf('%.200c', 'x') FROM pending_queue"
    )
    # A few items other workers hold, so the lease check has something to look at.
    conn.execute(
        "UPDATE pending_queue SET status = 'processing', lease_owner = 'other', "
        "lease_expires_at = '2999-01-01T00:00:00.000Z' "
        "WHERE rowid IN (SELECT rowid FROM pending_queue WHERE status = 'done' LIMIT 5)"
    )
    conn.execute("COMMIT")
    conn.execute(
        "UPDATE observations SET embedding = ?, embedding_model = 'all-MiniLM-L6-v2', "
        "embedding_version = '1' WHERE session_id < ?",
        [EMBEDDING, f"s{EMBEDDED_SESSIONS:07d}"],
    )
    conn.execute("INSERT INTO observations_fts(observations_fts) VALUES ('rebuild')")
    conn.execute(fts_trigger)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("ANALYZE")
    conn.close()
    return time.perf_counter() - start


def bench_tables(work: Path, rows: int, iterations: int) -> dict:
    path = work / f"tables-{rows}.db"
    build_s = build(path, rows)
    store = Store(path)
    raw = raw_connection(path)

    def store_dequeue() -> None:
        got = store.claim(5, worker="bench", lease_seconds=300)
        assert len(got) == 5

    def raw_dequeue() -> None:
        now = now_ts()
        expires = ts(time.time_ns() // 1_000_000 + 300_000)
        raw.execute("BEGIN IMMEDIATE")
        raw.execute(EXPIRE_LEASES, [now])
        claimed = raw.execute(
            CLAIM, {"now": now, "worker": "raw", "expires": expires, "n": 5}
        ).fetchall()
        raw.execute("COMMIT")
        ids = [r[0] for r in claimed]
        raw.execute(
            "SELECT item_id, tool_input, raw_output FROM pending_payloads "
            f"WHERE item_id IN ({', '.join('?' for _ in ids)})",
            ids,
        ).fetchall()
        assert len(ids) == 5

    dequeue = side_by_side(store_dequeue, raw_dequeue, iterations, warmup=20)

    rng = random.Random(7)
    sessions = rows // PER_SESSION
    plain = [f"s{rng.randrange(EMBEDDED_SESSIONS, sessions):07d}" for _ in range(200)]
    embedded = [f"s{i:07d}" for i in range(EMBEDDED_SESSIONS)]

    def listing(sample: list[str], n: int) -> dict:
        """The same sessions, in the same order, for both; a warm-up pass over them first."""
        mine, theirs = iter(sample * 1000), iter(sample * 1000)

        def store_list() -> None:
            assert len(store.list_observations(next(mine), 100)) == PER_SESSION

        def raw_list() -> None:
            assert len(raw.execute(LIST_BY_SESSION, [next(theirs), 100]).fetchall()) == 100

        return side_by_side(store_list, raw_list, n, warmup=len(sample))

    listed = listing(plain, iterations)
    listed_embedded = listing(embedded, iterations // 2)
    plans = {
        name: [r[3] for r in raw.execute("EXPLAIN QUERY PLAN " + sql, params)]
        for name, sql, params in (
            ("list", LIST_BY_SESSION, ["s0000001", 100]),
            ("claim", CLAIM, {"now": now_ts(), "worker": "x", "expires": now_ts(), "n": 5}),
            ("expire", EXPIRE_LEASES, [now_ts()]),
        )
    }
    store.close()
    raw.close()
    size_mb = os.path.getsize(path) / 1e6
    path.unlink()
    return {
        "rows": rows,
        "build_s": build_s,
        "size_mb": size_mb,
        "dequeue": dequeue,
        "list": listed,
        "list_embedded": listed_embedded,
        "plans": plans,
    }


# Migration


def schema_statements(reference: Path) -> list[str]:
    """Every statement that made the reference file, in order, minus what SQLite derives."""
    conn = sqlite3.connect(reference)
    shadows = ("_data", "_idx", "_content", "_docsize", "_config")
    rows = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid"
    ).fetchall()
    conn.close()
    return [sql for name, sql in rows if not (name.endswith(shadows) and "_fts_" in name)]


def bench_migrate(work: Path, n: int) -> dict:
    reference = work / "migrate-reference.db"
    Store(reference).close()
    statements = schema_statements(reference)
    counter = iter(range(10**9))

    def store_op() -> None:
        Store(work / f"m-store-{next(counter)}.db").close()

    def raw_op() -> None:
        conn = raw_connection(work / f"m-raw-{next(counter)}.db")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("BEGIN IMMEDIATE")
        for sql in statements:
            conn.execute(sql)
        conn.executemany(
            "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES (?, ?, ?)",
            [
                ("datasette_claude_mem", name, now_ts())
                for name in ("m001_enable_wal", "m002_create_tables")
            ],
        )
        conn.execute("COMMIT")
        conn.close()

    result = side_by_side(store_op, raw_op, n, warmup=3, block=5)
    for leftover in work.glob("m-*.db*"):
        leftover.unlink()
    return result


# Writer processes


def writer_child(mode: str, db: str, session: str, tag: str, n: int, go: str) -> int:
    """One writer process: report per-write latencies, errors and successes as JSON."""
    store = Store(db) if mode == "store" else None
    raw = raw_connection(Path(db)) if mode == "raw" else None
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.001)
    latencies: list[float] = []
    errors: list[str] = []
    ok = 0
    start = time.time()
    for i in range(n):
        title = f"{tag} write {i}"
        t0 = time.perf_counter()
        try:
            if store is not None:
                store.create_observation(
                    ObservationCreate(
                        session_id=session, tool_name="Edit", title=title, summary=SUMMARY
                    )
                )
            else:
                content_hash = hashlib.sha256(title.encode()).hexdigest()
                raw.execute("BEGIN IMMEDIATE")
                try:
                    project = raw.execute(
                        "SELECT project FROM sessions WHERE id = ?", [session]
                    ).fetchone()[0]
                    raw.execute(
                        INSERT_OBSERVATION,
                        [new_id(), project, session, None, "Edit", title, SUMMARY, None, "[]",
                         "[]", 0, 0, content_hash, None, None, None, now_ts()],
                    )  # fmt: skip
                    raw.execute("SELECT changes()").fetchone()
                    raw.execute(
                        "SELECT * FROM observations WHERE content_hash = ?", [content_hash]
                    ).fetchone()
                    raw.execute("COMMIT")
                except BaseException:
                    if raw.in_transaction:
                        raw.execute("ROLLBACK")
                    raise
            ok += 1
        except Exception as error:  # noqa: BLE001 - counted and reported, not raised
            errors.append(repr(error))
        latencies.append(time.perf_counter() - t0)
    end = time.time()
    print(
        json.dumps(
            {"lat": latencies, "errors": errors[:5], "n_errors": len(errors), "ok": ok,
             "start": start, "end": end}
        )
    )  # fmt: skip
    return 0


def bench_writers(work: Path, procs: int, writes: int, mode: str) -> dict:
    db = work / f"writers-{mode}-{procs}.db"
    with Store(db) as store:
        for p in range(procs):
            store.conn.execute(
                "INSERT INTO sessions (id, project, project_dir) VALUES (?, 'bench', '/bench')",
                [f"w{p}"],
            )
    go = work / f"go-{mode}-{procs}"
    children = [
        subprocess.Popen(
            [sys.executable, __file__, "--writer", mode, str(db), f"w{p}", f"w{p}", str(writes)]
            + [str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in range(procs)
    ]
    for child in children:
        assert child.stdout.readline().strip() == "ready"
    go.touch()
    reports, exit_errors, stderr = [], 0, []
    for child in children:
        out, err = child.communicate(timeout=600)
        if child.returncode != 0 or not out.strip():
            exit_errors += 1
        else:
            reports.append(json.loads(out))
        if err.strip():
            stderr.append(err.strip()[:300])
    conn = sqlite3.connect(db)
    stored = conn.execute("SELECT count(*) FROM observations").fetchone()[0]
    counted = conn.execute("SELECT sum(observation_count) FROM sessions").fetchone()[0]
    integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
    conn.close()
    for leftover in work.glob(f"writers-{mode}-{procs}.db*"):
        leftover.unlink()
    go.unlink()
    ok = sum(r["ok"] for r in reports)
    latencies = [x for r in reports for x in r["lat"]]
    span = max(r["end"] for r in reports) - min(r["start"] for r in reports)
    return {
        "procs": procs,
        "mode": mode,
        "errors": sum(r["n_errors"] for r in reports) + exit_errors,
        "error_samples": [e for r in reports for e in r["errors"]][:3] + stderr[:3],
        "lost": ok - stored,
        "count_mismatch": (counted or 0) - stored,
        "rows": stored,
        "expected": procs * writes,
        "throughput": stored / span if span > 0 else 0.0,
        "integrity": integrity,
        **summary(latencies),
    }


# Report


def verdict(ok: bool) -> str:
    return "met" if ok else "**MISSED**"


def report(results: dict, args: argparse.Namespace, elapsed: float) -> str:
    ins, mig = results["insert"], results["migrate"]
    tables = results["tables"]
    big = tables[-1]
    lines = [
        "# Store benchmark",
        "",
        f"Run: `python bench/bench_store.py{' --quick' if args.quick else ''}` on "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}, {elapsed:.0f} s in all.",
        "",
        f"- Machine: {machine()}",
        "- Versions: "
        + ", ".join(f"{k} {v}" for k, v in versions("sqlite-utils", "pydantic").items()),
        f"- Load average (1 min): {results['load'][0]:.1f} at the start, "
        f"{results['load'][1]:.1f} at the end (other work shared the machine; p99s move with "
        "it more than p50s)",
        "- Store: WAL, synchronous=NORMAL, busy_timeout=5000, foreign_keys and "
        "recursive_triggers on. Raw: a bare sqlite3 connection with the same pragmas running "
        "the same statements on a file of the same schema (so the same triggers fire).",
        "- Times in milliseconds; ratio = store p50 / raw p50.",
        "",
        "## Targets",
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
        f"| store insert <= {TARGETS['insert_ratio']}x raw | {ins['ratio']:.2f}x "
        f"| {verdict(ins['ratio'] <= TARGETS['insert_ratio'])} |",
        f"| claim(5) p50 <= {TARGETS['dequeue_p50_ms']} ms at {big['rows']:,} rows "
        f"| {big['dequeue']['store']['p50']:.3f} ms "
        f"| {verdict(big['dequeue']['store']['p50'] <= TARGETS['dequeue_p50_ms'])} |",
        f"| list_by_session(100) p50 <= {TARGETS['list_p50_ms']} ms warm at {big['rows']:,} "
        f"rows | {big['list']['store']['p50']:.3f} ms "
        f"| {verdict(big['list']['store']['p50'] <= TARGETS['list_p50_ms'])} |",
        f"| fresh migration <= {TARGETS['migrate_p50_ms']:.0f} ms | "
        f"{mig['store']['p50']:.1f} ms | "
        f"{verdict(mig['store']['p50'] <= TARGETS['migrate_p50_ms'])} |",
    ]
    for w in results["writers"]:
        if w["mode"] == "store" and w["procs"] == 50:
            ok = w["errors"] == 0 and w["lost"] == 0 and w["rows"] == w["expected"]
            lines.append(
                f"| 50 writers: 0 errors, 0 lost | {w['errors']} errors, {w['lost']} lost, "
                f"{w['rows']}/{w['expected']} rows | {verdict(ok)} |"
            )
    if args.quick:
        lines.append("")
        lines.append(f"(--quick: the large table has {big['rows']:,} rows, not 1,000,000.)")
    lines += [
        "",
        "## Operations",
        "",
        "| operation | rows | store p50 | store p99 | raw p50 | raw p99 | ratio | n |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def row(name: str, rows: str, r: dict) -> str:
        s, w = r["store"], r["raw"]
        return (
            f"| {name} | {rows} | {s['p50']:.3f} | {s['p99']:.3f} | {w['p50']:.3f} | "
            f"{w['p99']:.3f} | {r['ratio']:.2f}x | {r['n']} |"
        )

    lines.append(row("observation insert (one transaction)", "-", ins))
    for t in tables:
        lines.append(row("claim(5)", f"{t['rows']:,}", t["dequeue"]))
        lines.append(row("list_observations(session, 100), warm", f"{t['rows']:,}", t["list"]))
        lines.append(
            row(
                "list_observations, rows with 384-d embeddings",
                f"{t['rows']:,}",
                t["list_embedded"],
            )
        )
    lines.append(row("migrate a fresh file", "-", mig))
    lines += [
        "",
        "Large files: "
        + "; ".join(
            f"{t['rows']:,} rows built in {t['build_s']:.1f} s ({t['size_mb']:.0f} MB)"
            for t in tables
        )
        + ".",
        "",
        "## Concurrent writer processes (200 writes each)",
        "",
        "| processes | path | errors | rows lost | rows | count ok | integrity | writes/s "
        "| p50 ms | p99 ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for w in results["writers"]:
        lines.append(
            f"| {w['procs']} | {w['mode']} | {w['errors']} | {w['lost']} | "
            f"{w['rows']}/{w['expected']} | {'yes' if w['count_mismatch'] == 0 else 'NO'} | "
            f"{w['integrity']} | {w['throughput']:.0f} | {w['p50']:.2f} | {w['p99']:.2f} |"
        )
    samples = [s for w in results["writers"] for s in w["error_samples"]]
    if samples:
        lines += ["", "Error samples:", ""] + [f"- `{s}`" for s in samples[:6]]
    lines += ["", "## Query plans at the largest size", ""]
    for name, plan in big["plans"].items():
        lines.append(f"- {name}: " + "; ".join(plan))
    lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k rows instead of 1M")
    parser.add_argument("--out", default=str(ROOT / "bench" / "RESULTS-store.md"))
    parser.add_argument("--writer", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.writer:
        mode, db, session, tag, n, go = args.writer
        return writer_child(mode, db, session, tag, int(n), go)

    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="bench-store-"))
    load_start = os.getloadavg()[0]
    try:
        results: dict = {}
        print("insert ...", flush=True)
        results["insert"] = bench_insert(work, 1000 if args.quick else 3000)
        print("migrate ...", flush=True)
        results["migrate"] = bench_migrate(work, 20 if args.quick else 40)
        results["tables"] = []
        for rows in (10_000, 100_000 if args.quick else 1_000_000):
            print(f"tables at {rows:,} rows ...", flush=True)
            results["tables"].append(bench_tables(work, rows, 500))
        results["writers"] = []
        for procs in (3, 10, 50):
            for mode in ("store", "raw"):
                print(f"{procs} {mode} writers ...", flush=True)
                results["writers"].append(bench_writers(work, procs, 200, mode))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["load"] = (load_start, os.getloadavg()[0])
    text = report(results, args, time.perf_counter() - started)
    Path(args.out).write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
