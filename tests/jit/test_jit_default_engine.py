"""The JIT as the default engine: which programs get it, with or without bounds checks, and the fallback.

``load()`` runs verified programs under the JIT and unverified ones under the interpreter; native code
drops its bounds checks only where :func:`~pybpf.runtime.loader.unchecked_native_hazard` finds nothing
the verifier leaves unproved.
"""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import pytest
from jit_build import build_object

from pybpf.asm import assemble
from pybpf.cli.main import main
from pybpf.errors import NotSupportedError
from pybpf.isa.insn import LabeledInsn, LoadImm64, Reg
from pybpf.isa.opcodes import PseudoSrc
from pybpf.platform.progtypes import prog_type_spec
from pybpf.platform.uapi_generated import BpfProgType
from pybpf.runtime.context import convert_ctx_access
from pybpf.runtime.loader import load, unchecked_native_hazard
from pybpf.vm.jit import JitProgram

PROGS = Path(__file__).resolve().parents[1] / "progs"
ETHERNET = bytes.fromhex("ffffffffffff0000000000010800")
PACKET = ETHERNET + bytes.fromhex("4500002e00004000401100007f0000017f000001") + bytes(26)


def cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


# -- the engine rule --------------------------------------------------------------------------


def test_a_verified_program_runs_unchecked_native_code_by_default() -> None:
    with load(PROGS / "xdp_lb.o") as native, load(PROGS / "xdp_lb.o", engine="interp") as reference:
        program = native.program("xdp_lb")
        assert (program.engine, program.verified, program.jit_bounds_checks) == ("jit", True, False)
        assert "verifier accepted" in program.engine_reason
        got = program.test_run(PACKET)
        expected = reference.program("xdp_lb").test_run(PACKET)
        assert program.jit.bounds_checks is False  # what was compiled, not only what was decided
    assert (got.engine, expected.engine) == ("jit", "interp")
    assert (got.retval, got.data_out, got.ctx_out) == (expected.retval, expected.data_out, expected.ctx_out)
    assert got.instructions == 0 < expected.instructions  # only the interpreter counts


def test_an_unverified_program_runs_on_the_interpreter_and_never_unchecked() -> None:
    with load(PROGS / "xdp_firewall.o", verify=False) as obj:
        program = obj.program("xdp_firewall")
        assert (program.engine, program.verified, program.jit_bounds_checks) == ("interp", False, True)
        assert "not verified" in program.engine_reason
        assert program.test_run(PACKET).engine == "interp"
        native = program.test_run(PACKET, engine="jit")  # asked for: native, but checked
        assert program.jit.bounds_checks is True
    assert native.engine == "jit"
    with load(PROGS / "xdp_firewall.o", verify=False, engine="jit") as obj:
        program = obj.program("xdp_firewall")
        assert (program.engine, program.jit_bounds_checks) == ("jit", True)


def test_bounds_checks_kept_on_request() -> None:
    with load(PROGS / "xdp_firewall.o", jit_bounds_checks=True) as checked, load(PROGS / "xdp_firewall.o") as fast:
        kept = checked.program("xdp_firewall")
        assert (kept.engine, kept.jit_bounds_checks) == ("jit", True)
        assert "keeps bounds checks: asked for" in kept.engine_reason
        first, second = kept.test_run(PACKET), fast.program("xdp_firewall").test_run(PACKET)
        assert kept.jit.bounds_checks is True
        assert fast.program("xdp_firewall").jit.bounds_checks is False
    assert (first.retval, first.data_out) == (second.retval, second.data_out)


def test_explicit_engines_still_win_and_are_recorded() -> None:
    with load(PROGS / "xdp_firewall.o", engine="interp") as obj:
        program = obj.program("xdp_firewall")
        assert (program.engine, program.engine_reason) == ("interp", "interp: chosen explicitly")
        assert program.test_run(PACKET).instructions > 0
        program.engine = "jit"
        assert program.engine_reason == "jit: chosen explicitly"
        assert program.test_run(PACKET).engine == "jit"


def test_a_default_jit_that_cannot_compile_falls_back_with_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(interpreter: object, **options: object) -> JitProgram:
        raise NotSupportedError("LLVM could not compile the program: test")

    monkeypatch.setattr(JitProgram, "of", refuse)
    with load(PROGS / "xdp_firewall.o") as obj:
        program = obj.program("xdp_firewall")
        assert program.engine == "jit"  # decided at load; compiled on the first run
        result = program.test_run(PACKET)
        assert (result.engine, program.engine) == ("interp", "interp")
        assert result.instructions > 0
        assert "JIT cannot compile" in program.engine_reason
        assert "LLVM could not compile the program: test" in program.engine_reason
    with load(PROGS / "xdp_firewall.o", engine="jit") as obj, pytest.raises(NotSupportedError, match="test"):
        obj.program("xdp_firewall").test_run(PACKET)  # asked for explicitly: no silent fallback


def test_every_test_program_agrees_with_the_interpreter_under_the_default_engine() -> None:
    """The unchecked native code of each verified test program gives the interpreter's results."""
    checked = 0
    for path in [*sorted(PROGS.glob("xdp_*.o")), PROGS / "tc_mark.o", PROGS / "socket_filter.o"]:
        with load(path, seed=3) as native, load(path, seed=3, engine="interp") as reference:
            for name, program in native.programs.items():
                assert not program.jit_bounds_checks, program.engine_reason
                for packet in (PACKET, PACKET + bytes(100), bytes(60)):
                    got = program.test_run(packet)
                    expected = reference.program(name).test_run(packet)
                    assert got.engine == "jit"
                    assert (got.retval, got.data_out) == (expected.retval, expected.data_out), (path.name, name)
                    checked += 1
    assert checked >= 12


# -- when verified programs keep their checks -------------------------------------------------


def _hazard(
    text: str, prog_type: BpfProgType = BpfProgType.XDP, *, patch: dict[int, LoadImm64] | None = None
) -> str | None:
    insns: list[LabeledInsn] = list(assemble(text))
    for pc, insn in (patch or {}).items():
        insns = [replace(item, insn=insn) if item.pc == pc else item for item in insns]
    conversion = convert_ctx_access(insns, prog_type_spec(prog_type).context)
    return unchecked_native_hazard(insns, conversion, prog_type)


def test_plain_programs_have_no_hazard() -> None:
    assert _hazard("ldxw %r2, [%r1+0]\nldxw %r3, [%r1+4]\nmov %r0, 2\nexit") is None
    # One frame: spilling the context is followed by the conversion's dataflow.
    assert _hazard("stxdw [%r10-8], %r1\nldxdw %r1, [%r10-8]\nldxw %r0, [%r1+0]\nmov %r0, 2\nexit") is None
    # Functions that never see the context spilled are fine too.
    assert _hazard("mov %r1, 1\ncall local f\nmov %r0, 2\nexit\nf:\nmov %r0, %r1\nexit") is None


def test_socket_and_btf_pointers_keep_the_checks() -> None:
    lookup = "mov %r6, %r1\nmov %r2, %r10\nadd %r2, -16\nmov %r3, 12\nmov %r4, 0\nmov %r5, 0\ncall 84\nmov %r0, 0\nexit"
    reason = _hazard(lookup, BpfProgType.SCHED_CLS)  # 84: bpf_sk_lookup_tcp
    assert reason is not None
    assert "sk_lookup_tcp" in reason
    reason = _hazard("ldxdw %r2, [%r1+168]\nmov %r0, 0\nexit", BpfProgType.SCHED_CLS)  # __sk_buff.sk
    assert reason is not None
    assert "sk" in reason
    ksym = LoadImm64(Reg.R1, 7, 0, PseudoSrc.BTF_ID)
    reason = _hazard("lddw %r1, 0\nmov %r0, 0\nexit", patch={0: ksym})
    assert reason is not None
    assert "ksym" in reason


def test_a_context_pointer_escaping_into_functions_keeps_the_checks() -> None:
    spilled = "stxdw [%r10-8], %r1\nmov %r1, %r10\nadd %r1, -8\ncall local f\nmov %r0, 2\nexit\nf:\nmov %r0, 0\nexit"
    reason = _hazard(spilled)
    assert reason is not None
    assert "stored to memory" in reason
    returned = "call local f\nmov %r0, 2\nexit\nf:\nmov %r0, %r1\nexit"
    reason = _hazard(returned)
    assert reason is not None
    assert "returns the context" in reason


def test_a_plain_buffer_context_keeps_the_checks() -> None:
    insns = assemble("ldxdw %r0, [%r1+0]\nexit")
    reason = unchecked_native_hazard(insns, None, BpfProgType.SYSCALL)
    assert reason is not None
    assert "caller-sized" in reason


# -- the command line -------------------------------------------------------------------------


def test_prog_run_defaults_to_the_jit_and_takes_the_interpreter_on_request() -> None:
    argv = ["prog", "run", str(PROGS / "xdp_lb.o"), "--prog", "xdp_lb", "--data-in", PACKET.hex(), "--json"]
    results = [cli(*argv), cli(*argv, "--engine", "interp"), cli(*argv, "--jit-bounds-checks")]
    assert [code for code, _ in results] == [0, 0, 0]
    runs = [json.loads(out)["runs"][0] for _, out in results]
    assert runs[0]["retval"] == runs[1]["retval"] == runs[2]["retval"]
    assert runs[0]["data_out"] == runs[1]["data_out"] == runs[2]["data_out"]


def test_run_of_raw_code_stays_on_the_interpreter_unless_asked(tmp_path: Path) -> None:
    source = tmp_path / "prog.s"
    source.write_text("mov %r0, 7\nlsh %r0, 3\nexit\n")
    code, out = cli("run", str(source), "--json")
    assert code == 0
    assert json.loads(out) == {"r0": 56, "instructions": 3}  # counted: the interpreter ran it
    code, out = cli("run", str(source), "--json", "--engine", "jit")
    assert code == 0
    assert json.loads(out) == {"r0": 56, "instructions": 0}


ESCAPE_SOURCE = """
#include <linux/bpf.h>
#include "bpf_helpers.h"

static __attribute__((noinline)) int first_byte(struct xdp_md **slot)
{
    struct xdp_md *ctx = *slot;  /* the context, read back from the caller's stack */
    unsigned char *data = (unsigned char *)(long)ctx->data;
    unsigned char *end = (unsigned char *)(long)ctx->data_end;
    if (data + 1 > end)
        return 1;
    return data[0];
}

SEC("xdp")
int escape(struct xdp_md *ctx)
{
    struct xdp_md *volatile held = ctx;
    return first_byte((struct xdp_md **)&held);
}

char LICENSE[] SEC("license") = "GPL";
"""


def test_a_context_escape_is_converted_from_the_verifiers_record(tmp_path: Path) -> None:
    """Verified, the conversion follows the verifier's PTR_TO_CTX record, so even a context read
    through the caller's stack is converted and the program runs unchecked; unverified, the
    dataflow conversion is used and the escape keeps the checks."""
    path = build_object(ESCAPE_SOURCE, tmp_path)
    with load(path) as obj:
        program = obj.program("escape")
        assert program.conversion is not None and program.conversion.by_verifier
        assert (program.verified, program.engine, program.jit_bounds_checks) == (True, "jit", False)
        assert program.test_run(bytes([42]) + bytes(63)).retval == 42
    with load(path, verify=False, engine="jit") as obj:
        program = obj.program("escape")
        assert program.jit_bounds_checks
        assert program.test_run(bytes([42]) + bytes(63)).retval == 42


def test_a_context_read_through_the_callers_stack_reads_the_packet(tmp_path: Path) -> None:
    with load(build_object(ESCAPE_SOURCE, tmp_path), engine="interp") as obj:
        assert obj.program("escape").test_run(bytes([42]) + bytes(63)).retval == 42
