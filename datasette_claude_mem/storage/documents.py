"""A project's own documents in the memory: its markdown, chunked by heading, searchable.

Each pass over a project is a row of index_runs (counts, duration, errors); a file whose
sha256 has not changed is skipped, a file that is gone loses its rows. Chunks keep their path
and line range, so a hit says where to read on.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from datasette_claude_mem.storage.database import to_json
from datasette_claude_mem.storage.models import new_id, utc_now
from datasette_claude_mem.storage.project import project_key
from datasette_claude_mem.storage.store import Store

DEFAULT_GLOBS = ("CLAUDE.md", "README*", "docs/**/*.md", ".claude/**/*.md")
MAX_BYTES = 1024 * 1024  # larger files are not documentation people wrote
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


@dataclass
class Chunk:
    heading: str
    body: str
    line_start: int
    line_end: int


def chunk_markdown(text: str) -> list[Chunk]:
    """Sections of a markdown text, each from its heading to the next (headings inside code
    fences are code, not sections); lines are counted from 1."""
    lines = text.splitlines()
    chunks: list[Chunk] = []
    heading, start, fenced = "", 1, False
    body: list[str] = []

    def close(end: int) -> None:
        content = "\n".join(body).strip()
        if content or heading:
            chunks.append(Chunk(heading, content, start, max(end, start)))

    for number, line in enumerate(lines, start=1):
        if _FENCE.match(line):
            fenced = not fenced
        found = None if fenced else _HEADING.match(line)
        if found:
            close(number - 1)
            heading, start, body = found.group(2), number, []
        else:
            body.append(line)
    close(len(lines))
    return chunks


def find_documents(root: Path, globs: tuple[str, ...] = DEFAULT_GLOBS) -> list[Path]:
    found = {path for pattern in globs for path in root.glob(pattern) if path.is_file()}
    return sorted(found)


def index_docs(
    store: Store, root: Path, project: str | None = None, globs: tuple[str, ...] = DEFAULT_GLOBS
) -> dict:
    """Index (or refresh) a project's documents; returns its index_runs row."""
    started = time.perf_counter()
    root = root.resolve()
    project = project or project_key(root)
    run_id = new_id()
    with store.write() as conn:
        conn.execute(
            "INSERT INTO index_runs (id, project, root, started_at) VALUES (?, ?, ?, ?)",
            [run_id, project, str(root), utc_now()],
        )
        if not root.is_dir():  # never taken for "every document is gone"
            conn.execute(
                "UPDATE index_runs SET status = 'error', finished_at = ?, errors = ? WHERE id = ?",
                [utc_now(), to_json([f"{root} is not a directory"]), run_id],
            )
            return _run(store, run_id)
    counts = {"files_seen": 0, "files_indexed": 0, "files_unchanged": 0, "chunks": 0}
    errors: list[str] = []
    known = dict(
        store.conn.execute(
            "SELECT path, sha256 FROM documents WHERE project = ?", [project]
        ).fetchall()
    )
    seen = set()
    for path in find_documents(root, globs):
        relative = path.relative_to(root).as_posix()
        seen.add(relative)
        counts["files_seen"] += 1
        try:
            raw = path.read_bytes()
            if len(raw) > MAX_BYTES:
                raise ValueError(f"over {MAX_BYTES} bytes")
            text = raw.decode("utf-8")
        except (OSError, ValueError) as error:
            errors.append(f"{relative}: {error}")
            continue
        digest = hashlib.sha256(raw).hexdigest()
        if known.get(relative) == digest:
            counts["files_unchanged"] += 1
            continue
        chunks = chunk_markdown(store.redact_text(text))
        _save(store, project, relative, digest, len(raw), chunks)
        counts["files_indexed"] += 1
        counts["chunks"] += len(chunks)
    removed = [path for path in known if path not in seen]
    with store.write() as conn:
        conn.executemany(
            "DELETE FROM documents WHERE project = ? AND path = ?",
            [(project, path) for path in removed],
        )
        conn.execute(
            "UPDATE index_runs SET status = 'done', finished_at = ?, duration_ms = ?, "
            "files_seen = ?, files_indexed = ?, files_unchanged = ?, files_removed = ?, "
            "chunks = ?, errors = ? WHERE id = ?",
            [
                utc_now(),
                round((time.perf_counter() - started) * 1000),
                counts["files_seen"],
                counts["files_indexed"],
                counts["files_unchanged"],
                len(removed),
                counts["chunks"],
                to_json(errors),
                run_id,
            ],
        )
    return _run(store, run_id)


def _run(store: Store, run_id: str) -> dict:
    row = store.conn.execute("SELECT * FROM index_runs WHERE id = ?", [run_id])
    names = [d[0] for d in row.description]
    return dict(zip(names, row.fetchone(), strict=True))


def stale_projects(conn: sqlite3.Connection) -> list[str]:
    """Projects where a session wrote a markdown file since their documents were last
    indexed: the worker indexes them again (unchanged files cost a hash each)."""
    rows = conn.execute(
        """SELECT DISTINCT o.project FROM observations o
        WHERE o.tool_name IN ('Write', 'Edit', 'MultiEdit') AND o.files_touched LIKE '%.md%'
          AND o.created_at > coalesce(
            (SELECT max(r.started_at) FROM index_runs r WHERE r.project = o.project), '')
          AND o.project != ''"""
    )
    return [row[0] for row in rows]


def _save(
    store: Store, project: str, path: str, digest: str, size: int, chunks: list[Chunk]
) -> None:
    """One file's document row and chunks, replacing what an older version left."""
    with store.write() as conn:
        conn.execute("DELETE FROM documents WHERE project = ? AND path = ?", [project, path])
        document_id = new_id()
        conn.execute(
            "INSERT INTO documents (id, project, path, sha256, bytes, chunks, indexed_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [document_id, project, path, digest, size, len(chunks), utc_now()],
        )
        conn.executemany(
            "INSERT INTO doc_chunks (id, document_id, project, path, heading, body, "
            "line_start, line_end) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (new_id(), document_id, project, path, c.heading, c.body, c.line_start,
                 c.line_end)
                for c in chunks
            ],
        )  # fmt: skip
