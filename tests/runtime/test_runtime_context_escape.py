"""Context accesses the conversion must find wherever the context pointer travels.

The context pointer may be spilled to a caller's stack and read back in a callee, written into a
caller's stack by a callee, returned by a subprogram, or reached by a bpf_loop callback through
its callback_ctx. Each access must be converted (``ctx->data`` becomes a load of the internal
image's 8-byte slot) exactly where the verifier saw PTR_TO_CTX. The programs run under the
interpreter and the JIT, with and without verification (the verifier's per-pc pointer types vs
the conversion's own dataflow), and under the kernel's BPF_PROG_TEST_RUN.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kernel_oracle import kernel_bpffs

from pybpf.asm import assemble, assemble_bytes
from pybpf.errors import ContextAccessError, PybpfError, VerifierRejectedError
from pybpf.isa.insn import LabeledInsn, Load
from pybpf.isa.opcodes import Size
from pybpf.kernel.objects import obj_get
from pybpf.kernel.probe import available
from pybpf.kernel.progs import prog_load_with_log, prog_test_run
from pybpf.obj import load_spec
from pybpf.platform.progtypes import prog_type_spec
from pybpf.platform.uapi_generated import BpfProgType
from pybpf.runtime.context import InternalLayout, convert_ctx_access, dataflow, moved_ptr_types
from pybpf.runtime.loader import load, unchecked_native_hazard
from pybpf.runtime.progtypes import NO_CONTEXT_CONVERSION
from pybpf.runtime.relocate import apply_core
from pybpf.verifier import RegType, verify, verify_program

PROGS = Path(__file__).resolve().parents[1] / "progs"
XDP = prog_type_spec(BpfProgType.XDP).context

SOURCE = r"""
#include <linux/bpf.h>
#include "bpf_helpers.h"

/* The reported program: the callee reads the context back from its caller's stack. */
static __attribute__((noinline)) int first_byte(struct xdp_md **slot)
{
    struct xdp_md *ctx = *slot;
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

/* Two frames down: the pointer to the outermost frame's slot is passed on. */
static __attribute__((noinline)) int relay(struct xdp_md **slot)
{
    return first_byte(slot) + 1;
}

SEC("xdp")
int escape_deep(struct xdp_md *ctx)
{
    struct xdp_md *volatile held = ctx;
    return relay((struct xdp_md **)&held);
}

/* The callee writes the context into its caller's stack; the caller reads ctx->data through it. */
static __attribute__((noinline)) void put(struct xdp_md **slot, struct xdp_md *ctx)
{
    *slot = ctx;
}

SEC("xdp")
int stored_by_callee(struct xdp_md *ctx)
{
    struct xdp_md *volatile held = 0;
    put((struct xdp_md **)&held, ctx);
    struct xdp_md *back = held;
    unsigned char *data = (unsigned char *)(long)back->data;
    unsigned char *end = (unsigned char *)(long)back->data_end;
    if (data + 2 > end)
        return 1;
    return data[1];
}

/* The context returned by a subprogram. */
static __attribute__((noinline)) struct xdp_md *pick(struct xdp_md **slot)
{
    return *slot;
}

SEC("xdp")
int returned(struct xdp_md *ctx)
{
    struct xdp_md *volatile held = ctx;
    struct xdp_md *back = pick((struct xdp_md **)&held);
    unsigned char *data = (unsigned char *)(long)back->data;
    unsigned char *end = (unsigned char *)(long)back->data_end;
    if (data + 3 > end)
        return 1;
    return data[2];
}

/* A bpf_loop callback reads the context from the caller's stack through callback_ctx. */
struct loop_state {
    struct xdp_md *ctx;
    __u32 sum;
};

static long add_byte(__u32 index, void *arg)
{
    struct loop_state *st = arg;
    struct xdp_md *ctx = st->ctx;
    unsigned char *data = (unsigned char *)(long)ctx->data;
    unsigned char *end = (unsigned char *)(long)ctx->data_end;
    if (index >= 4 || data + index + 1 > end)
        return 1;
    st->sum += data[index];
    return 0;
}

SEC("xdp")
int callback(struct xdp_md *ctx)
{
    struct loop_state st = { .ctx = ctx, .sum = 0 };
    bpf_loop(4, add_byte, &st, 0);
    return st.sum & 0xff;
}

char LICENSE[] SEC("license") = "GPL";
"""

# What each program computes from the packet, read off the C source above.
EXPECTED: dict[str, Callable[[bytes], int]] = {
    "escape": lambda packet: packet[0],
    "escape_deep": lambda packet: packet[0] + 1,
    "stored_by_callee": lambda packet: packet[1],
    "returned": lambda packet: packet[2],
    "callback": lambda packet: sum(packet[:4]) & 0xFF,
}
PACKETS = [bytes([42, 7, 9, 3]) + bytes(60), bytes([200, 100, 60, 250]) + bytes(range(60))]


@pytest.fixture(scope="module")
def program_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    clang = shutil.which("clang-19")
    if clang is None:
        pytest.skip("clang-19 is not installed: the test programs cannot be built")
    directory = tmp_path_factory.mktemp("context_escape")
    source, obj = directory / "escape.c", directory / "escape.o"
    source.write_text(SOURCE)
    arch = f"/usr/include/{platform.machine()}-linux-gnu"
    flags = ["-O2", "-g", "-target", "bpf", "-mcpu=v3", f"-I{PROGS}", f"-I{arch}"]
    subprocess.run([clang, *flags, "-c", str(source), "-o", str(obj)], check=True, capture_output=True)
    return obj


@pytest.fixture(scope="module")
def kernel_progs(program_file: Path) -> Iterator[Path]:
    """The object loaded by the kernel (bpftool, private bpffs); skipped when that is impossible."""
    for directory in kernel_bpffs():
        result = subprocess.run(
            ["bpftool", "prog", "loadall", str(program_file), str(directory / "progs")],
            capture_output=True, text=True, check=False,
        )
        if result.returncode != 0:
            pytest.fail(f"the kernel refused the object: {result.stderr[-400:]}")
        yield directory / "progs"


# -- the programs, on every engine --------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_interpreter_and_jit_read_the_packet_through_the_escaped_context(program_file: Path, name: str) -> None:
    with (
        load(program_file, engine="interp") as interp,
        load(program_file, engine="jit") as jit,
        load(program_file, verify=False) as unverified,
    ):
        for packet in PACKETS:
            results = [obj.program(name).test_run(packet) for obj in (interp, jit, unverified)]
            assert [result.engine for result in results] == ["interp", "jit", "interp"]
            assert [result.retval for result in results] == [EXPECTED[name](packet)] * 3, name


@pytest.mark.kernel
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_same_results_as_the_kernel(program_file: Path, kernel_progs: Path, name: str) -> None:
    with load(program_file, engine="interp") as interp, load(program_file, engine="jit") as jit:
        for packet in PACKETS:
            with obj_get(kernel_progs / name) as fd:
                kernel = prog_test_run(fd, packet)
            got = (interp.program(name).test_run(packet), jit.program(name).test_run(packet))
            assert [result.retval for result in got] == [kernel.retval, kernel.retval], name
            assert [result.data_out for result in got] == [kernel.data_out, kernel.data_out], name


# -- the verifier's record and the dataflow agree -------------------------------------------------


def _both_ways(path: Path) -> Iterator[tuple[str, tuple[LabeledInsn, ...], dict[int, RegType]]]:
    """Each converted program of an object: its instructions and the verifier's pointer types."""
    spec = load_spec(path)
    for name, program in spec.programs.items():
        if program.prog_type in NO_CONTEXT_CONVERSION:
            continue
        report = verify_program(program, spec)
        assert report.accepted, (path.name, name, report.reason)
        yield name, tuple(apply_core(program, program.instructions, spec.btf, None)), dict(report.ptr_types)


def test_the_escaped_context_is_converted_where_the_verifier_saw_it(program_file: Path) -> None:
    spec = load_spec(program_file)
    for name, insns, ptr_types in _both_ways(program_file):
        context = spec.programs[name].section_info.spec.context
        by_verifier = convert_ctx_access(insns, context, ptr_types=ptr_types)
        assert by_verifier.by_verifier
        ctx_pcs = {pc for pc, kind in ptr_types.items() if kind is RegType.PTR_TO_CTX}
        assert {access.pc for access in by_verifier.accesses} == ctx_pcs
        # ctx->data and ctx->data_end in every program: the pointer fields, now 8-byte loads.
        data = [access for access in by_verifier.accesses if access.field in ("data", "data_end")]
        assert len(data) >= 2, name
        rewritten = {item.pc: item.insn for item in by_verifier.insns}
        for access in data:
            insn = rewritten[access.pc]
            assert isinstance(insn, Load)
            assert insn.size is Size.DW
            assert insn.off == InternalLayout.of(context).internal_offset(
                context.field(access.field), access.offset)
        dataflow = convert_ctx_access(insns, context)
        assert (dataflow.insns, dataflow.accesses) == (by_verifier.insns, by_verifier.accesses), name


def test_the_dataflow_agrees_with_the_verifier_on_every_test_program() -> None:
    compared = 0
    for path in sorted(PROGS.glob("*.o")):
        try:
            programs = list(_both_ways(path))
        except PybpfError:
            continue  # an object the runtime cannot load at all (kconfig externs)
        spec = load_spec(path)
        for name, insns, ptr_types in programs:
            context = spec.programs[name].section_info.spec.context
            by_verifier = convert_ctx_access(insns, context, ptr_types=ptr_types)
            dataflow = convert_ctx_access(insns, context)
            assert (dataflow.insns, dataflow.accesses) == (by_verifier.insns, by_verifier.accesses), (path, name)
            compared += 1
    assert compared >= 20


def test_moved_ptr_types_follow_the_dead_code_rewrite() -> None:
    moved = moved_ptr_types({0: RegType.PTR_TO_CTX, 3: RegType.PTR_TO_STACK, 5: RegType.PTR_TO_CTX}, {0: 0, 5: 2})
    assert moved == {0: RegType.PTR_TO_CTX, 2: RegType.PTR_TO_CTX}


# -- one instruction, two pointer types -----------------------------------------------------------

# pc 5 loads through the context on one path and through the stack on the other.
MIXED_PATHS = """
ldxw %r2, [%r1+0]
mov %r3, %r1
jeq %r2, 0, +2
mov %r3, %r10
add %r3, -8
ldxw %r0, [%r3+0]
mov %r0, 0
exit
"""

# The same through a function called with the context from one site and a stack pointer from
# the other: one instruction in the callee, two pointer types.
MIXED_CALLERS = """
mov %r6, %r1
call local f
mov %r1, %r10
add %r1, -8
stdw [%r10-8], 0
call local f
mov %r0, 0
exit
f:
ldxw %r0, [%r1+0]
exit
"""


@pytest.mark.parametrize("text", [MIXED_PATHS, MIXED_CALLERS], ids=["two paths", "two callers"])
def test_an_instruction_through_the_context_and_something_else_is_refused(text: str) -> None:
    insns = assemble(text)
    report = verify(insns, prog_type=BpfProgType.XDP)
    assert not report.accepted
    assert report.reason == "same insn cannot be used with different pointers"
    assert report.error is not None
    with pytest.raises(ContextAccessError, match="context pointer on some paths only") as refused:
        convert_ctx_access(insns, XDP)  # the dataflow fallback refuses the same instruction
    assert refused.value.pc == report.error.pc


def test_one_pointer_type_per_instruction_through_the_stack_is_accepted() -> None:
    """One stack slot on one path, another on the other: the kernel allows it (one pointer type)."""
    text = ("mov %r3, %r10\nadd %r3, -8\nldxw %r2, [%r1+0]\njeq %r2, 0, +1\nadd %r3, -8\n"
            "stdw [%r3+0], 1\nmov %r0, 0\nexit")
    insns = assemble(text)
    assert verify(insns, prog_type=BpfProgType.XDP).accepted
    assert [access.pc for access in convert_ctx_access(insns, XDP).accesses] == [2]


@pytest.mark.kernel
@pytest.mark.parametrize("text", [MIXED_PATHS, MIXED_CALLERS], ids=["two paths", "two callers"])
def test_the_kernel_refuses_an_instruction_through_two_pointer_types(text: str) -> None:
    ok, reason = available()
    if os.geteuid() != 0 or not ok:
        pytest.skip(f"bpf() unavailable: {reason or 'not root'}")
    with pytest.raises(VerifierRejectedError) as refused:
        prog_load_with_log(BpfProgType.XDP, assemble_bytes(text), log_level=1).fd.close()
    assert "same insn cannot be used with different pointers" in refused.value.log


# -- the dataflow across frames -------------------------------------------------------------------


def _ctx_pcs(text: str) -> list[int]:
    return [access.pc for access in convert_ctx_access(assemble(text), XDP).accesses]


def test_a_callee_overwriting_the_callers_context_slot_kills_it() -> None:
    # The callee stores a number over the caller's spilled context: the reload is not the context.
    text = ("stxdw [%r10-8], %r1\nmov %r1, %r10\nadd %r1, -8\ncall local f\nldxdw %r1, [%r10-8]\n"
            "ldxw %r0, [%r1+0]\nexit\nf:\nstdw [%r1+0], 0\nmov %r0, 0\nexit")
    assert _ctx_pcs(text) == []
    # Without the overwrite, the same reload is the context.
    assert _ctx_pcs(text.replace("stdw [%r1+0], 0", "mov %r2, 0")) == [5]


def test_a_callback_run_again_sees_what_its_last_run_left() -> None:
    # bpf_loop's callback reads the context from callback_ctx, then overwrites the slot: on its
    # second run the same load goes through a number, so the instruction mixes both.
    text = ("stxdw [%r10-8], %r1\nmov %r1, 2\nlddw %r2, func cb\nmov %r3, %r10\nadd %r3, -8\nmov %r4, 0\n"
            "call 181\nmov %r0, 0\nexit\n"
            "cb:\nldxdw %r3, [%r2+0]\nldxw %r0, [%r3+0]\nstdw [%r2+0], 0\nmov %r0, 0\nexit")
    with pytest.raises(ContextAccessError, match="some paths only"):
        convert_ctx_access(assemble(text), XDP)
    assert not verify(assemble(text), prog_type=BpfProgType.XDP).accepted


def test_unverified_programs_still_keep_the_jit_bounds_checks(program_file: Path) -> None:
    with load(program_file, verify=False, engine="jit") as obj:
        assert obj.program("escape").jit_bounds_checks


def test_a_conversion_by_the_verifier_leaves_no_context_hazard(program_file: Path) -> None:
    spec = load_spec(program_file)
    for name, insns, ptr_types in _both_ways(program_file):
        context = spec.programs[name].section_info.spec.context
        dataflow = convert_ctx_access(insns, context)
        reason = unchecked_native_hazard(insns, dataflow, BpfProgType.XDP)
        assert reason is not None  # the dataflow's conversion is not proved exact: checks kept
        exact = convert_ctx_access(insns, context, ptr_types=ptr_types)
        assert unchecked_native_hazard(insns, exact, BpfProgType.XDP) is None, name


def test_the_dataflow_gives_up_on_too_many_call_chains(monkeypatch: pytest.MonkeyPatch) -> None:
    # Three functions deep, each calling the next twice: 8 call chains reach the innermost load.
    lines = []
    for level in range(3):
        lines += [f"f{level}:", "mov %r6, %r1"]
        for _ in range(2):
            lines += ["mov %r1, %r6", f"call local f{level + 1}"]
        lines += ["mov %r0, 0", "exit"]
    lines += ["f3:", "ldxw %r0, [%r1+0]", "exit"]
    insns = assemble("\n".join(lines))
    assert _ctx_pcs("\n".join(lines)) == [len(insns) - 2]
    monkeypatch.setattr(dataflow, "MAX_STEPS", 50)
    with pytest.raises(ContextAccessError, match="gave up after 50 steps"):
        convert_ctx_access(insns, XDP)


# A packet pointer spilled over the context's slot through a stack pointer whose offset only the
# verifier knows (fp + r5, r5 = -8): the reload at pc 7 is the packet, and pc 12 reads the packet.
LOST_STACK_POINTER = """
stxdw [%r10-8], %r1
ldxw %r2, [%r1+0]
ldxw %r7, [%r1+4]
mov %r5, -8
mov %r3, %r10
add %r3, %r5
stxdw [%r3+0], %r2
ldxdw %r4, [%r10-8]
mov %r6, %r4
add %r6, 4
mov %r0, 0
jgt %r6, %r7, +1
ldxw %r0, [%r4+0]
exit
"""


def test_a_store_through_a_stack_pointer_the_dataflow_lost_is_not_ignored() -> None:
    insns = assemble(LOST_STACK_POINTER)
    report = verify(insns, prog_type=BpfProgType.XDP)
    assert report.accepted
    assert report.ptr_types[12] is RegType.PTR_TO_PACKET
    exact = convert_ctx_access(insns, XDP, ptr_types=report.ptr_types)
    assert [access.pc for access in exact.accesses] == [1, 2]
    # The dataflow cannot tell which slot the store hit: the reload may be the context or the
    # packet, and it refuses rather than rewrite a packet read as ctx->data.
    with pytest.raises(ContextAccessError, match="some paths only") as refused:
        convert_ctx_access(insns, XDP)
    assert refused.value.pc == 12
    # With the offset in the instruction, the dataflow follows the store like the verifier.
    precise = assemble(LOST_STACK_POINTER.replace("add %r3, %r5", "add %r3, -8"))
    assert [access.pc for access in convert_ctx_access(precise, XDP).accesses] == [1, 2]


def test_numbers_stored_anywhere_leave_the_spilled_context_alone() -> None:
    # A variable-offset store of a number (a stack array indexed at run time) cannot turn the
    # context's slot into a pointer the verifier would let the program dereference.
    text = ("stxdw [%r10-8], %r1\nldxw %r5, [%r1+12]\nand %r5, 8\nmov %r3, %r10\nadd %r3, -24\nadd %r3, %r5\n"
            "stdw [%r3+0], 7\nldxdw %r1, [%r10-8]\nldxw %r0, [%r1+4]\nexit")
    insns = assemble(text)
    assert verify(insns, prog_type=BpfProgType.XDP).accepted
    assert [access.pc for access in convert_ctx_access(insns, XDP).accesses] == [1, 8]


def test_bpf_find_vma_passes_its_callback_ctx_in_r4() -> None:
    # bpf_find_vma(task, addr, callback_fn, callback_ctx, flags): callback(task, vma, callback_ctx).
    text = ("stxdw [%r10-8], %r1\nmov %r1, 0\nmov %r2, 0\nlddw %r3, func cb\nmov %r4, %r10\nadd %r4, -8\n"
            "mov %r5, 0\ncall 180\nmov %r0, 0\nexit\n"
            "cb:\nldxdw %r3, [%r3+0]\nldxw %r0, [%r3+12]\nexit")
    assert _ctx_pcs(text) == [12]
