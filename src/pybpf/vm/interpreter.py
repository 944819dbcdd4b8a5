"""The reference interpreter.

An :class:`Interpreter` is built once per program from its labeled instructions: every pc gets
one closure (see :mod:`pybpf.vm.alu_ops`, :mod:`pybpf.vm.mem_ops` and the control-flow builders
below), so running never inspects an opcode. :meth:`Interpreter.run` executes from pc 0 with
r1 = the context (or input) address, r2 = its length, and r10 = the top of a fresh 512-byte stack.

Code addresses: ``lddw rX, <func>`` (``PseudoSrc.FUNC``) loads ``CODE_BASE + pc * 8`` for the
function's first pc. ``CODE_BASE`` lies in the kernel half of the x86-64 address space, so it can
never collide with a region's (user-space) address. A code address only means something to the
program that produced it; ``callx`` and :meth:`ExecutionContext.call_function` translate it back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pybpf.errors import HelperError, PybpfError, VmError
from pybpf.isa.codec import check_jump_targets, decode_program
from pybpf.isa.insn import (
    AddrSpaceCast,
    Atomic,
    Bin,
    Call,
    CallKfunc,
    CallLocal,
    CallReg,
    Endian,
    Exit,
    Goto,
    Instruction,
    Jump,
    LabeledInsn,
    Load,
    LoadImm64,
    MayGoto,
    Neg,
    PacketLoad,
    Store,
    slot_count,
)
from pybpf.isa.opcodes import PseudoSrc
from pybpf.vm.alu_ops import build_bin, build_endian, build_jump, build_neg
from pybpf.vm.arena import ArenaMemory
from pybpf.vm.code_addresses import CODE_BASE, code_address, function_pc
from pybpf.vm.execution import (
    DEFAULT_INSTRUCTION_LIMIT,
    EXIT,
    U64,
    ExecutionContext,
    HelperFn,
    Op,
    ProgramStop,
    PseudoResolver,
    RunResult,
    call_name,
    execute,
    kfunc_key,
    unknown_call,
)
from pybpf.vm.mem_ops import (
    build_arena_atomic,
    build_arena_load,
    build_arena_store,
    build_atomic,
    build_cast_to_user,
    build_load,
    build_packet_load,
    build_store,
)
from pybpf.vm.memory import AddressSpace, Region

"""Code address of pc 0 (see the module docstring)."""


class Interpreter:
    """A program prepared for execution: one closure per pc.

    ``helpers`` maps helper ids to implementations; ``resolver`` turns ``lddw`` pseudo sources
    other than plain constants and functions into values (preparing a program that needs one
    without it raises :class:`~pybpf.errors.VmError`); ``memory`` is the address space shared
    with maps and helpers (a new one if omitted).
    """

    def __init__(
        self,
        insns: Sequence[LabeledInsn],
        *,
        helpers: Mapping[int, HelperFn] | None = None,
        resolver: PseudoResolver | None = None,
        memory: AddressSpace | None = None,
        instruction_limit: int = DEFAULT_INSTRUCTION_LIMIT,
        name: str = "program",
        arena: ArenaMemory | None = None,
    ) -> None:
        if not insns:
            raise VmError(f"program {name!r} has no instructions")
        self.name = name
        self.insns = tuple(insns)
        self.helpers: Mapping[int, HelperFn] = helpers if helpers is not None else {}
        self.resolver = resolver
        self.memory = memory if memory is not None else AddressSpace()
        self.instruction_limit = instruction_limit
        self.arena = arena  # the program's arena (BPF_PROBE_MEM32 accesses, addr_space_cast)
        last = self.insns[-1]
        self.slot_total = last.pc + slot_count(last.insn)
        self._starts = frozenset(item.pc for item in self.insns)
        check_jump_targets(self.insns, self.slot_total)
        self.ops: list[Op] = self._build_ops()

    @classmethod
    def from_bytecode(cls, data: bytes, **options: Any) -> Interpreter:
        """Decode (and validate) bytecode, then prepare it; ``options`` as for the constructor."""
        return cls(decode_program(data), **options)

    # -- code addresses -------------------------------------------------------------------------

    def code_address(self, pc: int) -> int:
        """The code address of the instruction at ``pc``."""
        return code_address(pc)

    def function_pc(self, target: int) -> int | None:
        """The pc a code address (or a plain pc) designates, or None if it is not an instruction here."""
        return function_pc(target, self._starts)

    # -- running --------------------------------------------------------------------------------

    def run(
        self,
        context: Region | None = None,
        *,
        packet: Region | None = None,
        registers: Mapping[int, int] | None = None,
        instruction_limit: int | None = None,
        user: object = None,
    ) -> RunResult:
        """Run the program once.

        r1/r2 are the address and size of ``context`` (0 when there is none); ``registers``
        overrides initial registers r1-r9 afterwards. ``context`` and ``packet`` are mapped for
        the run if they are not mapped already. ``packet`` is what LD_ABS/LD_IND read.
        """
        limit = self.instruction_limit if instruction_limit is None else instruction_limit
        run = ExecutionContext(self, limit, packet, user)
        memory = self.memory
        transient = [region for region in (context, packet) if region is not None and region not in memory]
        for region in transient:
            memory.add(region)
        regs = run.regs
        try:
            if context is not None:
                regs[1], regs[2] = context.address, context.size
            for number, value in (registers or {}).items():
                if not 0 <= number <= 9:
                    raise VmError(f"initial registers must be r0-r9, found r{number}")
                regs[number] = value & U64
            regs[10] = run.stack_top(0)
            try:
                execute(run, 0)
            except ProgramStop as stop:
                regs[0] = stop.r0
        finally:
            run.release()
            for region in transient:
                memory.remove(region)
        return RunResult(regs[0], run.executed, tuple(regs))

    # -- preparation ----------------------------------------------------------------------------

    def _build_ops(self) -> list[Op]:
        ops: list[Op] = [_unreachable(pc, "the second slot of an lddw") for pc in range(self.slot_total)]
        ops.append(_unreachable(self.slot_total, "past the last instruction (the program fell off its end)"))
        for item in self.insns:
            ops[item.pc] = self._build(item.insn, item.pc)
        return ops

    def _build(self, insn: Instruction, pc: int) -> Op:
        match insn:
            case Bin():
                return build_bin(insn, pc)
            case Jump():
                return build_jump(insn, pc)
            case Atomic(arena=True):
                return build_arena_atomic(insn, pc, self.arena, self.memory.atomic_lock)
            case Load(arena=True):
                return build_arena_load(insn, pc, self.arena)
            case Store(arena=True):
                return build_arena_store(insn, pc, self.arena)
            case Load():
                return build_load(insn, pc, self.memory)
            case Store():
                return build_store(insn, pc, self.memory)
            case AddrSpaceCast():
                return build_cast_to_user(insn, pc, self.arena)
            case LoadImm64():
                return _constant(int(insn.dst), self._lddw_value(insn, pc), pc + 2)
            case Goto(off):
                return _goto(pc + 1 + off)
            case Exit():
                return _exit
            case Neg():
                return build_neg(insn, pc)
            case Endian():
                return build_endian(insn, pc)
            case Atomic():
                return build_atomic(insn, pc, self.memory)
            case PacketLoad():
                return build_packet_load(insn, pc)
            case MayGoto(off):
                return _may_goto(pc + 1 + off, pc + 1)
            case Call(helper):
                return self._call_helper(helper, pc)
            case CallLocal(off):
                return _call_local(pc, pc + 1 + off)
            case CallReg(reg):
                return self._call_reg(int(reg), pc)
            case CallKfunc(btf_id):
                return self._call_helper(kfunc_key(btf_id), pc)
        raise VmError(f"cannot execute {insn!r}", pc)

    def _lddw_value(self, insn: LoadImm64, pc: int) -> int:
        if insn.src is PseudoSrc.IMM64:
            return insn.value
        if insn.src is PseudoSrc.FUNC:
            return self.code_address(pc + 1 + insn.imm)
        if self.resolver is None:
            raise VmError(
                f"lddw with pseudo source {insn.src.name} needs a resolver (the runtime's), and none was given",
                pc,
            )
        return self.resolver.resolve(insn, pc) & U64

    def _call_helper(self, helper: int, pc: int) -> Op:
        nxt = pc + 1
        helpers = self.helpers

        def call_helper(regs: list[int], run: ExecutionContext) -> int:
            fn = helpers.get(helper)
            if fn is None:
                raise HelperError(unknown_call(helper), pc)
            regs[0] = _invoke(fn, helper, pc, regs, run)
            return run.after_helper(nxt) if run.events else nxt

        return call_helper

    def _call_reg(self, reg: int, pc: int) -> Op:
        nxt = pc + 1
        helpers = self.helpers
        function_pc = self.function_pc

        def call_reg(regs: list[int], run: ExecutionContext) -> int:
            value = regs[reg]
            if value >= CODE_BASE:
                target = function_pc(value)
                if target is None:
                    raise VmError(f"callx r{reg}: {value:#x} is not the address of an instruction of this program", pc)
                return run.push_frame(pc, nxt, target)
            fn = helpers.get(value)
            if fn is None:
                raise HelperError(f"callx r{reg}: {value:#x} is neither a code address nor a known helper id", pc)
            regs[0] = _invoke(fn, value, pc, regs, run)
            return run.after_helper(nxt) if run.events else nxt

        return call_reg


def _invoke(fn: HelperFn, helper: int, pc: int, regs: list[int], run: ExecutionContext) -> int:
    """Call a helper; anything it raises that is not a pybpf error becomes a HelperError."""
    run.helper_pc = pc
    try:
        result = fn(run, regs[1], regs[2], regs[3], regs[4], regs[5])
    except (PybpfError, ProgramStop):
        raise
    except Exception as error:
        raise HelperError(f"{call_name(helper)} failed: {type(error).__name__}: {error}", pc) from error
    if not isinstance(result, int):
        raise HelperError(f"{call_name(helper)} returned {type(result).__name__}, not an int", pc)
    return result & U64


# -- control-flow operations ------------------------------------------------------------------


def _exit(regs: list[int], run: ExecutionContext) -> int:
    """Return to the caller's frame (restoring r6-r9 and r10), or end the run."""
    frames = run.frames
    if frames:
        return_pc, regs[6], regs[7], regs[8], regs[9], regs[10] = frames.pop()
        return return_pc
    return EXIT


def _constant(d: int, value: int, nxt: int) -> Op:
    def lddw(regs: list[int], run: ExecutionContext) -> int:
        regs[d] = value
        return nxt

    return lddw


def _goto(target: int) -> Op:
    def goto(regs: list[int], run: ExecutionContext) -> int:
        return target

    return goto


def _may_goto(target: int, nxt: int) -> Op:
    def may_goto(regs: list[int], run: ExecutionContext) -> int:
        if run.may_goto_left <= 0:
            return target  # the loop budget is exhausted: take the exit path
        run.may_goto_left -= 1
        return nxt

    return may_goto


def _call_local(pc: int, target: int) -> Op:
    nxt = pc + 1

    def call_local(regs: list[int], run: ExecutionContext) -> int:
        return run.push_frame(pc, nxt, target)

    return call_local


def _unreachable(pc: int, what: str) -> Op:
    def unreachable(regs: list[int], run: ExecutionContext) -> int:
        raise VmError(f"cannot execute {what}", pc)

    return unreachable
