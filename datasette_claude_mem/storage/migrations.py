"""The memory database schema, as append-only sqlite-utils migrations.

This file imports nothing from the package so that the sqlite-utils CLI can run it on its own:

    sqlite-utils migrate memory.db datasette_claude_mem/storage/migrations.py

Released steps are never edited: a change to the schema is a new ``mNNN_verb_noun`` step.
"""

from sqlite_utils import Database, Migrations

migrations = Migrations("datasette_claude_mem")

# A UUIDv7-shaped id (48-bit millisecond time, then random bits), made by SQLite itself so that
# rows inserted by hand get an id that sorts with the ids the store makes in Python.
_MS = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"
ID_DEFAULT = (
    "(lower(printf('%08x-%04x-7%03x-%04x-%012x', "
    f"{_MS} >> 16, {_MS} & 65535, random() & 4095, "
    "32768 + (random() & 16383), random() & 281474976710655)))"
)
NOW_DEFAULT = "(strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"

# Columns with a natural default say NOT NULL ON CONFLICT REPLACE: `sqlite-utils insert` sends
# NULL for a key that one row of a file lacks and another has, and this turns that NULL into the
# default instead of an error.
_ID = f"id TEXT PRIMARY KEY NOT NULL ON CONFLICT REPLACE DEFAULT {ID_DEFAULT}"


def _ts(name: str) -> str:
    return f"{name} TEXT NOT NULL ON CONFLICT REPLACE DEFAULT {NOW_DEFAULT}"


def _json_array(name: str) -> str:
    return (
        f"{name} TEXT NOT NULL ON CONFLICT REPLACE DEFAULT '[]' "
        f"CHECK (json_valid({name}) AND json_type({name}) = 'array')"
    )


def _json_object(name: str) -> str:
    return (
        f"{name} TEXT NOT NULL ON CONFLICT REPLACE DEFAULT '{{}}' "
        f"CHECK (json_valid({name}) AND json_type({name}) = 'object')"
    )


def _enum(name: str, values: tuple[str, ...], default: str | None = None) -> str:
    allowed = ", ".join(f"'{v}'" for v in values)
    default_sql = f" ON CONFLICT REPLACE DEFAULT '{default}'" if default else ""
    return f"{name} TEXT NOT NULL{default_sql} CHECK ({name} IN ({allowed}))"


def _int(name: str, default: int) -> str:
    return f"{name} INTEGER NOT NULL ON CONFLICT REPLACE DEFAULT {default}"


def _confidence(name: str, default: float) -> str:
    return (
        f"{name} REAL NOT NULL ON CONFLICT REPLACE DEFAULT {default} "
        f"CHECK ({name} >= 0.0 AND {name} <= 1.0)"
    )


@migrations(name="m001_enable_wal", transactional=False)
def m001_enable_wal(db: Database) -> None:
    db.execute("PRAGMA journal_mode=WAL")


@migrations(name="m002_create_tables")
def m002_create_tables(db: Database) -> None:
    statements = [
        f"""CREATE TABLE sessions (
            {_ID},
            project TEXT NOT NULL,
            project_dir TEXT NOT NULL,
            {_ts("started_at")},
            ended_at TEXT,
            {_enum("status", ("active", "closed", "error"), "active")},
            summary TEXT,
            {_int("observation_count", 0)}
        )""",
        f"""CREATE TABLE pending_queue (
            {_ID},
            project TEXT NOT NULL ON CONFLICT REPLACE DEFAULT '',
            session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
            tool_use_id TEXT NOT NULL ON CONFLICT REPLACE DEFAULT {ID_DEFAULT},
            tool_name TEXT NOT NULL,
            {_json_array("files_touched")},
            {_enum("status", ("raw", "processing", "done", "error"), "raw")},
            {_int("attempts", 0)},
            {_int("max_attempts", 3)},
            lease_owner TEXT,
            lease_expires_at TEXT,
            {_ts("available_at")},
            last_error TEXT,
            {_int("raw_bytes", 0)},
            {_int("truncated", 0)} CHECK (truncated IN (0, 1)),
            {_ts("created_at")},
            {_ts("updated_at")},
            completed_at TEXT,
            UNIQUE (session_id, tool_use_id)
        )""",
        # The large payload lives apart from the queue row, so that claiming and completing
        # items rewrites a few hundred bytes, not the whole tool output.
        f"""CREATE TABLE pending_payloads (
            item_id TEXT PRIMARY KEY NOT NULL REFERENCES pending_queue(id) ON DELETE CASCADE,
            {_json_object("tool_input")},
            raw_output TEXT NOT NULL ON CONFLICT REPLACE DEFAULT ''
        )""",
        f"""CREATE TABLE observations (
            {_ID},
            project TEXT NOT NULL ON CONFLICT REPLACE DEFAULT '',
            session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
            queue_item_id TEXT REFERENCES pending_queue(id) ON DELETE SET NULL,
            tool_name TEXT NOT NULL,
            title TEXT NOT NULL,
            summary TEXT NOT NULL,
            detail TEXT,
            {_json_array("files_touched")},
            {_json_array("functions_changed")},
            {_int("tokens_raw", 0)},
            {_int("tokens_compressed", 0)},
            content_hash TEXT UNIQUE,
            embedding BLOB,
            embedding_model TEXT,
            embedding_version TEXT,
            {_ts("created_at")}
        )""",
        f"""CREATE TABLE function_map (
            {_ID},
            project TEXT NOT NULL ON CONFLICT REPLACE DEFAULT '',
            session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
            file_path TEXT NOT NULL,
            qualified_name TEXT NOT NULL,
            {_enum("kind", ("function", "method", "async_function", "async_method", "class"))},
            signature TEXT NOT NULL ON CONFLICT REPLACE DEFAULT '',
            docstring TEXT,
            body_hash TEXT NOT NULL,
            {_json_array("decorators")},
            {_enum("change_type", ("new", "modified", "deleted", "unchanged"), "new")},
            {_ts("updated_at")},
            UNIQUE (project, file_path, qualified_name, session_id)
        )""",
        f"""CREATE TABLE call_graph (
            {_ID},
            project TEXT NOT NULL ON CONFLICT REPLACE DEFAULT '',
            caller_file TEXT NOT NULL,
            caller_function TEXT NOT NULL,
            callee_file TEXT NOT NULL ON CONFLICT REPLACE DEFAULT '',
            callee_function TEXT NOT NULL,
            {_enum("resolution", ("direct", "self_method", "import", "unresolved"))},
            {_confidence("confidence", 1.0)},
            {_int("times_confirmed", 0)},
            {_enum("source", ("ast", "observation"), "ast")},
            session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
            {_ts("created_at")},
            UNIQUE (project, caller_file, caller_function, callee_file, callee_function)
        )""",
        f"""CREATE TABLE learnings (
            {_ID},
            project TEXT,
            {_enum("category", ("architecture", "convention", "gotcha", "dependency", "pattern"))},
            content TEXT NOT NULL CHECK (length(trim(content)) > 0),
            {_confidence("confidence", 0.5)},
            source_session_id TEXT REFERENCES sessions(id) ON DELETE SET NULL,
            {_int("is_active", 1)} CHECK (is_active IN (0, 1)),
            {_ts("created_at")},
            {_ts("updated_at")}
        )""",
        f"""CREATE TABLE event_log (
            {_ID},
            project TEXT,
            session_id TEXT,
            event_type TEXT NOT NULL,
            {_json_object("data")},
            duration_ms INTEGER,
            tokens_in INTEGER,
            tokens_out INTEGER,
            {_ts("created_at")}
        )""",
        # The ten indexes of the storage design, by those names, led by project where reads are.
        "CREATE INDEX idx_obs_session ON observations(session_id, created_at)",
        "CREATE INDEX idx_fn_file ON function_map(project, file_path)",
        "CREATE INDEX idx_fn_session ON function_map(session_id)",
        "CREATE INDEX idx_fn_change ON function_map(project, change_type)",
        "CREATE INDEX idx_cg_caller ON call_graph(project, caller_function, caller_file)",
        "CREATE INDEX idx_cg_callee ON call_graph(project, callee_function, callee_file)",
        "CREATE INDEX idx_queue_status ON pending_queue(status, available_at)",
        "CREATE INDEX idx_log_session ON event_log(session_id)",
        "CREATE INDEX idx_log_type ON event_log(event_type)",
        "CREATE INDEX idx_log_time ON event_log(created_at)",
        # Reads by project.
        "CREATE INDEX idx_sessions_project ON sessions(project, started_at)",
        "CREATE INDEX idx_obs_project ON observations(project, created_at)",
        "CREATE INDEX idx_learn_project ON learnings(project, is_active, confidence)",
        "CREATE INDEX idx_queue_project ON pending_queue(project, status)",
        "CREATE INDEX idx_queue_session ON pending_queue(session_id)",
        "CREATE INDEX idx_queue_lease ON pending_queue(lease_expires_at) "
        "WHERE status = 'processing'",
        "CREATE INDEX idx_cg_session ON call_graph(session_id)",
        # The session's observation_count follows its observations, whoever inserts them.
        """CREATE TRIGGER observations_count_insert AFTER INSERT ON observations BEGIN
            UPDATE sessions SET observation_count = observation_count + 1
            WHERE id = NEW.session_id;
        END""",
        """CREATE TRIGGER observations_count_delete AFTER DELETE ON observations BEGIN
            UPDATE sessions SET observation_count = max(observation_count - 1, 0)
            WHERE id = OLD.session_id;
        END""",
    ]
    # Rows added by hand name only their session: take the project from it.
    for table in ("observations", "pending_queue", "function_map", "call_graph"):
        statements.append(
            f"""CREATE TRIGGER {table}_project AFTER INSERT ON {table}
            WHEN NEW.project = '' BEGIN
            UPDATE {table} SET project = coalesce(
                (SELECT project FROM sessions WHERE id = NEW.session_id), '')
            WHERE rowid = NEW.rowid;
        END"""
        )
    for statement in statements:
        db.execute(statement)
    _create_fts(db, "observations", ["title", "summary", "detail"])
    _create_fts(db, "learnings", ["content"])


def _create_fts(db: Database, table: str, columns: list[str]) -> None:
    """External-content FTS5 kept in step by triggers.

    An update is a delete of the old text and an insert of the new; INSERT OR REPLACE is
    safe when recursive_triggers is on, which every connection of this project sets.
    """
    fts = f"{table}_fts"
    cols = ", ".join(columns)
    new_cols = ", ".join(f"new.{c}" for c in columns)
    old_cols = ", ".join(f"old.{c}" for c in columns)
    db.execute(
        f"CREATE VIRTUAL TABLE {fts} USING fts5({cols}, content='{table}', "
        "content_rowid='rowid', tokenize='porter unicode61')"
    )
    db.execute(
        f"""CREATE TRIGGER {table}_ai AFTER INSERT ON {table} BEGIN
            INSERT INTO {fts}(rowid, {cols}) VALUES (new.rowid, {new_cols});
        END"""
    )
    db.execute(
        f"""CREATE TRIGGER {table}_ad AFTER DELETE ON {table} BEGIN
            INSERT INTO {fts}({fts}, rowid, {cols}) VALUES ('delete', old.rowid, {old_cols});
        END"""
    )
    db.execute(
        f"""CREATE TRIGGER {table}_au AFTER UPDATE OF {cols} ON {table} BEGIN
            INSERT INTO {fts}({fts}, rowid, {cols}) VALUES ('delete', old.rowid, {old_cols});
            INSERT INTO {fts}(rowid, {cols}) VALUES (new.rowid, {new_cols});
        END"""
    )


@migrations(name="m003_add_session_guards")
def m003_add_session_guards(db: Database) -> None:
    """Refuse rows naming a session that does not exist, even on connections (such as the
    sqlite-utils CLI's) that leave foreign keys off."""
    for table in ("observations", "pending_queue", "function_map", "call_graph"):
        db.execute(
            f"""CREATE TRIGGER {table}_session_guard BEFORE INSERT ON {table}
            WHEN NOT EXISTS (SELECT 1 FROM sessions WHERE id = NEW.session_id) BEGIN
                SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed: no session with that id');
            END"""
        )


@migrations(name="m004_add_context_indexes")
def m004_add_context_indexes(db: Database) -> None:
    """The session-start context reads the newest changed functions and the most confident
    learnings; these indexes give it them without sorting."""
    db.execute("CREATE INDEX idx_fn_recent ON function_map(project, updated_at, id)")
    db.execute("CREATE INDEX idx_learn_active ON learnings(is_active, confidence, updated_at, id)")


def last_name(column: str) -> str:
    """SQL for the part of a dotted name after its last dot (`Parser.parse` -> `parse`).

    rtrim() with every character of the name except the dots strips the last part, leaving
    the prefix up to and including the last dot; what follows it is the last part. The
    stored queries repeat this exact expression so that SQLite uses the indexes below.
    """
    return f"substr({column}, length(rtrim({column}, replace({column}, '.', ''))) + 1)"


@migrations(name="m005_index_call_graph_names")
def m005_index_call_graph_names(db: Database) -> None:
    """Callers and callees are looked up by a name that also matches methods of that name,
    which no index on the whole name can answer: index the last part of each name."""
    for side in ("caller", "callee"):
        db.execute(
            f"CREATE INDEX idx_cg_{side}_name ON call_graph({last_name(f'{side}_function')})"
        )


@migrations(name="m006_add_claude_code_fields")
def m006_add_claude_code_fields(db: Database) -> None:
    """What Claude Code sends beyond a tool's input and output: which subagent acted, how
    long the tool took, which prompt and MCP server it served, whether it failed; and for a
    session, the summary of its last compaction and when it last got the memory context."""
    for table in ("pending_queue", "observations"):
        db.execute(f"ALTER TABLE {table} ADD COLUMN agent_id TEXT")
        db.execute(f"ALTER TABLE {table} ADD COLUMN agent_type TEXT")
    for column in ("prompt_id TEXT", "duration_ms INTEGER", "mcp_server TEXT"):
        db.execute(f"ALTER TABLE pending_queue ADD COLUMN {column}")
    # NULL: the tool use succeeded (PostToolUse); otherwise how it failed (PostToolUseFailure).
    db.execute(
        "ALTER TABLE pending_queue ADD COLUMN failure TEXT "
        "CHECK (failure IN ('error', 'interrupt'))"
    )
    db.execute("ALTER TABLE sessions ADD COLUMN compact_summary TEXT")
    db.execute("ALTER TABLE sessions ADD COLUMN context_at TEXT")
    db.execute("CREATE INDEX idx_obs_agent ON observations(session_id, agent_id)")


FORGET_COLUMNS = ("forgotten_at TEXT", "forgotten_by TEXT", "forgotten_reason TEXT")


@migrations(name="m009_add_memory_entries")
def m009_add_memory_entries(db: Database) -> None:
    """What an agent saves on purpose, and forgetting: entries are versioned by namespace and
    key (a later save supersedes, the history stays), and learnings, observations and entries
    can be forgotten with who, when and why, so they leave the context and search but not
    the record."""
    db.execute(
        f"""CREATE TABLE memory_entries (
            {_ID},
            project TEXT,
            namespace TEXT NOT NULL CHECK (length(trim(namespace)) > 0),
            key TEXT NOT NULL CHECK (length(trim(key)) > 0),
            version INTEGER NOT NULL CHECK (version >= 1),
            {_enum("kind", ("learning", "note"), "note")},
            category TEXT,
            {_confidence("confidence", 0.5)},
            value TEXT NOT NULL CHECK (length(trim(value)) > 0),
            session_id TEXT REFERENCES sessions(id) ON DELETE SET NULL,
            created_by TEXT,
            {_ts("created_at")},
            superseded_at TEXT,
            {", ".join(FORGET_COLUMNS)},
            UNIQUE (namespace, key, version)
        )"""
    )
    db.execute(
        "CREATE INDEX idx_entries_current ON memory_entries(project, created_at) "
        "WHERE superseded_at IS NULL AND forgotten_at IS NULL"
    )
    _create_fts(db, "memory_entries", ["key", "value"])
    for table in ("observations", "learnings"):
        for column in FORGET_COLUMNS:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")


# The search index. Each searchable table has an external-content FTS5 table declared with
# content="table" in double quotes: that is the spelling Datasette's and sqlite-utils' FTS
# detection look for, so Datasette's search box, ?_search=, `sqlite-utils search` and
# `rebuild-fts` all use the same index as the plugin. Column weights live in the index's own
# rank setting, so bm25 ranks the same in every client that orders by rank.
SEARCH_INDEXES: dict[str, dict[str, float]] = {
    "observations": {
        "title": 8.0,
        "summary": 3.0,
        "detail": 1.0,
        "tool_name": 4.0,
        "files_touched": 6.0,
    },
    "learnings": {"content": 4.0, "category": 6.0},
    "sessions": {"summary": 2.0},
    "prompts": {"prompt": 1.0},
    "doc_chunks": {"heading": 6.0, "body": 1.0, "path": 5.0},
    "memory_entries": {"key": 6.0, "value": 2.0},
}

# Prompts arrive as event_log rows; triggers copy each one into a table of its own, so that
# every client can search them as a table (FTS5 content, `sqlite-utils search`, Datasette).
PROMPT_EVENT = "UserPromptSubmit"
_PROMPT_OF = "json_extract({row}.data, '$.prompt')"


def create_search_index(db: Database, table: str, weights: dict[str, float]) -> None:
    """An external-content FTS5 index over `table` with its bm25 weights,
    filled from what the table holds now. A later table joins search with this call and
    index_triggers in its own migration."""
    fts = f"{table}_fts"
    cols = ", ".join(weights)
    db.execute(
        f'CREATE VIRTUAL TABLE {fts} USING fts5({cols}, content="{table}", '
        "tokenize='porter unicode61')"
    )
    ranks = ", ".join(str(w) for w in weights.values())
    db.execute(f"INSERT INTO {fts}({fts}, rank) VALUES ('rank', 'bm25({ranks})')")
    db.execute(f"INSERT INTO {fts}({fts}) VALUES ('rebuild')")


def index_triggers(db: Database, table: str, columns: list[str]) -> None:
    """Triggers that keep `table`'s index in step with it, named as sqlite-utils names its own.

    An update is a delete of the old text and an insert of the new; INSERT OR REPLACE is
    safe when recursive_triggers is on, which every connection of this project sets.
    """
    fts = f"{table}_fts"
    cols = ", ".join(columns)
    new = ", ".join(f"new.{c}" for c in columns)
    old = ", ".join(f"old.{c}" for c in columns)
    delete = f"INSERT INTO {fts}({fts}, rowid, {cols}) VALUES ('delete', old.rowid, {old});"
    insert = f"INSERT INTO {fts}(rowid, {cols}) VALUES (new.rowid, {new});"
    db.execute(f"CREATE TRIGGER {table}_ai AFTER INSERT ON {table} BEGIN {insert} END")
    db.execute(f"CREATE TRIGGER {table}_ad AFTER DELETE ON {table} BEGIN {delete} END")
    db.execute(
        f"CREATE TRIGGER {table}_au AFTER UPDATE OF {cols} ON {table} BEGIN {delete} {insert} END"
    )


def _create_prompts(db: Database) -> None:
    is_prompt = f"{{row}}.event_type = '{PROMPT_EVENT}' AND {_PROMPT_OF} IS NOT NULL"
    copy = (
        "INSERT INTO prompts (id, project, session_id, prompt, created_at) "
        f"SELECT new.id, new.project, new.session_id, {_PROMPT_OF.format(row='new')}, "
        f"new.created_at WHERE {is_prompt.format(row='new')} ON CONFLICT(id) DO NOTHING;"
    )
    for statement in (
        """CREATE TABLE prompts (
            id TEXT PRIMARY KEY NOT NULL,
            project TEXT,
            session_id TEXT,
            prompt TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""",
        "CREATE INDEX idx_prompts_project ON prompts(project, created_at)",
        "CREATE INDEX idx_prompts_session ON prompts(session_id)",
        f"CREATE TRIGGER event_log_prompt_ai AFTER INSERT ON event_log BEGIN {copy} END",
        "CREATE TRIGGER event_log_prompt_ad AFTER DELETE ON event_log BEGIN "
        "DELETE FROM prompts WHERE id = old.id; END",
        "CREATE TRIGGER event_log_prompt_au AFTER UPDATE OF id, event_type, data, project, "
        "session_id ON event_log BEGIN DELETE FROM prompts WHERE id = old.id; "
        f"{copy} END",
        "INSERT INTO prompts (id, project, session_id, prompt, created_at) "
        f"SELECT id, project, session_id, {_PROMPT_OF.format(row='event_log')}, created_at "
        f"FROM event_log WHERE {is_prompt.format(row='event_log')}",
    ):
        db.execute(statement)


def _create_embeddings(db: Database) -> None:
    """Vectors for semantic search, one per searchable row and model: little-endian float32,
    with the model's name and version, so that vectors of two models are never compared.
    text_hash tells a row whose text changed since it was embedded."""
    db.execute(
        f"""CREATE TABLE embeddings (
            kind TEXT NOT NULL CHECK (length(kind) > 0),
            item_id TEXT NOT NULL,
            model TEXT NOT NULL,
            version TEXT NOT NULL,
            dims INTEGER NOT NULL CHECK (dims > 0),
            vector BLOB NOT NULL CHECK (length(vector) = 4 * dims),
            text_hash TEXT NOT NULL,
            {_ts("created_at")},
            PRIMARY KEY (kind, item_id, model)
        )"""
    )
    db.execute("CREATE INDEX idx_embeddings_model ON embeddings(model, version)")


def _create_documents(db: Database) -> None:
    """A project's own documents: a row per file (its sha256 says whether it changed), its
    chunks by heading with their line ranges, and a row per indexing pass."""
    for statement in (
        f"""CREATE TABLE documents (
            {_ID},
            project TEXT NOT NULL,
            path TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            {_int("bytes", 0)},
            {_int("chunks", 0)},
            {_ts("indexed_at")},
            UNIQUE (project, path)
        )""",
        f"""CREATE TABLE doc_chunks (
            {_ID},
            document_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            project TEXT NOT NULL,
            path TEXT NOT NULL,
            heading TEXT NOT NULL ON CONFLICT REPLACE DEFAULT '',
            body TEXT NOT NULL,
            line_start INTEGER NOT NULL,
            line_end INTEGER NOT NULL CHECK (line_end >= line_start),
            {_ts("created_at")}
        )""",
        "CREATE INDEX idx_chunks_document ON doc_chunks(document_id)",
        "CREATE INDEX idx_chunks_project ON doc_chunks(project, path)",
        f"""CREATE TABLE index_runs (
            {_ID},
            project TEXT NOT NULL,
            root TEXT NOT NULL,
            {_enum("status", ("running", "done", "error"), "running")},
            {_ts("started_at")},
            finished_at TEXT,
            duration_ms INTEGER,
            {_int("files_seen", 0)},
            {_int("files_indexed", 0)},
            {_int("files_unchanged", 0)},
            {_int("files_removed", 0)},
            {_int("chunks", 0)},
            {_json_array("errors")}
        )""",
        "CREATE INDEX idx_runs_project ON index_runs(project, started_at)",
    ):
        db.execute(statement)


@migrations(name="m007_rebuild_search_index")
def m007_rebuild_search_index(db: Database) -> None:
    """Rebuild the search index so every client finds it, and widen it to session summaries,
    prompts and documents: the first indexes declared content='table' (single quotes), which
    neither Datasette nor sqlite-utils recognise. It comes after m009, whose entries it
    indexes again."""
    for table in ("observations", "learnings", "memory_entries"):
        for suffix in ("ai", "ad", "au"):
            db.execute(f"DROP TRIGGER IF EXISTS {table}_{suffix}")
        db.execute(f"DROP TABLE IF EXISTS {table}_fts")
    _create_prompts(db)
    _create_embeddings(db)
    _create_documents(db)
    for table, weights in SEARCH_INDEXES.items():
        create_search_index(db, table, weights)
        index_triggers(db, table, list(weights))


@migrations(name="m010_add_learning_updated_trigger")
def m010_add_learning_updated_trigger(db: Database) -> None:
    """A learning's updated_at follows every edit of what it says, including edits made in
    Datasette's row editor or with the sqlite-utils CLI, which do not set it. An update that
    sets updated_at itself is left as it is; the trigger's own update changes none of the
    watched columns, so it does not fire again (recursive_triggers is on)."""
    edited = " OR ".join(
        f"NEW.{column} IS NOT OLD.{column}"
        for column in ("project", "category", "content", "confidence", "is_active")
    )
    db.execute(
        f"""CREATE TRIGGER learnings_updated_at AFTER UPDATE ON learnings
        WHEN NEW.updated_at IS OLD.updated_at AND ({edited}) BEGIN
            UPDATE learnings SET updated_at = {NOW_DEFAULT} WHERE rowid = NEW.rowid;
        END"""
    )


@migrations(name="m011_add_change_tracking")
def m011_add_change_tracking(db: Database) -> None:
    """What a session's change is measured against, and when code last changed, so a
    function only read is not reported changed and a memory about code changed since can be
    flagged stale. base_hash is a function's body hash in the file's first state as the
    session saw it (NULL when the session added it); changed_at is when this row last saw
    the body change (NULL while it never did). A learning can name the functions it is
    about. Rows made before this migration keep what is known: their base is their hash where
    they were unchanged, and a change is dated to the start of its session, not to the row's
    last update (which followed the session's own observations): what the session itself
    recorded is never stale by its own change, what came before it is."""
    db.execute("ALTER TABLE function_map ADD COLUMN base_hash TEXT")
    db.execute("ALTER TABLE function_map ADD COLUMN changed_at TEXT")
    db.execute(
        "UPDATE function_map SET base_hash = CASE change_type "
        "WHEN 'new' THEN NULL ELSE body_hash END, "
        "changed_at = CASE change_type WHEN 'unchanged' THEN NULL ELSE coalesce("
        "(SELECT s.started_at FROM sessions s WHERE s.id = function_map.session_id), "
        "updated_at) END"
    )
    db.execute("CREATE INDEX idx_fn_name ON function_map(project, qualified_name)")
    db.execute(
        "CREATE INDEX idx_fn_changed ON function_map(project, changed_at) "
        "WHERE changed_at IS NOT NULL"
    )
    db.execute(f"ALTER TABLE learnings ADD COLUMN {_json_array('functions')}")


# What an observation was for; storage/kinds.py's ObservationType holds the same values.
OBSERVATION_TYPES = (
    "bugfix",
    "feature",
    "refactor",
    "change",
    "test",
    "discovery",
    "decision",
    "failure",
    "config",
)


@migrations(name="m012_add_observation_types")
def m012_add_observation_types(db: Database) -> None:
    """An observation's type: what the tool use was for (a fix, a feature, a read...), so a
    person and an agent can tell a bug fix from a read and search by it. Rows made before get
    what their tool alone tells (a read is discovery, an edit a change); the rest stay NULL,
    unknown."""
    allowed = ", ".join(f"'{value}'" for value in OBSERVATION_TYPES)
    db.execute(f"ALTER TABLE observations ADD COLUMN type TEXT CHECK (type IN ({allowed}))")
    db.execute(
        """UPDATE observations SET type = CASE
            WHEN tool_name IN ('Read', 'Grep', 'Glob', 'LS', 'WebFetch', 'WebSearch')
                THEN 'discovery'
            WHEN tool_name IN ('Edit', 'MultiEdit', 'Write', 'NotebookEdit') THEN 'change'
            WHEN tool_name IN ('TodoWrite', 'ExitPlanMode') THEN 'decision'
        END"""
    )
    db.execute("CREATE INDEX idx_obs_type ON observations(project, type, created_at)")


@migrations(name="m013_add_tombstones")
def m013_add_tombstones(db: Database) -> None:
    """Forgetting for good: a tombstone row per forget says what kind of thing went, how
    many rows, who asked, when and why, and never what they held. The indexes let a whole
    project's rows be found and deleted without scanning, including the rows that point at a
    deleted row (a foreign key without an index makes each delete scan the child table)."""
    db.execute(
        f"""CREATE TABLE tombstones (
            {_ID},
            {_enum("kind", ("session", "observation", "learning", "note", "project", "before"))},
            {_int("count", 0)} CHECK (count >= 0),
            {_json_object("counts")},
            forgotten_by TEXT NOT NULL,
            reason TEXT,
            before TEXT,
            {_ts("created_at")}
        )"""
    )
    for statement in (
        "CREATE INDEX idx_tombstones_time ON tombstones(created_at)",
        "CREATE INDEX idx_obs_queue_item ON observations(queue_item_id)",
        "CREATE INDEX idx_learn_session ON learnings(source_session_id)",
        "CREATE INDEX idx_entries_project ON memory_entries(project, created_at)",
        "CREATE INDEX idx_entries_session ON memory_entries(session_id)",
        "CREATE INDEX idx_log_project ON event_log(project, created_at)",
    ):
        db.execute(statement)


# SQLite's code for auto_vacuum=INCREMENTAL, as PRAGMA auto_vacuum reads it back.
INCREMENTAL_VACUUM = 2


@migrations(name="m014_enable_retention", transactional=False)
def m014_enable_retention(db: Database) -> None:
    """Space freed by retention goes back to the file system: with auto_vacuum=INCREMENTAL
    the worker returns free pages a few at a time (PRAGMA incremental_vacuum), where
    otherwise the file would never shrink. An existing file takes the mode only through one
    VACUUM, which cannot run inside a transaction: the store's migrate, which applies every
    step inside one, runs it after its commit (or, for a big file, after retention's first
    pass: storage/database.py says why); the sqlite-utils CLI runs it here."""
    db.execute("PRAGMA auto_vacuum=INCREMENTAL")
    if not db.conn.in_transaction:
        db.execute("VACUUM")
