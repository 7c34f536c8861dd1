"""How the pages show values: times, ages, counts, project names, JSON. Templates reach these
as the global `fmt`, set on Datasette's Jinja environment once at startup."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader

from datasette_claude_mem.names import TEMPLATES_DIR


def parse_ts(value: Any) -> datetime | None:
    """A stored timestamp (ISO 8601, usually with a Z) as an aware datetime."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def when(value: Any) -> str:
    """A timestamp as a person reads it: date and minute, in UTC."""
    moment = parse_ts(value)
    return moment.strftime("%Y-%m-%d %H:%M") if moment else (str(value) if value else "")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = max(float(seconds), 0.0)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400 * 2:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


def age(value: Any, now: datetime | None = None) -> str:
    """How long ago a timestamp was: '5 min ago'."""
    moment = parse_ts(value)
    if moment is None:
        return ""
    seconds = ((now or datetime.now(UTC)) - moment).total_seconds()
    if seconds < 45:
        return "just now"
    return f"{duration(seconds)} ago"


def number(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def size(nbytes: int) -> str:
    """Bytes as a person reads them: '812 bytes', '4.2 MB' (powers of 1,000, as disks say)."""
    if nbytes < 1000:
        return count(nbytes, "byte")
    for unit in ("KB", "MB", "GB", "TB"):
        nbytes /= 1000
        if nbytes < 1000 or unit == "TB":
            return f"{nbytes:.1f} {unit}"
    raise AssertionError("unreachable")


def count(value: int, singular: str, plural: str | None = None) -> str:
    """'1 observation', '2 observations'."""
    return f"{number(value)} {singular if value == 1 else plural or singular + 's'}"


def short_project(project: str | None) -> str:
    """The last part of a project key (a path): what people call the repository."""
    if not project:
        return "(global)"
    return project.rstrip("/").rsplit("/", 1)[-1] or project


def json_list(value: Any) -> list[str]:
    """A JSON array column as a list of strings; anything else as a list of itself."""
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    try:
        parsed = json.loads(value)
    except (TypeError, ValueError):
        return [str(value)]
    if isinstance(parsed, list):
        return [v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for v in parsed]
    return [str(value)]


def pretty_json(value: Any) -> str:
    """JSON text indented for reading; text that is not JSON comes back as it is."""
    if value is None:
        return ""
    try:
        parsed = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return str(value)
    return json.dumps(parsed, ensure_ascii=False, indent=2)


def relative_to_project(path: str, project: str | None) -> str:
    """The function map keeps paths relative to the project; tools report absolute ones."""
    if project and path.startswith(project.rstrip("/") + "/"):
        return path[len(project.rstrip("/")) + 1 :]
    return path


class Fmt:
    """The formatting helpers, for templates."""

    when = staticmethod(when)
    age = staticmethod(age)
    duration = staticmethod(duration)
    number = staticmethod(number)
    count = staticmethod(count)
    short_project = staticmethod(short_project)
    json_list = staticmethod(json_list)
    pretty_json = staticmethod(pretty_json)
    size = staticmethod(size)


def prepare_environment(env: Environment) -> None:
    """The pages' templates and helpers, added to Datasette's environment: the templates come
    after Datasette's own loaders, so a --template-dir still overrides them."""
    env.loader = ChoiceLoader([env.loader, FileSystemLoader(str(TEMPLATES_DIR))])
    env.globals["fmt"] = Fmt
