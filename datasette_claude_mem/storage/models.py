"""The shape of every record: one Pydantic model per stored row, and one per write request.

Lists are Python lists here and JSON text in SQLite; timestamps are UTC ISO 8601 text with
milliseconds and a Z, the same text the database writes for its own defaults, so that rows
sort the same whoever wrote them.
"""

from __future__ import annotations

import os
import struct
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Json,
    PlainSerializer,
    field_validator,
    model_validator,
)

# The hook events are re-exported: they are read from here too.
from datasette_claude_mem.storage.kinds import (  # noqa: F401
    CLAUDE_CODE_EVENTS,
    HOOK_EVENTS,
    CallResolution,
    ChangeType,
    EntryKind,
    FunctionKind,
    LearningCategory,
    ObservationType,
    QueueStatus,
    SessionStatus,
    ToolFailure,
)

_id_lock = threading.Lock()
_last_id = 0


def new_id() -> str:
    """A UUIDv7: sorts by creation time, and strictly increases within one process."""
    global _last_id
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms << 80) | (0x7 << 76) | ((rand >> 64) & 0xFFF) << 64 | (0b10 << 62)
    value |= rand & ((1 << 62) - 1)
    with _id_lock:
        if value <= _last_id:
            value = _last_id + 1
        _last_id = value
    return str(uuid.UUID(int=value))


def format_ts(moment: datetime) -> str:
    """UTC to the millisecond, ending in Z: text that sorts in time order.

    isoformat rather than strftime: every timestamp of every row read passes here, and it
    is twice as fast (and always writes a four-digit year).
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    elif moment.utcoffset():
        moment = moment.astimezone(UTC)
    return f"{moment.isoformat(timespec='milliseconds')[:23]}Z"


def utc_now() -> str:
    return format_ts(datetime.now(UTC))


def encode_embedding(vector: list[float] | None) -> bytes | None:
    """Little-endian float32, the layout llm and sqlite-vec read."""
    if vector is None:
        return None
    return struct.pack(f"<{len(vector)}f", *vector)


def decode_embedding(blob: bytes | None) -> list[float] | None:
    if blob is None:
        return None
    return list(struct.unpack(f"<{len(blob) // 4}f", blob))


NonEmpty = Annotated[str, Field(min_length=1)]


def _no_nul(path: str) -> str:
    if "\x00" in path:
        raise ValueError("a path cannot contain a NUL character")
    return path


# A directory as the file system takes it: no operating system accepts a NUL in a path.
DirectoryPath = Annotated[NonEmpty, AfterValidator(_no_nul)]
# JSON text in SQLite, a list or an object in Python.
JsonList = Json[list[str]]
JsonObject = Json[dict[str, Any]]
# In JSON, timestamps read exactly as the database stores them.
Timestamp = Annotated[datetime, PlainSerializer(format_ts, return_type=str, when_used="json")]
Confidence = Annotated[float, Field(ge=0.0, le=1.0)]
Count = Annotated[int, Field(ge=0)]
# NaN and infinity are not JSON, and would not survive the round trip through float32.
Component = Annotated[float, Field(allow_inf_nan=False, ge=-3.4e38, le=3.4e38)]


class Input(BaseModel):
    """A write request: unknown fields are an error, so a typo is not silently dropped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class Record(BaseModel):
    """A stored row, as read from SQLite: its JSON columns arrive as JSON text.

    Those columns are typed Json[...], so pydantic's own parser decodes them; a Python hook
    doing the same made reading a hundred rows three times slower.
    """

    model_config = ConfigDict(from_attributes=True)


# Sessions


class SessionStart(Input):
    id: NonEmpty | None = None
    project_dir: DirectoryPath
    project: NonEmpty | None = Field(
        None, description="Project key; derived from project_dir (its repository) when omitted"
    )
    summary: str | None = None


class SessionUpdate(Input):
    status: SessionStatus | None = None
    summary: str | None = None
    ended_at: Timestamp | None = None


class SessionClose(Input):
    summary: str | None = None
    status: SessionStatus = SessionStatus.CLOSED


class Session(Record):
    id: str
    project: str
    project_dir: str
    started_at: Timestamp
    ended_at: Timestamp | None = None
    status: SessionStatus
    summary: str | None = None
    observation_count: int = 0
    compact_summary: str | None = None
    context_at: Timestamp | None = None


# Observations


class ObservationCreate(Input):
    session_id: NonEmpty
    tool_name: NonEmpty
    title: NonEmpty
    summary: str
    detail: str | None = None
    type: ObservationType | None = Field(None, description="What the tool use was for")
    files_touched: list[str] = Field(default_factory=list)
    functions_changed: list[str] = Field(default_factory=list)
    tokens_raw: Count = 0
    tokens_compressed: Count = 0
    queue_item_id: str | None = None
    embedding: list[Component] | None = None
    embedding_model: str | None = None
    embedding_version: str | None = None
    agent_id: str | None = Field(None, description="The subagent that acted, if not the main one")
    agent_type: str | None = None

    @model_validator(mode="after")
    def _embedding_has_model(self) -> ObservationCreate:
        if self.embedding is not None and not self.embedding_model:
            raise ValueError("an embedding needs its embedding_model")
        return self


class Observation(Record):
    id: str
    project: str
    session_id: str
    queue_item_id: str | None = None
    tool_name: str
    title: str
    summary: str
    detail: str | None = None
    type: ObservationType | None = None
    files_touched: JsonList = Field(default_factory=list)
    functions_changed: JsonList = Field(default_factory=list)
    tokens_raw: int = 0
    tokens_compressed: int = 0
    content_hash: str | None = None
    embedding: list[float] | None = None
    embedding_model: str | None = None
    embedding_version: str | None = None
    agent_id: str | None = None
    agent_type: str | None = None
    created_at: Timestamp

    @field_validator("embedding", mode="before")
    @classmethod
    def _decode_blob(cls, value: Any) -> Any:
        return decode_embedding(value) if isinstance(value, bytes) else value


# Function map and call graph


class FunctionInput(Input):
    qualified_name: NonEmpty
    kind: FunctionKind
    signature: str = ""
    docstring: str | None = None
    body_hash: NonEmpty
    decorators: list[str] = Field(default_factory=list)


class FunctionMapUpsert(Input):
    """Every function of one file as it is now: the ones missing are recorded as deleted."""

    session_id: NonEmpty
    file_path: NonEmpty
    functions: list[FunctionInput]
    baseline: list[FunctionInput] | None = Field(None, description="the file before the session")
    baseline_fallback: bool = Field(False, description="baseline only if no session has the file")


class FunctionMapEntry(Record):
    id: str
    project: str
    session_id: str
    file_path: str
    qualified_name: str
    kind: FunctionKind
    signature: str
    docstring: str | None = None
    body_hash: str
    decorators: JsonList = Field(default_factory=list)
    change_type: ChangeType
    updated_at: Timestamp
    base_hash: str | None = None
    changed_at: Timestamp | None = None


class EdgeInput(Input):
    caller_file: NonEmpty
    caller_function: NonEmpty
    callee_file: str = ""
    callee_function: NonEmpty
    resolution: CallResolution
    confidence: Confidence = 1.0
    source: str = Field("ast", pattern="^(ast|observation)$")


class EdgesAdd(Input):
    session_id: NonEmpty
    edges: list[EdgeInput]
    replace_file: str | None = Field(
        None, description="Drop this caller file's earlier edges first (a fresh parse of it)"
    )


class CallGraphEdge(Record):
    id: str
    project: str
    caller_file: str
    caller_function: str
    callee_file: str
    callee_function: str
    resolution: CallResolution
    confidence: float
    times_confirmed: int
    source: str
    session_id: str
    created_at: Timestamp


# Learnings


class LearningCreate(Input):
    category: LearningCategory
    content: NonEmpty
    confidence: Confidence = 0.5
    project: str | None = Field(None, description="None makes a global learning")
    source_session_id: str | None = None
    functions: list[NonEmpty] = Field(default_factory=list, description="code it is about")


class LearningUpdate(Input):
    category: LearningCategory | None = None
    content: NonEmpty | None = None
    confidence: Confidence | None = None
    is_active: bool | None = None
    functions: list[NonEmpty] | None = None


class Learning(Record):
    id: str
    project: str | None = None
    category: LearningCategory
    content: str
    confidence: float
    source_session_id: str | None = None
    is_active: bool
    created_at: Timestamp
    updated_at: Timestamp
    functions: JsonList = Field(default_factory=list)


# Queue


class QueueItemCreate(Input):
    session_id: NonEmpty
    tool_use_id: NonEmpty | None = Field(None, description="Repeats of one tool use add nothing")
    tool_name: NonEmpty
    tool_input: dict[str, Any] = Field(default_factory=dict)
    raw_output: str = ""
    files_touched: list[str] = Field(default_factory=list)
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 3
    truncated: bool = False
    raw_bytes: Annotated[int, Field(ge=0)] | None = Field(
        None, description="The output's full size when raw_output is a cut of it"
    )
    agent_id: str | None = Field(None, description="The subagent that ran the tool")
    agent_type: str | None = None
    prompt_id: str | None = None
    duration_ms: Count | None = None
    mcp_server: str | None = None
    failure: ToolFailure | None = Field(None, description="Set when the tool use failed")


class QueueClaim(Input):
    worker: NonEmpty = "api"
    n: Annotated[int, Field(ge=1, le=500)] = 5
    lease_seconds: Annotated[float, Field(gt=0, le=86400)] = 300
    project: str | None = None


class QueueComplete(Input):
    worker: NonEmpty
    observation: ObservationCreate | None = None


class QueueFail(Input):
    worker: NonEmpty
    error: NonEmpty


class QueueRetry(Input):
    project: str | None = None
    dead_letters: bool = Field(False, description="Also give dead letters one more attempt")


class QueueItem(Record):
    id: str
    project: str
    session_id: str
    tool_use_id: str
    tool_name: str
    files_touched: JsonList = Field(default_factory=list)
    status: QueueStatus
    attempts: int
    max_attempts: int
    lease_owner: str | None = None
    lease_expires_at: Timestamp | None = None
    available_at: Timestamp
    last_error: str | None = None
    raw_bytes: int = 0
    truncated: bool = False
    created_at: Timestamp
    updated_at: Timestamp
    completed_at: Timestamp | None = None
    agent_id: str | None = None
    agent_type: str | None = None
    prompt_id: str | None = None
    duration_ms: int | None = None
    mcp_server: str | None = None
    failure: ToolFailure | None = None
    tool_input: JsonObject | None = None
    raw_output: str | None = None
    prompt: str | None = Field(
        None, description="The person's prompt the tool use served (read at claim time)"
    )


class QueueStats(BaseModel):
    project: str | None = None
    waiting: int = Field(0, description="Items waiting to be claimed (status raw)")
    processing: int = 0
    done: int = 0
    failed: int = Field(0, description="Errors that will be retried")
    dead_letters: int = Field(0, description="Errors with no attempts left")
    retries: int = Field(0, description="Attempts beyond the first, over all items")
    oldest_waiting_age_seconds: float | None = None


# Event log


class EventCreate(Input):
    event_type: NonEmpty
    session_id: str | None = None
    project: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    duration_ms: Count | None = None
    tokens_in: Count | None = None
    tokens_out: Count | None = None


class EventLogEntry(Record):
    id: str
    project: str | None = None
    session_id: str | None = None
    event_type: str
    data: JsonObject = Field(default_factory=dict)
    duration_ms: int | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    created_at: Timestamp


class HookInput(BaseModel):
    """A Claude Code hook event: the common fields, and whatever the event adds."""

    model_config = ConfigDict(extra="allow")
    session_id: NonEmpty
    hook_event_name: NonEmpty
    cwd: str | None = None
    transcript_path: str | None = None
    permission_mode: str | None = None


class HookOutput(BaseModel):
    """Claude Code's hook output; empty except at SessionStart."""

    model_config = ConfigDict(extra="allow")


class SearchHit(BaseModel):
    kind: str = Field(description="observation, learning, session, prompt, note or doc")
    id: str
    project: str | None = None
    session_id: str | None = None
    type: str | None = Field(
        default=None,
        description="An observation's type, a learning's category or a session's status",
    )
    title: str
    file: str | None = Field(default=None, description="The first file it touched, if any")
    snippet: str
    rank: float = Field(description="Lower is better: weighted bm25, or 1 - cosine similarity")
    score: float = Field(default=0.0, description="Higher is better, within one answer")
    created_at: Timestamp
    stale: bool = Field(default=False, description="About code changed since; ranked lower")


# Memory entries: what an agent saves on purpose


class MemoryEntrySave(Input):
    namespace: NonEmpty = Field(description="A hierarchy such as project:<key>/decisions")
    key: NonEmpty
    value: NonEmpty
    kind: EntryKind = EntryKind.NOTE
    category: str | None = None
    confidence: Confidence = 0.5
    project: str | None = Field(None, description="None makes a global entry")
    session_id: str | None = None
    created_by: str | None = None


class MemoryEntry(Record):
    id: str
    project: str | None = None
    namespace: str
    key: str
    version: int
    kind: EntryKind
    category: str | None = None
    confidence: float
    value: str
    session_id: str | None = None
    created_by: str | None = None
    created_at: Timestamp
    superseded_at: Timestamp | None = None
    forgotten_at: Timestamp | None = None
    forgotten_by: str | None = None
    forgotten_reason: str | None = None


class Forgotten(BaseModel):
    """What forget() retired: which table the id was in, and who, when and why."""

    kind: str = Field(description="learning, observation or entry")
    id: str
    forgotten_at: Timestamp
    forgotten_by: str
    forgotten_reason: str
