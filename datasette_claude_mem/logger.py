"""Structured logging: a JSONL file first, the event_log table second.

The file is the record that must not be lost, so a failure to write it is raised; the table is
a convenience for queries and pages, so a failure there is only reported.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .models import new_id, utc_now

if TYPE_CHECKING:
    from .store import Store

LOG_FILENAME = "claude-mem.jsonl"


class _RaisingHandler(logging.handlers.TimedRotatingFileHandler):
    """logging swallows write errors by default; the JSONL file is authoritative, so raise."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        raise


class MemLogger:
    def __init__(
        self,
        log_dir: Path,
        store: Store | None = None,
        redact_value: Any = None,
    ) -> None:
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.store = store
        if redact_value is None:
            from .redact import redact_value
        self._redact = redact_value
        # One logging.Logger per instance, so two memories never share a handler.
        self._logger = logging.getLogger(f"claude_mem.{id(self)}.{new_id()}")
        self._logger.propagate = False
        self._logger.setLevel(logging.INFO)
        self._handler = _RaisingHandler(
            self.log_dir / LOG_FILENAME,
            when="midnight",
            backupCount=30,
            encoding="utf-8",
            utc=True,
        )
        self._handler.setFormatter(logging.Formatter("%(message)s"))
        self._logger.addHandler(self._handler)

    @property
    def path(self) -> Path:
        return self.log_dir / LOG_FILENAME

    def log(
        self,
        event_type: str,
        data: dict[str, Any] | None = None,
        *,
        session_id: str | None = None,
        project: str | None = None,
        duration_ms: int | None = None,
        tokens_in: int | None = None,
        tokens_out: int | None = None,
    ) -> None:
        data = self._redact(data or {})
        record = {
            "ts": utc_now(),
            "event_type": event_type,
            "session_id": session_id,
            "project": project,
            "data": data,
            "duration_ms": duration_ms,
            "tokens_in": tokens_in,
            "tokens_out": tokens_out,
        }
        self._logger.info(json.dumps(record, ensure_ascii=False, default=str))
        if self.store is not None:
            try:
                self.store.log_event(
                    event_type,
                    data,
                    session_id=session_id,
                    project=project,
                    duration_ms=duration_ms,
                    tokens_in=tokens_in,
                    tokens_out=tokens_out,
                )
            except Exception as error:  # noqa: BLE001 - the table is best effort
                print(f"claude-mem: event_log write failed: {error}", file=sys.stderr)

    @contextmanager
    def timed(self, event_type: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Log how long the block took and whether it succeeded; the block may add to data."""
        context: dict[str, Any] = {"status": "started"}
        start = time.monotonic()
        try:
            yield context
            context["status"] = "success"
        except Exception as error:
            context["status"] = "error"
            context["error"] = str(error)
            raise
        finally:
            duration_ms = int((time.monotonic() - start) * 1000)
            self.log(event_type, context, duration_ms=duration_ms, **kwargs)

    def close(self) -> None:
        self._logger.removeHandler(self._handler)
        self._handler.close()
