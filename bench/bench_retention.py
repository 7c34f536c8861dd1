"""Retention's disk goal: 10,000 tool uses of 100 KB leave at most 50 MB once it has run.

    python bench/bench_retention.py [--tool-uses N] [--kb K]

One memory file takes N PostToolUse events of Claude Code's shape (a Bash command whose
stdout is K KB of log lines, each output its own) through the hook path the server runs
(claude_code/events.handle_hook: redaction, the queue with its 64 KB cap, the event row),
200 events a transaction. The worker's loop turns every item into an observation. The
items are then aged past retention_days (their completed_at set 31 days back), and the
worker's upkeep runs as the server's idle loop would, step by step, until it has nothing
left to do. Recorded: the file's size after the events, after the worker, after the upkeep;
the steps the upkeep took and its longest one (how long a hook could wait behind it); and
the time of the upkeep against its floor in the same run, a bare DELETE of the same
payloads and one VACUUM on a copy of the same file. The dashboard's Space read (dbstat) is
timed on the large file too.

The table goes into bench/RESULTS-retention.md between its markers.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from benchlib import machine, versions

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from datasette_claude_mem.claude_code.events import handle_hook  # noqa: E402
from datasette_claude_mem.settings import Config  # noqa: E402
from datasette_claude_mem.storage.retention import Policy, file_size, space  # noqa: E402
from datasette_claude_mem.storage.store import Store  # noqa: E402
from datasette_claude_mem.worker.loop import Worker  # noqa: E402
from datasette_claude_mem.worker.upkeep import Upkeep  # noqa: E402

RESULTS = Path(__file__).with_name("RESULTS-retention.md")
START, END = "<!-- results -->", "<!-- /results -->"
GOAL_MB = 50
BATCH = 200


def output(n: int, kb: int) -> str:
    """K KB of log lines unlike every other output (so nothing deduplicates them)."""
    lines = []
    size = 0
    i = 0
    while size < kb * 1000:
        line = f"[{n:05d}.{i:05d}] INFO worker step {i * 7919 % 10007} finished in {i % 97} ms\n"
        lines.append(line)
        size += len(line)
        i += 1
    return "".join(lines)[: kb * 1000]


def event(n: int, kb: int, project: Path) -> dict:
    return {
        "session_id": f"bench-{n // 100}",
        "cwd": str(project),
        "hook_event_name": "PostToolUse",
        "tool_name": "Bash",
        "tool_input": {"command": f"make test SHARD={n}", "description": "Run a test shard"},
        "tool_response": {"stdout": output(n, kb), "stderr": "", "interrupted": False},
        "tool_use_id": f"toolu_bench_{n:06d}",
        "duration_ms": 1200,
    }


def mb(nbytes: int) -> float:
    return nbytes / 1e6


def fill(store: Store, config: Config, tool_uses: int, kb: int, project: Path) -> float:
    started = time.perf_counter()
    for first in range(0, tool_uses, BATCH):
        with store.write():
            for n in range(first, min(first + BATCH, tool_uses)):
                handle_hook(store, event(n, kb, project), config=config, with_context=False)
        store.checkpoint()
    return time.perf_counter() - started


def work(store: Store) -> float:
    started = time.perf_counter()
    worker = Worker(batch_size=100)
    while worker.run_once(store).outcomes:
        pass
    store.checkpoint()
    return time.perf_counter() - started


def age(store: Store) -> int:
    with store.write() as conn:
        conn.execute(
            "UPDATE pending_queue SET completed_at = "
            "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-31 days') WHERE status = 'done'"
        )
        return conn.execute("SELECT changes()").fetchone()[0]


def upkeep(store: Store, config: Config, path: Path) -> tuple[float, int, dict[str, float]]:
    """The upkeep as the idle loop runs it: seconds in all, steps, and the longest step of
    each kind in ms (purge, vacuum, measure)."""
    keeper = Upkeep(config, path)
    steps, longest = 0, {"purge": 0.0, "vacuum": 0.0, "measure": 0.0}
    started = time.perf_counter()
    while True:
        kind = (
            "purge"
            if keeper.clock() >= keeper.next_purge
            else "vacuum"
            if keeper.vacuuming
            else "measure"
        )
        measured = keeper.space
        t = time.perf_counter()
        did = keeper.step_on(store)
        if keeper.space is not measured:
            kind = "measure"  # the vacuum's last, empty, step and the measure in one call
        longest[kind] = max(longest[kind], (time.perf_counter() - t) * 1000)
        if not did:
            break
        steps += 1
    return time.perf_counter() - started, steps, longest


def floor(path: Path) -> float:
    """A bare DELETE of the finished payloads and one VACUUM, on a plain connection."""
    conn = sqlite3.connect(path, isolation_level=None)
    started = time.perf_counter()
    conn.execute(
        "DELETE FROM pending_payloads WHERE item_id IN "
        "(SELECT id FROM pending_queue WHERE status = 'done')"
    )
    conn.execute("VACUUM")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    took = time.perf_counter() - started
    conn.close()
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tool-uses", type=int, default=10_000)
    parser.add_argument("--kb", type=int, default=100)
    args = parser.parse_args()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        project = base / "repo"
        (project / ".git").mkdir(parents=True)
        config = Config(base_dir=base / "mem")
        config.ensure_dirs()
        path = config.db_path
        with Store(path) as store:
            fill_s = fill(store, config, args.tool_uses, args.kb, project)
            after_events = file_size(path)
            work_s = work(store)
            after_worker = file_size(path)
            observations = store.conn.execute("SELECT count(*) FROM observations").fetchone()[0]
            aged = age(store)
            store.checkpoint()
            shutil.copy(path, base / "copy.db")
            t = time.perf_counter()
            found = space(store.conn, Policy.from_config(config), detail=True)
            space_ms = (time.perf_counter() - t) * 1000
            upkeep_s, steps, longest = upkeep(store, config, path)
            after = file_size(path)
            left = space(store.conn, Policy.from_config(config), detail=True)
            payloads = store.conn.execute("SELECT count(*) FROM pending_payloads").fetchone()[0]
        floor_s = floor(base / "copy.db")
        floor_size = file_size(base / "copy.db")
    total = time.perf_counter() - began
    ok = mb(after) <= GOAL_MB
    holders = ", ".join(f"{name} {mb(b):.1f}" for name, b in left.tables[:5])
    before_holders = ", ".join(f"{name} {mb(b):.1f}" for name, b in found.tables[:3])
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    table = f"""Run: `python bench/bench_retention.py --tool-uses {args.tool_uses} --kb {args.kb}` \
on {stamp}, {total:.0f} s in all.

- Machine: {machine()}
- {", ".join(f"{k} {v}" for k, v in versions("sqlite-utils", "datasette").items())}
- {args.tool_uses:,} PostToolUse events of {args.kb} KB through the hook path in \
{fill_s:.0f} s; {observations:,} observations made by the worker in {work_s:.0f} s; \
{aged:,} items aged past retention_days (30).
- Before retention the file held (MB): {before_holders}; retention would free \
{mb(found.freeable_bytes):.1f} MB; reading that (dbstat and the payloads' lengths) took \
{space_ms:.0f} ms, which is why a page leaves it to the worker on a file this big.
- After it (MB): {holders}; {payloads} payloads left.

| moment | file + WAL, MB |
|---|---|
| after the events | {mb(after_events):.1f} |
| after the worker | {mb(after_worker):.1f} |
| after the upkeep (retention, then incremental vacuum) | **{mb(after):.1f}** |
| goal | {GOAL_MB} ({"met" if ok else "NOT met"}) |

| upkeep | value | floor | floor value | ratio |
|---|---|---|---|---|
| time to purge and give the space back | {upkeep_s * 1000:.0f} ms | bare DELETE + VACUUM \
| {floor_s * 1000:.0f} ms | {upkeep_s / floor_s:.1f}x |
| file size after | {mb(after):.1f} MB | after VACUUM | {mb(floor_size):.1f} MB \
| {after / floor_size:.2f}x |
| steps | {steps} | | | |
| longest purge step (50 rows a rule; a hook may wait this long) | {longest["purge"]:.0f} ms \
| | | |
| longest vacuum step (256 pages) | {longest["vacuum"]:.0f} ms | | | |
| the measure for the dashboard (a read, no lock) | {longest["measure"]:.0f} ms | | | |
"""
    text = RESULTS.read_text() if RESULTS.exists() else f"# Retention\n\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    RESULTS.write_text(f"{head}{START}\n{table}{END}{rest.split(END, 1)[1]}")
    print(table)
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
