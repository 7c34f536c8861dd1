"""The fixed lists of the memory: hook events, statuses, kinds and types.

Each is a closed set the schema checks (storage/migrations.py spells the same values out,
since it imports nothing of the package; tests/storage/test_migrations.py holds them equal).
"""

from __future__ import annotations

from enum import StrEnum

# The Claude Code hook events `install` hooks: those that feed the memory.
HOOK_EVENTS = (
    "SessionStart",
    "UserPromptSubmit",
    "PostToolUse",
    "PostToolUseFailure",
    "Stop",
    "SubagentStart",
    "SubagentStop",
    "PreCompact",
    "PostCompact",
    "Notification",
    "SessionEnd",
)

# Every event Claude Code sends today (2.1.x): each is recorded; any other is recorded too,
# marked unknown.
CLAUDE_CODE_EVENTS = (
    "SessionStart",
    "Setup",
    "UserPromptSubmit",
    "PreToolUse",
    "PermissionRequest",
    "PermissionDenied",
    "PostToolUse",
    "PostToolUseFailure",
    "PostToolBatch",
    "Notification",
    "SubagentStart",
    "SubagentStop",
    "TaskCreated",
    "TaskCompleted",
    "Stop",
    "StopFailure",
    "PreCompact",
    "PostCompact",
    "InstructionsLoaded",
    "CwdChanged",
    "FileChanged",
    "WorktreeCreate",
    "WorktreeRemove",
    "SessionEnd",
)


class SessionStatus(StrEnum):
    ACTIVE = "active"
    CLOSED = "closed"
    ERROR = "error"


class QueueStatus(StrEnum):
    RAW = "raw"
    PROCESSING = "processing"
    DONE = "done"
    ERROR = "error"


class ToolFailure(StrEnum):
    ERROR = "error"
    INTERRUPT = "interrupt"


class ChangeType(StrEnum):
    NEW = "new"
    MODIFIED = "modified"
    DELETED = "deleted"
    UNCHANGED = "unchanged"


class FunctionKind(StrEnum):
    FUNCTION = "function"
    METHOD = "method"
    ASYNC_FUNCTION = "async_function"
    ASYNC_METHOD = "async_method"
    CLASS = "class"


class CallResolution(StrEnum):
    DIRECT = "direct"
    SELF_METHOD = "self_method"
    IMPORT = "import"
    UNRESOLVED = "unresolved"


class LearningCategory(StrEnum):
    ARCHITECTURE = "architecture"
    CONVENTION = "convention"
    GOTCHA = "gotcha"
    DEPENDENCY = "dependency"
    PATTERN = "pattern"


class EntryKind(StrEnum):
    LEARNING = "learning"
    NOTE = "note"


# The tool name of the queue item a Stop leaves for the worker to rebuild the session's
# summary (worker/session_summary.py): no Claude Code tool is called this, and it is not
# counted as a tool use.
SUMMARY_ITEM_TOOL = "claude-mem:session-summary"

# The Claude Code tools that change a file: search ranks their observations first, typing
# calls them changes, and a session summary lists their files as changed
# (storage/migrations.py spells the same names out).
CHANGE_TOOLS = ("Edit", "MultiEdit", "Write", "NotebookEdit")


class ObservationType(StrEnum):
    """What a tool use was for, as a later session wants to know it.

    A test run is `test` whatever its outcome (the outcome is in its summary); `failure` is a
    tool use that failed and is not a test run: a command that exited non-zero, an edit
    Claude Code refused, an interrupted tool.
    """

    BUGFIX = "bugfix"
    FEATURE = "feature"
    REFACTOR = "refactor"
    CHANGE = "change"
    TEST = "test"
    DISCOVERY = "discovery"
    DECISION = "decision"
    FAILURE = "failure"
    CONFIG = "config"
