"""Retention: what the memory lets go of with age, how the space comes back, and what holds it.

Three rules, each a number of days (0 keeps forever): the raw input and output of a tool use
the worker finished (its observation stays; the payload was kept only to compress it again);
a dead letter, queue row and payload, kept longer so a person can look at it and retry it;
event rows, except the prompts, which search, the timelines and the session pages read.
Deleting frees pages inside the file; with auto_vacuum=INCREMENTAL (m014) `vacuum_step`
hands a few of them at a time back to the file system, so no step holds the write lock for
long. Each purge step is one short write transaction too.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from datasette_claude_mem.storage.database import (
    MIGRATE_VACUUM_BYTES,
    finish_auto_vacuum,
    rows_changed,
)
from datasette_claude_mem.storage.migrations import INCREMENTAL_VACUUM, PROMPT_EVENT
from datasette_claude_mem.storage.models import format_ts

if TYPE_CHECKING:
    from datasette_claude_mem.settings import Config
    from datasette_claude_mem.storage.database import StoreBase

# Rows deleted per rule in one transaction: 50 payloads of 64 KB take 10 to 30 ms here
# (200 took 60 to 140 ms), which is how long a hook may wait behind a step.
STEP_ROWS = 50
RULES = ("payloads", "dead_letters", "events")
# What holds the file, and what retention would free, are read from every page of the file
# (about a second per 500 MB here): a page reads them itself only from a file up to this
# size; the worker measures every file after each retention pass.
LIVE_DETAIL_BYTES = 64 * 1000 * 1000
# What each rule removes, one of it (each takes an "s" for more than one).
RULE_WORDS = {
    "payloads": "raw tool output",
    "dead_letters": "dead letter",
    "events": "event row",
}

# What each rule takes: the table it deletes from, the rows it chooses (by the alias's rowid,
# older than :cutoff), and about how many bytes each of them holds.
_CHOSEN = {
    "payloads": (
        "pending_payloads",
        "p",
        "pending_payloads p JOIN pending_queue q ON q.id = p.item_id "
        "WHERE q.status = 'done' AND q.completed_at < :cutoff",
        "length(p.tool_input) + length(p.raw_output)",
    ),
    "dead_letters": (
        "pending_queue",
        "q",
        "pending_queue q LEFT JOIN pending_payloads p ON p.item_id = q.id "
        "WHERE q.status = 'error' AND q.attempts >= q.max_attempts AND q.updated_at < :cutoff",
        "coalesce(length(p.tool_input) + length(p.raw_output), 0) + 300",
    ),
    "events": (
        "event_log",
        "e",
        f"event_log e WHERE e.created_at < :cutoff AND e.event_type != '{PROMPT_EVENT}'",
        "length(e.data) + 150",
    ),
}


@dataclass(frozen=True)
class Policy:
    """Days each rule keeps; 0 keeps forever."""

    payload_days: int = 30
    dead_letter_days: int = 90
    event_days: int = 90

    @classmethod
    def from_config(cls, config: Config) -> Policy:
        return cls(
            config.retention_days, config.dead_letter_retention_days, config.event_retention_days
        )

    def cutoffs(self, now: datetime | None = None) -> dict[str, str]:
        """The moment before which each rule's rows go, for the rules that are on."""
        now = now or datetime.now(UTC)
        days = {
            "payloads": self.payload_days,
            "dead_letters": self.dead_letter_days,
            "events": self.event_days,
        }
        return {rule: format_ts(now - timedelta(days=d)) for rule, d in days.items() if d > 0}


@dataclass
class Purged:
    """Rows each rule removed."""

    payloads: int = 0
    dead_letters: int = 0
    events: int = 0

    @property
    def total(self) -> int:
        return self.payloads + self.dead_letters + self.events

    def add(self, other: Purged) -> None:
        for rule in RULES:
            setattr(self, rule, getattr(self, rule) + getattr(other, rule))


def purge_step(
    store: StoreBase, policy: Policy, *, limit: int = STEP_ROWS, now: datetime | None = None
) -> Purged:
    """One short write transaction removing up to `limit` rows of each rule."""
    done = Purged()
    cutoffs = policy.cutoffs(now)
    if not cutoffs:
        return done
    with store.write() as conn:
        for rule, cutoff in cutoffs.items():
            table, alias, chosen, _ = _CHOSEN[rule]
            conn.execute(
                f"DELETE FROM {table} WHERE rowid IN "
                f"(SELECT {alias}.rowid FROM {chosen} LIMIT :limit)",
                {"cutoff": cutoff, "limit": limit},
            )
            setattr(done, rule, rows_changed(conn))
    return done


def purge(store: StoreBase, policy: Policy, *, now: datetime | None = None) -> Purged:
    """Everything retention removes now, in steps, so writers get the lock between them."""
    done = Purged()
    while True:
        step = purge_step(store, policy, now=now)
        done.add(step)
        if step.total == 0:
            return done


def freeable(
    conn: sqlite3.Connection, policy: Policy, *, now: datetime | None = None
) -> dict[str, tuple[int, int]]:
    """Rows and about how many bytes each rule would remove now (a read)."""
    found = {}
    for rule, cutoff in policy.cutoffs(now).items():
        _, _, chosen, size = _CHOSEN[rule]
        rows, nbytes = conn.execute(
            f"SELECT count(*), coalesce(sum({size}), 0) FROM {chosen}", {"cutoff": cutoff}
        ).fetchone()
        found[rule] = (rows, nbytes)
    return found


def _pragma(conn: sqlite3.Connection, name: str) -> int:
    return conn.execute(f"PRAGMA {name}").fetchone()[0]


def vacuum_step(
    store: StoreBase, pages: int, *, vacuum_up_to: int | None = MIGRATE_VACUUM_BYTES
) -> int:
    """Hand up to `pages` free pages back to the file system; returns how many it did.

    Once none are left the WAL is checkpointed, which is when the file itself shrinks.
    Only outside a transaction (the pragma is a transaction of its own). A file still
    without incremental auto_vacuum gets the VACUUM that brings it (its pages are counted)
    when it is up to `vacuum_up_to` bytes (None: any size): that VACUUM holds the write lock
    until it has copied the whole file, so only `datasette claude-mem purge` asks for it on
    a bigger one; the worker, which writes beside the hooks, never does.
    """
    conn = store.conn
    if conn.in_transaction:
        return 0
    if _pragma(conn, "auto_vacuum") != INCREMENTAL_VACUUM:
        # A file too big to VACUUM as it was migrated gets it now, after retention.
        ran = finish_auto_vacuum(store.db, up_to_bytes=vacuum_up_to)
        return _pragma(conn, "page_count") if ran else 0
    before = _pragma(conn, "freelist_count")
    if before == 0:
        return 0
    # Python's execute steps a pragma that returns no columns once, freeing one page;
    # executescript runs it to its end.
    conn.executescript(f"PRAGMA incremental_vacuum({int(pages)})")
    freed = before - _pragma(conn, "freelist_count")
    if _pragma(conn, "freelist_count") == 0:
        store.checkpoint()
    return freed


@dataclass
class Space:
    """How big the memory file is and what holds it."""

    path: str | None
    file_bytes: int
    wal_bytes: int
    free_bytes: int
    incremental: bool
    # (table, bytes), largest first; each index and search index counted with its table.
    tables: list[tuple[str, int]] = field(default_factory=list)
    freeable: dict[str, tuple[int, int]] = field(default_factory=dict)
    # When tables and freeable were measured; None: not measured (a file too big to read
    # whole for a page, and no measurement of the worker's yet).
    measured_at: str | None = None

    @property
    def freeable_bytes(self) -> int:
        return sum(b for _, b in self.freeable.values())


def _owner(name: str, tables: dict[str, str]) -> str:
    """The table a b-tree belongs to: an index's table, a search index's shadow tables'."""
    owner = tables.get(name, name)
    for suffix in ("_data", "_idx", "_docsize", "_config", "_content"):
        base = owner.removesuffix(suffix)
        if base != owner and base.endswith("_fts"):
            return base
    return owner


def space(
    conn: sqlite3.Connection,
    policy: Policy,
    *,
    now: datetime | None = None,
    detail: bool | None = None,
) -> Space:
    """The file's size and free pages; with `detail`, also the bytes each table holds
    (SQLite's dbstat, when it has it) and what retention would free now. Both of those read
    every page of the file, so by default only a file up to LIVE_DETAIL_BYTES gets them."""
    now = now or datetime.now(UTC)
    page = _pragma(conn, "page_size")
    path = next((r[2] for r in conn.execute("PRAGMA database_list") if r[1] == "main"), None)
    wal = Path(f"{path}-wal") if path else None
    found = Space(
        path=path or None,
        file_bytes=_pragma(conn, "page_count") * page,
        wal_bytes=wal.stat().st_size if wal is not None and wal.exists() else 0,
        free_bytes=_pragma(conn, "freelist_count") * page,
        incremental=_pragma(conn, "auto_vacuum") == INCREMENTAL_VACUUM,
    )
    if not (found.file_bytes <= LIVE_DETAIL_BYTES if detail is None else detail):
        return found
    found.freeable = freeable(conn, policy, now=now)
    found.measured_at = format_ts(now)
    owners = dict(conn.execute("SELECT name, tbl_name FROM sqlite_master").fetchall())
    try:
        rows = conn.execute("SELECT name, pgsize FROM dbstat WHERE aggregate = TRUE").fetchall()
    except sqlite3.OperationalError:  # an SQLite built without dbstat
        return found
    sizes: dict[str, int] = {}
    for name, nbytes in rows:
        owner = _owner(name, owners)
        sizes[owner] = sizes.get(owner, 0) + nbytes
    found.tables = sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))
    return found


def with_measurement(live: Space, measured: Space | None) -> Space:
    """The live sizes, with the tables and what retention frees from an earlier measurement
    when the live read left them out."""
    if live.measured_at is None and measured is not None:
        live.tables, live.freeable = measured.tables, measured.freeable
        live.measured_at = measured.measured_at
    return live


def file_size(path: str | os.PathLike[str]) -> int:
    """The memory file and its WAL together, as the disk sees them."""
    total = 0
    for suffix in ("", "-wal"):
        part = Path(f"{os.fspath(path)}{suffix}")
        if part.exists():
            total += part.stat().st_size
    return total
