"""Benchmark forgetting a whole project, against baselines measured in the same run.

    python bench/bench_forget.py [--quick] [--out bench/RESULTS-forget.md]

A memory holds two projects of the same size (about 100k rows each: sessions, observations,
tool uses with their payloads, events, vectors, function map and call graph rows, learnings).
Forgetting one of them is timed three ways, each on its own copy of the same file:

* erase: the store's forget (secure_delete, every row that came from the project, the search
  indexes optimised, the WAL checkpointed);
* bare delete: plain DELETEs of the same tables' rows by project, with secure_delete off and
  no optimise or checkpoint; the ratio is what wiping the content costs;
* without the m013 indexes, on a smaller memory (the deletes without them grow with the
  square of the rows): the ratio to erase on the same smaller memory is what they save.

Nothing here asserts: it reports.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from benchlib import machine, versions

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from datasette_claude_mem.storage.database import connect  # noqa: E402
from datasette_claude_mem.storage.forget import ForgetRequest  # noqa: E402
from datasette_claude_mem.storage.models import new_id  # noqa: E402
from datasette_claude_mem.storage.store import Store  # noqa: E402

M013_INDEXES = (
    "idx_obs_queue_item",
    "idx_learn_session",
    "idx_entries_project",
    "idx_entries_session",
    "idx_log_project",
)
TEXT = "Changed the tokenizer so identifiers split on unicode boundaries; tests pass. "


def build(path: Path, observations: int) -> dict[str, int]:
    """Two projects, `observations` observations each, and what goes with them."""
    Store(path).close()
    conn = connect(path)
    per_session = 1000
    conn.execute("BEGIN IMMEDIATE")
    for project in ("/src/forget-me", "/src/keep-me"):
        sessions = [new_id() for _ in range(max(1, observations // per_session))]
        conn.executemany(
            "INSERT INTO sessions (id, project, project_dir, summary) VALUES (?, ?, ?, ?)",
            [(s, project, project, TEXT) for s in sessions],
        )
        items = []
        for n in range(observations):
            items.append((new_id(), sessions[n % len(sessions)], n))
        conn.executemany(
            "INSERT INTO pending_queue (id, project, session_id, tool_use_id, tool_name, status) "
            f"VALUES (?, '{project}', ?, 'tu-' || ?, 'Edit', 'done')",
            items,
        )
        conn.executemany(
            "INSERT INTO pending_payloads (item_id, tool_input, raw_output) VALUES (?, '{}', ?)",
            [(i, TEXT * 6) for i, _, _ in items],
        )
        obs = [(new_id(), s, i, f"edit {n}", TEXT) for i, s, n in items]
        conn.executemany(
            "INSERT INTO observations (id, project, session_id, queue_item_id, tool_name, title, "
            f"summary) VALUES (?, '{project}', ?, ?, 'Edit', ?, ?)",
            obs,
        )
        conn.executemany(
            "INSERT INTO embeddings (kind, item_id, model, version, dims, vector, text_hash) "
            "VALUES ('observation', ?, 'm', '1', 64, zeroblob(256), 'h')",
            [(o[0],) for o in obs[: observations // 2]],
        )
        conn.executemany(
            "INSERT INTO event_log (id, project, session_id, event_type, data) "
            f"VALUES (?, '{project}', ?, 'UserPromptSubmit', ?)",
            [
                (new_id(), sessions[n % len(sessions)], json.dumps({"prompt": f"{TEXT} {n}"}))
                for n in range(observations // 2)
            ],
        )
        tenth = observations // 10
        conn.executemany(
            "INSERT INTO function_map (id, project, session_id, file_path, qualified_name, kind, "
            f"body_hash) VALUES (?, '{project}', ?, ?, 'f', 'function', 'h')",
            [(new_id(), sessions[n % len(sessions)], f"src/m{n}.py") for n in range(tenth)],
        )
        conn.executemany(
            "INSERT INTO call_graph (id, project, caller_file, caller_function, callee_function, "
            f"resolution, session_id) VALUES (?, '{project}', ?, 'main', 'f', 'direct', ?)",
            [(new_id(), f"src/m{n}.py", sessions[n % len(sessions)]) for n in range(tenth)],
        )
        conn.executemany(
            "INSERT INTO learnings (id, project, category, content, source_session_id) "
            f"VALUES (?, '{project}', 'gotcha', ?, ?)",
            [(new_id(), f"{TEXT} {n}", sessions[0]) for n in range(observations // 100)],
        )
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    found = {
        table: conn.execute(
            f"SELECT count(*) FROM {table} WHERE {where}", ["/src/forget-me"]
        ).fetchone()[0]
        for table, where in (
            ("sessions", "project = ?"),
            ("observations", "project = ?"),
            ("pending_queue", "project = ?"),
            ("event_log", "project = ?"),
            ("prompts", "project = ?"),
            ("function_map", "project = ?"),
            ("call_graph", "project = ?"),
            ("learnings", "project = ?"),
        )
    }
    found["pending_payloads"] = found["pending_queue"]
    found["embeddings"] = observations // 2
    conn.close()
    return found


def copy(source: Path, name: str) -> Path:
    target = source.with_name(name)
    shutil.copyfile(source, target)
    return target


def timed_erase(path: Path) -> tuple[float, int]:
    with Store(path) as store:
        started = time.perf_counter()
        tomb = store.erase(ForgetRequest(project="/src/forget-me"), by="bench")
        return time.perf_counter() - started, tomb.count


def timed_one_observation(path: Path) -> float:
    """One observation of the project forgotten: the search index is optimised whole."""
    with Store(path) as store:
        [row_id] = store.conn.execute(
            "SELECT id FROM observations WHERE project = '/src/forget-me' LIMIT 1"
        ).fetchone()
        started = time.perf_counter()
        store.erase(ForgetRequest(kind="observation", id=row_id), by="bench")
        return time.perf_counter() - started


def timed_bare_delete(path: Path) -> float:
    """The same tables' rows by project, deleted plainly: no wiping, no optimise."""
    conn = connect(path)
    conn.execute("PRAGMA secure_delete=OFF")
    started = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    p = ["/src/forget-me"]
    conn.execute(
        "DELETE FROM embeddings WHERE kind = 'observation' AND item_id IN "
        "(SELECT id FROM observations WHERE project = ?)",
        p,
    )
    for table in ("observations", "event_log", "function_map", "call_graph", "learnings"):
        conn.execute(f"DELETE FROM {table} WHERE project = ?", p)
    conn.execute(
        "DELETE FROM pending_payloads WHERE item_id IN "
        "(SELECT id FROM pending_queue WHERE project = ?)",
        p,
    )
    conn.execute("DELETE FROM pending_queue WHERE project = ?", p)
    conn.execute("DELETE FROM sessions WHERE project = ?", p)
    conn.execute("COMMIT")
    took = time.perf_counter() - started
    conn.close()
    return took


def without_indexes(path: Path) -> Path:
    conn = connect(path)
    for index in M013_INDEXES:
        conn.execute(f"DROP INDEX {index}")
    conn.close()
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a tenth of the rows")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS-forget.md")
    args = parser.parse_args()
    big = 2_500 if args.quick else 25_000
    small = 500 if args.quick else 2_500
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "big.db"
        rows = build(base, big)
        total = sum(rows.values())
        erase_s, erased = timed_erase(copy(base, "erase.db"))
        bare_s = timed_bare_delete(copy(base, "bare.db"))
        one_s = timed_one_observation(copy(base, "one.db"))
        observations = 2 * rows["observations"]
        size = base.stat().st_size
        small_base = Path(tmp) / "small.db"
        small_rows = sum(build(small_base, small).values())
        small_erase_s, _ = timed_erase(copy(small_base, "small-erase.db"))
        no_index_s, _ = timed_erase(without_indexes(copy(small_base, "small-noindex.db")))
    lines = [
        "# Forgetting a project",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}; "
        + ", ".join(f"{k} {v}" for k, v in versions("sqlite-utils", "datasette").items())
        + ".",
        "",
        f"`python bench/bench_forget.py{' --quick' if args.quick else ''}`: a memory of two "
        f"projects of the same size ({size / 1e6:.0f} MB), one forgotten. Each time is one "
        "run on its own copy of the same file; the ratios compare runs of this one process.",
        "",
        "| what | rows of the project | time | ratio |",
        "|---|---:|---:|---:|",
        f"| erase (the store's forget) | {total:,} | {erase_s:.2f} s | 1.00 |",
        f"| bare DELETEs, no secure_delete, no optimise | {total:,} | {bare_s:.2f} s "
        f"| {bare_s / erase_s:.2f} |",
        f"| erase one observation (of {observations:,} in the memory) | 1 "
        f"| {one_s:.2f} s | {one_s / erase_s:.2f} |",
        f"| erase, smaller memory | {small_rows:,} | {small_erase_s:.2f} s | 1.00 |",
        f"| erase without the m013 indexes, smaller memory | {small_rows:,} | {no_index_s:.2f} s "
        f"| {no_index_s / small_erase_s:.1f} |",
        "",
        f"The erase deleted {erased:,} rows ({erased / erase_s:,.0f} rows a second), "
        f"{erase_s / bare_s:.1f} times a bare delete's time: the wiping (zeroed pages, the "
        "search indexes rewritten without the deleted rows' terms, the WAL checkpointed) is "
        "that ratio's cost. Without the indexes m013 adds, each deleted tool use makes SQLite "
        "scan the observations for the rows that name it (a foreign key without an index), so "
        f"the smaller memory alone takes {no_index_s / small_erase_s:.0f} times as long, and "
        "the gap widens as the memory grows (each delete scans more). On a shared machine the "
        "times of two runs differ by up to twice; compare ratios, which are of one run.",
        "",
        "Forgetting one observation rewrites the observations' search index whole (FTS5's "
        "optimise; SQLite 3.40 has no secure-delete option for FTS5), so its time grows with "
        "the memory, not with what is forgotten: "
        f"{one_s:.2f} s here, with {observations:,} observations.",
        "",
        "Rows of the forgotten project, by table: "
        + ", ".join(f"{t} {n:,}" for t, n in rows.items())
        + ".",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
