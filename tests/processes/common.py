"""What child processes write, so the parent and a concurrent reader can check every field.

Every row is a pure function of (tag, i): a reader that finds any field different from what
the writer meant to write has seen a torn or foreign row.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

PROCESSES = Path(__file__).resolve().parent
ROOT = PROCESSES.parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

EMBEDDING_MODEL = "test-model"
EMBEDDING_VERSION = "1"
TITLE_RE = re.compile(r"^(?P<tag>[a-z0-9_]+) write (?P<i>\d+)$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def observation_fields(tag: str, i: int) -> dict:
    """The observation number i of writer `tag`; the detail spills onto overflow pages."""
    return {
        "tool_name": "Edit",
        "title": f"{tag} write {i}",
        "summary": f"summary of {tag} number {i}",
        "detail": f"{tag}:{i}:" + "".join(f"{tag}{k:05d}" for k in range(300 + 100 * (i % 5))),
        "files_touched": [f"src/{tag}/{i}.py", "shared.py"],
        "functions_changed": [f"{tag}_fn_{i}"],
        "tokens_raw": 1000 + i,
        "tokens_compressed": 100 + i,
        "embedding": [i + k / 4 for k in range(8)],
        "embedding_model": EMBEDDING_MODEL,
        "embedding_version": EMBEDDING_VERSION,
    }


def check_observation(row: dict, session_for_tag: dict[str, str], project: str) -> str | None:
    """None when every field of an observation (as a dict) is what its writer wrote."""
    match = TITLE_RE.match(str(row.get("title")))
    if match is None:
        return f"unexpected title {row.get('title')!r}"
    tag, i = match["tag"], int(match["i"])
    if tag not in session_for_tag:
        return f"row of unknown writer {tag!r}"
    expected = observation_fields(tag, i)
    for name, value in expected.items():
        if row.get(name) != value:
            return f"{tag} {i}: {name} is {str(row.get(name))[:80]!r}"
    if row.get("session_id") != session_for_tag[tag]:
        return f"{tag} {i}: session_id {row.get('session_id')!r}"
    if row.get("project") != project:
        return f"{tag} {i}: project {row.get('project')!r}"
    if not UUID7.match(str(row.get("id"))):
        return f"{tag} {i}: id {row.get('id')!r}"
    if not HEX64.match(str(row.get("content_hash"))):
        return f"{tag} {i}: content_hash {row.get('content_hash')!r}"
    if row.get("created_at") is None:
        return f"{tag} {i}: no created_at"
    return None


def wait_for(path: Path, timeout: float = 60.0) -> None:
    """A start line for child processes, so that they really overlap."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {path}")
        time.sleep(0.002)
