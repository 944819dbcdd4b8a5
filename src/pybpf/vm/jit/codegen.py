"""eBPF to LLVM IR: one LLVM function per eBPF function, one basic block per block leader.

Every generated function has the signature ``i64 (i64* state, i64 depth, i64 r0, ..., i64 r9)``
and returns r0. Registers live in ``alloca`` slots (mem2reg turns them into SSA values); r10 is
the stack top Python placed in the run-state block for ``depth``. A bpf-to-bpf call is a native
call passing the caller's r0-r9 (so the callee starts with the register file the interpreter
would show it) and a depth one higher; r6-r9 survive the call because the caller's slots are its
own. ``bpf_entry(state)`` calls the main function with the initial registers from the block.

Nothing raises in native code. An event (helper stop, memory fault, depth or budget exceeded)
stores a :class:`~pybpf.vm.jit.state.Status` in the run-state block and returns 0; every call site
checks the status after the callee returns and returns too, so the whole native stack unwinds by
ordinary returns before Python looks at the status.

Memory accesses are checked (defence in depth, until verified programs may skip it): the address
range must lie inside one entry of the run's range table, else the Python fault handler decides,
against the live address space, whether the access is fine after all (a region mapped by a
helper during the run) or raises the interpreter's MemoryAccessError.

What LLVM is told about memory (see :class:`~pybpf.vm.jit.plan.FunctionOrigins`): an access
through a register derived from an entry register is a getelementptr from that register's
entry value, so loops over a buffer are affine in LLVM's eyes (vectorised, turned into memset);
an access through r10 is an offset into the function's frame, checked with one unsigned compare
(none for a constant offset); and a frame whose addresses never leave the function is a local
array, zeroed on entry like the region, whose slots LLVM keeps in registers. The loop budget and
the hot range live in locals (written back around calls), so loops keep them in registers too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pybpf.errors import VmError
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
    Imm,
    Instruction,
    Jump,
    Load,
    LoadImm64,
    MayGoto,
    Neg,
    Operand,
    PacketLoad,
    Reg,
    Store,
    slot_count,
)
from pybpf.isa.opcodes import EndianOrder
from pybpf.platform.uapi_generated import HelperId
from pybpf.vm.code_addresses import CODE_BASE
from pybpf.vm.execution import MAX_CALL_FRAMES, STACK_SIZE, kfunc_key
from pybpf.vm.jit import alu_ir, arena_ir, entries, memory_ir
from pybpf.vm.jit.alu_ir import Value, constant
from pybpf.vm.jit.llvm import require_llvmlite
from pybpf.vm.jit.native_helpers import (
    NATIVE_SYSTEM_HELPERS,
    NATIVE_TRACING_HELPERS,
    emit_map_lookup,
    emit_map_update,
    emit_system_helper,
    emit_tracing_helper,
)
from pybpf.vm.jit.native_packet import NATIVE_PACKET_HELPERS, emit_packet_helper
from pybpf.vm.jit.plan import FunctionPlan, ProgramPlan, counted_segments, function_origins
from pybpf.vm.jit.state import Slot, Status

ENTRY_NAME = "bpf_entry"
"""The exported function: ``i64 bpf_entry(i64* state)``."""
INLINE_MAIN_LIMIT = 512
"""Main functions with loops up to this many instructions are always inlined into the repeat loop."""


@dataclass(frozen=True, slots=True)
class GeneratedModule:
    """The module's IR text and, for ``Status.TRAP``, why each trapping pc cannot execute."""

    text: str
    traps: Mapping[int, str]


def function_name(entry: int) -> str:
    return f"bpf_fn_{entry}"


def generate(
    plan: ProgramPlan,
    constants: Mapping[int, int],
    table: Mapping[int, int],
    *,
    bounds_checks: bool = True,
    count_instructions: bool = False,
) -> GeneratedModule:
    """Translate ``plan``: an ``lddw`` at pc takes ``constants[pc]``, or entry ``table[pc]`` of the constant table.

    Values that depend on the load (map addresses the resolver gives) live in the run's constant
    table (``Slot.CONSTANTS``), and the Python callbacks' addresses in ``Slot.HELPER_FN`` and
    ``Slot.FAULT_FN``: the native code depends on the program alone, so one compilation serves
    every load of the same bytes (:mod:`pybpf.vm.jit.cache`). The helper trampoline is
    ``i64 (i64* state, i64 helper_id, i64 pc, i64 r1, ..., i64 r5)``; the fault handler
    ``i64 (i64* state, i64 address, i64 size, i64 is_write, i64 pc)`` returns 1 if the access is
    allowed after all, else records the error (and the status) and returns 0.

    ``bounds_checks=False`` emits memory accesses without the range check: only for programs a
    verifier has proved safe (an unchecked bad access corrupts or crashes the process).

    ``count_instructions=True`` counts executed instructions in ``Slot.INSTRUCTIONS`` exactly as
    the interpreter counts them (see :func:`~pybpf.vm.jit.plan.counted_segments`).
    """
    return _ModuleBuilder(plan, constants, table, bounds_checks, count_instructions).build()


class _ModuleBuilder:
    """The module-wide parts: types, the function declarations, the range check, the entry."""

    def __init__(
        self,
        plan: ProgramPlan,
        constants: Mapping[int, int],
        table: Mapping[int, int],
        bounds_checks: bool,
        count_instructions: bool = False,
    ) -> None:
        ir, _ = require_llvmlite()
        self.ir: Any = ir
        self.plan = plan
        self.constants = constants
        self.table = table
        self.bounds_checks = bounds_checks
        self.count_instructions = count_instructions
        # The repeat loop inlines a small main function with loops, without its register stores,
        # whatever LLVM's inliner thinks (it declines for a mid-sized one with four call sites):
        # the stores only cost where they hold loop results. Others are left to the inliner, so
        # a large program is compiled once and compile time does not double.
        main = plan.functions[0]
        self.inline_main = bool(main.loop_headers) and len(main.pcs) <= INLINE_MAIN_LIMIT
        self.traps: dict[int, str] = {}
        self.module: Any = ir.Module(name="pybpf_jit")
        self.tbaa = self._tbaa_tags()
        self.i64: Any = ir.IntType(64)
        self.state_type: Any = self.i64.as_pointer()
        self.function_type: Any = ir.FunctionType(self.i64, [self.state_type, self.i64, *[self.i64] * 10])
        # The main function takes one more argument: whether its exit stores the final registers.
        self.main_type: Any = ir.FunctionType(self.i64, [*self.function_type.args, ir.IntType(1)])
        self.helper_type: Any = ir.FunctionType(self.i64, [self.state_type, *[self.i64] * 7])
        self.fault_type: Any = ir.FunctionType(self.i64, [self.state_type, *[self.i64] * 4])
        self.functions: dict[int, Any] = {}
        for function in plan.functions:
            signature = self.main_type if function.entry == 0 else self.function_type
            llvm_function = ir.Function(self.module, signature, name=function_name(function.entry))
            llvm_function.linkage = "internal"
            self.functions[function.entry] = llvm_function
        self.in_ranges: Any = memory_ir.build_in_ranges(self)
        self._quiet_main: Any = None

    def call_main(self, builder: Any, arguments: list[Any], *, report: bool = True) -> Any:
        """Call the main function with ``arguments`` (state, depth, r0-r9); ``report``: store the final registers."""
        return builder.call(self.functions[0], [*arguments, self.ir.Constant(self.ir.IntType(1), int(report))])

    def main_without_registers(self) -> Any:
        """A function like the main one (same signature) whose normal exit does not store the final registers.

        For runs whose registers nobody reads (all but the last run of a repeat, every packet of
        a batch): each stored register is a value every loop exit must produce, which keeps LLVM
        from vectorising a loop that exits to the end (sum64k runs 2x faster without them).
        Events (tail calls, stops) still store them. It calls the main function with ``report``
        false: where the main function is inlined (always when it is small, see
        :data:`INLINE_MAIN_LIMIT`) the stores fold away; a large one is compiled once, not
        twice, and only tests the flag at its exit. Built on first request.
        """
        if self._quiet_main is None:
            function = self.ir.Function(self.module, self.function_type, name=f"{function_name(0)}_r0_only")
            function.linkage = "internal"
            builder = self.ir.IRBuilder(function.append_basic_block("entry"))
            call = self.call_main(builder, list(function.args), report=False)
            if self.inline_main:
                call.attributes.add("alwaysinline")
            builder.ret(call)
            self._quiet_main = function
        return self._quiet_main

    def build(self) -> GeneratedModule:
        for function in self.plan.functions:
            _FunctionEmitter(self, function).emit()
        self._build_entry()
        entries.build_repeat(self)
        entries.build_batch(self)
        return GeneratedModule(str(self.module), dict(self.traps))

    def _build_entry(self) -> None:
        ir = self.ir
        entry = ir.Function(self.module, ir.FunctionType(self.i64, [self.state_type]), name=ENTRY_NAME)
        builder = ir.IRBuilder(entry.append_basic_block("entry"))
        state = entry.args[0]
        registers = [
            builder.load(builder.gep(state, [constant(ir, 64, Slot.REGS + number)]), name=f"r{number}")
            for number in range(10)
        ]
        builder.ret(self.call_main(builder, [state, constant(ir, 64, 0), *registers]))

    def _tbaa_tags(self) -> dict[str, Any]:
        """Type-based alias tags: run-state slots, the range/constant tables, and program memory.

        The three never overlap (the block and the tables are not mapped in the program's address
        space, so no program access reaches them): telling LLVM so lets it keep the range table in
        registers across a loop whose body stores to memory or spends the loop budget.
        """
        ir = self.ir
        root = self.module.add_metadata([ir.MetaDataString(self.module, "pybpf tbaa")])
        tags = {}
        for name in ("state", "tables", "memory"):
            node = self.module.add_metadata([ir.MetaDataString(self.module, name), root, constant(ir, 64, 0)])
            tags[name] = self.module.add_metadata([node, node, constant(ir, 64, 0)])
        return tags

    def tag(self, instruction: Any, kind: str) -> Any:
        instruction.set_metadata("tbaa", self.tbaa[kind])
        return instruction


class _FunctionEmitter:
    """Emits one eBPF function into its LLVM function."""

    def __init__(self, parent: _ModuleBuilder, plan: FunctionPlan) -> None:
        ir = parent.ir
        self.ir: Any = ir
        self.parent = parent
        self.plan = plan
        self.insns = parent.plan.insns
        self.slot_total = parent.plan.slot_total
        self.i64: Any = parent.i64
        function = parent.functions[plan.entry]
        self.function: Any = function
        # The main function's last argument says whether its exit stores the final registers.
        self.report: Any = function.args[12] if plan.entry == 0 else None
        self.builder: Any = ir.IRBuilder(function.append_basic_block("entry"))
        self.state: Any = function.args[0]
        self.depth: Any = function.args[1]
        builder = self.builder
        self.regs: list[Any] = [builder.alloca(self.i64, name=f"r{number}_slot") for number in range(11)]
        for number in range(10):
            builder.store(function.args[2 + number], self.regs[number])
        stack_slot = builder.gep(self.state, [builder.add(self.depth, self._const(Slot.STACK_TOPS))])
        frame_top = builder.load(stack_slot, name="frame_top")
        builder.store(frame_top, self.regs[10])
        self._emit_locals(frame_top)
        self.blocks: dict[int, Any] = {pc: function.append_basic_block(f"pc{pc}") for pc in sorted(plan.leaders)}
        self.bail: Any = function.append_basic_block("bail")
        self.abort: Any = function.append_basic_block("abort")
        self.fell_off: Any = None
        builder.branch(self.blocks[plan.entry])
        with builder.goto_block(self.bail):
            self._emit_bail()
        with builder.goto_block(self.abort):  # an error: Python raises, nothing else is read
            builder.ret(self._const(0))

    def _emit_locals(self, frame_top: Value) -> None:
        """The entry block's locals: the frame, the base pointers of entry registers, budget and hot range."""
        ir, builder, i8 = self.ir, self.builder, self.ir.IntType(8)
        self.origins = function_origins(self.parent.plan, self.plan)
        self.frame_bottom: Value = builder.sub(frame_top, self._const(STACK_SIZE), name="frame_bottom")
        if self.origins.private_frame:
            frame = builder.alloca(ir.ArrayType(i8, STACK_SIZE), name="frame")
            frame.align = 8
            self.frame: Value = builder.bitcast(frame, i8.as_pointer())
            memset = self.parent.module.declare_intrinsic("llvm.memset", [i8.as_pointer(), self.i64])
            builder.call(
                memset, [self.frame, ir.Constant(i8, 0), self._const(STACK_SIZE), ir.Constant(ir.IntType(1), 0)]
            )
        else:
            self.frame = builder.inttoptr(self.frame_bottom, i8.as_pointer(), name="frame")
        # Entry values of r0-r9 as pointers: bases of the getelementptrs (unused ones are dropped).
        self.bases: list[Value] = [
            builder.inttoptr(self.function.args[2 + number], i8.as_pointer(), name=f"base{number}")
            for number in range(10)
        ]
        self.budget: Value = builder.alloca(self.i64, name="budget")
        builder.store(self._load_slot(Slot.BUDGET), self.budget)
        # The instruction count, when counted, is a local like the budget (saved and reloaded with it).
        self.counter: Value | None = None
        self.segments: dict[int, int] = {}
        if self.parent.count_instructions:
            self.counter = builder.alloca(self.i64, name="executed")
            builder.store(self._load_slot(Slot.INSTRUCTIONS), self.counter)
            self.segments = counted_segments(self.parent.plan, self.plan)
        self.hot: list[Value] = []
        if self.parent.bounds_checks:
            self.hot = [builder.alloca(self.i64, name=name) for name in ("hot_start", "hot_end", "hot_write_end")]
            self._reload_hot()

    def _reload_hot(self) -> None:
        memory_ir.reload_hot(self)

    def _save_budget(self) -> None:
        """Write the local loop budget (and count) back (before a call or a return: others read it there)."""
        self.parent.tag(self.builder.store(self.builder.load(self.budget), self._slot(Slot.BUDGET)), "state")
        if self.counter is not None:
            self.parent.tag(self.builder.store(self.builder.load(self.counter), self._slot(Slot.INSTRUCTIONS)), "state")

    def _after_call(self) -> None:
        """A call may have spent budget and scanned the range table: reload both locals."""
        self.builder.store(self._load_slot(Slot.BUDGET), self.budget)
        self._reload_hot()

    def _reload_count(self) -> None:
        """Right after a call, before its status is checked: the callee (or the trampoline) counted on."""
        if self.counter is not None:
            self.builder.store(self._load_slot(Slot.INSTRUCTIONS), self.counter)

    def _emit_bail(self) -> None:
        """The block every event leaves through: return 0, the status tells Python why.

        The main function first stores its registers, which a tail call hands to the next
        program (r0 the helper's result, r1 the context...); a tail call requested in any other
        function is refused, as the interpreter refuses it.
        """
        builder = self.builder
        self._save_budget()  # a tail call's target goes on with it
        if self.plan.entry == 0:
            for number in range(11):
                builder.store(self._get(number), self._slot(Slot.REGS + number))
        else:
            status = self._load_slot(Slot.STATUS)
            tail = builder.icmp_unsigned("==", status, self._const(Status.TAIL_CALL))
            refused = builder.select(tail, self._const(Status.TAIL_CALL_IN_FUNCTION), status)
            builder.store(refused, self._slot(Slot.STATUS))
        builder.ret(self._const(0))

    # -- small pieces ---------------------------------------------------------------------------

    def _const(self, value: int, bits: int = 64) -> Value:
        return constant(self.ir, bits, value)

    def _get(self, reg: Reg | int) -> Value:
        return self.builder.load(self.regs[int(reg)])

    def _set(self, reg: Reg | int, value: Value) -> None:
        self.builder.store(value, self.regs[int(reg)])

    def _operand(self, operand: Operand) -> Value:
        if isinstance(operand, Imm):
            return self._const(operand.value)  # sign-extended to 64 bits
        return self._get(operand)

    def _slot(self, slot: int) -> Value:
        return self.builder.gep(self.state, [self._const(slot)])

    def _load_slot(self, slot: int) -> Value:
        return self.parent.tag(self.builder.load(self._slot(slot)), "state")

    def _lddw_value(self, pc: int) -> Value:
        index = self.parent.table.get(pc)
        if index is None:
            return self._const(self.parent.constants[pc])
        table = self.builder.inttoptr(self._load_slot(Slot.CONSTANTS), self.parent.state_type)
        return self.parent.tag(self.builder.load(self.builder.gep(table, [self._const(index)])), "tables")

    def _new_block(self, name: str) -> Any:
        return self.function.append_basic_block(name)

    def _failure(self, status: Status, pc: int, value: Value | None = None) -> Any:
        """A block that records ``status`` at ``pc`` (and ``value``) and returns; the builder stays put."""
        block = self._new_block(f"fail_{status.name.lower()}_{pc}")
        with self.builder.goto_block(block):
            self.builder.store(self._const(status), self._slot(Slot.STATUS))
            self.builder.store(self._const(pc), self._slot(Slot.ERROR_PC))
            if value is not None:
                self.builder.store(value, self._slot(Slot.ERROR_VALUE))
            self.builder.branch(self.bail)
        return block

    def _continue_unless(self, condition: Value, failure: Any, name: str) -> None:
        """Branch to ``failure`` when ``condition`` holds; carry on emitting in a new block."""
        rest = self._new_block(name)
        self.builder.cbranch(condition, failure, rest)
        self.builder.position_at_end(rest)

    def _bail_if_status(self, pc: int) -> None:
        status = self._load_slot(Slot.STATUS)
        self._continue_unless(self.builder.icmp_unsigned("!=", status, self._const(0)), self.bail, f"after_{pc}")

    def _block(self, pc: int) -> Any:
        if pc != self.slot_total:
            return self.blocks[pc]
        if self.fell_off is None:
            self.fell_off = self._trap(pc, "past the last instruction (the program fell off its end)")
        return self.fell_off

    def _trap(self, pc: int, what: str) -> Any:
        self.parent.traps[pc] = f"cannot execute {what}"
        return self._failure(Status.TRAP, pc)

    # -- the function body ----------------------------------------------------------------------

    def emit(self) -> None:
        builder = self.builder
        for leader in sorted(self.plan.leaders):
            builder.position_at_end(self.blocks[leader])
            if leader in self.plan.loop_headers:
                self._count_iteration(leader)
            pc = leader
            while True:
                insn = self.insns[pc]
                if pc in self.segments:
                    self._count(self.segments[pc])
                if self._emit(pc, insn):
                    break
                nxt = pc + slot_count(insn)
                if nxt in self.blocks or nxt == self.slot_total:
                    builder.branch(self._block(nxt))
                    break
                pc = nxt

    def _count(self, instructions: int) -> None:
        """Add a segment's instructions to the count (see :func:`~pybpf.vm.jit.plan.counted_segments`)."""
        if self.counter is not None:
            builder = self.builder
            builder.store(builder.add(builder.load(self.counter), self._const(instructions)), self.counter)

    def _count_iteration(self, pc: int) -> None:
        """Spend one unit of the loop budget at a loop header; fail when it is exhausted.

        The failure leaves through ``abort``, which stores nothing that depends on the loop (the
        run raises): a loop's budget exit then carries no values out, which lets LLVM fold it
        into the loop's other exits when it can count them.
        """
        builder = self.builder
        left = builder.sub(builder.load(self.budget), self._const(1))
        builder.store(left, self.budget)
        exhausted = builder.icmp_signed("<", left, self._const(0))
        failure = self._new_block(f"fail_budget_{pc}")
        with builder.goto_block(failure):
            builder.store(self._const(Status.BUDGET), self._slot(Slot.STATUS))
            builder.store(self._const(pc), self._slot(Slot.ERROR_PC))
            builder.branch(self.abort)
        self._continue_unless(exhausted, failure, f"loop{pc}")

    def _emit(self, pc: int, insn: Instruction) -> bool:
        """Emit ``insn``; True when it ended the block (a jump or an exit)."""
        match insn:
            case Bin():
                self._bin(insn)
            case Jump():
                self._jump(pc, insn)
                return True
            case Goto(off):
                self.builder.branch(self._block(pc + 1 + off))
                return True
            case Exit():
                self._exit()
                return True
            case Atomic(arena=True):
                arena_ir.emit_arena_atomic(self, pc, insn)
            case Load(arena=True):
                arena_ir.emit_arena_load(self, pc, insn)
            case Store(arena=True):
                arena_ir.emit_arena_store(self, pc, insn)
            case AddrSpaceCast():
                arena_ir.emit_cast_to_user(self, insn)
            case Load():
                self._load(pc, insn)
            case Store():
                self._store(pc, insn)
            case LoadImm64():
                self._set(insn.dst, self._lddw_value(pc))
            case Neg():
                self._neg(insn)
            case Endian():
                self._endian(insn)
            case Atomic():
                self._atomic(pc, insn)
            case MayGoto(off):
                self._may_goto(pc, pc + 1 + off)
                return True
            case Call(helper) if helper == HelperId.MAP_LOOKUP_ELEM:
                emit_map_lookup(self, pc)
            case Call(helper) if helper == HelperId.MAP_UPDATE_ELEM:
                emit_map_update(self, pc)
            case Call(helper) if helper in NATIVE_SYSTEM_HELPERS:
                emit_system_helper(self, pc, helper)
            case Call(helper) if helper in NATIVE_TRACING_HELPERS:
                emit_tracing_helper(self, pc, helper)
            case Call(helper) if helper in NATIVE_PACKET_HELPERS:
                emit_packet_helper(self, pc, helper)
            case Call(helper):
                self._call_helper(pc, self._const(helper))
            case CallLocal(off):
                self._call_function(pc, pc + 1 + off)
            case CallReg(reg):
                self._call_reg(pc, reg)
            case PacketLoad():
                self._packet_load(pc, insn)
            case CallKfunc(btf_id):
                # Through the helper trampoline, under the kfunc's key in the helpers table.
                self._call_helper(pc, self._const(kfunc_key(btf_id)))
            case _:
                raise VmError(f"the JIT cannot translate {insn!r}", pc)
        return False

    # -- arithmetic -----------------------------------------------------------------------------

    def _bin(self, insn: Bin) -> None:
        ir, builder = self.ir, self.builder
        a, b = self._get(insn.dst), self._operand(insn.src)
        if insn.is64:
            self._set(insn.dst, alu_ir.binary(ir, builder, insn.op, a, b, bits=64))
            return
        i32 = ir.IntType(32)
        result = alu_ir.binary(ir, builder, insn.op, builder.trunc(a, i32), builder.trunc(b, i32), bits=32)
        self._set(insn.dst, builder.zext(result, self.i64))

    def _neg(self, insn: Neg) -> None:
        builder = self.builder
        value = self._get(insn.dst)
        if insn.is64:
            self._set(insn.dst, builder.neg(value))
        else:
            self._set(insn.dst, builder.zext(builder.neg(builder.trunc(value, self.ir.IntType(32))), self.i64))

    def _endian(self, insn: Endian) -> None:
        ir, builder = self.ir, self.builder
        value = self._get(insn.dst)
        narrow = value if insn.width == 64 else builder.trunc(value, ir.IntType(insn.width))
        if insn.order is not EndianOrder.LE:  # this VM is little-endian: only TO_BE and bswap swap
            narrow = alu_ir.byte_swap(ir, builder, self.parent.module, narrow, insn.width)
        self._set(insn.dst, narrow if insn.width == 64 else builder.zext(narrow, self.i64))

    def _jump(self, pc: int, insn: Jump) -> None:
        ir, builder = self.ir, self.builder
        a, b = self._get(insn.dst), self._operand(insn.src)
        bits = 32 if insn.is32 else 64
        if insn.is32:
            a, b = builder.trunc(a, ir.IntType(32)), builder.trunc(b, ir.IntType(32))
        taken = alu_ir.compare(ir, builder, insn.cond, a, b, bits=bits)
        builder.cbranch(taken, self._block(pc + 1 + insn.off), self._block(pc + 1))

    def _may_goto(self, pc: int, target: int) -> None:
        builder = self.builder
        left = self._load_slot(Slot.MAY_GOTO_LEFT)
        rest = self._new_block(f"may_goto_{pc}")
        builder.cbranch(builder.icmp_signed("<=", left, self._const(0)), self._block(target), rest)
        builder.position_at_end(rest)
        self.parent.tag(builder.store(builder.sub(left, self._const(1)), self._slot(Slot.MAY_GOTO_LEFT)), "state")
        builder.branch(self._block(pc + 1))

    def _exit(self) -> None:
        builder = self.builder
        self._save_budget()
        if self.report is not None:  # the main function reports its final registers, when asked to
            with builder.if_then(self.report):
                for number in range(11):
                    builder.store(self._get(number), self._slot(Slot.REGS + number))
        builder.ret(self._get(0))

    # -- memory ---------------------------------------------------------------------------------

    def _checked_pointer(self, pc: int, address: Value, size: int, is_write: bool) -> Value:
        """A pointer to ``size`` bytes at ``address``, after the range check (or the fault handler) allowed it."""
        memory_ir.check_range(self, pc, address, size, is_write)
        return self.builder.inttoptr(address, self.ir.IntType(size * 8).as_pointer())

    def _load(self, pc: int, insn: Load) -> None:
        memory_ir.emit_load(self, pc, insn)

    def _store(self, pc: int, insn: Store) -> None:
        memory_ir.emit_store(self, pc, insn)

    def _atomic(self, pc: int, insn: Atomic) -> None:
        memory_ir.emit_atomic(self, pc, insn)

    def _packet_load(self, pc: int, insn: PacketLoad) -> None:
        memory_ir.emit_packet_load(self, pc, insn)

    # -- calls ----------------------------------------------------------------------------------

    def native_or_trampoline(self, allowed: Value, prefix: str, pc: int) -> tuple[Any, Any, Any]:
        """Blocks for a helper native code may serve: (native, slow, done), positioned in ``native``.

        ``allowed`` (an i1) picks the native block; :meth:`finish_native_call` fills ``slow``
        with the trampoline and joins both at ``done``."""
        native, slow, done = (self._new_block(f"{prefix}_{what}_{pc}") for what in ("native", "slow", "done"))
        self.builder.cbranch(allowed, native, slow)
        self.builder.position_at_end(native)
        return native, slow, done

    def native_bit_allows(self, bit: int) -> Value:
        """Whether ``Slot.NATIVE`` (set per run by Python) lets native code serve the helper of ``bit``."""
        builder = self.builder
        return builder.icmp_unsigned("!=", builder.and_(self._load_slot(Slot.NATIVE), self._const(bit)), self._const(0))

    def finish_native_call(self, pc: int, helper: int, slow: Any, done: Any) -> None:
        """The slow path of a natively served helper (the trampoline into Python); both paths meet at ``done``."""
        builder = self.builder
        builder.position_at_end(slow)
        self._call_helper(pc, self._const(helper))
        builder.branch(done)
        builder.position_at_end(done)

    def _call_helper(self, pc: int, helper: Value) -> None:
        builder = self.builder
        trampoline = builder.inttoptr(self._load_slot(Slot.HELPER_FN), self.parent.helper_type.as_pointer())
        arguments = [self.state, helper, self._const(pc), *(self._get(number) for number in range(1, 6))]
        self._save_budget()
        self._set(0, builder.call(trampoline, arguments))  # before the check: a tail call passes r0 on
        self._reload_count()  # callbacks the helper ran in the interpreter count too
        self._bail_if_status(pc)
        self._after_call()

    def _call_function(self, pc: int, entry: int) -> None:
        builder = self.builder
        depth = builder.add(self.depth, self._const(1))
        too_deep = builder.icmp_unsigned(">=", depth, self._const(MAX_CALL_FRAMES))
        self._continue_unless(too_deep, self._failure(Status.CALL_DEPTH, pc), f"call_{pc}")
        registers = [self._get(number) for number in range(10)]
        self._save_budget()
        arguments = [self.state, depth, *registers]
        if entry == 0:  # the main function called as a function (callx): its exit reports, as always
            result = self.parent.call_main(builder, arguments)
        else:
            result = builder.call(self.parent.functions[entry], arguments)
        self._reload_count()
        self._bail_if_status(pc)
        self._after_call()
        self._set(0, result)

    def _call_reg(self, pc: int, reg: Reg) -> None:
        """``callx``: a helper id goes to the trampoline, a code address to the function it names."""
        builder = self.builder
        target = self._get(reg)
        helper_block, code_block, done = (self._new_block(f"callx_{kind}_{pc}") for kind in ("helper", "code", "done"))
        builder.cbranch(builder.icmp_unsigned(">=", target, self._const(CODE_BASE)), code_block, helper_block)
        builder.position_at_end(helper_block)
        self._call_helper(pc, target)
        builder.branch(done)
        builder.position_at_end(code_block)
        switch = builder.switch(target, self._failure(Status.BAD_CALL, pc, target))
        for entry in self.parent.functions:
            case = self._new_block(f"callx_{pc}_to_{entry}")
            switch.add_case(self._const(CODE_BASE + entry * 8), case)
            builder.position_at_end(case)
            self._call_function(pc, entry)
            builder.branch(done)
        builder.position_at_end(done)
