"""The SessionStart context: budgets, the 10,000-byte limit, order, determinism, isolation."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
from datasette.app import Datasette
from helpers import CONTEXT_SECTIONS, api_call, assert_error

from datasette_claude_mem.claude_code.context import Context, build_context, tokens
from datasette_claude_mem.settings import Config
from datasette_claude_mem.storage.models import (
    EdgeInput,
    EdgesAdd,
    FunctionInput,
    FunctionMapUpsert,
    LearningCreate,
    ObservationCreate,
    Session,
    SessionStart,
)
from datasette_claude_mem.storage.store import Store

BUDGET = Config().context_budget
CLAUDE_LIMIT = 10_000


def sections(markdown: str) -> dict[str, str]:
    """Each section's text (heading included), by budget key."""
    found = {}
    for block in markdown.split("\n\n")[1:]:
        heading = block.split("\n", 1)[0]
        assert heading.startswith("## "), block[:80]
        found[CONTEXT_SECTIONS[heading[3:]]] = block
    return found


def lines_of(markdown: str, key: str) -> list[str]:
    return sections(markdown)[key].split("\n")[1:]


def set_time(store: Store, table: str, row_id: str, column: str, moment: str) -> None:
    with store.write() as conn:
        conn.execute(f"UPDATE {table} SET {column} = ? WHERE id = ?", [moment, row_id])


def new_session(store: Store, project_dir: Path, session_id: str, **kwargs) -> Session:
    return store.create_session(
        SessionStart(id=session_id, project_dir=str(project_dir), **kwargs)
    ).row


def observe(store: Store, session_id: str, title: str, summary: str = "did a thing") -> str:
    made = ObservationCreate(session_id=session_id, tool_name="Edit", title=title, summary=summary)
    return store.create_observation(made).row.id


def learn(store: Store, project: str | None, content: str, confidence: float) -> str:
    made = LearningCreate(
        category="gotcha", content=content, confidence=confidence, project=project
    )
    return store.create_learning(made).row.id


def functions(store: Store, session_id: str, file_path: str, names: list[str], sig: str = ""):
    store.upsert_functions(
        FunctionMapUpsert(
            session_id=session_id,
            file_path=file_path,
            functions=[
                FunctionInput(
                    qualified_name=name, kind="function", signature=sig or f"{name}()",
                    body_hash=f"h-{name}",
                )
                for name in names
            ],
        )
    )  # fmt: skip


def callers(store: Store, session_id: str, file_path: str, callee: str, names: list[str]):
    store.add_edges(
        EdgesAdd(
            session_id=session_id,
            edges=[
                EdgeInput(
                    caller_file="src/callers.py", caller_function=name, callee_file=file_path,
                    callee_function=callee, resolution="import",
                )
                for name in names
            ],
        )
    )  # fmt: skip


def fill(store: Store, project_dir: Path, tag: str, text: str = "", n: int = 40) -> str:
    """A project with far more to say than the budget holds, in every section."""
    sessions = [new_session(store, project_dir, f"{tag}-s{i:02d}") for i in range(n)]
    project = sessions[0].project
    for i, s in enumerate(sessions):
        store.log_event(
            "UserPromptSubmit", {"prompt": f"{tag} prompt {i} {text}"}, session_id=s.id,
            project=project,
        )  # fmt: skip
        observe(store, s.id, f"{tag} observation {i} {text}", f"{tag} summary {i} {text}" * 3)
        learn(store, project, f"{tag} learning {i} {text}", confidence=(i % 10) / 10)
    names = [f"{tag}_fn_{i}" for i in range(n)]
    functions(store, sessions[-1].id, f"src/{tag}.py", names, sig=f"({text[:200]})")
    for name in names[-12:]:  # the context looks at the most recently changed
        callers(store, sessions[-1].id, f"src/{tag}.py", name, [f"caller_{k}" for k in range(8)])
    return project


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    (path / ".git").mkdir(parents=True)
    return path


# What is in it, and what is left out


def test_an_empty_memory_gives_no_context(store: Store, project_dir: Path) -> None:
    context = build_context(store, str(project_dir))
    assert context.markdown == "" and context.sections == {}


def test_sections_with_nothing_to_say_are_left_out(store: Store, project_dir: Path) -> None:
    learn(store, str(project_dir), "Run the tests with -p no:cacheprovider", 0.9)
    context = build_context(store, str(project_dir))
    assert list(sections(context.markdown)) == ["learnings"]
    assert context.markdown.startswith(f"# Memory of {project_dir}\n\n## Learnings\n")

    session = new_session(store, project_dir, "only")
    context = build_context(store, session.project, current_session="only")
    assert list(sections(context.markdown)) == ["learnings"]  # itself is not its history


def test_an_observation_shows_its_type(store: Store, project_dir: Path) -> None:
    session = new_session(store, project_dir, "typed")
    for tool, kind, title in (("Edit", "bugfix", "Fix apply_discount"), ("Read", None, "Read")):
        made = ObservationCreate(
            session_id="typed", tool_name=tool, title=title, summary="it works", type=kind
        )
        store.create_observation(made)
    lines = build_context(store, session.project).markdown.splitlines()
    assert any(line.endswith("[bugfix] Fix apply_discount: it works") for line in lines)
    assert not any("[None]" in line for line in lines)


def test_every_section_appears_and_keeps_to_its_budget(store: Store, project_dir: Path) -> None:
    project = fill(store, project_dir, "a")
    context = build_context(store, project)
    found = sections(context.markdown)
    assert set(found) == set(BUDGET)
    for key, text in found.items():
        assert tokens(text) <= BUDGET[key], key
        assert context.sections[key] == tokens(text)
        assert len(text.split("\n")) > 2, key  # full, not nearly empty
    assert context.tokens <= sum(BUDGET.values()) + tokens(f"# Memory of {project}") + 10
    assert len(context.markdown.encode("utf-8")) < CLAUDE_LIMIT


def test_smaller_budgets_are_kept_too(store: Store, project_dir: Path) -> None:
    project = fill(store, project_dir, "b")
    config = Config(ctx_session_index=60, ctx_function_map=40, ctx_learnings=30,
                    ctx_observations=80, ctx_call_graph=25)  # fmt: skip
    context = build_context(store, project, config=config)
    for key, text in sections(context.markdown).items():
        assert tokens(text) <= config.context_budget[key], key


@pytest.mark.parametrize("piece", ["x", "é", "漢", "🙂", "e\u0301", "\n\t "])
def test_huge_and_multibyte_content_stays_under_10000_bytes(
    store: Store, project_dir: Path, piece: str
) -> None:
    project = fill(store, project_dir, "m", text=piece * 20_000, n=30)
    context = build_context(store, project)
    data = context.markdown.encode("utf-8")
    assert 0 < len(data) < CLAUDE_LIMIT
    assert data.decode("utf-8") == context.markdown
    last = context.markdown.split("\n")[-1]
    assert not last.startswith("#")  # no heading left with nothing under it
    for key, text in sections(context.markdown).items():
        assert tokens(text) <= BUDGET[key], key


def _build_or_hang(store: Store, project: str, seconds: float = 30) -> Context:
    built: list[Context] = []
    worker = threading.Thread(target=lambda: built.append(build_context(store, project)))
    worker.daemon = True
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), "build_context never returned"
    return built[0]


@pytest.mark.parametrize("key", ["é" * 6000, "p" * 12_000], ids=["multibyte", "ascii"])
def test_a_project_key_longer_than_the_limit_still_gives_a_short_context(
    store: Store, project_dir: Path, key: str
) -> None:
    new_session(store, project_dir, "one", project=key)
    new_session(store, project_dir, "two", project=key)
    context = _build_or_hang(store, key)
    assert "`one`" in context.markdown and "`two`" in context.markdown
    assert len(context.markdown.encode("utf-8")) < CLAUDE_LIMIT


# Order and determinism


def test_most_recent_and_most_confident_come_first(store: Store, project_dir: Path) -> None:
    older = new_session(store, project_dir, "older")
    newer = new_session(store, project_dir, "newer")
    set_time(store, "sessions", "older", "started_at", "2025-01-01T09:00:00.000Z")
    set_time(store, "sessions", "newer", "started_at", "2025-01-02T09:00:00.000Z")
    project = older.project
    for title, moment in [("middle", "02"), ("oldest", "01"), ("newest", "03")]:
        row_id = observe(store, newer.id, title)
        set_time(store, "observations", row_id, "created_at", f"2025-01-{moment}T10:00:00.000Z")
    for content, confidence in [("so-so", 0.5), ("sure", 0.95), ("doubtful", 0.2)]:
        learn(store, project, content, confidence)

    markdown = build_context(store, project).markdown
    assert [line.split("`")[1] for line in lines_of(markdown, "session_index")] == [
        "newer",
        "older",
    ]
    titles = [line.split(" ", 3)[3].split(":")[0] for line in lines_of(markdown, "observations")]
    assert titles == ["newest", "middle", "oldest"]
    learned = [line.split("] ", 1)[1] for line in lines_of(markdown, "learnings")]
    assert learned == ["sure", "so-so", "doubtful"]


def test_the_same_database_gives_the_same_text(
    store: Store, project_dir: Path, tmp_path: Path
) -> None:
    project = fill(store, project_dir, "d")
    first = build_context(store, project)
    assert build_context(store, project).markdown == first.markdown
    with Store(store.db.conn.execute("PRAGMA database_list").fetchone()[2]) as again:
        assert build_context(again, project).markdown == first.markdown
    store.checkpoint()
    copy = tmp_path / "copy.db"
    shutil.copy(store.db.conn.execute("PRAGMA database_list").fetchone()[2], copy)
    with Store(copy) as copied:
        assert build_context(copied, project).as_json() == first.as_json()


def test_projects_never_see_each_other(store: Store, tmp_path: Path) -> None:
    dirs = {}
    for name in ("alpha", "beta"):
        dirs[name] = tmp_path / name
        (dirs[name] / ".git").mkdir(parents=True)
    alpha = fill(store, dirs["alpha"], "alpha", n=10)
    beta = fill(store, dirs["beta"], "beta", n=10)
    learn(store, None, "global: commit with signed-off-by", 0.99)
    for mine, theirs in ((alpha, "beta"), (beta, "alpha")):
        markdown = build_context(store, mine).markdown
        assert theirs not in markdown.replace(mine, "")
        assert "global: commit with signed-off-by" in markdown
    assert build_context(store, str(tmp_path / "gamma")).markdown.count("\n## ") == 1


# Through the route


@pytest.mark.asyncio
async def test_the_context_route_answers_the_same_context(
    ds: Datasette, token: str, tmp_path: Path
) -> None:
    project_dir = tmp_path / "routed"
    (project_dir / ".git").mkdir(parents=True)
    for i in range(3):
        body = {"id": f"r{i}", "project_dir": str(project_dir), "summary": f"session {i} 漢字"}
        assert (await api_call(ds, "POST", "/sessions", body, token=token)).status_code == 201

    response = await api_call(ds, "GET", f"/context?project={project_dir}", token=token)
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True and body["project"] == str(project_dir)
    assert body["bytes"] == len(body["markdown"].encode("utf-8")) < CLAUDE_LIMIT
    assert body["tokens"] == tokens(body["markdown"])
    assert body["sections"] == {
        "session_index": tokens(sections(body["markdown"])["session_index"])
    }
    for i in range(3):
        assert f"`r{i}`: session {i} 漢字" in body["markdown"]

    assert_error(await api_call(ds, "GET", "/context", token=token), 400, "project")
    assert (await api_call(ds, "GET", f"/context?project={project_dir}")).status_code in (401, 403)
