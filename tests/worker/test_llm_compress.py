"""The LLM compressor: real `llm` models that answer deterministically, registered through
llm's plugin hook (tests/helpers/worker_llm_model.py). No network."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("llm")

from helpers import PROCESSES
from processes import worker_llm_model as models  # noqa: E402

from datasette_claude_mem.storage.models import QueueItemCreate  # noqa: E402
from datasette_claude_mem.storage.store import Store  # noqa: E402
from datasette_claude_mem.worker.compress import estimate_tokens  # noqa: E402
from datasette_claude_mem.worker.llm_compress import (  # noqa: E402
    EVENT,
    RESERVE_EVENT,
    LLMCompressor,
    LLMUnavailable,
    head_and_tail,
    parse_answer,
)
from datasette_claude_mem.worker.loop import Worker, reserve, write_log  # noqa: E402
from datasette_claude_mem.worker.session_summary import summary_item  # noqa: E402


@pytest.fixture(autouse=True)
def llm_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """llm keeps its settings under LLM_USER_PATH: a fresh one, and the test models."""
    home = tmp_path / "llm-home"
    monkeypatch.setenv("LLM_USER_PATH", str(home))
    models.install()
    models.PROMPTS.clear()
    return home


def enqueue(store: Store, session_id: str, n: int, *, size: int = 200, tool: str = "Bash"):
    output = {"stdout": f"run {n}\n" + "x" * size, "stderr": ""}
    return store.enqueue(
        QueueItemCreate(
            session_id=session_id,
            tool_use_id=f"t{n}",
            tool_name=tool,
            tool_input={"command": f"make step{n}"},
            raw_output=json.dumps(output),
        )
    ).row


def spent(store: Store) -> int:
    row = store.conn.execute(
        "SELECT coalesce(sum(tokens_in + tokens_out), 0) FROM event_log WHERE event_type = ?",
        [EVENT],
    ).fetchone()
    return row[0]


def compress_once(compressor: LLMCompressor, store: Store, item):
    """One call as the worker loop makes it: the loop reserves the tokens, the compressor
    returns its result, the loop writes what the result asks to be logged."""
    grant = reserve(store, item, compressor.reservation(item))
    result = compressor(item, grant=grant)
    write_log(store, item, result.log)
    return result


def test_the_compressor_writes_nothing_itself(store: Store, session) -> None:
    enqueue(store, session.id, 1)
    compressor = LLMCompressor(store, "cm-test-json")
    item = store.claim(1, worker="w")[0]
    refused = compressor(item, grant=None)  # no reservation: no call, the offline fallback
    assert refused.compressor == "default" and "daily token budget" in refused.fallback_reason
    assert models.PROMPTS == []
    grant = reserve(store, item, compressor.reservation(item))
    assert grant is not None
    before = store.db.execute("SELECT count(*) FROM event_log").fetchone()[0]
    result = compressor(item, grant=grant)
    assert result.compressor == "llm" and len(models.PROMPTS) == 1
    assert store.db.execute("SELECT count(*) FROM event_log").fetchone()[0] == before
    [record] = result.log
    assert record.event_type == EVENT and record.data["reservation"] == grant.reservation_id
    write_log(store, item, result.log)
    assert compressor.spent_today() == record.tokens_in + record.tokens_out


def test_registered_model_compresses_through_the_worker(store: Store, session) -> None:
    source = "def load(path):\n    return open(path).read()\n\ndef save(path, text):\n    pass\n"
    item = store.enqueue(
        QueueItemCreate(
            session_id=session.id,
            tool_use_id="t1",
            tool_name="Write",
            tool_input={"file_path": "/nowhere/io_utils.py", "content": source},
            raw_output=json.dumps({"type": "create", "filePath": "/nowhere/io_utils.py"}),
            files_touched=["/nowhere/io_utils.py"],
        )
    ).row
    compressor = LLMCompressor(store, "cm-test-json")
    report = Worker(compressor).run_once(store)
    assert report.done == 1

    [prompt] = models.PROMPTS
    assert "Tool: Write" in prompt and "/nowhere/io_utils.py" in prompt
    assert '"title"' in prompt and "functions_changed" in prompt
    expected = models.answer_for(prompt, "cm-test-json")
    [obs] = store.list_observations(session.id)
    assert obs.queue_item_id == item.id
    assert obs.title == "Write compressed by cm-test-json" == expected["title"]
    assert obs.summary == expected["summary"]
    assert obs.detail == expected["detail"]
    assert obs.functions_changed == ["load", "save"]
    assert obs.files_touched == ["/nowhere/io_utils.py"]
    stored = store.get_queue_item(item.id)
    assert obs.tokens_raw == estimate_tokens(json.dumps(stored.tool_input) + stored.raw_output)
    assert obs.tokens_compressed == (len(obs.title + obs.summary + obs.detail) + 3) // 4

    [event] = store.query_events(EVENT)
    assert event.session_id == session.id and event.project == session.project
    assert event.data["model"] == "cm-test-json"
    assert event.data["queue_item_id"] == item.id
    assert event.data["usage_reported"] is True
    assert event.tokens_in == models.tokens(prompt)
    assert event.tokens_out == models.tokens(json.dumps(expected))
    [reserved] = store.query_events(RESERVE_EVENT)
    assert event.data["reservation"] == reserved.id
    assert reserved.data["estimate"] == models.tokens(prompt) + compressor.max_output_tokens
    assert compressor.spent_today() == event.tokens_in + event.tokens_out
    [batch] = store.query_events("worker_batch")
    assert batch.data["compressor"] == "llm"


def test_fenced_answer_and_missing_usage(store: Store, session) -> None:
    enqueue(store, session.id, 1)
    enqueue(store, session.id, 2)
    fenced = LLMCompressor(store, "cm-test-fenced")
    nousage = LLMCompressor(store, "cm-test-nousage")
    first = compress_once(fenced, store, store.claim(1, worker="w")[0])
    assert first.compressor == "llm" and first.title == "Bash compressed by cm-test-fenced"
    item = store.claim(1, worker="w")[0]
    second = compress_once(nousage, store, item)
    assert second.compressor == "llm" and second.model == "cm-test-nousage"
    # No usage from the model: characters / 4 of what went in and came out.
    event = store.query_events(EVENT)[0]
    prompt = models.PROMPTS[-1]
    assert event.data["usage_reported"] is False
    assert event.tokens_in == models.tokens(prompt)
    assert event.tokens_out == models.tokens(
        json.dumps(models.answer_for(prompt, nousage.model_id))
    )


def test_big_outputs_reach_the_model_capped_head_and_tail(store: Store, session) -> None:
    body = "HEAD-MARK\n" + "".join(f"line {i}\n" for i in range(60_000)) + "TAIL-MARK\n"
    store.enqueue(
        QueueItemCreate(
            session_id=session.id,
            tool_use_id="big",
            tool_name="Bash",
            tool_input={"command": "cat huge.log", "blob": "y" * 50_000},
            raw_output=body,
        )
    )
    compressor = LLMCompressor(store, "cm-test-json")
    item = store.claim(1, worker="w")[0]
    result = compress_once(compressor, store, item)
    [prompt] = models.PROMPTS
    assert len(body) > 500_000
    assert len(prompt) < 20_000 + 4_000 + 2_000
    assert "HEAD-MARK" in prompt and "TAIL-MARK" in prompt
    assert "characters omitted" in prompt
    assert f"{len(body)} characters" in prompt
    assert result.tokens_raw > 125_000  # the whole item, not what the model saw
    assert result.tokens_compressed < 200


def test_head_and_tail() -> None:
    assert head_and_tail("short", 10) == ("short", False)
    text, cut = head_and_tail("a" * 50 + "b" * 50, 30)
    assert cut and text.startswith("a" * 20) and text.endswith("b" * 10)
    assert "70 characters omitted" in text


@pytest.mark.parametrize(
    "answer",
    [
        '{"title": "t", "summary": "s"}',
        '```json\n{"title": "t", "summary": "s"}\n```',
        'Sure!\n```\n{"title": "t", "summary": "s"}\n```\nHope this helps.',
        'Here: {"title": "t", "summary": "s"} -- done',
    ],
)
def test_parse_answer_tolerates_fences_and_prose(answer: str) -> None:
    assert parse_answer(answer) == {"title": "t", "summary": "s"}


@pytest.mark.parametrize("answer", ["", "no json here", "[1, 2]", "```json\n{broken\n```"])
def test_parse_answer_refuses_what_is_not_an_object(answer: str) -> None:
    with pytest.raises(ValueError):
        parse_answer(answer)


def test_prompt_template_is_configurable(store: Store, session) -> None:
    enqueue(store, session.id, 1)
    compressor = LLMCompressor(
        store,
        "cm-test-json",
        prompt_template="Tool: $tool_name\nFiles: $files\nSay {json} about:\n$tool_output\n$nope",
        system="You are terse.",
    )
    compress_once(compressor, store, store.claim(1, worker="w")[0])
    [prompt] = models.PROMPTS
    assert prompt.startswith("Tool: Bash\nFiles: (none)\nSay {json} about:\n")
    assert prompt.endswith("$nope") and "run 1" in prompt
    assert compressor.estimate(prompt)[0] == models.tokens(prompt + "You are terse.")


def test_a_garbage_answer_falls_back_and_is_still_paid_for(store: Store, session) -> None:
    enqueue(store, session.id, 1)
    compressor = LLMCompressor(store, "cm-test-garbage")
    result = compress_once(compressor, store, store.claim(1, worker="w")[0])
    assert result.compressor == "default" and result.model is None
    assert result.fallback_reason == "the model's answer was not JSON"
    assert "compressed offline, not by cm-test-garbage" in result.detail
    assert result.title == "Run: make step1"
    assert spent(store) > 0


def test_a_failing_model_is_retried_then_falls_back_on_the_last_attempt(
    store: Store, session
) -> None:
    item = enqueue(store, session.id, 1)
    worker = Worker(LLMCompressor(store, "cm-test-error"), worker_id="w")
    for _ in (1, 2):
        report = worker.run_once(store)
        assert report.failed == 1
        assert "RuntimeError: the model is unavailable" in report.outcomes[0].error
        with store.write() as conn:
            conn.execute("UPDATE pending_queue SET available_at = '2000-01-01T00:00:00.000Z'")
    report = worker.run_once(store)
    assert report.done == 1
    done = store.get_queue_item(item.id)
    assert done.status == "done" and done.attempts == 3
    [obs] = store.list_observations(session.id)
    assert obs.title == "Run: make step1"
    assert "the model failed (RuntimeError)" in obs.detail
    events = store.query_events(EVENT)
    assert len(events) == 3
    assert all(e.data["error"] == "RuntimeError: the model is unavailable" for e in events)
    # A call that may have been sent is charged its input; nothing came out.
    assert all(e.tokens_in > 0 and e.tokens_out == 0 for e in events)


def test_budget_is_never_exceeded_over_many_calls(store: Store, session) -> None:
    items = [enqueue(store, session.id, n, size=400 + 7 * n) for n in range(60)]
    probe = LLMCompressor(store, "cm-test-json", daily_token_budget=10**9)
    full = [store.get_queue_item(item.id) for item in items]
    costs = [sum(probe.estimate(probe.build_prompt(item))) for item in full]
    budget = costs[0] * 4 + 100
    compressor = LLMCompressor(store, "cm-test-json", daily_token_budget=budget)
    assert compressor.daily_token_budget == budget
    worker = Worker(compressor, batch_size=7, index_code=False)
    by = {"llm": 0, "default": 0}
    seen_fallback = False
    while True:
        report = worker.run_once(store)
        if not report.outcomes:
            break
        assert report.failed == 0
        assert spent(store) <= budget
        assert compressor.spent_today() <= budget
    for obs in store.list_observations(session.id, limit=100):
        made_by = "default" if "compressed offline" in (obs.detail or "") else "llm"
        by[made_by] += 1
        if made_by == "default":
            seen_fallback = True
            assert "daily token budget" in obs.detail
    assert by["llm"] + by["default"] == 60
    assert by["llm"] >= 4 and seen_fallback
    assert by["llm"] == len(store.query_events(EVENT, limit=1000))
    assert spent(store) <= budget
    # What is left is less than one more call could need.
    assert budget - spent(store) < max(costs)


def test_budget_counts_only_today_and_calls_under_way(store: Store, session) -> None:
    compressor = LLMCompressor(store, "cm-test-json", daily_token_budget=5000)
    store.log_event(EVENT, {"model": "x"}, tokens_in=3000, tokens_out=1000)
    yesterday = store.log_event(EVENT, {"model": "x"}, tokens_in=9000, tokens_out=9000)
    with store.write() as conn:
        conn.execute(
            "UPDATE event_log SET created_at = '2001-01-01T23:59:59.999Z' WHERE id = ?",
            [yesterday.id],
        )
    assert compressor.spent_today() == 4000
    # A call under way (reserved, not yet settled) counts at its estimate...
    under_way = store.log_event(RESERVE_EVENT, {"model": "x", "estimate": 700})
    assert compressor.spent_today() == 4700
    # ...and at its real cost once settled.
    store.log_event(EVENT, {"model": "x", "reservation": under_way.id}, tokens_in=5, tokens_out=5)
    assert compressor.spent_today() == 4010
    assert compressor.remaining_today() == 990
    enqueue(store, session.id, 1, size=4000)
    result = compressor(store.claim(1, worker="w")[0])
    assert result.compressor == "default"
    assert "no room for this call's" in result.fallback_reason
    assert models.PROMPTS == []


def test_budget_holds_across_processes(store: Store, session, config, tmp_path: Path) -> None:
    """Two worker processes share one daily budget: together they stay inside it.

    The output allowance is close to what the model really answers, so a budget check that
    did not reserve its estimate before the call would let the two overspend.
    """
    items = [enqueue(store, session.id, n, size=300 + n) for n in range(100)]
    probe = LLMCompressor(store, "cm-test-slow", max_output_tokens=60)
    prompt = probe.build_prompt(store.get_queue_item(items[0].id))
    budget = sum(probe.estimate(prompt)) * 30
    go = tmp_path / "go"
    args = [str(config.db_path), "cm-test-slow", str(budget), "60", str(go)]
    procs = [
        subprocess.Popen(
            [sys.executable, str(PROCESSES / "worker_llm_budget.py"), args[0], f"w{k}", *args[1:]],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(2)
    ]
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    assert sum(r["model"] + r["fallback"] for r in results) == 100
    assert sum(r["fallback"] for r in results) > 0
    assert spent(store) <= budget
    assert sum(r["model"] for r in results) == len(store.query_events(EVENT, limit=1000))
    assert store.queue_stats().done == 100


def test_default_budget_comes_from_config(store: Store) -> None:
    from datasette_claude_mem.settings import Config

    compressor = LLMCompressor(store, "cm-test-json")
    assert compressor.daily_token_budget == Config().compression_daily_token_budget


def test_unknown_model_is_a_clear_error(store: Store) -> None:
    with pytest.raises(LLMUnavailable, match="no model 'no-such-model'"):
        LLMCompressor(store, "no-such-model")


def test_missing_llm_library_says_what_to_install(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "llm", None)
    with pytest.raises(LLMUnavailable, match=r"pip install 'datasette-claude-mem\[llm\]'"):
        LLMCompressor(store, "cm-test-json")


def test_a_session_summary_is_written_by_the_model_over_the_offline_draft(
    store: Store, session
) -> None:
    store.log_event(
        "UserPromptSubmit",
        {"prompt": "Fix the refund rounding"},
        session_id=session.id,
        project=session.project,
    )
    store.enqueue(summary_item(session.id, "Fixed the rounding; nothing is left."))
    report = Worker(LLMCompressor(store, "cm-test-json")).run_once(store)
    assert report.done == 1
    [prompt] = models.PROMPTS
    # The model sees the session's facts and the offline draft.
    assert "Fix the refund rounding" in prompt and "Request: Fix the refund rounding" in prompt
    expected = models.answer_for(prompt, "cm-test-json")
    lines = store.get_session(session.id).summary.splitlines()
    # The test model answers a summary only; what it leaves out comes from the draft.
    assert lines == [
        "Request: Fix the refund rounding",
        f"Done: {expected['summary']}",
        "Open: nothing said to be left",
    ]
    assert store.list_observations(session.id) == []


@pytest.mark.parametrize(
    ("model", "expected"), [("cm-test-json", "test"), ("cm-test-typed", "refactor")]
)
def test_the_models_type_is_kept_else_the_offline_one(
    store: Store, session, model: str, expected: str
) -> None:
    store.enqueue(
        QueueItemCreate(
            session_id=session.id,
            tool_use_id="t1",
            tool_name="Bash",
            tool_input={"command": "pytest -q"},
            raw_output=json.dumps({"stdout": "1 failed, 2 passed in 0.2s", "stderr": ""}),
        )
    )
    assert Worker(LLMCompressor(store, model)).run_once(store).done == 1
    [prompt] = models.PROMPTS
    assert "bugfix, feature, refactor" in prompt  # it was asked for one
    [obs] = store.list_observations(session.id)
    assert (obs.title, obs.type) == (f"Bash compressed by {model}", expected)
