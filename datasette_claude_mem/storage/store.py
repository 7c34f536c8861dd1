"""Every read and write of the memory: the one path to the database, whoever calls it.

The store works on a file path (it opens and migrates its own connection) or on a connection
someone else owns, such as Datasette's write thread for the database. Writes start with
BEGIN IMMEDIATE, or nest as a savepoint inside a transaction the caller already holds, so a
write either happens whole or not at all. The statements are written as SQL rather than
through ``Table.insert()``: sqlite-utils reads the table's columns on every insert, which
alone costs twice a whole raw insert.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from datasette_claude_mem.storage.code_map import CodeMapStore
from datasette_claude_mem.storage.database import (
    StoreBase,
)
from datasette_claude_mem.storage.entries import EntryStore
from datasette_claude_mem.storage.event_log import EventLogStore
from datasette_claude_mem.storage.forget import ForgetStore
from datasette_claude_mem.storage.learnings import LearningStore
from datasette_claude_mem.storage.models import (
    SearchHit,
)
from datasette_claude_mem.storage.observations import ObservationStore
from datasette_claude_mem.storage.queue import QueueStore
from datasette_claude_mem.storage.search import search
from datasette_claude_mem.storage.sessions import SessionStore
from datasette_claude_mem.storage.staleness import StalenessStore

if TYPE_CHECKING:
    pass


class Store(
    SessionStore,
    ObservationStore,
    CodeMapStore,
    LearningStore,
    QueueStore,
    EventLogStore,
    EntryStore,
    ForgetStore,
    StalenessStore,
    StoreBase,
):
    """Every read and write of the memory, by family (each mixin one table or two)."""

    def search(
        self,
        project: str | None,
        query: str,
        limit: int = 20,
        *,
        kinds: Sequence[str] | str | None = None,
        since: str | None = None,
        mode: str | None = "keyword",
        types: Sequence[str] | str | None = None,
    ) -> list[SearchHit]:
        """Search a project's memory (its own and global learnings); see storage.search."""
        found = search(
            self.conn,
            query,
            project=project,
            kinds=kinds,
            since=since,
            limit=limit,
            mode=mode,
            types=types,
        )
        return found.hits
