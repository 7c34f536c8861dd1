"""The memory's HTML pages, through datasette.client, over a known seeded memory.

The dashboard, a session's page, the context preview and the row pages of observations,
learnings and the queue: what each shows, who may see it (403 for anonymous under the serve
configuration, 404 for an unknown session), that nothing stored is ever shown as markup, and
the menu link.
"""

from __future__ import annotations

import html
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from datasette.app import Datasette
from helpers import finished_long_ago
from markupsafe import escape

from datasette_claude_mem.claude_code.context import SECTIONS, build_context
from datasette_claude_mem.names import TEMPLATES_DIR
from datasette_claude_mem.pages import charts, formatting
from datasette_claude_mem.pages import views as pages
from datasette_claude_mem.storage.models import (
    EdgeInput,
    EdgesAdd,
    FunctionInput,
    FunctionMapUpsert,
    LearningCreate,
    ObservationCreate,
    QueueItemCreate,
    SessionStart,
)
from datasette_claude_mem.storage.models import format_ts as _format_ts
from datasette_claude_mem.storage.store import Store

ALPHA = "/src/alpha"
BETA = "/src/beta"
HOSTILE = "<script>alert(1)</script>"
HOSTILE_ESCAPED = html.escape(HOSTILE, quote=False)
DB = "claude-mem"


def seed_memory(path: Path) -> dict[str, str]:
    """Write a known memory through the store; returns the ids the tests look for.

    Project alpha has a closed session (prompt, an edit compressed into an observation, a
    failed and a dead tool use, functions, an edge, a learning) and an active one (a waiting
    tool use, a modified function); project beta has one session from three days ago. Hostile
    markup is in a prompt, a tool input and output, an observation, a function name, a
    learning and a summary.
    """
    store = Store(path)
    ids: dict[str, str] = {}
    s1 = store.create_session(
        SessionStart(id="sess-alpha-1", project_dir=f"{ALPHA}/pkg", project=ALPHA)
    ).row
    ids["s1"] = s1.id
    store.log_event("SessionStart", {"source": "startup"}, session_id=s1.id, project=ALPHA)
    store.log_event(
        "UserPromptSubmit",
        {"prompt": f"Fix the tokenizer {HOSTILE}"},
        session_id=s1.id,
        project=ALPHA,
    )
    edit = store.enqueue(
        QueueItemCreate(
            session_id=s1.id,
            tool_use_id="tu-edit",
            tool_name="Edit",
            tool_input={"file_path": f"{ALPHA}/src/parser.py", "new_string": HOSTILE},
            raw_output=f"The file was edited.\n{HOSTILE}\nline three",
            files_touched=[f"{ALPHA}/src/parser.py"],
        )
    ).row
    ids["q_done"] = edit.id
    store.claim(1, worker="w1")
    _, observation = store.complete(
        edit.id,
        "w1",
        ObservationCreate(
            session_id=s1.id,
            tool_name="Edit",
            title=f"Edited the parser {HOSTILE}",
            summary=f"Parser.feed now keeps the trailing newline.\nSecond line {HOSTILE}",
            detail="Long detail about the tokenizer.",
            files_touched=[f"{ALPHA}/src/parser.py"],
            functions_changed=["Parser.feed", "parse"],
            tokens_raw=1200,
            tokens_compressed=80,
        ),
    )
    assert observation is not None
    ids["obs"] = observation.id
    failing = store.enqueue(
        QueueItemCreate(session_id=s1.id, tool_use_id="tu-bash", tool_name="Bash",
                        raw_output="make: *** [all] Error 2", max_attempts=3)
    ).row  # fmt: skip
    store.claim(1, worker="w1")
    store.fail(failing.id, "w1", f"compressor crashed {HOSTILE}")
    ids["q_failed"] = failing.id
    dead = store.enqueue(
        QueueItemCreate(session_id=s1.id, tool_use_id="tu-grep", tool_name="Grep",
                        raw_output="no matches", max_attempts=1)
    ).row  # fmt: skip
    store.claim(1, worker="w1")
    store.fail(dead.id, "w1", "gave up")
    ids["q_dead"] = dead.id
    store.upsert_functions(
        FunctionMapUpsert(
            session_id=s1.id,
            file_path="src/parser.py",
            functions=[
                FunctionInput(
                    qualified_name="parse",
                    kind="function",
                    signature="def parse(text)",
                    body_hash="h-parse-1",
                ),
                FunctionInput(
                    qualified_name="Parser.feed",
                    kind="method",
                    signature="def feed(self, data)",
                    body_hash="h-feed-1",
                ),
            ],
        )  # fmt: skip
    )
    store.add_edges(
        EdgesAdd(
            session_id=s1.id,
            edges=[
                EdgeInput(
                    caller_file="src/cli.py",
                    caller_function="main",
                    callee_file="src/parser.py",
                    callee_function="parse",
                    resolution="import",
                ),
            ],
        )  # fmt: skip
    )
    learning = store.create_learning(
        LearningCreate(category="gotcha", content=f"The tokenizer drops a newline {HOSTILE}",
                       confidence=0.9, project=ALPHA, source_session_id=s1.id)
    ).row  # fmt: skip
    ids["learning"] = learning.id
    store.create_learning(
        LearningCreate(category="convention", content="Tests run with bash scripts/test",
                       confidence=0.7)
    )  # fmt: skip
    store.close_session(s1.id, summary=f"Fixed the tokenizer.\nTests pass. {HOSTILE}")

    s2 = store.create_session(SessionStart(id="sess-alpha-2", project_dir=ALPHA, project=ALPHA)).row
    ids["s2"] = s2.id
    store.upsert_functions(
        FunctionMapUpsert(
            session_id=s2.id,
            file_path="src/parser.py",
            functions=[
                FunctionInput(
                    qualified_name="parse",
                    kind="function",
                    signature="def parse(text, strict=False)",
                    body_hash="h-parse-2",
                ),
                FunctionInput(
                    qualified_name="Parser.feed",
                    kind="method",
                    signature="def feed(self, data)",
                    body_hash="h-feed-1",
                ),
                FunctionInput(qualified_name=HOSTILE, kind="function", body_hash="h-evil"),
            ],
        )  # fmt: skip
    )
    waiting = store.enqueue(
        QueueItemCreate(session_id=s2.id, tool_use_id="tu-read", tool_name="Read",
                        tool_input={"file_path": f"{ALPHA}/README.md"},
                        raw_output="# Alpha", files_touched=[f"{ALPHA}/README.md"])
    ).row  # fmt: skip
    ids["q_waiting"] = waiting.id

    s3 = store.create_session(SessionStart(id="sess-beta-1", project_dir=BETA, project=BETA)).row
    ids["s3"] = s3.id
    beta_obs = store.create_observation(
        ObservationCreate(session_id=s3.id, tool_name="Read", title="Read the beta README",
                          summary="Beta is a web app.")
    ).row  # fmt: skip
    retired = store.create_learning(
        LearningCreate(category="architecture", content="Beta was a CLI", project=BETA)
    ).row
    store.soft_delete_learning(retired.id)
    store.close_session(s3.id, summary="Looked around beta.")
    store.log_event(
        "worker_batch",
        {"worker": "server:1", "compressor": "offline", "items": 3, "done": 1, "failed": 2},
        duration_ms=42,
        tokens_in=1200,
        tokens_out=80,
    )
    # Beta's session happened three days ago.
    then = _format_ts(datetime.now(UTC) - timedelta(days=3))
    with store.write() as conn:
        conn.execute("UPDATE sessions SET started_at = ? WHERE id = ?", [then, s3.id])
        conn.execute("UPDATE observations SET created_at = ? WHERE id = ?", [then, beta_obs.id])
    store.close()
    return ids


# Fixtures and helpers


@pytest.fixture
def seeded(memory_path: Path) -> dict[str, str]:
    return seed_memory(memory_path)


@pytest_asyncio.fixture
async def mem(make_ds, memory_path: Path, seeded: dict[str, str]) -> Datasette:
    """The serve configuration over the seeded memory, with the in-server worker off."""
    return await make_ds(memory_path, plugin={"worker": False})


def as_root(ds: Datasette) -> dict[str, str]:
    return {"ds_actor": ds.client.actor_cookie({"id": "root"})}


async def page(ds: Datasette, path: str, status: int = 200) -> str:
    response = await ds.client.get(path, cookies=as_root(ds))
    assert response.status_code == status, response.text[:2000]
    assert response.headers["content-type"].startswith("text/html")
    return response.text


def text_of(markup: str, element_id: str | None = None) -> str:
    """The visible text of the page, or of the element with this id, whitespace collapsed."""
    if element_id is not None:
        start = markup.index(f'id="{element_id}"')
        tag = markup.rfind("<", 0, start)
        name = re.match(r"<(\w+)", markup[tag:]).group(1)
        depth, pos = 0, tag
        for found in re.finditer(rf"<(/?){name}\b", markup[tag:]):
            depth += -1 if found.group(1) else 1
            if depth == 0:
                pos = tag + found.end()
                break
        markup = markup[tag:pos]
    markup = re.sub(r"<(script|style)\b.*?</\1>", " ", markup, flags=re.S)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", markup))).strip()


def assert_escaped(markup: str) -> None:
    """Stored hostile markup shows as text and never as a tag."""
    assert HOSTILE not in markup
    assert "<script>alert" not in markup
    assert HOSTILE_ESCAPED in markup or html.escape(HOSTILE) in markup


# The dashboard


@pytest.mark.asyncio
async def test_dashboard_shows_projects_sessions_queue_and_learnings(
    mem: Datasette, seeded: dict[str, str]
) -> None:
    markup = await page(mem, "/-/claude-mem")
    assert "<title>Memory dashboard</title>" in markup
    projects = text_of(markup, "projects")
    assert "alpha /src/alpha 2 1 1" in projects
    assert "beta /src/beta 1 1 0" in projects
    assert projects.index("alpha") < projects.index("beta"), "most recently active first"
    sessions = text_of(markup, "sessions")
    assert "Fixed the tokenizer. Tests pass." in sessions
    assert "Looked around beta." in sessions
    for session_id in ("sess-alpha-1", "sess-alpha-2", "sess-beta-1"):
        assert f'href="/-/claude-mem/sessions/{session_id}"' in markup
    queue = text_of(markup, "queue")
    assert "Waiting 1 · the oldest for" in queue
    assert "In progress 0" in queue
    assert "Failed 1 will be retried" in queue
    assert "Dead letters 1 no attempts left" in queue
    assert "3 items, 1 done, 2 failed, in 42 ms (offline)" in queue
    learnings = text_of(markup, "learnings")
    assert "gotcha 0.90 · alpha The tokenizer drops a newline" in learnings
    assert "convention 0.70 · (global) Tests run with bash scripts/test" in learnings
    assert "Beta was a CLI" not in markup, "a retired learning is not active"
    assert f'href="/claude-mem/learnings/{seeded["learning"]}"' in markup


@pytest.mark.asyncio
async def test_dashboard_links_into_everything(mem: Datasette) -> None:
    markup = await page(mem, "/-/claude-mem")
    for table in (
        "sessions", "observations", "function_map", "call_graph", "learnings",
        "pending_queue", "pending_payloads", "event_log",
    ):  # fmt: skip
        assert f'href="/claude-mem/{table}"' in markup, table
    for query in (
        "active_learnings", "changed_functions", "callers", "callees", "queue_stats",
        "recent_sessions", "session_timeline", "search_memory",
    ):  # fmt: skip
        assert f'href="/claude-mem/{query}"' in markup, query
    assert 'href="/-/claude-mem/context-preview?project=%2Fsrc%2Falpha"' in markup
    assert 'href="/claude-mem/pending_queue?status=raw"' in markup
    assert 'href="/claude-mem/event_log?event_type=worker_batch"' in markup
    assert 'href="/claude-mem/sessions?project=%2Fsrc%2Fbeta"' in markup
    browse = text_of(markup, "browse")
    assert "pending_queue 4 rows" in browse and "call_graph 1 row " in browse


@pytest.mark.asyncio
async def test_dashboard_charts_are_inline_svg(mem: Datasette) -> None:
    markup = await page(mem, "/-/claude-mem")
    assert markup.count('<svg class="cm-chart"') == 2
    today = datetime.now(UTC).date()
    three_days_ago = today - timedelta(days=3)
    assert f"<title>{today}: 4 tool uses</title>" in markup
    assert f"<title>{today}: 1 observation</title>" in markup
    assert f"<title>{three_days_ago}: 1 observation</title>" in markup
    assert f"<title>{today - timedelta(days=13)}: 0 tool uses</title>" in markup
    for state, count in (("Waiting", 1), ("In progress", 0), ("Done", 1), ("Dead letters", 1)):
        assert f"<title>{state}: {count}</title>" in markup
    # Nothing is fetched from elsewhere and no script draws anything.
    assert "https://" not in markup.split("<footer")[0].split("</head>")[1]
    activity = text_of(markup, "activity")
    assert "3 sessions, 1 prompt, 4 tool uses and 2 observations in these days." in activity


@pytest.mark.asyncio
async def test_dashboard_of_an_empty_memory(make_ds, memory_path: Path) -> None:
    ds = await make_ds(memory_path, plugin={"worker": False})
    markup = await page(ds, "/-/claude-mem")
    assert "No project yet" in markup
    assert "no batch recorded yet" in markup
    assert "Nothing learned yet." in markup
    assert f"<title>{datetime.now(UTC).date()}: 0 tool uses</title>" in markup


@pytest.mark.asyncio
async def test_dashboard_shows_the_files_size_what_holds_it_and_what_retention_frees(
    make_ds, memory_path: Path
) -> None:
    with Store(memory_path) as store:
        session = store.create_session(SessionStart(project_dir="/src/big")).row
        finished_long_ago(store, session.id, 10, 200_000)
        store.log_event("Stop", {}, session_id=session.id, created_at="2000-01-01T00:00:00.000Z")
        store.checkpoint()
    ds = await make_ds(memory_path, plugin={"worker": False, "event_retention_days": 0})

    space = text_of(await page(ds, "/-/claude-mem"), "space")

    assert re.search(r"^Space 2\.\d MB on disk pending_payloads 2\.0 MB ", space), space
    assert "Retention would free about 2.0 MB: 10 raw tool outputs; measured just now." in space
    assert "kept 30 days once compressed, dead letters 90 days, events forever" in space


@pytest.mark.asyncio
async def test_a_big_file_shows_what_holds_it_as_the_worker_measured_it(
    make_ds, memory_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datasette_claude_mem import plugin
    from datasette_claude_mem.storage import retention

    with Store(memory_path) as store:
        session = store.create_session(SessionStart(project_dir="/src/big")).row
        finished_long_ago(store, session.id, 5, 200_000)
    monkeypatch.setattr(retention, "LIVE_DETAIL_BYTES", 0)
    ds = await make_ds(memory_path, plugin={"worker": False})

    before = text_of(await page(ds, "/-/claude-mem"), "space")
    assert "Too big to read whole for this page" in before
    assert "Retention would free" not in before

    while await plugin.idle_work(ds):  # the in-server worker's idle turns
        pass
    after = text_of(await page(ds, "/-/claude-mem"), "space")
    assert "Too big" not in after
    assert "Retention would free about 0 bytes; measured just now." in after
    # The megabyte of payloads is gone and the file is back under one.
    assert re.search(r"^Space \d+\.\d KB on disk sqlite_schema ", after), after


def test_chart_geometry_stays_inside_the_plot() -> None:
    assert [charts.nice_max(v) for v in (0, 1, 3, 7, 10, 11, 230, 5000)] == [
        1, 1, 5, 10, 10, 20, 500, 5000,
    ]  # fmt: skip
    days = [
        {"day": f"2025-01-{i + 1:02d}", "label": f"Jan {i + 1}", "tool_uses": i * 7,
         "observations": i}
        for i in range(14)
    ]  # fmt: skip
    chart = charts.activity_chart(days)
    assert len(chart.bars) == 28
    for bar in chart.bars:
        assert chart.plot_left <= bar.x and bar.x + bar.width <= chart.plot_right
        assert bar.y >= 0 and bar.y + bar.height <= chart.plot_bottom + 0.01
    tallest = max(chart.bars, key=lambda b: b.height)
    assert tallest.tooltip == "2025-01-14: 91 tool uses"
    small = charts.queue_chart([("waiting", "Waiting", 1), ("done", "Done", 10_000)])
    assert small.bars[0].width >= 3, "a count that is not zero stays visible"
    assert small.value_labels[1][2] == "10,000"


# Who may see the pages


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "path",
    ["/-/claude-mem", "/-/claude-mem/sessions/sess-alpha-1", "/-/claude-mem/context-preview"],
)
async def test_pages_are_forbidden_to_anonymous_and_strangers(mem: Datasette, path: str) -> None:
    anonymous = await mem.client.get(path)
    assert anonymous.status_code == 403
    assert anonymous.headers["content-type"].startswith("text/html")
    assert "Forbidden" in anonymous.text and "Fixed the tokenizer" not in anonymous.text
    stranger = await mem.client.get(
        path, cookies={"ds_actor": mem.client.actor_cookie({"id": "x"})}
    )
    assert stranger.status_code == 403
    assert "sess-alpha-1" not in stranger.text or path.endswith("sess-alpha-1")


@pytest.mark.asyncio
async def test_the_hooks_actor_may_see_the_pages_with_its_token(mem: Datasette) -> None:
    token = await mem.create_token("claude-mem")
    response = await mem.client.get("/-/claude-mem", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


@pytest.mark.asyncio
async def test_unknown_session_is_404(mem: Datasette) -> None:
    markup = await page(mem, "/-/claude-mem/sessions/no-such-session", status=404)
    assert "No session" in markup and "no-such-session" in markup


@pytest.mark.asyncio
async def test_pages_answer_only_get(mem: Datasette) -> None:
    response = await mem.client.post(
        "/-/claude-mem/sessions/sess-alpha-1",
        cookies=as_root(mem),
        headers={"Sec-Fetch-Site": "same-origin"},  # as the browser sends it from the page
    )
    assert response.status_code == 405
    assert response.headers["allow"] == "DELETE, GET"  # a DELETE forgets the session
    response = await mem.client.post(
        "/-/claude-mem", cookies=as_root(mem), headers={"Sec-Fetch-Site": "same-origin"}
    )
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"


@pytest.mark.asyncio
async def test_menu_link_for_those_who_may_view_the_memory(mem: Datasette) -> None:
    link = '<a href="/-/claude-mem">Claude memory</a>'
    assert link in await page(mem, "/")
    assert link in await page(mem, "/-/claude-mem")
    anonymous = await mem.client.get("/")
    assert anonymous.status_code == 200
    assert link not in anonymous.text


# A session's page


@pytest.mark.asyncio
async def test_session_page_shows_its_timeline_in_order(mem: Datasette, seeded) -> None:
    markup = await page(mem, "/-/claude-mem/sessions/sess-alpha-1")
    header = text_of(markup.split('<div class="cm-stats">')[0].split("<h1>")[1])
    assert header.startswith("Session sess-alpha-1 alpha closed · started")
    stats = text_of(markup.split('<div class="cm-stats">')[1].split("</div>\n\n")[0])
    assert stats == (
        "1 prompts 3 tool uses 1 observations 2 events 1 files touched 2 functions changed"
    )
    assert "Fixed the tokenizer. Tests pass." in text_of(markup, "summary")
    timeline = text_of(markup, "timeline")
    steps = [
        "SessionStart",
        "prompt Prompt Fix the tokenizer",
        "tool use Edit done /src/alpha/src/parser.py",
        "observation Edited the parser",
        "Parser.feed now keeps the trailing newline.",
        "tool use Bash error Last error: compressor crashed",
        "tool use Grep dead letter Last error: gave up",
    ]
    positions = [timeline.index(step) for step in steps]
    assert positions == sorted(positions), timeline
    assert f'href="/claude-mem/pending_queue/{seeded["q_done"]}"' in markup
    assert f'href="/claude-mem/observations/{seeded["obs"]}"' in markup
    assert 'href="/claude-mem/session_timeline?session_id=sess-alpha-1"' in markup


@pytest.mark.asyncio
async def test_session_page_shows_files_and_functions(mem: Datasette) -> None:
    markup = await page(mem, "/-/claude-mem/sessions/sess-alpha-1")
    files = text_of(markup, "files")
    assert "src/parser.py new Parser.feed method" in files
    assert "new parse function" in files
    assert (
        'href="/claude-mem/function_map?file_path=src%2Fparser.py&amp;project=%2Fsrc%2Falpha"'
        in (markup)
    )
    assert (
        'href="/claude-mem/callers?project=%2Fsrc%2Falpha&amp;function=parse&amp;'
        'file=src%2Fparser.py"' in markup
    )
    assert "gotcha The tokenizer drops a newline" in text_of(markup, "learned")

    later = await page(mem, "/-/claude-mem/sessions/sess-alpha-2")
    files = text_of(later, "files")
    assert "modified parse function" in files
    assert "unchanged Parser.feed method" in files
    assert f"new {HOSTILE} function" in files
    assert "Nothing was recorded" not in later
    assert "No summary was recorded for this session." in later
    assert_escaped(later)


@pytest.mark.asyncio
async def test_session_ids_are_taken_from_the_path_as_text(make_ds, memory_path: Path) -> None:
    with Store(memory_path) as store:
        store.create_session(SessionStart(id="odd id <b>", project_dir="/src/odd", project="/o"))
    ds = await make_ds(memory_path, plugin={"worker": False})
    # Datasette sends %-escaped paths to their ~-escaped form; the pages link to that.
    response = await ds.client.get("/-/claude-mem/sessions/odd%20id%20%3Cb%3E", cookies=as_root(ds))
    assert response.headers["location"] == "/-/claude-mem/sessions/odd~20id~20~3Cb~3E"
    markup = await page(ds, "/-/claude-mem/sessions/odd~20id~20~3Cb~3E")
    assert "Session <code>odd id &lt;b&gt;</code>" in markup
    dashboard = await page(ds, "/-/claude-mem")
    assert 'href="/-/claude-mem/sessions/odd+id+~3Cb~3E"' in dashboard
    assert "odd id &lt;b&gt;" in await page(ds, "/-/claude-mem/sessions/odd+id+~3Cb~3E")


# The context preview


@pytest.mark.asyncio
async def test_context_preview_shows_exactly_the_next_sessions_context(
    mem: Datasette, memory_path: Path
) -> None:
    with Store(memory_path) as store:
        expected = build_context(store, ALPHA)
    assert expected.markdown and len(expected.sections) >= 4  # its one edit is a change to code
    markup = await page(mem, "/-/claude-mem/context-preview?project=/src/alpha")
    assert f'<pre class="cm-text cm-markdown">{html.escape(expected.markdown)}</pre>' in markup
    sections = text_of(markup, "sections")
    titles = dict(SECTIONS)
    for key, tokens in expected.sections.items():
        assert f"{titles[key]} {tokens} " in sections
    size = len(expected.markdown.encode("utf-8"))
    assert f"{expected.tokens:,} tokens of 2,000 budgeted" in text_of(markup)
    assert f"{size:,} bytes of 10,000 allowed" in text_of(markup)
    assert 'href="/-/claude-mem/context?project=%2Fsrc%2Falpha"' in markup
    assert_escaped(markup)

    json_answer = await mem.client.get(
        "/-/claude-mem/context?project=/src/alpha", cookies=as_root(mem)
    )
    assert json_answer.json()["markdown"] == expected.markdown


@pytest.mark.asyncio
async def test_context_preview_without_a_project_lists_the_projects(mem: Datasette) -> None:
    markup = await page(mem, "/-/claude-mem/context-preview")
    projects = text_of(markup, "projects")
    assert "alpha /src/alpha · 2 sessions, 1 observation" in projects
    assert 'href="/-/claude-mem/context-preview?project=%2Fsrc%2Fbeta"' in markup
    assert '<option value="/src/beta">beta</option>' in markup


@pytest.mark.asyncio
async def test_context_preview_of_a_project_the_memory_does_not_know(mem: Datasette) -> None:
    markup = await page(mem, "/-/claude-mem/context-preview?project=/src/new%3Cb%3E")
    assert "# Memory of new&lt;b&gt;" in markup
    assert "Tests run with bash scripts/test" in markup, "global learnings reach every project"
    assert "The tokenizer" not in markup, "another project's learnings do not"


@pytest.mark.asyncio
async def test_context_preview_of_an_empty_memory(make_ds, memory_path: Path) -> None:
    ds = await make_ds(memory_path, plugin={"worker": False})
    markup = await page(ds, "/-/claude-mem/context-preview?project=/src/nothing%3Cb%3E")
    assert "The memory has nothing for <code>/src/nothing&lt;b&gt;</code> yet" in markup
    assert "0 tokens of 2,000 budgeted" in text_of(markup)


# Row pages


@pytest.mark.asyncio
async def test_observation_row_page_is_readable_and_linked(mem: Datasette, seeded) -> None:
    markup = await page(mem, f"/claude-mem/observations/{seeded['obs']}")
    assert "row-claude-mem-observations.html" in markup.split("Templates considered:")[1][:80]
    assert "/-/static-plugins/datasette-claude-mem/claude-mem.css" in markup
    assert (
        '<div class="cm-text">Parser.feed now keeps the trailing newline.\nSecond line '
        f"{HOSTILE_ESCAPED}</div>" in markup
    )
    assert '<div class="cm-text">Long detail about the tokenizer.</div>' in markup
    assert 'href="/-/claude-mem/sessions/sess-alpha-1"' in markup
    assert f'href="/claude-mem/pending_queue/{seeded["q_done"]}"' in markup
    # Files link to their function map rows, functions to their callers and callees.
    assert "<li><a " in markup and "<code>/src/alpha/src/parser.py</code>" in markup
    assert (
        'href="/claude-mem/function_map?file_path=src%2Fparser.py&amp;project=%2Fsrc%2Falpha"'
        in (markup)
    )
    for query in ("callers", "callees"):
        for function in ("Parser.feed", "parse"):
            assert (
                f'href="/claude-mem/{query}?project=%2Fsrc%2Falpha&amp;function={function}&amp;file="'
                in markup
            )
    assert "Every column" in markup, "Datasette's own table of columns still follows"
    assert_escaped(markup)


@pytest.mark.asyncio
async def test_learning_row_page(mem: Datasette, seeded) -> None:
    markup = await page(mem, f"/claude-mem/learnings/{seeded['learning']}")
    view = text_of(markup.split('class="cm cm-row-view"')[1].split("Every column")[0])
    assert "gotcha active · alpha · updated" in view
    assert "What was learned The tokenizer drops a newline" in view
    assert "Confidence 0.90" in view
    assert 'href="/-/claude-mem/sessions/sess-alpha-1"' in markup
    assert 'href="/claude-mem/active_learnings?project=%2Fsrc%2Falpha"' in markup
    assert_escaped(markup)


@pytest.mark.asyncio
async def test_queue_row_page_shows_the_payload_and_what_came_of_it(mem: Datasette, seeded) -> None:
    markup = await page(mem, f"/claude-mem/pending_queue/{seeded['q_done']}")
    assert f"The file was edited.\n{HOSTILE_ESCAPED}\nline three</pre>" in markup
    assert str(escape('"new_string": "<script>alert(1)</script>"')) in markup
    assert f'href="/claude-mem/observations/{seeded["obs"]}"' in markup
    assert 'href="/-/claude-mem/sessions/sess-alpha-1"' in markup
    assert "attempt 1 of 3" in text_of(markup)
    assert_escaped(markup)

    failed = await page(mem, f"/claude-mem/pending_queue/{seeded['q_failed']}")
    assert f"compressor crashed {HOSTILE_ESCAPED}</div>" in failed
    dead = await page(mem, f"/claude-mem/pending_queue/{seeded['q_dead']}")
    assert "dead letter" in text_of(dead) and "attempt 1 of 1" in text_of(dead)


@pytest.mark.asyncio
async def test_queue_row_page_keeps_payloads_from_those_who_may_not_see_them(
    make_ds, memory_path: Path, seeded, serve_config: dict[str, Any]
) -> None:
    config = {**serve_config, "databases": {"claude-mem": {
        **serve_config["databases"]["claude-mem"],
        "tables": {"pending_payloads": {"allow": {"id": "nobody"}}},
    }}}  # fmt: skip
    ds = await make_ds(memory_path, config=config, plugin={"worker": False})
    markup = await page(ds, f"/claude-mem/pending_queue/{seeded['q_done']}")
    assert "You may not view the payloads table." in markup
    assert "The file was edited." not in markup


@pytest.mark.asyncio
async def test_session_row_page_links_to_the_session_page(mem: Datasette) -> None:
    markup = await page(mem, "/claude-mem/sessions/sess-alpha-1")
    assert '<a href="/-/claude-mem/sessions/sess-alpha-1"><strong>' in markup


@pytest.mark.asyncio
async def test_other_row_pages_are_datasettes_own(mem: Datasette) -> None:
    markup = await page(mem, "/claude-mem/pending_payloads/" + (await first_id(mem)))
    assert "cm-row-view" not in markup


async def first_id(ds: Datasette) -> str:
    db = ds.get_database(DB)
    return (await db.execute("SELECT item_id FROM pending_payloads LIMIT 1")).first()[0]


# Escaping


@pytest.mark.asyncio
async def test_hostile_content_is_text_on_every_page(mem: Datasette, seeded) -> None:
    paths = [
        "/-/claude-mem",
        "/-/claude-mem/sessions/sess-alpha-1",
        "/-/claude-mem/sessions/sess-alpha-2",
        "/-/claude-mem/context-preview?project=/src/alpha",
        f"/claude-mem/observations/{seeded['obs']}",
        f"/claude-mem/learnings/{seeded['learning']}",
        f"/claude-mem/pending_queue/{seeded['q_done']}",
        f"/claude-mem/pending_queue/{seeded['q_failed']}",
        "/claude-mem/sessions/sess-alpha-1",
    ]
    for path in paths:
        assert_escaped(await page(mem, path))


def test_no_template_marks_stored_data_safe() -> None:
    templates = sorted(TEMPLATES_DIR.glob("*.html"))
    assert any(t.name == "claude_mem_dashboard.html" for t in templates), "found the templates"
    for template in templates:
        text = template.read_text(encoding="utf-8")
        assert "|safe" not in text.replace(" ", ""), template.name
        assert "Markup(" not in text, template.name
    modules = sorted(Path(pages.__file__).parent.glob("*.py"))
    assert {m.name for m in modules} >= {"views.py", "charts.py", "links.py", "formatting.py"}
    for module in modules:
        assert "Markup" not in module.read_text(encoding="utf-8"), module.name


def test_formatting_helpers() -> None:
    assert formatting.when("2025-01-02T03:04:05.678Z") == "2025-01-02 03:04"
    assert formatting.when(None) == ""
    now = datetime(2025, 1, 2, 3, 10, tzinfo=UTC)
    assert formatting.age("2025-01-02T03:04:05.678Z", now) == "6 min ago"
    assert formatting.age("2025-01-02T03:09:50Z", now) == "just now"
    assert formatting.duration(0.042) == "42 ms"
    assert formatting.duration(7200) == "2.0 h"
    assert formatting.count(1, "prompt") == "1 prompt"
    assert formatting.count(1200, "row") == "1,200 rows"
    assert formatting.json_list('["a", 1]') == ["a", "1"]
    assert formatting.json_list("not json") == ["not json"]
    assert formatting.json_list(None) == []
    assert formatting.pretty_json('{"a": [1]}') == '{\n  "a": [\n    1\n  ]\n}'
    assert formatting.relative_to_project("/src/alpha/x.py", "/src/alpha") == "x.py"
    assert formatting.relative_to_project("/elsewhere/x.py", "/src/alpha") == "/elsewhere/x.py"
    assert formatting.short_project("/home/me/repo/") == "repo"
    assert formatting.short_project(None) == "(global)"


def test_seed_is_what_the_tests_expect(tmp_path: Path) -> None:
    ids = seed_memory(tmp_path / "m.db")
    conn = sqlite3.connect(tmp_path / "m.db")
    statuses = dict(conn.execute("SELECT tool_use_id, status FROM pending_queue").fetchall())
    assert statuses == {"tu-edit": "done", "tu-bash": "error", "tu-grep": "error", "tu-read": "raw"}
    assert set(ids) >= {"s1", "s2", "s3", "obs", "learning", "q_done", "q_failed", "q_dead"}
    conn.close()
