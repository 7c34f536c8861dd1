"""Every URL the memory's pages link to, in one place, built from Datasette's URL helpers so
they follow base_url and tilde-encoding like Datasette's own links."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from datasette.utils import tilde_encode

from datasette_claude_mem.names import PREFIX
from datasette_claude_mem.pages.formatting import relative_to_project

if TYPE_CHECKING:
    from datasette.app import Datasette


class Links:
    """Every URL the pages link to, built from Datasette's URL helpers."""

    def __init__(self, datasette: Datasette, database: str) -> None:
        self.ds = datasette
        self.database = database

    @staticmethod
    def _qs(params: dict[str, Any]) -> str:
        kept = {k: v for k, v in params.items() if v is not None}
        return ("?" + urlencode(kept)) if kept else ""

    def dashboard(self) -> str:
        return self.ds.urls.path(PREFIX)

    def session(self, session_id: str) -> str:
        return self.ds.urls.path(f"{PREFIX}/sessions/{tilde_encode(session_id)}")

    def project(self, project: str) -> str:
        """A project's page: what it holds, and forgetting it."""
        return self.ds.urls.path(f"{PREFIX}/projects/{tilde_encode(project)}")

    def forget_form(self) -> str:
        """Where the pages' forget buttons post."""
        return self.ds.urls.path(f"{PREFIX}/forget/form")

    def context_preview(self, project: str | None = None) -> str:
        return self.ds.urls.path(f"{PREFIX}/context-preview") + self._qs({"project": project})

    def export(self, project: str | None = None) -> str:
        """The JSON lines download `datasette claude-mem import` takes back (api/export.py)."""
        return self.ds.urls.path(f"{PREFIX}/export") + self._qs({"project": project})

    def context_json(self, project: str) -> str:
        return self.ds.urls.path(f"{PREFIX}/context") + self._qs({"project": project})

    def openapi(self) -> str:
        return self.ds.urls.path(f"{PREFIX}/openapi.json")

    def database_page(self) -> str:
        return self.ds.urls.database(self.database)

    def table(self, table: str, **filters: Any) -> str:
        return self.ds.urls.table(self.database, table) + self._qs(filters)

    def row(self, table: str, pk: str) -> str:
        return self.ds.urls.row(self.database, table, tilde_encode(str(pk)))

    def query(self, name: str, **params: Any) -> str:
        return self.ds.urls.query(self.database, name) + self._qs(params)

    def file(self, path: str, project: str | None) -> str:
        """The function map rows of a file."""
        return self.table(
            "function_map", file_path=relative_to_project(path, project), project=project
        )

    def callers(self, function: str, project: str | None, file: str | None = None) -> str:
        return self.query("callers", project=project or "", function=function, file=file or "")

    def callees(self, function: str, project: str | None, file: str | None = None) -> str:
        return self.query("callees", project=project or "", function=function, file=file or "")
