"""Stale memories in the SessionStart context, and in the pages a person reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from datasette_claude_mem.claude_code.context import STALE_MARK, build_context
from datasette_claude_mem.storage.models import (
    FunctionInput,
    FunctionMapUpsert,
    LearningCreate,
    ObservationCreate,
    SessionStart,
)
from datasette_claude_mem.storage.store import Store

OLD = "2001-01-01T00:00:00.000Z"


def fn(name: str, body: str) -> FunctionInput:
    return FunctionInput(qualified_name=name, kind="function", body_hash=body)


def seed(store: Store, root: Path) -> dict[str, str]:
    """Session one fixed apply_discount and learned about it and about line_total; session
    two then rewrote apply_discount."""
    project = store.create_session(SessionStart(id="s1", project_dir=str(root))).row.project
    seen = [fn("apply_discount", "d1"), fn("line_total", "l1")]
    store.upsert_functions(
        FunctionMapUpsert(session_id="s1", file_path="shop/pricing.py", functions=seen,
                          baseline=seen)
    )  # fmt: skip
    made = {}
    for name in ("apply_discount", "line_total"):
        made[f"obs_{name}"] = store.create_observation(
            ObservationCreate(
                session_id="s1", tool_name="Edit", title=f"Edit {name}",
                summary=f"fixed rounding in {name}",
                files_touched=[str(root / "shop" / "pricing.py")], functions_changed=[name],
            ),
            created_at=OLD,
        ).row.id  # fmt: skip
        made[f"learn_{name}"] = store.create_learning(
            LearningCreate(category="gotcha", content=f"{name} rounds half up", project=project,
                           functions=[name])
        ).row.id  # fmt: skip
    store.conn.execute("UPDATE learnings SET updated_at = ?", [OLD])
    store.create_session(SessionStart(id="s2", project_dir=str(root)))
    store.upsert_functions(
        FunctionMapUpsert(session_id="s2", file_path="shop/pricing.py",
                          functions=[fn("apply_discount", "d2"), fn("line_total", "l1")])
    )  # fmt: skip
    made["project"] = project
    return made


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    (path / ".git").mkdir(parents=True)
    return path


def test_the_context_marks_stale_memories_and_puts_them_last(store: Store, root: Path) -> None:
    made = seed(store, root)
    markdown = build_context(store, made["project"]).markdown
    lines = markdown.splitlines()
    learned = [line for line in lines if "rounds half up" in line]
    assert learned == [
        "- [gotcha, 0.50] line_total rounds half up",
        f"- {STALE_MARK}[gotcha, 0.50] apply_discount rounds half up",
    ]
    observed = [line for line in lines if "fixed rounding" in line]
    assert len(observed) == 2
    assert "line_total" in observed[0] and STALE_MARK not in observed[0]
    assert "apply_discount" in observed[1] and observed[1].startswith(f"- {STALE_MARK}")
    # Only session two's rewrite is listed as a change.
    changed = [line for line in lines if line.startswith("- modified") or "- new" in line]
    assert changed == ["- modified: `shop/pricing.py` `apply_discount`"]
