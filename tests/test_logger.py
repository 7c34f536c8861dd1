"""The logger: a JSONL file that must be written, and an event_log row that may be."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import pytest

from datasette_claude_mem.config import Config
from datasette_claude_mem.logger import LOG_FILENAME, MemLogger
from datasette_claude_mem.store import Store


@pytest.fixture
def logger(config: Config, store: Store):
    log = MemLogger(config.log_dir, store)
    yield log
    log.close()


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_each_event_is_one_valid_json_line(logger: MemLogger) -> None:
    logger.log("hook", {"tool": "Bash", "text": "naïve ✓"}, session_id="s1", project="p")
    logger.log("compress", {"n": 2}, duration_ms=12, tokens_in=100, tokens_out=10)
    first, second = lines(logger.path)
    assert first["event_type"] == "hook"
    assert first["data"] == {"tool": "Bash", "text": "naïve ✓"}
    assert (first["session_id"], first["project"]) == ("s1", "p")
    assert first["ts"].endswith("Z")
    assert (second["duration_ms"], second["tokens_in"], second["tokens_out"]) == (12, 100, 10)
    assert logger.path.name == LOG_FILENAME


def test_each_event_also_lands_in_event_log(logger: MemLogger, store: Store) -> None:
    logger.log("hook", {"tool": "Bash"}, session_id="s1", project="p", duration_ms=5)
    (event,) = store.query_events()
    assert event.event_type == "hook"
    assert event.data == {"tool": "Bash"}
    assert (event.session_id, event.project, event.duration_ms) == ("s1", "p", 5)


def test_timed_records_duration_and_success(logger: MemLogger, store: Store) -> None:
    with logger.timed("compress", session_id="s1") as context:
        time.sleep(0.02)
        context["items"] = 3
    (line,) = lines(logger.path)
    assert line["data"] == {"status": "success", "items": 3}
    assert line["duration_ms"] >= 19
    assert line["session_id"] == "s1"
    (event,) = store.query_events(event_type="compress")
    assert event.data["status"] == "success"
    assert event.duration_ms == line["duration_ms"]


def test_timed_records_errors_and_reraises(logger: MemLogger, store: Store) -> None:
    with pytest.raises(ValueError, match="model refused"), logger.timed("compress"):
        raise ValueError("model refused")
    (line,) = lines(logger.path)
    assert line["data"]["status"] == "error"
    assert line["data"]["error"] == "model refused"
    assert isinstance(line["duration_ms"], int)
    assert store.query_events()[0].data["status"] == "error"


def test_file_only_mode_needs_no_database(tmp_path: Path) -> None:
    """Hooks log before (or without) any database."""
    log_dir = tmp_path / "logs"
    log = MemLogger(log_dir)
    try:
        log.log("spooled", {"n": 1})
        with log.timed("quick"):
            pass
    finally:
        log.close()
    assert [line["event_type"] for line in lines(log_dir / LOG_FILENAME)] == ["spooled", "quick"]
    assert sorted(p.name for p in tmp_path.rglob("*.db")) == []


def test_a_broken_event_log_does_not_break_logging(
    config: Config, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    log = MemLogger(config.log_dir, store)
    store.close()
    try:
        log.log("after-close", {"n": 1})
    finally:
        log.close()
    assert lines(log.path)[0]["event_type"] == "after-close"
    assert "after-close" in capsys.readouterr().err


def test_a_failed_file_write_is_raised_and_nothing_reaches_the_table(
    tmp_path: Path, store: Store
) -> None:
    """The file is the record: if it cannot be written, the caller must know."""
    log_dir = tmp_path / "full-disk"
    log_dir.mkdir()
    (log_dir / LOG_FILENAME).symlink_to("/dev/full")
    log = MemLogger(log_dir, store)
    try:
        with pytest.raises(OSError):
            log.log("lost", {"n": 1})
    finally:
        with contextlib.suppress(OSError):  # closing flushes the same full disk again
            log.close()
    assert store.query_events() == []


def test_two_loggers_never_share_a_file(tmp_path: Path) -> None:
    a = MemLogger(tmp_path / "a")
    b = MemLogger(tmp_path / "b")
    try:
        a.log("only-a")
        b.log("only-b")
    finally:
        a.close()
        b.close()
    assert [line["event_type"] for line in lines(a.path)] == ["only-a"]
    assert [line["event_type"] for line in lines(b.path)] == ["only-b"]


def test_log_dir_is_created_private(tmp_path: Path) -> None:
    log = MemLogger(tmp_path / "new" / "logs")
    log.close()
    assert (tmp_path / "new" / "logs").stat().st_mode & 0o777 == 0o700
