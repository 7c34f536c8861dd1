"""The queue worker in one process: compress, complete, retry, dead-letter, index code, log.

Items arrive as Claude Code sends them (through handle_hook, the hooks' own intake path) and
go through Worker.run_once on a real memory file. Retry backoff is skipped by moving an
item's available_at into the past, not by sleeping.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from datasette_claude_mem.claude_code.events import handle_hook
from datasette_claude_mem.storage.models import QueueItem, QueueItemCreate
from datasette_claude_mem.storage.store import Store
from datasette_claude_mem.worker.compress import Compressed
from datasette_claude_mem.worker.loop import DefaultCompressor, Worker

DATASETTE = str(Path(sys.executable).parent / "datasette")

MODULE_V1 = '''"""Shapes."""

from pkg.util import clamp


def area(width, height):
    return clamp(width) * clamp(height)


def perimeter(width, height):
    return 2 * (width + height)


class Box:
    def volume(self, depth):
        return area(1, 2) * depth
'''

UTIL = """def clamp(value):
    return max(0, value)
"""


def git_project(root: Path) -> Path:
    """A real git repository with a small Python package in it."""
    root.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / "pkg").mkdir()
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "shapes.py").write_text(MODULE_V1)
    (root / "pkg" / "util.py").write_text(UTIL)
    return root


def post_tool_use(
    store: Store, session_id: str, cwd: Path, tool_use_id: str, tool: str, tool_input, response
) -> QueueItem:
    payload = {
        "session_id": session_id,
        "cwd": str(cwd),
        "hook_event_name": "PostToolUse",
        "tool_name": tool,
        "tool_use_id": tool_use_id,
        "tool_input": tool_input,
        "tool_response": response,
    }
    handle_hook(store, payload)
    row = store.conn.execute(
        "SELECT id FROM pending_queue WHERE session_id = ? AND tool_use_id = ?",
        [session_id, tool_use_id],
    ).fetchone()
    item = store.get_queue_item(row[0])
    assert item is not None
    return item


def read_response(path: Path) -> dict:
    text = path.read_text()
    return {
        "type": "text",
        "file": {
            "filePath": str(path),
            "content": text,
            "numLines": text.count("\n"),
            "startLine": 1,
            "totalLines": text.count("\n"),
        },
    }


def edit_file(path: Path, old: str, new: str) -> tuple[dict, dict]:
    """Edit a file on disk as Claude Code's Edit tool does; returns its input and response."""
    original = path.read_text()
    assert old in original
    path.write_text(original.replace(old, new, 1))
    tool_input = {"file_path": str(path), "old_string": old, "new_string": new}
    response = {
        "filePath": str(path),
        "oldString": old,
        "newString": new,
        "originalFile": original,
        "structuredPatch": [],
        "userModified": False,
        "replaceAll": False,
    }
    return tool_input, response


def make_due(store: Store, item_id: str) -> None:
    """Skip the retry backoff: the item is due now."""
    with store.write() as conn:
        conn.execute(
            "UPDATE pending_queue SET available_at = '2000-01-01T00:00:00.000Z' WHERE id = ?",
            [item_id],
        )


def observations_of(store: Store, item_id: str) -> list[dict]:
    return [dict(r) for r in store.db.query(
        "SELECT * FROM observations WHERE queue_item_id = ?", [item_id]
    )]  # fmt: skip


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return git_project(tmp_path / "repo")


class Failing:
    """A compressor that fails the first `failures` calls for each item, then compresses."""

    name = "failing"

    def __init__(self, failures: int = 10**6) -> None:
        self.failures = failures
        self.calls: dict[str, int] = {}

    def __call__(self, item: QueueItem) -> Compressed:
        self.calls[item.id] = self.calls.get(item.id, 0) + 1
        if self.calls[item.id] <= self.failures:
            raise RuntimeError(f"compressor broke on attempt {self.calls[item.id]}")
        return DefaultCompressor()(item)


def test_default_compressor_end_to_end(store: Store, project: Path) -> None:
    shapes = project / "pkg" / "shapes.py"
    read = post_tool_use(
        store, "s1", project, "t-read", "Read", {"file_path": str(shapes)}, read_response(shapes)
    )
    edit_input, edit_response = edit_file(shapes, "2 * (width + height)", "2 * width + 2 * height")
    edit = post_tool_use(store, "s1", project, "t-edit", "Edit", edit_input, edit_response)
    bash_output = "".join(f"tests/test_{i}.py ....\n" for i in range(40))
    bash_output += "FAILED tests/test_9.py::test_box - AssertionError: 3 != 4\n"
    bash_output += "1 failed, 159 passed in 2.31s\n"
    bash = post_tool_use(
        store,
        "s1",
        project,
        "t-bash",
        "Bash",
        {"command": "pytest -q", "description": "Run the tests"},
        {"stdout": bash_output, "stderr": "", "interrupted": False},
    )

    report = Worker(batch_size=10).run_once(store)

    assert report.done == 3 and report.failed == 0
    by_item = {}
    for item in (read, edit, bash):
        done = store.get_queue_item(item.id)
        assert done.status == "done"
        assert done.completed_at is not None and done.lease_owner is None
        assert done.attempts == 1 and done.last_error is None
        rows = observations_of(store, item.id)
        assert len(rows) == 1, item.tool_name
        by_item[item.tool_name] = store.get_observation(rows[0]["id"])
    assert [o.observation_id for o in report.outcomes] == [
        by_item[name].id for name in ("Read", "Edit", "Bash")
    ]

    obs = by_item["Read"]
    assert obs.session_id == "s1" and obs.project == str(project.resolve())
    assert "shapes.py" in obs.title
    assert "area" in obs.summary and "perimeter" in obs.summary
    assert obs.files_touched == [str(shapes)]
    assert 0 < obs.tokens_compressed < obs.tokens_raw

    obs = by_item["Edit"]
    assert "shapes.py" in obs.title
    assert obs.functions_changed == ["perimeter"]
    assert obs.files_touched == [str(shapes)]
    assert obs.tokens_raw > 0 and obs.tokens_compressed > 0

    obs = by_item["Bash"]
    assert "pytest" in obs.title
    assert "1 failed, 159 passed" in obs.summary
    assert obs.files_touched == []
    assert 0 < obs.tokens_compressed < obs.tokens_raw

    assert store.get_session("s1").observation_count == 3
    stats = store.queue_stats()
    assert (stats.waiting, stats.processing, stats.done, stats.failed) == (0, 0, 3, 0)
    # Nothing left: another batch claims nothing and logs nothing.
    assert Worker().run_once(store).outcomes == []
    assert len(store.query_events("worker_batch")) == 1


def test_failing_compressor_retries_then_dead_letters(store: Store, session) -> None:
    item = store.enqueue(
        QueueItemCreate(
            session_id=session.id, tool_use_id="t1", tool_name="Bash", raw_output="boom"
        )
    ).row
    assert item.max_attempts == 3
    worker = Worker(Failing(), worker_id="w1")
    backoffs = []
    for attempt in (1, 2, 3):
        report = worker.run_once(store)
        assert [o.ok for o in report.outcomes] == [False]
        assert f"compressor broke on attempt {attempt}" in report.outcomes[0].error
        failed = store.get_queue_item(item.id)
        assert failed.status == "error" and failed.attempts == attempt
        assert failed.lease_owner is None
        assert failed.last_error == f"RuntimeError: compressor broke on attempt {attempt}"
        backoffs.append(failed.available_at - failed.updated_at)
        # Backing off: not claimed again until it is due.
        assert worker.run_once(store).outcomes == []
        make_due(store, item.id)
    assert backoffs[0] < backoffs[1] < backoffs[2]

    # Out of attempts: a dead letter, claimed by nobody however long it waits.
    assert worker.run_once(store).outcomes == []
    dead = store.get_queue_item(item.id)
    assert dead.status == "error" and dead.attempts == 3
    assert dead.last_error == "RuntimeError: compressor broke on attempt 3"
    stats = store.queue_stats()
    assert (stats.dead_letters, stats.failed, stats.waiting, stats.done) == (1, 0, 0, 0)
    assert observations_of(store, item.id) == []

    # Given one more attempt once the cause is fixed, it goes through.
    assert store.retry_failed(dead_letters=True) == 1
    report = Worker(worker_id="w2").run_once(store)
    assert report.done == 1
    done = store.get_queue_item(item.id)
    assert done.status == "done" and done.attempts == 4 and done.last_error is None
    assert len(observations_of(store, item.id)) == 1


def test_failure_then_success_makes_one_observation(store: Store, session) -> None:
    item = store.enqueue(
        QueueItemCreate(session_id=session.id, tool_use_id="t1", tool_name="Bash", raw_output="ok")
    ).row
    worker = Worker(Failing(failures=1))
    assert worker.run_once(store).failed == 1
    make_due(store, item.id)
    assert worker.run_once(store).done == 1
    done = store.get_queue_item(item.id)
    assert done.status == "done" and done.attempts == 2 and done.last_error is None
    assert len(observations_of(store, item.id)) == 1
    events = store.query_events("worker_batch")
    assert [e.data["failed"] for e in reversed(events)] == [1, 0]


def test_malformed_compressor_result_fails_the_item_not_the_worker(store: Store, session) -> None:
    store.enqueue(QueueItemCreate(session_id=session.id, tool_use_id="t1", tool_name="Bash"))

    def bad(item):
        return Compressed(title="t", summary=None, detail=None, tokens_raw=-1)  # type: ignore[arg-type]

    bad.name = "bad"
    report = Worker(bad).run_once(store)
    assert report.failed == 1 and "ValidationError" in report.outcomes[0].error
    assert store.queue_stats().failed == 1


def test_a_lease_lost_mid_compression_never_makes_a_second_observation(
    store: Store, session, config
) -> None:
    item = store.enqueue(
        QueueItemCreate(
            session_id=session.id, tool_use_id="t1", tool_name="Bash", raw_output="slow"
        )
    ).row
    slow = Worker(worker_id="slow", lease_seconds=0.001)
    fast = Worker(worker_id="fast")
    other = Store(config.db_path)
    try:
        [claimed] = slow.claim(store)
        result = slow.compress(claimed)
        time.sleep(0.01)  # past the lease, to the millisecond the queue keeps
        # The slow worker's lease ran out while it compressed: another worker takes the item.
        [again] = fast.claim(other)
        assert again.id == item.id and again.attempts == 2
        assert fast.finish(other, again, fast.compress(again)).ok
        late = slow.finish(store, claimed, result)
    finally:
        other.close()
    assert not late.ok and "is not held by 'slow'" in late.error
    assert len(observations_of(store, item.id)) == 1
    done = store.get_queue_item(item.id)
    assert done.status == "done" and done.last_error is None


def function_rows(store: Store, session_id: str) -> dict[str, tuple[str, str]]:
    rows = store.db.query(
        "SELECT qualified_name, change_type, body_hash FROM function_map "
        "WHERE session_id = ? AND file_path = 'pkg/shapes.py'",
        [session_id],
    )
    return {r["qualified_name"]: (r["change_type"], r["body_hash"]) for r in rows}


def edges(store: Store) -> set[tuple[str, str, str, str]]:
    rows = store.db.query(
        "SELECT caller_function, callee_file, callee_function, resolution FROM call_graph "
        "WHERE caller_file = 'pkg/shapes.py'"
    )
    return {(r["caller_function"], r["callee_file"], r["callee_function"], r["resolution"])
            for r in rows}  # fmt: skip


def test_function_map_and_call_graph_follow_the_file_on_disk(store: Store, project: Path) -> None:
    shapes = project / "pkg" / "shapes.py"
    worker = Worker()
    post_tool_use(
        store, "s1", project, "t1", "Read", {"file_path": str(shapes)}, read_response(shapes)
    )
    assert worker.run_once(store).done == 1
    first = function_rows(store, "s1")
    # Read only: the file's first state is what was read, so nothing changed.
    assert {name: change for name, (change, _) in first.items()} == {
        "area": "unchanged",
        "perimeter": "unchanged",
        "Box": "unchanged",
        "Box.volume": "unchanged",
    }
    assert edges(store) == {
        ("area", "pkg/util.py", "clamp", "import"),
        ("Box.volume", "pkg/shapes.py", "area", "direct"),
    }

    # A later session edits the file: the worker reads it again from disk.
    edit_input, edit_response = edit_file(
        shapes, "    return 2 * (width + height)\n", "    return 2 * (clamp(width) + height)\n"
    )
    post_tool_use(store, "s2", project, "t2", "Edit", edit_input, edit_response)
    edit_input, edit_response = edit_file(
        shapes,
        "class Box:",
        "def diagonal(width, height):\n    return (width**2 + height**2) ** 0.5\n\n\nclass Box:",
    )
    post_tool_use(store, "s2", project, "t3", "Edit", edit_input, edit_response)
    assert worker.run_once(store).done == 2
    second = function_rows(store, "s2")
    assert {name: change for name, (change, _) in second.items()} == {
        "area": "unchanged",
        "perimeter": "modified",
        "diagonal": "new",
        "Box": "unchanged",
        "Box.volume": "unchanged",
    }
    assert second["perimeter"][1] != first["perimeter"][1]
    assert edges(store) == {
        ("area", "pkg/util.py", "clamp", "import"),
        ("perimeter", "pkg/util.py", "clamp", "import"),
        ("Box.volume", "pkg/shapes.py", "area", "direct"),
    }
    latest = {
        f.qualified_name for f in store.latest_functions(str(project.resolve()), "pkg/shapes.py")
    }
    assert latest == {"area", "perimeter", "diagonal", "Box", "Box.volume"}

    # A function removed from the file is recorded as deleted, and its edges go.
    edit_input, edit_response = edit_file(
        shapes,
        "class Box:\n    def volume(self, depth):\n        return area(1, 2) * depth\n",
        "",
    )
    post_tool_use(store, "s2", project, "t4", "Edit", edit_input, edit_response)
    assert worker.run_once(store).done == 1
    third = function_rows(store, "s2")
    assert third["Box"][0] == third["Box.volume"][0] == "deleted"
    assert ("Box.volume", "pkg/shapes.py", "area", "direct") not in edges(store)


def test_only_python_files_inside_the_project_are_indexed(
    store: Store, project: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere.py"
    outside.write_text("def stranger():\n    pass\n")
    notes = project / "notes.txt"
    notes.write_text("def not_python():\n")
    broken = project / "pkg" / "broken.py"
    broken.write_text("def broken(:\n")
    for n, path in enumerate((outside, notes, broken, project / "pkg" / "missing.py")):
        post_tool_use(
            store, "s1", project, f"t{n}", "Write", {"file_path": str(path), "content": "x"}, {}
        )
    report = Worker(batch_size=10).run_once(store)
    assert report.done == 4
    assert all(o.index_error is None for o in report.outcomes)
    assert store.db.execute("SELECT count(*) FROM function_map").fetchone()[0] == 0


def test_an_index_failure_keeps_the_observation(
    store: Store, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shapes = project / "pkg" / "shapes.py"
    item = post_tool_use(
        store, "s1", project, "t1", "Read", {"file_path": str(shapes)}, read_response(shapes)
    )

    def broken(*args, **kwargs):
        raise RuntimeError("index store broke")

    monkeypatch.setattr(store, "add_edges", broken)
    report = Worker().run_once(store)
    assert report.done == 1
    assert report.outcomes[0].index_error == "RuntimeError: index store broke"
    assert len(observations_of(store, item.id)) == 1
    # The savepoint undid the half-written index, not the completion.
    assert store.db.execute("SELECT count(*) FROM function_map").fetchone()[0] == 0
    [event] = store.query_events("worker_batch")
    assert event.data["index_errors"] == ["RuntimeError: index store broke"]


def test_worker_batch_event(store: Store, session) -> None:
    for n in range(4):
        store.enqueue(
            QueueItemCreate(
                session_id=session.id,
                tool_use_id=f"t{n}",
                tool_name="Bash",
                tool_input={"command": f"echo {n}"},
                raw_output=json.dumps({"stdout": f"line {n}\n" * (50 + n), "stderr": ""}),
            )
        )

    class OneFails(DefaultCompressor):
        name = "one-fails"

        def __call__(self, item):
            if item.tool_use_id == "t2":
                raise ValueError("no good")
            return super().__call__(item)

    worker = Worker(OneFails(), worker_id="batcher", batch_size=10)
    report = worker.run_once(store)
    [event] = store.query_events("worker_batch")
    # The worker command compresses in its own process, and says how much CPU that took.
    work_cpu_ms = event.data.pop("work_cpu_ms")
    assert work_cpu_ms == round(report.work_cpu_ms, 1) and work_cpu_ms >= 0
    assert event.data.pop("process") == os.getpid()
    assert event.data == {
        "worker": "batcher",
        "compressor": "one-fails",
        "items": 4,
        "done": 3,
        "failed": 1,
        "errors": ["ValueError: no good"],
        "index_errors": [],
    }
    assert event.duration_ms is not None and event.duration_ms >= 0
    observations = store.list_observations(session.id)
    assert len(observations) == 3
    assert event.tokens_in == sum(o.tokens_raw for o in observations) > 0
    assert event.tokens_out == sum(o.tokens_compressed for o in observations) > 0
    assert event.tokens_in == sum(o.tokens_in for o in report.outcomes)


def test_run_stops_when_told(store: Store, session) -> None:
    for n in range(7):
        store.enqueue(
            QueueItemCreate(
                session_id=session.id, tool_use_id=f"t{n}", tool_name="Bash", raw_output=str(n)
            )
        )
    worker = Worker(batch_size=3)
    assert worker.run(store, interval=0, max_batches=2) == 6
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 3

    assert worker.run(store, interval=0, should_stop=stop) == 1
    assert store.queue_stats().done == 7


def test_cli_worker_once(tmp_path: Path, project: Path) -> None:
    db = tmp_path / "cli" / "memory.db"
    store = Store(db)
    for n in range(7):
        module = project / "pkg" / f"mod{n}.py"
        module.write_text(f"def f{n}():\n    return {n}\n")
        post_tool_use(
            store, "s1", project, f"t{n}", "Read", {"file_path": str(module)}, read_response(module)
        )
    store.close()
    env = {**os.environ, "CLAUDE_MEM_DIR": str(tmp_path / "unused")}
    run = subprocess.run(
        [DATASETTE, "claude-mem", "worker", str(db), "--once", "--batch-size", "5"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "5 done, 0 failed"
    run = subprocess.run(
        [DATASETTE, "claude-mem", "worker", str(db), "--once"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "2 done, 0 failed"
    store = Store(db)
    try:
        assert store.queue_stats().done == 7
        assert store.db.execute("SELECT count(*) FROM observations").fetchone()[0] == 7
        assert store.db.execute("SELECT count(*) FROM function_map").fetchone()[0] == 7
        workers = {e.data["worker"] for e in store.query_events("worker_batch")}
        assert len(workers) == 2  # one per process
    finally:
        store.close()
    assert not (tmp_path / "unused" / "claude-mem.db").exists()


def test_cli_worker_without_llm_extra_says_what_to_install(tmp_path: Path) -> None:
    """--llm-model when llm cannot be imported: the error says what to install."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "llm.py").write_text("raise ImportError('llm is not installed')\n")
    env = {
        **os.environ,
        "CLAUDE_MEM_DIR": str(tmp_path / "mem"),
        "PYTHONPATH": str(shadow),
    }
    run = subprocess.run(
        [DATASETTE, "claude-mem", "worker", str(tmp_path / "m.db"), "--once", "--llm-model", "x"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert run.returncode != 0
    assert "pip install 'datasette-claude-mem[llm]'" in run.stderr


def test_an_idle_worker_does_not_wait_for_the_write_lock(store: Store, config) -> None:
    """Polling an empty queue reads; it must not queue up behind (or hold up) writers."""
    import sqlite3
    import threading

    other = sqlite3.connect(config.db_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    try:
        done = threading.Event()
        reports = []

        def poll() -> None:
            reports.append(Worker(worker_id="idle").run_once(store))
            done.set()

        threading.Thread(target=poll, daemon=True).start()
        assert done.wait(5), "the idle worker waited for the write lock"
        assert reports[0].outcomes == []
    finally:
        other.execute("ROLLBACK")
        other.close()
