"""``pybpf verify``: run our verifier on an object's programs or on raw bytecode.

``pybpf verify OBJ [--prog NAME] [--log LEVEL] [--type PROGTYPE] [--json]`` verifies every program
of an ELF object (or the one named); ``pybpf verify --raw FILE --type xdp`` verifies a raw
bytecode file. The exit status is 0 when every program is accepted, 1 otherwise. ``--log 1``
lists the instructions walked and ``--log 2`` adds the registers each one left behind, in the
kernel's log format. The text output also counts the instructions no path reaches (the loader
removes them before running, as the kernel does).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, TextIO

from pybpf.errors import LoadError, NotSupportedError
from pybpf.isa.codec import decode_program
from pybpf.obj import load_spec
from pybpf.platform import PROG_TYPES, BpfProgType, ProgTypeSpec
from pybpf.verifier import VerifierReport, verify, verify_program


def _prog_type(name: str | None) -> ProgTypeSpec | None:
    if name is None:
        return None
    wanted = name.lower()
    for spec in PROG_TYPES.values():
        if wanted in (spec.name.lower(), spec.prog_type.name.lower()):
            return spec
    try:
        return PROG_TYPES[BpfProgType(int(name))]
    except (ValueError, KeyError):
        known = ", ".join(sorted(spec.name for spec in PROG_TYPES.values()))
        raise NotSupportedError(f"unknown program type {name!r} (known: {known})") from None


def _entry(name: str, section: str, type_name: str, report: VerifierReport) -> dict[str, Any]:
    error = report.error
    return {
        "name": name,
        "section": section,
        "type": type_name,
        "accepted": report.accepted,
        "error": report.reason,
        "pc": error.pc if error is not None else None,
        "line": error.source if error is not None else None,
        "processed_insns": report.processed_insns,
    }


def _write_text(entry: dict[str, Any], report: VerifierReport, total: int, log_level: int, out: TextIO) -> None:
    if log_level >= 1:
        for line in report.log:
            out.write(line + "\n")
    verdict = "accepted" if report.accepted else "REJECTED"
    dead = total - len(report.seen) if report.accepted else 0
    tail = f", {dead} dead insns" if dead else ""
    out.write(f"{entry['name']} ({entry['section']}, {entry['type']}): {verdict}, "
              f"processed {report.processed_insns} insns, {report.peak_states} states{tail}\n")
    for diagnostic in report.diagnostics:
        for line in diagnostic.describe().splitlines():
            out.write(f"  {line}\n")
    for barrier in report.barriers:  # unprivileged loads only
        out.write(f"  {barrier.describe()}\n")


def _verify(args: argparse.Namespace, out: TextIO) -> int:
    chosen = _prog_type(args.type)
    results: list[tuple[dict[str, Any], VerifierReport, int]] = []
    if args.raw:
        if chosen is None:
            raise LoadError("--raw needs --type (xdp, socket_filter, ...)", file=args.file)
        insns = decode_program(Path(args.file).read_bytes(), check_jumps=False)
        report = verify(insns, prog_type=chosen, log_level=args.log, privileged=not args.unprivileged)
        results.append((_entry(Path(args.file).name, "", chosen.name, report), report, len(insns)))
    else:
        spec = load_spec(args.file)
        programs = list(spec.programs.values())
        if args.prog is not None:
            if args.prog not in spec.programs:
                raise LoadError(f"no program named {args.prog!r} (programs: {', '.join(spec.programs) or 'none'})",
                                file=args.file)
            programs = [spec.programs[args.prog]]
        for program in programs:
            report = verify_program(program, spec, prog_type=chosen, log_level=args.log,
                                    privileged=not args.unprivileged)
            type_name = chosen.name if chosen is not None else program.section_info.spec.name
            results.append((_entry(program.name, program.section, type_name, report), report,
                            len(program.instructions)))
    if args.json:
        out.write(json.dumps({"programs": [entry for entry, _, _ in results]}) + "\n")
    else:
        for entry, report, total in results:
            _write_text(entry, report, total, args.log, out)
    return 0 if all(report.accepted for _, report, _ in results) else 1


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("verify", help="verify programs with the kernel's rules (no kernel needed)")
    parser.add_argument("file", help="an ELF object, or raw bytecode with --raw")
    parser.add_argument("--prog", help="only the program with this function name")
    parser.add_argument("--log", type=int, default=0, choices=(0, 1, 2),
                        help="1: instructions walked; 2: and the registers each one left (kernel format)")
    parser.add_argument("--type", help="program type (xdp, socket_filter...); default: from the section name")
    parser.add_argument("--raw", action="store_true", help="FILE is raw bytecode (needs --type)")
    parser.add_argument("--unprivileged", action="store_true",
                        help="the rules for a loader without CAP_BPF (Spectre mitigations: the report "
                             "lists the speculation barriers the kernel would insert)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=_verify)
