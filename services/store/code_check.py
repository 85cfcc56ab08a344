"""The save-time check of widget code: size, syntax, and the ``get_sidebar_data`` entry point.

It never runs the code; it only compiles it. Runtime problems are the test
run's business. Messages name the line, so the dashboard can point at it.
"""

from __future__ import annotations

import ast

MAX_CODE_BYTES = 65_536
ENTRY_POINT = "get_sidebar_data"
_FILENAME = "<widget>"
_EXAMPLE = f"`def {ENTRY_POINT}(context):`"


class CodeCheckError(ValueError):
    """Widget code that must not be saved or run; ``line`` is 1-based, or None."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def check_widget_code(code: str) -> None:
    """Raise ``CodeCheckError`` unless ``code`` compiles and defines the entry point."""
    _check_size(code)
    tree = _compile(code)
    entry = _entry_point(tree)
    _check_signature(entry)


def _check_size(code: str) -> None:
    try:
        size = len(code.encode("utf-8"))
    except UnicodeEncodeError as exc:
        line = code.count("\n", 0, exc.start) + 1
        raise CodeCheckError(f"line {line}: code contains a character that is not valid in UTF-8", line) from exc
    if size > MAX_CODE_BYTES:
        raise CodeCheckError(f"code is {size} bytes of UTF-8; the limit is {MAX_CODE_BYTES} bytes (64 KiB)")


def _compile(code: str) -> ast.Module:
    try:
        tree = ast.parse(code, filename=_FILENAME)
        # Some errors ('return' outside function, misplaced nonlocal) only the compiler finds.
        compile(tree, _FILENAME, "exec", dont_inherit=True)
    except SyntaxError as exc:
        line = exc.lineno
        where = f"line {line}: " if line else ""
        raise CodeCheckError(f"{where}{type(exc).__name__}: {exc.msg}", line) from exc
    except ValueError as exc:
        # Python 3.11 reports NUL bytes in source as ValueError, not SyntaxError.
        raise CodeCheckError(f"code cannot be compiled: {exc}") from exc
    except (RecursionError, MemoryError) as exc:
        raise CodeCheckError("code is nested too deeply to compile") from exc
    return tree


def _entry_point(tree: ast.Module) -> ast.FunctionDef:
    definitions = [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == ENTRY_POINT
    ]
    if not definitions:
        raise CodeCheckError(f"code must define {ENTRY_POINT} at top level, e.g. {_EXAMPLE}")
    # Defining it twice is allowed: as at runtime, the last definition wins.
    entry = definitions[-1]
    if isinstance(entry, ast.AsyncFunctionDef):
        raise CodeCheckError(
            f"line {entry.lineno}: {ENTRY_POINT} must be a plain function, not `async def`", entry.lineno
        )
    return entry


def _check_signature(entry: ast.FunctionDef) -> None:
    arguments = entry.args
    positional = [*arguments.posonlyargs, *arguments.args]
    line = entry.lineno
    if not positional and arguments.vararg is None:
        raise CodeCheckError(
            f"line {line}: {ENTRY_POINT} must take the context as its first positional parameter, e.g. {_EXAMPLE}",
            line,
        )
    required = len(positional) - len(arguments.defaults)
    if required > 1:
        names = ", ".join(a.arg for a in positional[:required])
        raise CodeCheckError(
            f"line {line}: {ENTRY_POINT} is called with one argument (the context) but requires "
            f"{required} positional parameters ({names})",
            line,
        )
    missing_keywords = [a.arg for a, d in zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True) if d is None]
    if missing_keywords:
        raise CodeCheckError(
            f"line {line}: {ENTRY_POINT} is called with the context only, but requires the keyword-only "
            f"parameter(s) {', '.join(missing_keywords)}",
            line,
        )
