"""Static analysis of Python source for the function map and the call graph.

Everything here works on source text with the ``ast`` module: nothing is
imported or executed, and only ``python_module_resolver`` looks at the file
system.  The results are plain frozen dataclasses so callers can store them in
any table they like via ``to_dict()``.
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

__all__ = [
    "KIND_ASYNC_FUNCTION",
    "KIND_ASYNC_METHOD",
    "KIND_CLASS",
    "KIND_FUNCTION",
    "KIND_METHOD",
    "RESOLUTION_DIRECT",
    "RESOLUTION_IMPORT",
    "RESOLUTION_SELF_METHOD",
    "RESOLUTION_UNRESOLVED",
    "CallEdge",
    "FunctionInfo",
    "SourceError",
    "extract_calls",
    "extract_functions",
    "python_module_resolver",
]

KIND_FUNCTION = "function"
KIND_METHOD = "method"
KIND_ASYNC_FUNCTION = "async_function"
KIND_ASYNC_METHOD = "async_method"
KIND_CLASS = "class"

RESOLUTION_DIRECT = "direct"
RESOLUTION_SELF_METHOD = "self_method"
RESOLUTION_IMPORT = "import"
RESOLUTION_UNRESOLVED = "unresolved"

# Calls to builtins (print, len, str.join, ...) would drown the graph in noise.
_BUILTIN_NAMES = frozenset(dir(builtins))
# Unresolved call targets can be arbitrary expressions; keep stored text short.
_MAX_TARGET_CHARS = 200

_FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef
# Statements whose bodies still run in the enclosing scope.
_COMPOUND = (
    ast.If,
    ast.Try,
    ast.TryStar,
    ast.With,
    ast.AsyncWith,
    ast.For,
    ast.AsyncFor,
    ast.While,
    ast.Match,
)
_DefNode = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


class SourceError(ValueError):
    """The text is not parseable Python, so callers can skip the file cleanly."""


@dataclass(frozen=True)
class FunctionInfo:
    """One entry of the function map: enough to show, search and diff a definition."""

    qualified_name: str
    kind: str
    signature: str
    docstring: str | None
    body_hash: str
    decorators: tuple[str, ...]
    lineno: int
    end_lineno: int

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["decorators"] = list(self.decorators)
        return data


@dataclass(frozen=True)
class CallEdge:
    """One edge of the call graph, with how confidently the callee was located."""

    caller_function: str
    callee_file: str
    callee_function: str
    resolution: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


# --------------------------------------------------------------------------
# Parsing and the function map
# --------------------------------------------------------------------------


def _parse(source: str) -> ast.Module:
    try:
        return ast.parse(source)
    except SyntaxError as exc:
        raise SourceError(f"invalid Python source at line {exc.lineno}: {exc.msg}") from exc
    except (ValueError, RecursionError, MemoryError) as exc:
        # ValueError: NUL bytes (3.11); RecursionError: absurdly deep nesting.
        raise SourceError(f"cannot parse Python source: {exc}") from exc


def _nested_statements(node: ast.AST) -> Iterator[ast.stmt]:
    """Statements inside compound statements (if/try/with/for/match), not defs."""
    for field in ("body", "orelse", "finalbody"):
        for child in getattr(node, field, None) or ():
            if isinstance(child, ast.stmt):
                yield child
    for handler in getattr(node, "handlers", None) or ():
        yield from handler.body
    for case in getattr(node, "cases", None) or ():
        yield from case.body


def _scope_statements(body: Iterable[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements that run in the same scope as ``body``.

    Definitions guarded by ``if``/``try`` (version checks, optional imports)
    still belong to the module or class, so they are walked too; function and
    class bodies are separate scopes and are not entered.
    """
    for stmt in body:
        yield stmt
        if isinstance(stmt, _COMPOUND):
            yield from _scope_statements(_nested_statements(stmt))


def _format_arg(arg: ast.arg, default: ast.expr | None) -> str:
    text = arg.arg
    if arg.annotation is not None:
        text += ": " + ast.unparse(arg.annotation)
    if default is not None:
        # PEP 8 spacing, which ast.unparse does not apply to annotated defaults.
        text += (" = " if arg.annotation is not None else "=") + ast.unparse(default)
    return text


def _format_arguments(args: ast.arguments) -> str:
    parts: list[str] = []
    positional = [*args.posonlyargs, *args.args]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults))
    defaults.extend(args.defaults)
    for index, (arg, default) in enumerate(zip(positional, defaults, strict=True)):
        parts.append(_format_arg(arg, default))
        if args.posonlyargs and index == len(args.posonlyargs) - 1:
            parts.append("/")
    if args.vararg is not None:
        parts.append("*" + _format_arg(args.vararg, None))
    elif args.kwonlyargs:
        parts.append("*")
    for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        parts.append(_format_arg(arg, default))
    if args.kwarg is not None:
        parts.append("**" + _format_arg(args.kwarg, None))
    return ", ".join(parts)


def _signature(node: _DefNode) -> str:
    if isinstance(node, ast.ClassDef):
        bases = [ast.unparse(base) for base in node.bases]
        bases += [ast.unparse(keyword) for keyword in node.keywords]
        return f"class {node.name}({', '.join(bases)})" if bases else f"class {node.name}"
    prefix = "async def" if isinstance(node, ast.AsyncFunctionDef) else "def"
    text = f"{prefix} {node.name}({_format_arguments(node.args)})"
    if node.returns is not None:
        text += " -> " + ast.unparse(node.returns)
    return text


# One token of Python source: a string literal (any prefix, triple-quoted or not), a comment,
# a name or number, or any other single character. Comments and whitespace are dropped.
_TOKEN_RE = re.compile(
    r"""(?:[rRbBuUfF]{0,2})(?:\'\'\'(?:\\.|[^\\])*?\'\'\'|\"\"\"(?:\\.|[^\\])*?\"\"\"
    |'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*")|\#[^\n]*|\w+|\S""",
    re.VERBOSE | re.DOTALL,
)


def _normalised_tokens(text: str) -> str:
    """The tokens of a piece of source, one space apart: layout and comments do not count."""
    return " ".join([token for token in _TOKEN_RE.findall(text) if token[0] != "#"])


def _body_hash(node: _DefNode, lines: list[str]) -> str:
    """A hash of the definition's own text, normalised: moving, re-indenting, re-wrapping or
    re-commenting it keeps the hash while any code edit changes it. Reading the text once
    (one regex pass) keeps this linear in the size of the file, where ast.dump was not."""
    start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    end = node.end_lineno or node.lineno
    text = "\n".join(lines[start - 1 : end])
    return hashlib.md5(_normalised_tokens(text).encode("utf-8"), usedforsecurity=False).hexdigest()


def _kind(node: _DefNode, in_class: bool) -> str:
    if isinstance(node, ast.ClassDef):
        return KIND_CLASS
    if isinstance(node, ast.AsyncFunctionDef):
        return KIND_ASYNC_METHOD if in_class else KIND_ASYNC_FUNCTION
    return KIND_METHOD if in_class else KIND_FUNCTION


def _iter_def_nodes(
    body: Iterable[ast.stmt], prefix: str = "", class_qualname: str | None = None
) -> Iterator[tuple[str, _DefNode, str | None]]:
    """Yield (qualified name, node, enclosing class) for mapped definitions.

    Classes are entered (their methods and nested classes are mapped);
    function bodies are not, since inner helpers are part of their parent.
    """
    for stmt in _scope_statements(body):
        if not isinstance(stmt, _DefNode):
            continue
        qualname = prefix + stmt.name
        yield qualname, stmt, class_qualname
        if isinstance(stmt, ast.ClassDef):
            yield from _iter_def_nodes(stmt.body, qualname + ".", qualname)


def _function_info(qualname: str, node: _DefNode, in_class: bool, lines: list[str]) -> FunctionInfo:
    return FunctionInfo(
        qualified_name=qualname,
        kind=_kind(node, in_class),
        signature=_signature(node),
        docstring=ast.get_docstring(node, clean=True),
        body_hash=_body_hash(node, lines),
        decorators=tuple(ast.unparse(decorator) for decorator in node.decorator_list),
        lineno=node.lineno,
        end_lineno=node.end_lineno or node.lineno,
    )


def extract_functions(source: str) -> list[FunctionInfo]:
    """Map every module-level function, class and method, in source order.

    Raises ``SourceError`` (a ``ValueError``) when the text is not valid Python.
    """
    tree = _parse(source)
    lines = source.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    try:
        return [
            _function_info(qualname, node, class_qualname is not None, lines)
            for qualname, node, class_qualname in _iter_def_nodes(tree.body)
        ]
    except RecursionError as exc:
        raise SourceError("Python source is nested too deeply to analyse") from exc


# --------------------------------------------------------------------------
# Call graph
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Binding:
    """What a bare name refers to at module or function level."""

    kind: str  # "def", "module" (import mod) or "from" (from mod import name)
    module: str = ""
    name: str = ""


def _package_parts(file_path: str) -> list[str]:
    """Dotted package of ``file_path`` (relative to the project root), for relative imports."""
    path = PurePosixPath(file_path.replace("\\", "/"))
    parts = [part for part in path.parts if part not in ("/", ".", "")]
    if not parts:
        return []
    if parts[0] == "src" and len(parts) > 1:
        parts = parts[1:]
    # Both pkg/mod.py and pkg/__init__.py resolve relative imports against pkg.
    return parts[:-1]


def _absolute_module(node: ast.ImportFrom, package: list[str]) -> str:
    if not node.level:
        return node.module or ""
    keep = len(package) - (node.level - 1)
    if keep < 0:
        # Goes above the project root: keep the relative spelling as a hint.
        return "." * node.level + (node.module or "")
    base = package[:keep]
    if node.module:
        base = [*base, node.module]
    return ".".join(base)


def _record_imports(
    statements: Iterable[ast.AST],
    package: list[str],
    bindings: dict[str, _Binding],
    imported_modules: set[str],
) -> None:
    for stmt in statements:
        if isinstance(stmt, ast.Import):
            for alias in stmt.names:
                dotted = alias.name
                pieces = dotted.split(".")
                for end in range(1, len(pieces) + 1):
                    imported_modules.add(".".join(pieces[:end]))
                if alias.asname:
                    bindings[alias.asname] = _Binding("module", dotted)
                else:
                    bindings[pieces[0]] = _Binding("module", pieces[0])
        elif isinstance(stmt, ast.ImportFrom):
            module = _absolute_module(stmt, package)
            for alias in stmt.names:
                if alias.name == "*":
                    continue
                bindings[alias.asname or alias.name] = _Binding("from", module, alias.name)


def _dotted_parts(node: ast.expr) -> list[str] | None:
    """``a.b.c`` as ["a", "b", "c"]; None when the target is not a plain name chain."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    parts.reverse()
    return parts


def _root_is_literal(node: ast.expr) -> bool:
    """True for calls like ``", ".join(...)`` whose receiver is a literal builtin value."""
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(
        node,
        ast.Constant | ast.JoinedStr | ast.List | ast.Tuple | ast.Dict | ast.Set,
    )


def _first_param(node: _FunctionNode) -> str | None:
    for decorator in node.decorator_list:
        if isinstance(decorator, ast.Name) and decorator.id == "staticmethod":
            return None
    positional = [*node.args.posonlyargs, *node.args.args]
    return positional[0].arg if positional else None


class _CallResolver:
    """Per-module state for turning call expressions into edges."""

    def __init__(
        self,
        tree: ast.Module,
        file_path: str,
        module_resolver: Callable[[str], str | None] | None,
    ) -> None:
        self.file_path = file_path
        self.package = _package_parts(file_path)
        self._resolver = module_resolver
        self._resolved: dict[str, str | None] = {}
        self.bindings: dict[str, _Binding] = {}
        self.imported_modules: set[str] = set()
        # Walk module-level statements in order so later bindings win, as at runtime.
        for stmt in _scope_statements(tree.body):
            if isinstance(stmt, _DefNode):
                self.bindings[stmt.name] = _Binding("def", name=stmt.name)
            else:
                _record_imports([stmt], self.package, self.bindings, self.imported_modules)
        self.qualnames: set[str] = set()
        self.class_methods: dict[str, set[str]] = {}
        self.class_bases: dict[str, list[str]] = {}
        for qualname, node, class_qualname in _iter_def_nodes(tree.body):
            self.qualnames.add(qualname)
            if isinstance(node, ast.ClassDef):
                self.class_methods.setdefault(qualname, set())
                self.class_bases[qualname] = [ast.unparse(base) for base in node.bases]
            elif class_qualname is not None:
                self.class_methods.setdefault(class_qualname, set()).add(node.name)

    def module_file(self, module: str) -> str | None:
        if self._resolver is None or not module:
            return None
        if module not in self._resolved:
            try:
                found = self._resolver(module)
            except Exception:  # a faulty resolver must not break indexing
                found = None
            self._resolved[module] = found if isinstance(found, str) and found else None
        return self._resolved[module]

    def _is_module(self, dotted: str) -> bool:
        return dotted in self.imported_modules or self.module_file(dotted) is not None

    def _import_edge(self, caller: str, module: str, rest: list[str]) -> CallEdge:
        # Walk into submodules (pkg.sub.func) while the next piece is a known module.
        while len(rest) > 1 and self._is_module(f"{module}.{rest[0]}"):
            module = f"{module}.{rest.pop(0)}"
        callee_file = self.module_file(module) or module
        return CallEdge(caller, callee_file, ".".join(rest), RESOLUTION_IMPORT)

    def find_method(self, class_qualname: str, method: str) -> str | None:
        """The class (itself or a same-module base) that defines ``method``."""
        pending = [class_qualname]
        visited: set[str] = set()
        while pending:
            current = pending.pop(0)
            if current in visited or current not in self.class_methods:
                continue
            visited.add(current)
            if method in self.class_methods[current]:
                return current
            pending.extend(self.class_bases.get(current, []))
        return None

    def resolve(
        self,
        caller: str,
        func: ast.expr,
        bindings: dict[str, _Binding],
        class_qualname: str | None,
        self_name: str | None,
    ) -> CallEdge | None:
        parts = _dotted_parts(func)
        if parts is None:
            if _root_is_literal(func):
                return None
            return self._unresolved(caller, func)
        root = parts[0]
        binding = bindings.get(root)

        if self_name and root == self_name and class_qualname and len(parts) == 2:
            owner = self.find_method(class_qualname, parts[1])
            if owner is not None:
                return CallEdge(
                    caller, self.file_path, f"{owner}.{parts[1]}", RESOLUTION_SELF_METHOD
                )
            return self._unresolved(caller, func)

        if binding is None:
            if root in _BUILTIN_NAMES:
                return None
            return self._unresolved(caller, func)

        if binding.kind == "def":
            dotted = ".".join(parts)
            if len(parts) == 1 or dotted in self.qualnames:
                return CallEdge(caller, self.file_path, dotted, RESOLUTION_DIRECT)
            return self._unresolved(caller, func)

        if binding.kind == "module":
            if len(parts) == 1:
                return self._unresolved(caller, func)
            return self._import_edge(caller, binding.module, parts[1:])

        # from module import name
        if len(parts) > 1:
            candidate = f"{binding.module}.{binding.name}" if binding.module else binding.name
            if self._is_module(candidate):
                return self._import_edge(caller, candidate, parts[1:])
        return self._import_edge(caller, binding.module, [".".join([binding.name, *parts[1:]])])

    def _unresolved(self, caller: str, func: ast.expr) -> CallEdge:
        text = ast.unparse(func)
        if len(text) > _MAX_TARGET_CHARS:
            text = text[: _MAX_TARGET_CHARS - 1] + "…"
        return CallEdge(caller, "", text, RESOLUTION_UNRESOLVED)


def _calls_in(body: Iterable[ast.stmt]) -> list[ast.Call]:
    calls = [node for stmt in body for node in ast.walk(stmt) if isinstance(node, ast.Call)]
    calls.sort(key=lambda call: (call.lineno, call.col_offset))
    return calls


def extract_calls(
    source: str,
    file_path: str,
    module_resolver: Callable[[str], str | None] | None = None,
) -> list[CallEdge]:
    """Calls made by each function and method of one module, resolved where possible.

    ``file_path`` should be relative to the project root: it becomes the
    callee file of same-module edges and anchors relative imports.
    ``module_resolver`` maps a dotted module name to a file path (see
    ``python_module_resolver``); without it imports keep their dotted name.
    Calls to builtins are left out. Edges are unique per caller, in source order.
    """
    tree = _parse(source)
    try:
        resolver = _CallResolver(tree, file_path, module_resolver)
        edges: list[CallEdge] = []
        seen: set[CallEdge] = set()
        for qualname, node, class_qualname in _iter_def_nodes(tree.body):
            if isinstance(node, ast.ClassDef):
                continue
            bindings = dict(resolver.bindings)
            # Imports made inside the function (lazy imports) shadow module names.
            local_imports = (n for stmt in node.body for n in ast.walk(stmt))
            _record_imports(local_imports, resolver.package, bindings, resolver.imported_modules)
            self_name = _first_param(node) if class_qualname is not None else None
            for call in _calls_in(node.body):
                edge = resolver.resolve(qualname, call.func, bindings, class_qualname, self_name)
                if edge is not None and edge not in seen:
                    seen.add(edge)
                    edges.append(edge)
        return edges
    except RecursionError as exc:
        raise SourceError("Python source is nested too deeply to analyse") from exc


def python_module_resolver(project_root: Path) -> Callable[[str], str | None]:
    """Build a resolver from dotted module names to files under ``project_root``.

    Returns paths relative to the root with forward slashes (``pkg/mod.py``,
    ``pkg/sub/__init__.py``, or the same under ``src/``), or None for modules
    outside the project such as the standard library or installed packages.
    """
    root = Path(project_root)
    cache: dict[str, str | None] = {}

    def resolve(module: str) -> str | None:
        if not isinstance(module, str):
            return None
        if module in cache:
            return cache[module]
        found: str | None = None
        parts = module.split(".")
        if all(part.isidentifier() for part in parts):
            for base in ("", "src"):
                # A package directory wins over a same-named module, as in CPython.
                candidates = (
                    PurePosixPath(base, *parts, "__init__.py"),
                    PurePosixPath(base, *parts[:-1], parts[-1] + ".py"),
                )
                for candidate in candidates:
                    if (root / candidate).is_file():
                        found = candidate.as_posix()
                        break
                if found:
                    break
        cache[module] = found
        return found

    return resolve
