"""Export, import and backup of a whole memory against their floors, measured in one run.

    python bench/bench_portable.py [--observations N]

One memory file is filled through the store (observations with a detail and a 384-d
embedding, learnings, functions, edges, events). Then, each beside its floor:

- export to a file against reading every row of the same tables with a bare sqlite3 cursor;
- import into a fresh memory against `INSERT INTO ... SELECT *` from the attached source
  (the same schema, so the same triggers and indexes do the same work);
- the same import again (every row already there);
- backup (copy, integrity_check, row counts, rename) against the bare backup API.

The table goes into bench/RESULTS-portable.md between its markers.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from benchlib import machine, versions

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from datasette_claude_mem.storage import backup, portable  # noqa: E402
from datasette_claude_mem.storage.models import (  # noqa: E402
    LearningCreate,
    ObservationCreate,
    SessionStart,
)
from datasette_claude_mem.storage.store import Store  # noqa: E402

RESULTS = Path(__file__).with_name("RESULTS-portable.md")
START, END = "<!-- results -->", "<!-- /results -->"


def fill(path: Path, observations: int) -> None:
    with Store(path) as store:
        sessions = [
            store.create_session(SessionStart(project_dir=f"/bench/p{i % 4}")).row
            for i in range(40)
        ]
        with store.write():
            for i in range(observations):
                session = sessions[i % len(sessions)]
                store.create_observation(
                    ObservationCreate(
                        session_id=session.id,
                        tool_name="Edit",
                        title=f"change {i}",
                        summary=f"the parser handles case {i} of the tokenizer",
                        detail="detail " * 150,
                        files_touched=[f"src/m{i % 50}.py"],
                        embedding=[((i * 7 + k) % 97) / 97 for k in range(384)],
                        embedding_model="bench",
                        embedding_version="1",
                    )
                )
                if i % 10 == 0:
                    store.create_learning(
                        LearningCreate(category="pattern", content=f"learning {i}")
                    )
                    store.log_event("bench", {"i": i}, session_id=session.id)


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def read_all(path: Path) -> None:
    conn = sqlite3.connect(path)
    for table in portable.MEMORY_TABLES:
        for _ in conn.execute(f"SELECT * FROM {table}"):
            pass
    conn.close()


def copy_all(source: Path, target: Path) -> None:
    Store(target).close()
    conn = sqlite3.connect(target, isolation_level=None)
    conn.execute("PRAGMA recursive_triggers=ON")
    conn.execute("ATTACH ? AS src", [str(source)])
    conn.execute("BEGIN IMMEDIATE")
    for table in portable.MEMORY_TABLES:
        conn.execute(f"INSERT INTO {table} SELECT * FROM src.{table}")
    conn.execute("COMMIT")
    conn.close()


def bare_backup(source: Path, target: Path) -> None:
    src, dest = sqlite3.connect(source), sqlite3.connect(target)
    src.backup(dest)
    dest.close()
    src.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--observations", type=int, default=20_000)
    args = parser.parse_args()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        memory = base / "memory.db"
        fill(memory, args.observations)
        size = memory.stat().st_size
        export_file = base / "export.jsonl"

        def export() -> None:
            with Store(memory) as store:
                portable.write_file(export_file, portable.export_lines(store.conn))

        def import_into(target: Path) -> None:
            with Store(target) as store, export_file.open("rb") as lines:
                portable.import_lines(store, lines)

        rows = []
        floor = timed(lambda: read_all(memory))
        rows.append(("export to a file", timed(export), "read every row", floor))
        floor = timed(lambda: copy_all(memory, base / "floor.db"))
        first = timed(lambda: import_into(base / "imported.db"))
        rows.append(("import into a fresh memory", first, "INSERT ... SELECT *", floor))
        again = timed(lambda: import_into(base / "imported.db"))
        rows.append(("the same import again", again, "INSERT ... SELECT *", floor))
        floor = timed(lambda: bare_backup(memory, base / "bare.db"))
        checked = timed(lambda: backup.backup(memory, base / "backup.db"))
        rows.append(("backup, checked", checked, "bare backup API", floor))
        export_size = export_file.stat().st_size
        backup_size = (base / "backup.db").stat().st_size
        total = sum(backup.check(memory).values())
    lines = [
        f"Run: `python bench/bench_portable.py --observations {args.observations}` on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {time.perf_counter() - began:.0f} s in all.",
        "",
        f"- Machine: {machine()}",
        "- " + ", ".join(f"{k} {v}" for k, v in versions("sqlite-utils", "orjson").items()),
        f"- Memory: {args.observations:,} observations (1 KB detail, 384-d embedding), "
        f"{total:,} rows in all tables (full-text tables included), {size / 1e6:.1f} MB; "
        f"export {export_size / 1e6:.1f} MB, backup {backup_size / 1e6:.1f} MB",
        "- One run each (times in ms); ratio = operation / floor, both measured in this run.",
        "",
        "| operation | ms | floor | floor ms | ratio |",
        "|---|---|---|---|---|",
        *(f"| {op} | {ms:.0f} | {fl} | {fms:.0f} | {ms / fms:.1f}x |" for op, ms, fl, fms in rows),
    ]
    table = "\n".join(lines)
    print(table)
    empty = f"# Export, import and backup\n\n{START}\n{END}\n"
    text = RESULTS.read_text() if RESULTS.exists() else empty
    head, rest = text.split(START, 1)
    RESULTS.write_text(f"{head}{START}\n{table}\n{END}{rest.split(END, 1)[1]}")


if __name__ == "__main__":
    main()
