"""The MCP endpoint through the SDK's own client, in process (an ASGI transport over the
Datasette app, as datasette.client): the handshake, the tool list, and every tool on a
memory of two projects."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from datasette.app import Datasette
from helpers import db_rows, mcp_client

from datasette_claude_mem.claude_code.context import build_context
from datasette_claude_mem.storage.models import (
    EdgeInput,
    EdgesAdd,
    FunctionInput,
    FunctionMapUpsert,
    LearningCreate,
    ObservationCreate,
    SessionStart,
)
from datasette_claude_mem.storage.store import Store

TOOLS = {"search", "timeline", "get", "about", "remember", "forget", "context"}
ID = re.compile(r"^[→ ]*([0-9a-f-]{36}) · ", re.M)


@dataclass
class Memory:
    alpha: str  # project keys
    beta: str
    obs: list[str]  # alpha's observations, oldest first, in session "a1"
    beta_obs: str
    learning: str
    global_learning: str
    beta_learning: str


def observe(store: Store, session: str, title: str, summary: str, **kw) -> str:
    made = ObservationCreate(session_id=session, tool_name="Edit", title=title, summary=summary,
                             **kw)  # fmt: skip
    return store.create_observation(made).row.id


@pytest_asyncio.fixture
async def memory(ds: Datasette, memory_path: Path, tmp_path: Path) -> Memory:
    """Two projects that both talk about the tokenizer; alpha has a function map too."""
    with Store(memory_path) as store:
        a = store.create_session(SessionStart(id="a1", project_dir=str(tmp_path / "alpha"))).row
        b = store.create_session(SessionStart(id="b1", project_dir=str(tmp_path / "beta"))).row
        store.log_event("UserPromptSubmit", {"prompt": "make the tokenizer read unicode"},
                        session_id="a1", project=a.project)  # fmt: skip
        obs = [
            observe(store, "a1", "Read the parser", "looked at src/parse.py before the change",
                    files_touched=["src/parse.py"]),
            observe(store, "a1", "Tokenizer reads unicode", "Parser.parse now splits on "
                    "unicode word breaks", detail="The full diff: " + "x" * 2000,
                    files_touched=["src/parse.py"], functions_changed=["Parser.parse"]),
            observe(store, "a1", "Ran the tests", "all green after the tokenizer change"),
        ]  # fmt: skip
        beta_obs = observe(store, "b1", "Beta tokenizer secret", "beta's own tokenizer work")
        store.upsert_functions(FunctionMapUpsert(session_id="a1", file_path="src/parse.py",
            functions=[FunctionInput(qualified_name="Parser.parse", kind="method",
                                     signature="(self, text)", body_hash="h1")]))  # fmt: skip
        store.add_edges(EdgesAdd(session_id="a1", edges=[
            EdgeInput(caller_file="src/main.py", caller_function="main",
                      callee_file="src/parse.py", callee_function="Parser.parse",
                      resolution="import"),
            EdgeInput(caller_file="src/parse.py", caller_function="Parser.parse",
                      callee_file="src/parse.py", callee_function="split_words",
                      resolution="direct")]))  # fmt: skip

        def learn(project: str | None, content: str) -> str:
            made = LearningCreate(category="gotcha", content=content, project=project)
            return store.create_learning(made).row.id

        return Memory(
            alpha=a.project,
            beta=b.project,
            obs=obs,
            beta_obs=beta_obs,
            learning=learn(a.project, "The tokenizer must see NFC text; Parser.parse assumes it"),
            global_learning=learn(None, "Tokenizer changes need the unicode test corpus"),
            beta_learning=learn(b.project, "Beta tokenizer keys live in the vault"),
        )


async def call(ds: Datasette, token: str, tool: str, **arguments) -> tuple[str, bool]:
    async with mcp_client(ds, token) as client:
        result = await client.call_tool(tool, arguments)
    return result.content[0].text, bool(result.is_error)


@pytest.mark.asyncio
async def test_initialize_and_list_the_tools(ds: Datasette, token: str) -> None:
    async with mcp_client(ds, token) as client:
        assert client.server_capabilities.tools is not None
        listed = (await client.list_tools()).tools
    assert {t.name for t in listed} == TOOLS
    by_name = {t.name: t for t in listed}
    for tool in listed:
        assert len(tool.description) > 40, tool.name
        assert tool.input_schema["type"] == "object"
    assert by_name["search"].input_schema["required"] == ["query"]
    assert by_name["get"].input_schema["properties"]["ids"]["maxItems"] == 20
    assert by_name["forget"].input_schema["required"] == ["id", "reason"]
    assert by_name["search"].annotations.read_only_hint is True
    assert by_name["remember"].annotations.read_only_hint is False


@pytest.mark.asyncio
async def test_search_then_timeline_then_get(ds: Datasette, token: str, memory: Memory) -> None:
    answer, error = await call(ds, token, "search", query="tokenizer", session_id="a1")
    assert not error, answer
    ids = ID.findall(answer)
    assert memory.obs[1] in ids and memory.learning in ids and memory.global_learning in ids
    assert memory.beta_obs not in ids and memory.beta_learning not in ids
    assert "beta" not in answer.lower()
    line = next(x for x in answer.splitlines() if x.startswith(memory.obs[1]))
    assert "observation/Edit" in line and "src/parse.py" in line and "tok" in line

    answer, error = await call(ds, token, "timeline", id=memory.obs[1], before=1, after=1,
                               project=memory.alpha)  # fmt: skip
    assert not error, answer
    assert ID.findall(answer) == memory.obs  # the one before, itself, the one after
    assert f"→ {memory.obs[1]}" in answer

    answer, error = await call(ds, token, "timeline", session_id="a1")
    assert ID.findall(answer)[1:] == memory.obs  # the prompt came first
    assert "make the tokenizer read unicode" in answer

    answer, error = await call(ds, token, "get", ids=[memory.obs[1], memory.learning],
                               session_id="a1")  # fmt: skip
    assert not error, answer
    assert "The full diff: " + "x" * 100 in answer and "Parser.parse" in answer
    assert "NFC text" in answer


@pytest.mark.asyncio
async def test_another_projects_rows_are_never_returned(
    ds: Datasette, token: str, memory: Memory
) -> None:
    answer, _ = await call(ds, token, "get", ids=[memory.beta_obs, memory.beta_learning],
                           project=memory.alpha)  # fmt: skip
    assert "Beta tokenizer secret" not in answer and "live in the vault" not in answer
    assert answer.count("Not found in project") == 2
    answer, error = await call(ds, token, "timeline", id=memory.beta_obs, project=memory.alpha)
    assert error and "Beta tokenizer secret" not in answer
    answer, error = await call(ds, token, "forget", id=memory.beta_obs, reason="x",
                               project=memory.alpha)  # fmt: skip
    assert error
    assert db_rows(ds.databases["claude-mem"].path, "SELECT forgotten_at FROM observations "
                   "WHERE id = ?", [memory.beta_obs]) == [{"forgotten_at": None}]  # fmt: skip
    # Named, it is another matter.
    answer, _ = await call(ds, token, "search", query="tokenizer", project=memory.beta)
    assert memory.beta_obs in ID.findall(answer) and memory.obs[1] not in answer


@pytest.mark.asyncio
async def test_search_filters_by_kind_date_and_limit(
    ds: Datasette, token: str, memory: Memory
) -> None:
    answer, _ = await call(ds, token, "search", query="tokenizer", session_id="a1",
                           kinds=["learning"])  # fmt: skip
    assert set(ID.findall(answer)) == {memory.learning, memory.global_learning}
    answer, _ = await call(ds, token, "search", query="tokenizer unicode", session_id="a1",
                           kinds=["prompt"])  # fmt: skip
    assert "prompt" in answer and len(ID.findall(answer)) == 1
    answer, _ = await call(ds, token, "search", query="tokenizer", session_id="a1", limit=1)
    assert len(ID.findall(answer)) == 1
    answer, _ = await call(ds, token, "search", query="tokenizer", session_id="a1",
                           since="2999-01-01")  # fmt: skip
    assert ID.findall(answer) == [] and "No matches" in answer


@pytest.mark.asyncio
async def test_search_filters_by_observation_type(
    ds: Datasette, token: str, memory: Memory, memory_path: Path
) -> None:
    with Store(memory_path) as store:
        fix = observe(store, "a1", "Tokenizer fix", "NFC before split", type="bugfix")
    answer, error = await call(ds, token, "search", query="tokenizer", session_id="a1",
                               types=["bugfix", "failure"])  # fmt: skip
    assert not error and ID.findall(answer) == [fix]
    assert "observation/bugfix/Edit" in answer
    answer, error = await call(ds, token, "search", query="tokenizer", session_id="a1",
                               types=["chore"])  # fmt: skip
    assert error and "types" in answer


@pytest.mark.asyncio
async def test_about_a_file_and_a_function(ds: Datasette, token: str, memory: Memory) -> None:
    answer, error = await call(ds, token, "about", path="src/parse.py", session_id="a1")
    assert not error, answer
    assert "Parser.parse" in answer and memory.obs[0] in answer and memory.obs[1] in answer
    assert memory.obs[2] not in answer  # it named no file

    answer, error = await call(ds, token, "about", function="parse", session_id="a1")
    assert not error, answer
    assert "Called by: main (src/main.py)" in answer
    assert "Calls: split_words (src/parse.py)" in answer
    assert memory.obs[1] in answer and memory.learning in answer
    assert memory.beta_obs not in answer

    answer, _ = await call(ds, token, "about", function="nothing_like_it", session_id="a1")
    assert answer.startswith("The memory knows nothing about nothing_like_it")


@pytest.mark.asyncio
async def test_context_is_the_session_start_context(
    ds: Datasette, token: str, memory: Memory, memory_path: Path
) -> None:
    answer, error = await call(ds, token, "context", project=memory.alpha)
    assert not error
    with Store(memory_path) as store:
        expected = build_context(store, memory.alpha)
    assert answer == expected.with_tools_line()
    assert answer.splitlines()[-1].startswith("Ask the memory more with the claude-mem MCP tools")
    assert "search → timeline → get" in answer and f'project="{memory.alpha}"' in answer


@pytest.mark.asyncio
async def test_the_current_project_comes_from_the_session_then_the_default(
    make_ds, memory_path: Path, memory: Memory, token: str, ds: Datasette
) -> None:
    answer, error = await call(ds, token, "search", query="tokenizer")
    assert error and "pass session_id" in answer
    answer, error = await call(ds, token, "search", query="tokenizer", session_id="nope")
    assert error and "No session 'nope'" in answer
    answer, error = await call(ds, token, "search", query="x", session_id="a1",
                               project=memory.beta)  # fmt: skip
    assert error and "belongs to" in answer

    configured = await make_ds(memory_path, plugin={"default_project": memory.beta})
    answer, error = await call(configured, await configured.create_token("claude-mem"),
                               "search", query="tokenizer")  # fmt: skip
    assert not error and memory.beta_obs in answer and memory.obs[1] not in answer


@pytest.mark.asyncio
async def test_get_is_bounded_in_size(
    ds: Datasette, token: str, memory: Memory, memory_path: Path
) -> None:
    from datasette_claude_mem.mcp.answers import MAX_ANSWER_CHARS, MAX_RECORD_CHARS

    with Store(memory_path) as store:
        big = [observe(store, "a1", f"Huge output {i}", "a big one", detail="y" * 50_000)
               for i in range(20)]  # fmt: skip
    answer, error = await call(ds, token, "get", ids=big[:1], session_id="a1")
    assert not error and f"clipped at {MAX_RECORD_CHARS} chars" in answer
    assert len(answer) <= MAX_RECORD_CHARS
    answer, error = await call(ds, token, "get", ids=big, session_id="a1")
    assert not error and "answer capped" in answer
    assert len(answer) <= MAX_ANSWER_CHARS + 100
    assert big[0] in answer and big[-1] not in answer
