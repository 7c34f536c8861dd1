"""Function map and call graph extraction from Python source."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from datasette_claude_mem.worker.code_index import (
    CallEdge,
    FunctionInfo,
    SourceError,
    extract_calls,
    extract_functions,
    python_module_resolver,
)

MODULE = textwrap.dedent(
    '''
    """A small store module."""

    import functools
    from typing import TYPE_CHECKING

    if TYPE_CHECKING:
        def only_for_types() -> None: ...


    def load(a, b: int = 1, *args, **kw) -> str:
        """Load things.

        Longer explanation.
        """
        return str(a)


    async def fetch(url: str, /, *, timeout: float = 5.0) -> bytes:
        return b""


    @functools.lru_cache(maxsize=None)
    def cached(x):
        def inner():
            return x

        return inner()


    class Store(dict, metaclass=type):
        """Keeps values."""

        @property
        def size(self) -> int:
            return len(self)

        async def refresh(self):
            pass

        class Meta:
            def describe(cls):
                return "meta"
    '''
)


def by_name(infos: list[FunctionInfo]) -> dict[str, FunctionInfo]:
    return {info.qualified_name: info for info in infos}


def test_function_map_names_kinds_and_order():
    infos = extract_functions(MODULE)
    assert [(i.qualified_name, i.kind) for i in infos] == [
        ("only_for_types", "function"),
        ("load", "function"),
        ("fetch", "async_function"),
        ("cached", "function"),
        ("Store", "class"),
        ("Store.size", "method"),
        ("Store.refresh", "async_method"),
        ("Store.Meta", "class"),
        ("Store.Meta.describe", "method"),
    ]
    # Helpers nested inside a function belong to it, not to the map.
    assert "cached.inner" not in by_name(infos)


def test_signatures_docstrings_decorators_and_lines():
    infos = by_name(extract_functions(MODULE))
    assert infos["load"].signature == "def load(a, b: int = 1, *args, **kw) -> str"
    assert infos["fetch"].signature == (
        "async def fetch(url: str, /, *, timeout: float = 5.0) -> bytes"
    )
    assert infos["Store"].signature == "class Store(dict, metaclass=type)"
    assert infos["Store.Meta"].signature == "class Meta"
    assert infos["load"].docstring == "Load things.\n\nLonger explanation."
    assert infos["Store"].docstring == "Keeps values."
    assert infos["fetch"].docstring is None
    assert infos["cached"].decorators == ("functools.lru_cache(maxsize=None)",)
    assert infos["Store.size"].decorators == ("property",)
    source_lines = MODULE.splitlines()
    assert source_lines[infos["load"].lineno - 1].startswith("def load(")
    assert source_lines[infos["Store"].end_lineno - 1].strip() == 'return "meta"'


def test_to_dict_is_json_ready():
    info = by_name(extract_functions(MODULE))["cached"]
    data = info.to_dict()
    assert data["decorators"] == ["functools.lru_cache(maxsize=None)"]
    assert json.loads(json.dumps(data))["qualified_name"] == "cached"


def hash_of(source: str, name: str) -> str:
    return by_name(extract_functions(source))[name].body_hash


ORIGINAL = textwrap.dedent(
    """
    def total(items, tax=0.2):
        # Sum the prices.
        subtotal = sum(item.price for item in items)
        return subtotal * (1 + tax)
    """
)


def test_body_hash_is_md5_hex():
    value = hash_of(ORIGINAL, "total")
    assert len(value) == 32
    int(value, 16)


def test_body_hash_ignores_reformatting_comments_and_position():
    reformatted = textwrap.dedent(
        """
        import os



        def total(items,
                  tax = 0.2):
            # A different comment entirely.
            subtotal = sum(
                item.price
                for item in items
            )
            return subtotal * (1 + tax)
        """
    )
    indented = "class Wrapper:\n" + textwrap.indent(ORIGINAL, "    ")
    assert hash_of(reformatted, "total") == hash_of(ORIGINAL, "total")
    assert hash_of(indented, "Wrapper.total") == hash_of(ORIGINAL, "total")


def test_body_hash_changes_when_the_code_changes():
    edited = ORIGINAL.replace("1 + tax", "1 - tax")
    # The hash reads the text's tokens, not its syntax tree: brackets are tokens.
    regrouped = ORIGINAL.replace("subtotal * (1 + tax)", "(subtotal * 1) + tax")
    renamed_default = ORIGINAL.replace("tax=0.2", "tax=0.25")
    assert hash_of(edited, "total") != hash_of(ORIGINAL, "total")
    assert hash_of(regrouped, "total") != hash_of(ORIGINAL, "total")
    assert hash_of(renamed_default, "total") != hash_of(ORIGINAL, "total")


def test_syntax_error_raises_source_error():
    with pytest.raises(SourceError) as excinfo:
        extract_functions("def broken(:\n    pass\n")
    assert isinstance(excinfo.value, ValueError)
    assert "line 1" in str(excinfo.value)
    with pytest.raises(ValueError):
        extract_calls("class X(\n", "x.py")


def test_null_bytes_raise_source_error():
    with pytest.raises(SourceError):
        extract_functions("def f():\n    return 1\x00\n")


def test_empty_module_has_no_functions():
    assert extract_functions("") == []
    assert extract_calls("x = 1\nprint(x)\n", "m.py") == []


CALLS = textwrap.dedent(
    """
    import os
    import os.path
    import json as j
    from pathlib import Path
    from . import utils
    from .models import Session, parse as parse_model
    from ..shared import helpers


    def helper(value):
        return value


    def main(argv):
        print(len(argv))
        helper(argv)
        helper(argv)
        j.dumps(argv)
        os.path.join("a", "b")
        Path("x").exists()
        parse_model(argv)
        Session.open(argv)
        utils.slugify(argv)
        helpers.thing()
        argv.append(1)
        ", ".join(argv)
        Store.create()

        import subprocess
        subprocess.run(argv)


    class Base:
        def save(self):
            return self.validate()

        def validate(self):
            return True


    class Store(Base):
        @classmethod
        def create(cls):
            return cls.build()

        @classmethod
        def build(cls):
            return cls()

        def put(self, key):
            self.save()
            self.validate()
            self.missing()
            self.db.execute(key)
            super().put(key)
            helper(key)

        @staticmethod
        def tool(self):
            return self.save()
    """
)


def edges_for(caller: str, edges: list[CallEdge]) -> list[tuple[str, str, str]]:
    return [
        (e.callee_file, e.callee_function, e.resolution)
        for e in edges
        if e.caller_function == caller
    ]


def test_call_graph_resolution_kinds():
    edges = extract_calls(CALLS, "app/cli.py")
    assert edges_for("main", edges) == [
        ("app/cli.py", "helper", "direct"),
        ("json", "dumps", "import"),
        ("os.path", "join", "import"),
        ("", "Path('x').exists", "unresolved"),
        ("pathlib", "Path", "import"),
        ("app.models", "parse", "import"),
        ("app.models", "Session.open", "import"),
        ("app", "utils.slugify", "import"),
        ("shared", "helpers.thing", "import"),
        ("", "argv.append", "unresolved"),
        ("app/cli.py", "Store.create", "direct"),
        ("subprocess", "run", "import"),
    ]


def test_builtins_are_left_out_and_edges_are_unique_per_caller():
    edges = extract_calls(CALLS, "app/cli.py")
    callees = [e.callee_function for e in edges]
    assert "print" not in callees
    assert "len" not in callees
    assert not any(name.endswith(".join") and name.startswith("'") for name in callees)
    main_edges = [e for e in edges if e.caller_function == "main"]
    assert len(main_edges) == len(set(main_edges))
    # Edges are hashable frozen values that convert to plain dicts.
    assert main_edges[0].to_dict() == {
        "caller_function": "main",
        "callee_file": "app/cli.py",
        "callee_function": "helper",
        "resolution": "direct",
    }


def test_self_and_cls_calls_resolve_to_methods_including_inherited():
    edges = extract_calls(CALLS, "app/cli.py")
    assert edges_for("Base.save", edges) == [("app/cli.py", "Base.validate", "self_method")]
    assert edges_for("Store.create", edges) == [("app/cli.py", "Store.build", "self_method")]
    assert edges_for("Store.put", edges) == [
        ("app/cli.py", "Base.save", "self_method"),
        ("app/cli.py", "Base.validate", "self_method"),
        ("", "self.missing", "unresolved"),
        ("", "self.db.execute", "unresolved"),
        ("", "super().put", "unresolved"),
        ("app/cli.py", "helper", "direct"),
    ]
    # In a staticmethod "self" is just a parameter name.
    assert edges_for("Store.tool", edges) == [("", "self.save", "unresolved")]


def test_module_resolver_turns_imports_into_files():
    known = {
        "app.models": "app/models.py",
        "app.utils": "app/utils.py",
        "os": None,
    }
    edges = extract_calls(CALLS, "app/cli.py", module_resolver=known.get)
    main = edges_for("main", edges)
    assert ("app/models.py", "parse", "import") in main
    assert ("app/models.py", "Session.open", "import") in main
    # "from . import utils" names a module once the resolver knows it.
    assert ("app/utils.py", "slugify", "import") in main
    # Unknown modules keep their dotted name.
    assert ("json", "dumps", "import") in main


def test_a_failing_resolver_does_not_break_indexing():
    def broken(module: str) -> str | None:
        raise OSError("disk gone")

    edges = extract_calls(CALLS, "app/cli.py", module_resolver=broken)
    assert ("json", "dumps", "import") in edges_for("main", edges)


def test_calls_in_nested_classes_and_functions_belong_to_the_mapped_definition():
    source = textwrap.dedent(
        """
        def outer():
            def inner():
                return target()
            return inner()

        def target():
            pass

        class A:
            class B:
                def run(self):
                    return self.step()

                def step(self):
                    return target()
        """
    )
    edges = extract_calls(source, "m.py")
    assert edges_for("outer", edges) == [
        ("m.py", "target", "direct"),
        ("", "inner", "unresolved"),
    ]
    assert edges_for("A.B.run", edges) == [("m.py", "A.B.step", "self_method")]
    assert edges_for("A.B.step", edges) == [("m.py", "target", "direct")]


def test_python_module_resolver_finds_modules_packages_and_src_layout(tmp_path: Path):
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "mod.py").write_text("")
    (tmp_path / "pkg" / "sub" / "__init__.py").write_text("")
    (tmp_path / "src" / "lib").mkdir(parents=True)
    (tmp_path / "src" / "lib" / "__init__.py").write_text("")
    (tmp_path / "src" / "lib" / "core.py").write_text("")
    (tmp_path / "tool.py").write_text("")

    resolve = python_module_resolver(tmp_path)
    assert resolve("pkg.mod") == "pkg/mod.py"
    assert resolve("pkg.sub") == "pkg/sub/__init__.py"
    assert resolve("pkg") == "pkg/__init__.py"
    assert resolve("lib.core") == "src/lib/core.py"
    assert resolve("tool") == "tool.py"
    assert resolve("json") is None
    assert resolve("pkg.missing") is None
    assert resolve("../etc/passwd") is None
    assert resolve("") is None


def test_extract_calls_with_project_resolver(tmp_path: Path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("")
    (tmp_path / "app" / "models.py").write_text("def parse(x):\n    return x\n")
    (tmp_path / "app" / "utils.py").write_text("def slugify(x):\n    return x\n")

    edges = extract_calls(CALLS, "app/cli.py", python_module_resolver(tmp_path))
    main = edges_for("main", edges)
    assert ("app/models.py", "parse", "import") in main
    assert ("app/utils.py", "slugify", "import") in main
    assert ("os.path", "join", "import") in main


def test_body_hash_reads_strings_whole():
    with_hash_sign = ORIGINAL.replace("sum(item.price", 'sum(len("# not a comment") + item.price')
    edited = with_hash_sign.replace("# not a comment", "# still not a comment")
    recommented = with_hash_sign.replace("# Sum the prices.", "# Add them up.")
    assert hash_of(edited, "total") != hash_of(with_hash_sign, "total")
    assert hash_of(recommented, "total") == hash_of(with_hash_sign, "total")
