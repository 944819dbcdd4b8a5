"""Per-event cost of audit (LSM-style) hooks: a Python audit event with a program attached, and without.

Run with ``python benchmarks/bench_hooks_audit.py [--events N] [--runs R] [--engine interp|jit]``
(the program's engine; default: what ``pybpf.load`` picks). The program is the
committed example ``examples/hooks/deny_secret.o`` (``deny_secret``: a counter update, a
probe_read_kernel_str of the path and a byte-by-byte scan of it for a file name starting with
"secret", some 10 instructions per byte of the ~45-character temporary paths used here),
attached to the ``open`` event. Events are raised
with ``sys.audit("open", path, mode, flags)``, as ``open()`` raises them, so the figures are the
hook's cost without the file system's; the last lines time a real ``open()``/``close()`` of a
file for scale. Each line gives the best of R runs of N events, in nanoseconds per event;
"overhead" is the line minus the unhooked event.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pybpf import load
from pybpf.errors import PybpfError
from pybpf.hooks.link import HookRuntime
from pybpf.hooks.lsm import attach_audit

OBJECT = Path(__file__).resolve().parents[1] / "examples" / "hooks" / "deny_secret.o"


def best_ns(call: Callable[[], object], events: int, runs: int) -> float:
    """Best-of-``runs`` mean nanoseconds of ``call()`` over ``events`` calls."""
    results = []
    for _ in range(runs):
        started = time.perf_counter_ns()
        for _ in range(events):
            call()
        results.append((time.perf_counter_ns() - started) / events)
    return min(results)


def denied_event(path: str) -> None:
    with contextlib.suppress(PermissionError):
        sys.audit("open", path, "r", os.O_RDONLY)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000, help="events per run (default 2000)")
    parser.add_argument("--runs", type=int, default=3, help="runs per line; the best is shown (default 3)")
    parser.add_argument("--engine", choices=("interp", "jit"), default=None, help="default: pybpf.load's choice")
    args = parser.parse_args(argv)
    events, runs = args.events, args.runs
    options: dict[str, Any] = {} if args.engine is None else {"engine": args.engine}
    engine = "?"
    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="pybpf-bench-audit-") as directory:
        public = os.path.join(directory, "public.txt")
        secret = os.path.join(directory, "secret.txt")
        Path(public).write_text("hello")

        def audit_public() -> None:
            sys.audit("open", public, "r", os.O_RDONLY)

        def open_public() -> None:
            with open(public, "rb"):
                pass

        # Measured before any pybpf audit hook exists in this process (they cannot be removed).
        base = best_ns(audit_public, events, runs)
        rows.append(("audit event, no hook installed", base))
        open_base = best_ns(open_public, events, runs)
        try:
            obj = load(OBJECT, **options)
        except PybpfError as error:
            # Reported, not raised: ./dev bench runs every benchmark in turn and stops at a failure.
            print(f"audit hook cost: NOT MEASURED, {OBJECT.name} does not load: {error}")
            return 0
        with obj:
            engine = obj.program("deny_secret").engine
            link = attach_audit(obj.program("deny_secret"), "open", runtime=HookRuntime())
            other = best_ns(lambda: sys.audit("pybpf.bench", 1), events, runs)
            rows.append(("other event (hook installed, not attached)", other))
            rows.append(("open event, program allows", best_ns(audit_public, events, runs)))
            denied = best_ns(lambda: denied_event(secret), events, runs)
            rows.append(("open event, program denies (PermissionError)", denied))
            open_hooked = best_ns(open_public, events, runs)
            if link.errors:
                raise SystemExit(f"the program failed: {link.last_error}")
            link.detach()
    print(f"audit hook cost, engine {engine}, best of {runs} runs of {events} events (ns per event)")
    print(f"{'event':<48}{'ns/event':>10}{'overhead':>10}")
    for label, value in rows:
        print(f"{label:<48}{value:>10.0f}{value - base:>10.0f}")
    print(f"{'open()+close(), no program':<48}{open_base:>10.0f}{0:>10.0f}")
    print(f"{'open()+close(), program allows':<48}{open_hooked:>10.0f}{open_hooked - open_base:>10.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
