"""Session summaries: a scripted session posted as Claude Code posts it (POST /hooks), the
worker run on the same file, and the summary read back from the session, its page and
search. The same story checks the types the worker gave its tool uses."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import pytest
from datasette.app import Datasette
from helpers import api_call, query_rows

from datasette_claude_mem.storage.store import Store
from datasette_claude_mem.worker.loop import Worker
from datasette_claude_mem.worker.session_summary import SUMMARY_TOOL, summarise

SID = "5e1f0a77-2c4b-4d1e-9a0f-3b8c6d2e4f10"
BUGGY = "def apply_discount(total, rate):\n    return total * rate\n"
FIXED = "def apply_discount(total, rate):\n    return total * (1 - rate)\n"
BULK = "\n\ndef bulk_discount(total, count):\n    return apply_discount(total, 0.1)\n"
FIX_PROMPT = "Fix the bug in apply_discount: it charges the discount instead of taking it off"
FAILED_RUN = (
    "FAILED tests/test_pricing.py::test_discount - assert 10.0 == 90.0\n1 failed, 4 passed in 0.31s"
)


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """A small real repository: one module, one test file, one commit."""
    root = tmp_path / "shop"
    (root / "shop").mkdir(parents=True)
    (root / "tests").mkdir()
    (root / "shop" / "pricing.py").write_text(BUGGY, encoding="utf-8")
    (root / "tests" / "test_pricing.py").write_text("def test_discount(): ...\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "-C", str(root)]
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "start"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    return root


def hook(name: str, cwd: Path, **fields: Any) -> dict[str, Any]:
    return {
        "session_id": SID,
        "transcript_path": f"/home/dev/.claude/projects/x/{SID}.jsonl",
        "cwd": str(cwd),
        "permission_mode": "default",
        "hook_event_name": name,
        **fields,
    }


def tool(cwd: Path, n: int, name: str, tool_input: dict, response: Any) -> dict[str, Any]:
    return hook(
        "PostToolUse",
        cwd,
        tool_name=name,
        tool_input=tool_input,
        tool_response=response,
        tool_use_id=f"toolu_{n:03d}",
    )


def pytest_run(cwd: Path, n: int, stdout: str) -> dict[str, Any]:
    return tool(cwd, n, "Bash", {"command": "pytest -q"}, {"stdout": stdout, "stderr": ""})


def edit(cwd: Path, n: int, old: str, new: str, before: str) -> dict[str, Any]:
    """An Edit as Claude Code reports it, the file on disk changed as the edit did."""
    path = cwd / "shop" / "pricing.py"
    path.write_text(before.replace(old, new), encoding="utf-8")
    return tool(
        cwd,
        n,
        "Edit",
        {"file_path": str(path), "old_string": old, "new_string": new},
        {"filePath": str(path), "oldString": old, "newString": new, "originalFile": before},
    )


async def post(ds: Datasette, token: str, payload: dict[str, Any]) -> None:
    response = await api_call(ds, "POST", "/hooks", payload, token=token)
    assert response.status_code == 200, response.text


async def work(memory_path: Path) -> None:
    """Run the worker until the queue is empty."""
    with Store(memory_path) as store:
        while (report := await asyncio.to_thread(Worker().run_once, store)).outcomes:
            assert report.failed == 0, [o.error for o in report.outcomes]


async def summary_of(ds: Datasette) -> str:
    [row] = await query_rows(ds, "SELECT summary FROM sessions WHERE id = ?", [SID])
    return row["summary"]


async def first_turn(ds: Datasette, token: str, shop: Path) -> None:
    pricing = str(shop / "shop" / "pricing.py")
    for payload in (
        hook("SessionStart", shop, source="startup"),
        hook("UserPromptSubmit", shop, prompt=FIX_PROMPT),
        tool(shop, 1, "Read", {"file_path": pricing}, {"type": "text", "file": {
            "filePath": pricing, "content": BUGGY, "numLines": 2, "startLine": 1,
            "totalLines": 2}}),
        tool(shop, 2, "Bash", {"command": "ls tests"}, {"stdout": "test_pricing.py"}),
        pytest_run(shop, 3, FAILED_RUN),
        edit(shop, 4, "total * rate", "total * (1 - rate)", BUGGY),
        pytest_run(shop, 5, "5 passed in 0.30s"),
        hook("Stop", shop, stop_hook_active=False, last_assistant_message=(
            "Fixed apply_discount so it takes the rate off the total. All 5 tests pass. "
            "The bulk discount for large orders is still not done.")),
    ):  # fmt: skip
        await post(ds, token, payload)


@pytest.mark.asyncio
async def test_a_stop_leaves_a_structured_summary_of_the_whole_session(
    ds: Datasette, token: str, shop: Path, memory_path: Path
) -> None:
    await first_turn(ds, token, shop)
    # Before the worker has run, the last message stands for the summary.
    assert (await summary_of(ds)).startswith("Fixed apply_discount")
    await work(memory_path)
    lines = (await summary_of(ds)).splitlines()
    assert [line.split(":", 1)[0] for line in lines] == [
        "Request",
        "Done",
        "Files changed",
        "Functions changed",
        "Tests",
        "Open",
    ]
    assert lines[0] == f"Request: {FIX_PROMPT}"
    assert lines[1].startswith("Done: Fixed apply_discount so it takes the rate off the total.")
    assert "1 bugfix, 2 test, 2 discovery" in lines[1]
    assert lines[2] == "Files changed: shop/pricing.py"  # relative; the test file was only read
    assert "apply_discount" in lines[3]
    assert lines[4] == (
        "Tests: 2 runs; last `pytest -q`: 5 passed in 0.30s; "
        "had failed before (1 failed, 4 passed in 0.31s)"
    )
    assert "bulk discount for large orders is still not done" in lines[5]
    [item] = await query_rows(
        ds, "SELECT status FROM pending_queue WHERE tool_name = ?", [SUMMARY_TOOL]
    )
    assert item["status"] == "done"
    # A summary is no observation of its own.
    assert not await query_rows(ds, "SELECT id FROM observations WHERE title = 'Session summary'")


@pytest.mark.asyncio
async def test_the_worker_types_each_tool_use_of_the_story(
    ds: Datasette, token: str, shop: Path, memory_path: Path
) -> None:
    await first_turn(ds, token, shop)
    await work(memory_path)
    rows = await query_rows(
        ds, "SELECT tool_name, type FROM observations WHERE session_id = ? ORDER BY rowid", [SID]
    )
    assert [(r["tool_name"], r["type"]) for r in rows] == [
        ("Read", "discovery"),
        ("Bash", "discovery"),  # ls tests: a look, not a test run
        ("Bash", "test"),  # failing: still a test run
        ("Edit", "bugfix"),  # the turn's prompt asked for a fix
        ("Bash", "test"),
    ]


@pytest.mark.asyncio
async def test_each_stop_rebuilds_the_summary_and_search_finds_it(
    ds: Datasette, token: str, shop: Path, memory_path: Path
) -> None:
    await first_turn(ds, token, shop)
    await work(memory_path)
    pricing = (shop / "shop" / "pricing.py").read_text(encoding="utf-8")
    for payload in (
        hook("UserPromptSubmit", shop, prompt="Add a bulk discount for orders of 10 or more"),
        edit(shop, 6, FIXED, FIXED + BULK, pricing),
        pytest_run(shop, 7, "6 passed in 0.33s"),
        hook("Stop", shop, stop_hook_active=False,
             last_assistant_message="Added bulk_discount; 6 tests pass."),
    ):  # fmt: skip
        await post(ds, token, payload)
    await work(memory_path)
    summary = await summary_of(ds)
    assert summary.startswith(f"Request: {FIX_PROMPT} (then, of 2 prompts: Add a bulk discount")
    assert (
        "Done: Added bulk_discount; 6 tests pass. (1 bugfix, 1 feature, 3 test, 2 discovery)"
        in summary
    )
    assert "bulk_discount" in summary.split("Functions changed: ", 1)[1].splitlines()[0]
    assert "Tests: 3 runs; last `pytest -q`: 6 passed in 0.33s" in summary
    assert "still not done" not in summary  # what the last Stop left open, not the first
    response = await api_call(ds, "GET", "/search?q=bulk_discount&kinds=session", token=token)
    assert [(hit["kind"], hit["id"]) for hit in response.json()["hits"]] == [("session", SID)]
    page = await ds.client.get(f"/-/claude-mem/sessions/{SID}", headers={"Authorization":
                               f"Bearer {token}"})  # fmt: skip
    assert page.status_code == 200
    assert "Functions changed: " in page.text and "bulk_discount" in page.text
    # The summary items the Stops left are not counted among the session's tool uses.
    [counted] = await query_rows(
        ds, "SELECT count(*) AS n FROM pending_queue WHERE session_id = ?", [SID]
    )
    assert counted["n"] == 9
    assert '<span class="cm-stat-value">7</span><span class="cm-stat-label">tool uses' in page.text


def test_an_empty_session_says_only_what_it_has() -> None:
    assert summarise({"message": "Nothing to do."}) == (
        "Done: Nothing to do.\nOpen: nothing said to be left"
    )


def test_a_session_that_ends_on_failing_tests_says_so() -> None:
    facts = {
        "prompts": ["make the tests pass"],
        "message": "I could not get the last test to pass.",
        "observations": [
            {"type": "test", "tool": "Bash", "title": "Run: pytest -q", "files": [],
             "summary": "Outcome: tests failed; tests: 1 failed, 4 passed in 0.31s"},
        ],
    }  # fmt: skip
    open_line = summarise(facts).splitlines()[-1]
    assert open_line == (
        "Open: the last test run failed (1 failed, 4 passed in 0.31s); "
        "I could not get the last test to pass."
    )


def test_functions_of_files_only_read_are_not_listed_as_changed() -> None:
    facts = {
        "observations": [
            {"type": "discovery", "tool": "Read", "title": "Read", "files": ["shop/cart.py"]},
            {"type": "bugfix", "tool": "Edit", "title": "Edit", "files": ["shop/pricing.py"],
             "functions": ["apply_discount"]},
        ],
        "functions": [
            {"file": "shop/cart.py", "name": "Cart.total", "change": "new"},
            {"file": "shop/pricing.py", "name": "apply_discount", "change": "modified"},
        ],
    }  # fmt: skip
    lines = summarise(facts).splitlines()
    assert "Files changed: shop/pricing.py" in lines
    assert "Functions changed: apply_discount (modified)" in lines


def _summary_facts(store: Store, session_id: str) -> dict[str, Any]:
    from datasette_claude_mem.worker.session_summary import session_facts, summary_item

    store.enqueue(summary_item(session_id, "Done."))
    (item,) = store.claim(1, worker="t", lease_seconds=60)
    return session_facts(store, item)


def _observe(store: Store, session_id: str, n: int, title: str) -> str:
    from datasette_claude_mem.storage.models import ObservationCreate

    return store.create_observation(
        ObservationCreate(session_id=session_id, tool_name="Bash", title=title, summary=title),
        created_at=f"2026-01-01T00:00:{n:02d}.000000Z",
    ).row.id


def test_a_forgotten_observation_stays_out_of_the_summary(store: Store, session) -> None:
    _observe(store, session.id, 1, "Ran the linter")
    secret = _observe(store, session.id, 2, "Pasted the staging database dump")
    store.forget(secret, "should not have been kept", "tester")
    facts = _summary_facts(store, session.id)
    assert [o["title"] for o in facts["observations"]] == ["Ran the linter"]
    assert "staging database" not in summarise(facts)


def test_a_long_session_keeps_its_newest_observations_in_order(
    store: Store, session, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datasette_claude_mem.worker import session_summary

    monkeypatch.setattr(session_summary, "MAX_OBSERVATIONS", 3)
    for n in range(1, 7):
        _observe(store, session.id, n, f"step {n}")
    facts = _summary_facts(store, session.id)
    assert [o["title"] for o in facts["observations"]] == ["step 4", "step 5", "step 6"]


def test_a_long_session_keeps_its_first_request_and_latest_prompts(
    store: Store, session, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datasette_claude_mem.worker import session_summary

    monkeypatch.setattr(session_summary, "MAX_PROMPTS", 3)
    for n in range(1, 7):
        store.log_event(
            "UserPromptSubmit",
            {"prompt": f"prompt {n}"},
            session_id=session.id,
            created_at=f"2026-01-01T00:00:{n:02d}.000000Z",
        )
    facts = _summary_facts(store, session.id)
    assert facts["prompts"] == ["prompt 1", "prompt 5", "prompt 6"]
    assert summarise(facts).startswith("Request: prompt 1 (then, of 3 prompts: prompt 6)")


def test_a_retried_older_stop_does_not_overwrite_the_newer_summary(store: Store, session) -> None:
    from datasette_claude_mem.worker.loop import DefaultCompressor
    from datasette_claude_mem.worker.session_summary import summary_item

    first = store.enqueue(summary_item(session.id, "Started on the parser.")).row

    class BrokenOnTheFirst(DefaultCompressor):
        def __call__(self, item):
            if item.id == first.id:
                raise RuntimeError("model timed out")
            return super().__call__(item)

    broken_on_the_first = BrokenOnTheFirst()

    assert Worker(broken_on_the_first).run_once(store).failed == 1
    _observe(store, session.id, 1, "Ran the parser tests")
    store.enqueue(summary_item(session.id, "Finished the parser."))
    assert Worker(broken_on_the_first).run_once(store).done == 1
    assert "Finished the parser." in store.get_session(session.id).summary

    # Stop #1's item, retried after Stop #2's finished, completes without going back in time.
    assert store.retry_failed(dead_letters=True) == 1
    assert Worker().run_once(store).done == 1
    assert store.get_queue_item(first.id).status == "done"
    summary = store.get_session(session.id).summary
    assert "Finished the parser." in summary and "Started on the parser." not in summary
