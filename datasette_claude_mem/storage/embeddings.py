"""The worker's embedding step: vectors for rows that have none yet, in batches, off the hook
path. The server's worker runs it when the queue is idle; `datasette claude-mem embed`
backfills a whole file. The model runs outside any transaction: it takes the longest.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from datasette_claude_mem.storage.search import SOURCES, Source
from datasette_claude_mem.storage.store import Store
from datasette_claude_mem.storage.vectors import Embedder, text_hash, to_blob

BATCH_SIZE = 64
Row = tuple[str, str, str, str, int, bytes, str]


@dataclass
class Waiting:
    kind: str
    item_id: str
    text: str


def _rows_sql(source: Source, missing_only: bool) -> str:
    missing = (
        "AND NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.kind = :kind "
        "AND e.item_id = t.id AND e.model = :model AND e.version = :version)"
        if missing_only
        else ""
    )
    return f"""SELECT t.id, {source.text} FROM {source.table} t
        WHERE {source.where} AND {source.text} IS NOT NULL {missing}
        ORDER BY t.rowid LIMIT :limit OFFSET :offset"""


def waiting(conn: sqlite3.Connection, embedder: Embedder, limit: int) -> list[Waiting]:
    """Up to `limit` rows that have no vector of this model version yet."""
    found: list[Waiting] = []
    for source in SOURCES:
        if len(found) >= limit:
            break
        params = {"kind": source.kind, "model": embedder.name, "version": embedder.version}
        params.update({"limit": limit - len(found), "offset": 0})
        rows = conn.execute(_rows_sql(source, missing_only=True), params).fetchall()
        found += [Waiting(source.kind, item_id, text) for item_id, text in rows]
    return found


def embed_rows(embedder: Embedder, batch: list[Waiting]) -> list[Row]:
    """The embeddings rows for a batch: what the model makes, ready to store."""
    if not batch:
        return []
    vectors = embedder.embed([item.text for item in batch])
    return [
        (item.kind, item.item_id, embedder.name, embedder.version, len(vector),
         to_blob(vector), text_hash(item.text))
        for item, vector in zip(batch, vectors, strict=True)
    ]  # fmt: skip


def store_rows(store: Store, rows: list[Row]) -> int:
    """One write transaction. REPLACE gives a re-embedded row a new rowid: that is how the
    vectors kept in memory by searches learn that it changed."""
    with store.write() as conn:
        conn.executemany(
            "INSERT OR REPLACE INTO embeddings "
            "(kind, item_id, model, version, dims, vector, text_hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    return len(rows)


def embed_new(store: Store, embedder: Embedder, batch_size: int = BATCH_SIZE) -> int:
    """One batch of rows without a vector; returns how many were embedded."""
    return store_rows(store, embed_rows(embedder, waiting(store.conn, embedder, batch_size)))


def backfill(
    store: Store,
    embedder: Embedder,
    *,
    everything: bool = False,
    batch_size: int = BATCH_SIZE,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Embed every row without a vector; with `everything`, also every row whose text
    changed since it was embedded. Returns how many vectors were written."""
    written = 0
    if not everything:
        while count := embed_new(store, embedder, batch_size):
            written += count
            if progress:
                progress(written)
        return written
    known = dict(
        ((kind, item), digest)
        for kind, item, digest in store.conn.execute(
            "SELECT kind, item_id, text_hash FROM embeddings WHERE model = ? AND version = ?",
            [embedder.name, embedder.version],
        )
    )
    for source in SOURCES:
        offset = 0
        while rows := store.conn.execute(
            _rows_sql(source, missing_only=False), {"limit": batch_size, "offset": offset}
        ).fetchall():
            offset += len(rows)
            batch = [
                Waiting(source.kind, item_id, text)
                for item_id, text in rows
                if known.get((source.kind, item_id)) != text_hash(text)
            ]
            written += store_rows(store, embed_rows(embedder, batch))
            if progress:
                progress(written)
    return written
