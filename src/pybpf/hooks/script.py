"""Run a Python script as ``__main__`` in this process, with a callback between its top-level statements.

``python SCRIPT.py ARGS`` as ``runpy.run_path(..., run_name="__main__")`` does it (``sys.argv``,
``sys.path[0]``, ``sys.modules["__main__"]``), except that the module body runs one top-level
statement at a time and :func:`run_script` calls ``after_statement(module)`` after each. That is
the moment a tracer can probe a function the script has just defined (``def work(): ...``)
before the script's next statement calls it: runpy gives no such moment. Each statement is
compiled with the script's file name and line numbers and its ``from __future__`` flags, so
tracebacks and semantics are the script's own.

The outcome (:class:`ScriptOutcome`) says how the script ended: its ``SystemExit`` status, or
the exception it raised (the traceback goes to stderr, as Python prints it).
"""

from __future__ import annotations
import __future__

import ast
import builtins
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from pybpf.errors import PybpfError


class ScriptError(PybpfError):
    """The script cannot be run (missing, unreadable, or not valid Python)."""


@dataclass(frozen=True, slots=True)
class ScriptOutcome:
    """How the script ended: ``status`` as its process exit status would be; ``error`` if it raised."""

    status: int
    error: str | None = None


def _future_flags(tree: ast.Module) -> int:
    flags = 0
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            for alias in node.names:
                feature = getattr(__future__, alias.name, None)
                flags |= getattr(feature, "compiler_flag", 0)
    return flags


def _exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    sys.stderr.write(f"{code}\n")  # sys.exit("message") prints the message and exits with 1
    return 1


def run_script(
    path: str | Path, args: Sequence[str] = (), after_statement: Callable[[ModuleType], None] | None = None
) -> ScriptOutcome:
    """Run ``path`` as ``__main__`` with ``sys.argv = [path, *args]``; restore the interpreter after."""
    script = Path(path)
    try:
        source = script.read_bytes()
        tree = ast.parse(source, filename=str(script))
    except (OSError, SyntaxError, ValueError) as error:
        raise ScriptError(f"cannot run {script}: {error}") from error
    flags = _future_flags(tree)
    module = ModuleType("__main__", ast.get_docstring(tree, clean=False))
    module.__file__ = str(script)
    module.__builtins__ = builtins  # type: ignore[attr-defined]
    saved_argv, saved_path, saved_main = sys.argv, list(sys.path), sys.modules.get("__main__")
    sys.argv = [str(script), *args]
    sys.path.insert(0, str(script.resolve().parent))
    sys.modules["__main__"] = module
    try:
        for statement in tree.body:
            code = compile(
                ast.Module(body=[statement], type_ignores=[]), str(script), "exec", flags=flags, dont_inherit=True
            )
            exec(code, module.__dict__)
            if after_statement is not None:
                after_statement(module)
        return ScriptOutcome(0)
    except SystemExit as stop:
        return ScriptOutcome(_exit_status(stop.code))
    except KeyboardInterrupt:
        return ScriptOutcome(130, "KeyboardInterrupt")
    except Exception as error:
        traceback.print_exc()
        return ScriptOutcome(1, f"{type(error).__name__}: {error}")
    finally:
        sys.argv = saved_argv
        sys.path[:] = saved_path
        if saved_main is not None:
            sys.modules["__main__"] = saved_main


__all__ = ["ScriptError", "ScriptOutcome", "run_script"]
