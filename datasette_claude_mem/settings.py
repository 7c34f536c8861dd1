"""Where the memory lives and the knobs that shape it.

Every path hangs off one base directory, ``~/.datasette-claude-mem`` unless the variable
CLAUDE_MEM_DIR names another, so a test or a second memory is one variable away.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from datasette_claude_mem.names import DB_FILENAME, DEFAULT_DIR_NAME

ENV_DIR = "CLAUDE_MEM_DIR"
ENV_SYNCHRONOUS = "CLAUDE_MEM_SYNCHRONOUS"


def default_base_dir() -> Path:
    configured = os.environ.get(ENV_DIR)
    return Path(configured).expanduser() if configured else Path.home() / DEFAULT_DIR_NAME


@dataclass
class Config:
    base_dir: Path = field(default_factory=default_base_dir)

    # Context budget at session start, in tokens (characters / 4): 2,000 in all.
    ctx_session_index: int = 300
    ctx_function_map: int = 500
    ctx_learnings: int = 300
    ctx_observations: int = 600
    ctx_call_graph: int = 300

    # NORMAL survives any crash of the application; FULL also survives a power loss.
    synchronous: str = field(
        default_factory=lambda: os.environ.get(ENV_SYNCHRONOUS, "NORMAL").upper()
    )
    busy_timeout_ms: int = 5000

    # Compression of queued tool outputs into observations.
    compression_model: str | None = None
    compression_daily_token_budget: int = 200_000

    # Embeddings are optional; vectors are stored as little-endian float32 BLOBs.
    embedding_model: str = "all-MiniLM-L6-v2"
    embedding_dim: int = 384

    def __post_init__(self) -> None:
        self.base_dir = Path(self.base_dir).expanduser()
        if self.synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, not {self.synchronous!r}")

    @property
    def db_path(self) -> Path:
        return self.base_dir / DB_FILENAME

    @property
    def log_dir(self) -> Path:
        return self.base_dir / "logs"

    @property
    def secret_path(self) -> Path:
        return self.base_dir / "secret"

    @property
    def spool_path(self) -> Path:
        return self.base_dir / "spool.jsonl"

    @property
    def context_budget(self) -> dict[str, int]:
        return {
            "session_index": self.ctx_session_index,
            "function_map": self.ctx_function_map,
            "learnings": self.ctx_learnings,
            "observations": self.ctx_observations,
            "call_graph": self.ctx_call_graph,
        }

    def ensure_dirs(self) -> None:
        """Create the directories private to the user: they hold tool outputs."""
        for path in (self.base_dir, self.log_dir):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            path.chmod(0o700)
