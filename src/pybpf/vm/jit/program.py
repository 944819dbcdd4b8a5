""":class:`JitProgram`: a program compiled to native code, run like an :class:`~pybpf.vm.Interpreter`.

The native code uses the memory model's real addresses: the context, the packet, map values and
the per-frame stacks are :class:`~pybpf.vm.memory.Region` buffers, and registers hold their
native addresses. Stacks are regions too (one per possible frame) so that helpers reach them
through ``env.memory`` exactly as under the interpreter. They belong to a session
(:mod:`pybpf.vm.jit.sessions`): a run-state block, the stacks and the tables the block points to,
made once and reused run after run, one per run in progress, so that runs from several threads
(or a helper running the program again) never share stacks. A session's stacks stay mapped
between its runs; :meth:`JitProgram.close` unmaps them.

Native code calls back into Python through two ctypes callbacks made per program: the helper
trampoline (which dispatches to the same :class:`~pybpf.vm.execution.HelperFn` registry the
interpreter uses, with an :class:`~pybpf.vm.execution.ExecutionContext` as ``env``) and the memory
fault handler. A Python exception cannot unwind native frames, so the callbacks catch everything,
record it on the current run and set the status in the run-state block; the native code returns
frame by frame, and :meth:`JitProgram.run` raises the recorded error (or the typed error for the
status) once native code is done.

Threads: one :class:`JitProgram` may be run from several threads at once (each run takes its own
session from the pool), and may be constructed from several threads at once (LLVM is not
thread-safe: compilations are serialised by :func:`pybpf.vm.jit.llvm.compile_lock`).
"""

from __future__ import annotations

import ctypes
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pybpf.errors import (
    HelperError,
    NotSupportedError,
    PybpfError,
    VmError,
)
from pybpf.isa.codec import check_jump_targets, decode_program
from pybpf.isa.insn import Call, CallKfunc, CallReg, LabeledInsn, LoadImm64, slot_count
from pybpf.isa.opcodes import PseudoSrc
from pybpf.platform.uapi_generated import HelperId
from pybpf.vm.arena import ArenaMemory
from pybpf.vm.code_addresses import code_address, function_pc
from pybpf.vm.execution import (
    DEFAULT_INSTRUCTION_LIMIT,
    MAX_CALL_FRAMES,
    MAX_LOOPS,
    U64,
    ExecutionContext,
    HelperFn,
    ProgramStop,
    PseudoResolver,
    RunResult,
    call_name,
    unknown_call,
)
from pybpf.vm.interpreter import Interpreter
from pybpf.vm.jit.batch import NativeBatch, run_native_batch
from pybpf.vm.jit.cache import PROCESS_CACHE, CompileCache, Compiled, cache_key
from pybpf.vm.jit.codegen import ENTRY_NAME, generate
from pybpf.vm.jit.entries import BATCH_NAME, REPEAT_NAME, BatchOutput
from pybpf.vm.jit.llvm import NativeCode, compile_lock
from pybpf.vm.jit.native_helpers import (
    NATIVE_HELPERS,
    NATIVE_MAP_HELPERS,
    clock_gettime_address,
    fill_tracing_slots,
    native_run_setup,
)
from pybpf.vm.jit.native_packet import (
    NATIVE_PACKET_HELPERS,
    fill_packet_slots,
    frame_bits,
    refresh_packet_slots,
)
from pybpf.vm.jit.native_xdp import PacketFrame, sync_packet_back
from pybpf.vm.jit.outcome import status_error
from pybpf.vm.jit.plan import ProgramPlan, plan_program
from pybpf.vm.jit.sessions import NO_HOT, Session, SessionPool
from pybpf.vm.jit.state import MAP_FIELDS, Slot, Status
from pybpf.vm.memory import AddressSpace, Region

# Both callbacks receive the run-state block's address first: it identifies the run.
_HelperCallback = ctypes.CFUNCTYPE(
    ctypes.c_uint64, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int64, *([ctypes.c_uint64] * 5)
)
_FaultCallback = ctypes.CFUNCTYPE(
    ctypes.c_uint64, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_int64
)
_Entry = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p)
_Repeat = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p, ctypes.c_uint64)
_Batch = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p, ctypes.c_void_p)
# Slot numbers as plain ints for the per-run path: reading an IntEnum member costs ~60 ns each.
_STATUS = int(Slot.STATUS)
_BUDGET = int(Slot.BUDGET)
_HELPER_FN = int(Slot.HELPER_FN)
_HOT_END = int(Slot.HOT_WRITABLE) + 1
_RANGE_COUNT = int(Slot.RANGE_COUNT)
_RANGES_END = int(Slot.RANGES) + 1
_REGS = int(Slot.REGS)
_REGS_END = _REGS + 11
_MAP_TABLE = int(Slot.MAP_TABLE)
_MAP_COUNT = int(Slot.MAP_COUNT)
_NATIVE = int(Slot.NATIVE)
_CLOCK_END = int(Slot.CLOCK_FN) + 1
_PACKET_NATIVE = int(Slot.PACKET_NATIVE)
_PACKET_CTX = int(Slot.PACKET_CTX)
_TAIL_CALL = int(Status.TAIL_CALL)
_INSTRUCTIONS = int(Slot.INSTRUCTIONS)
_ARENA_ADDRESS = int(Slot.ARENA_ADDRESS)
_ARENA_END = int(Slot.ARENA_USER_HIGH) + 1
_HEAD = struct.Struct(f"<{int(Slot.HOT_WRITABLE) - int(Slot.BUDGET) + 1}Q")
"""Slots BUDGET to HOT_WRITABLE, which every run fills."""
_REGISTERS = struct.Struct("<11Q")
"""Slots REGS: r0-r10 after the run."""
_Invoke = Callable[[int], int]
"""Starts native code on a run-state block (by address); returns r0 (or what the entry returns)."""


@dataclass(slots=True)
class _Run:
    """One run in progress: its session (state block, stacks, tables), the helpers' env, the first error."""

    session: Session
    state: Any
    env: ExecutionContext | None
    error: BaseException | None = None
    tail_calls: int = 0  # made so far in this run, across programs (at most MAX_TAIL_CALLS)
    tail_target: JitProgram | None = None  # what the main function's exit with Status.TAIL_CALL runs next
    limit: int = 0  # the instruction limit the run was given (the loop budget)


class JitProgram:
    """A program compiled with LLVM; the constructor mirrors :class:`~pybpf.vm.Interpreter`.

    ``run`` returns a :class:`~pybpf.vm.execution.RunResult` whose ``instructions`` is 0 ("not
    counted"), unless the program was compiled with ``count_instructions=True``: then native
    code counts them (a little slower), and the count equals the interpreter's for the same run,
    callbacks included. Termination is guaranteed either way: every loop header spends one unit
    of a budget of ``instruction_limit`` iterations (a loop iteration executes at least one
    instruction, so any run the interpreter completes within its limit completes here).
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
        opt_level: int = 2,
        cache: CompileCache | None = PROCESS_CACHE,
        bounds_checks: bool = True,
        count_instructions: bool = False,
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
        self.arena = arena
        # Slots ARENA_ADDRESS to ARENA_USER_HIGH, which native arena accesses read (see arena_ir).
        self._arena_slots = (
            [arena.address, arena.present_address, arena.base32, arena.size, arena.user_high] if arena else []
        )
        last = self.insns[-1]
        self.slot_total = last.pc + slot_count(last.insn)
        check_jump_targets(self.insns, self.slot_total)
        self.plan: ProgramPlan = plan_program(self.insns, self.slot_total)
        self._starts = frozenset(item.pc for item in self.insns)
        self.source: Interpreter | None = None  # the interpreter this was compiled from (see of())
        self._tail_targets: dict[int, tuple[Interpreter, JitProgram]] = {}
        self.may_tail_call = any(
            isinstance(item.insn, CallReg) or (isinstance(item.insn, Call) and item.insn.helper == HelperId.TAIL_CALL)
            for item in self.insns
        )
        # A tail-called program runs on its caller's stacks: it may need every frame's.
        frames = MAX_CALL_FRAMES if self.plan.makes_calls or self.may_tail_call else 1
        # One session (state block, stacks, tables) per run in progress, reused run after run.
        self.sessions = SessionPool(self.memory, frames)
        self._runs: dict[int, _Run] = {}  # by run-state block address: runs may nest (a helper runs us again)
        # The helpers' env is an ExecutionContext, which needs an Interpreter of the same program
        # (env.call_function runs callbacks there); only programs that call helpers pay for it.
        uses_helpers = any(isinstance(item.insn, Call | CallKfunc | CallReg) for item in self.insns)
        self._companion = (
            Interpreter(self.insns, helpers=self.helpers, resolver=resolver, memory=self.memory, name=name,
                        arena=arena)
            if uses_helpers
            else None
        )
        # The callbacks must outlive the native code that calls them: they are attributes.
        self._helper_callback = _HelperCallback(self._serve_helper)
        self._fault_callback = _FaultCallback(self._serve_fault)
        inline, table, values = self._lddw_constants()
        self._constant_table = (ctypes.c_uint64 * (len(values) or 1))(*values)
        # Slots HELPER_FN, FAULT_FN, CONSTANTS (the same for every run of this program), then
        # HOT_START, HOT_END, HOT_WRITABLE (no hot range until a scan of the new table finds one).
        self._bound = [
            _address_of(self._helper_callback),
            _address_of(self._fault_callback),
            ctypes.addressof(self._constant_table),
            *NO_HOT,
        ]
        # The helpers native code may serve, and the map pointers their map table may name
        # (see pybpf.vm.jit.native_helpers).
        self._native_called = frozenset(
            item.insn.helper
            for item in self.insns
            if isinstance(item.insn, Call) and item.insn.helper in NATIVE_HELPERS
        )
        self._map_pointers = tuple(dict.fromkeys(values)) if self._native_called & NATIVE_MAP_HELPERS else ()
        self._clock_fn = clock_gettime_address() if HelperId.KTIME_GET_NS in self._native_called else 0
        self._packet_helpers = frozenset(
            item.insn.helper
            for item in self.insns
            if isinstance(item.insn, Call) and item.insn.helper in NATIVE_PACKET_HELPERS
        )
        self.bounds_checks = bounds_checks
        self.count_instructions = count_instructions
        key = cache_key(self.insns, table, opt_level, bounds_checks) if cache is not None else None
        if key is not None and count_instructions:  # another compilation: part of the key
            key += "|counted"
        # LLVM is not thread-safe: compilations are serialised, and a thread that waited for
        # another's compilation of the same program finds it in the cache.
        with compile_lock():
            compiled = cache.get(key) if cache is not None and key is not None else None
            self.from_cache = compiled is not None
            if compiled is None:
                started = time.perf_counter_ns()
                generated = generate(
                    self.plan, inline, table, bounds_checks=bounds_checks, count_instructions=count_instructions
                )
                native = NativeCode(generated.text, opt_level)
                compiled = Compiled(native, generated.traps, generated.text, time.perf_counter_ns() - started)
                if cache is not None and key is not None:
                    cache.put(key, compiled)
        self.compile_ns = compiled.compile_ns  # of the compilation this uses (maybe another load's)
        self._traps = compiled.traps
        self.generated_ir: str = compiled.generated_ir  # before optimisation: what the translation emitted
        self.native = compiled.native
        self._entry = _Entry(self.native.address(ENTRY_NAME))
        self._repeat = _Repeat(self.native.address(REPEAT_NAME))
        self._batch = _Batch(self.native.address(BATCH_NAME))

    def close(self) -> None:
        """Unmap the stacks of the sessions no run is using (a later run makes a new session)."""
        self.sessions.close()

    @property
    def _callback_addresses(self) -> tuple[int, int]:
        """The native addresses of the helper trampoline and the fault handler runs start with."""
        return self._bound[0], self._bound[1]

    @_callback_addresses.setter
    def _callback_addresses(self, addresses: tuple[int, int]) -> None:
        # Tests swap in a counting trampoline: runs from now on use it.
        self._bound = [*addresses, *self._bound[2:]]

    @classmethod
    def of(cls, interpreter: Interpreter, **options: Any) -> JitProgram:
        """``interpreter``'s program compiled, with its helpers, resolver, memory and limit."""
        compiled = cls(
            interpreter.insns,
            helpers=interpreter.helpers,
            resolver=interpreter.resolver,
            memory=interpreter.memory,
            instruction_limit=interpreter.instruction_limit,
            name=interpreter.name,
            arena=interpreter.arena,
            **options,
        )
        compiled.source = interpreter
        return compiled

    @classmethod
    def from_bytecode(cls, data: bytes, **options: Any) -> JitProgram:
        """Decode (and validate) bytecode, then compile it; ``options`` as for the constructor."""
        return cls(decode_program(data), **options)

    # -- code addresses (as the interpreter defines them) ---------------------------------------

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
        map_inputs: bool = True,
        frame: PacketFrame | None = None,
    ) -> RunResult:
        """Run the native code once; arguments and r1/r2 as for :meth:`Interpreter.run`.

        ``map_inputs=False`` leaves ``context`` and ``packet`` unmapped: the runtime's runs map
        the packet buffer themselves, and ``packet`` is then only the view LD_ABS/LD_IND read.
        ``frame`` (an XDP run's frame and context pointer slots) lets native code serve
        bpf_xdp_adjust_head/tail/meta (see :mod:`pybpf.vm.jit.native_xdp`).
        """
        inputs = (context, packet, registers, instruction_limit, user, map_inputs)
        return self._session(*inputs, self._framed(frame, user, self._entry))[0]

    def run_repeated(
        self,
        context: Region | None = None,
        *,
        repeat: int,
        packet: Region | None = None,
        registers: Mapping[int, int] | None = None,
        instruction_limit: int | None = None,
        user: object = None,
        map_inputs: bool = True,
        frame: PacketFrame | None = None,
    ) -> tuple[RunResult, int]:
        """Run ``repeat`` times on the same inputs inside one native call, as BPF_PROG_TEST_RUN loops.

        Returns the last run's result and the nanoseconds the native call took (every run).
        Each run starts with the same registers and a full loop budget; memory (the context,
        the packet, the stacks) carries over from run to run, as in the kernel's loop. A program
        that may tail call returns to Python between runs (the dispatcher lives there).
        """
        if repeat < 1:
            raise VmError(f"repeat must be at least 1, got {repeat}")
        inputs = (context, packet, registers, instruction_limit, user, map_inputs)
        if self.may_tail_call:
            result, total = self._session(*inputs, self._framed(frame, user, self._entry))
            for _ in range(repeat - 1):
                result, elapsed = self._session(*inputs, self._framed(frame, user, self._entry))
                total += elapsed
            return result, total
        return self._session(*inputs, self._framed(frame, user, lambda key: int(self._repeat(key, repeat))))

    def _framed(self, frame: PacketFrame | None, user: object, invoke: _Invoke) -> _Invoke:
        """``invoke`` with native xdp_adjust_* turned on for ``frame``, the Python packet synced after."""
        bits = frame_bits(self.helpers, self._packet_helpers) if frame is not None else 0
        if frame is None or not bits:
            return invoke

        def framed(key: int) -> int:
            state = self._runs[key].state
            if state[Slot.PACKET_CTX]:  # a run with a packet to adjust
                frame.fill(state)
                state[Slot.PACKET_NATIVE] |= bits
            try:
                return invoke(key)
            finally:
                sync_packet_back(state, user)

        return framed

    def run_batch(
        self,
        context: Region,
        *,
        buffer: Any,
        lengths: Sequence[int],
        data: int,
        data_end_slot: int,
        user: object = None,
        instruction_limit: int | None = None,
        contexts: Any = None,
        ld_abs: bool = False,
        output: BatchOutput | None = None,
        frame: PacketFrame | None = None,
    ) -> tuple[list[int], int]:
        """Run once per packet of ``buffer`` (contiguous, ``lengths`` bytes each) in one native call.

        Before each run the packet is copied to ``data`` and ``data + length`` stored at the
        native address ``data_end_slot`` (the context's data_end); r1 is ``context``. Returns
        every run's r0 and the nanoseconds spent in native code. A run that ends early
        (``env.stop``) gives its stop value and the batch resumes after it; an error raises.

        ``contexts`` (a ctypes buffer of one ``context.size``-byte image per packet) is copied
        over the context before each run; ``ld_abs`` makes LD_ABS/LD_IND read the packet;
        ``output`` receives every packet after its run (data_meta to data_end); ``frame`` (an
        XDP frame: where it starts and ends, where the context keeps its packet pointers) lets
        native code serve bpf_xdp_adjust_head/tail/meta, and clears the headroom before each
        run. The native packet helpers read the batch's packet, not ``user``'s.
        (:func:`pybpf.vm.jit.batch.run_native_batch` gives the r0s as an ``array('Q')``, uncopied.)
        """
        retvals, elapsed = run_native_batch(
            self,
            context,
            NativeBatch(buffer, lengths, data, data_end_slot, contexts, ld_abs, output, frame),
            user=user,
            instruction_limit=instruction_limit,
        )
        return retvals.tolist(), elapsed

    def _session(  # noqa: PLR0917 - run()'s inputs, passed through
        self,
        context: Region | None,
        packet: Region | None,
        registers: Mapping[int, int] | None,
        instruction_limit: int | None,
        user: object,
        map_inputs: bool,
        invoke: _Invoke,
    ) -> tuple[RunResult, int]:
        """Map the inputs, fill a session's run-state block, start native code with ``invoke``, dispatch tail calls."""
        limit = self.instruction_limit if instruction_limit is None else instruction_limit
        memory = self.memory
        initial: list[int] = [0] * 10
        if context is not None:
            initial[1], initial[2] = context.address, context.size
        if registers:
            for number, value in registers.items():
                if not 0 <= number <= 9:
                    raise VmError(f"initial registers must be r0-r9, found r{number}")
                initial[number] = value & U64
        env = ExecutionContext(self._companion, limit, packet, user) if self._companion is not None else None
        envs = [env] if env is not None else []
        mapped: list[Region] = []
        # A session of our own: a nested run (a helper running this program again) or another
        # thread's run holds another one, with other stacks.
        pool = self.sessions
        session = pool.acquire()
        state = session.state
        key = session.key
        run = _Run(session, state, env, limit=limit)
        try:
            if map_inputs:
                for region in (context, packet):
                    if region is not None and region not in memory:
                        memory.add(region)
                        mapped.append(region)
            session.reset()
            # Slots BUDGET to HOT_WRITABLE in one pack (this is per run).
            count, table = session.ranges_for(pool.layout(memory))
            packet_address, packet_size = (packet.address, packet.size) if packet is not None else (0, 0)
            _HEAD.pack_into(
                session.words,
                _BUDGET * 8,
                limit & U64,
                MAX_LOOPS,
                count,
                table,
                packet_address,
                packet_size,
                *initial,
                0,
                *session.tops,
                *initial,
                *self._bound,
            )
            program: JitProgram = self
            elapsed = 0
            while True:  # the tail-call dispatcher: native code returns here to switch programs
                if program._native_called:  # else the slots stay zero: no native helper
                    program._fill_maps(run, user)
                if program._packet_helpers:  # else the slots stay zero: no native packet helper
                    program._fill_packet(run, user)
                if program._arena_slots:
                    state[_ARENA_ADDRESS:_ARENA_END] = program._arena_slots
                program._runs[key] = run
                try:
                    started = time.perf_counter_ns()
                    r0 = invoke(key)
                    elapsed += time.perf_counter_ns() - started
                finally:
                    del program._runs[key]
                target = run.tail_target
                if target is None or state[_STATUS] != _TAIL_CALL:
                    return program._finish(run, r0), elapsed
                # Same state block: same registers (stored by the main function), stacks, budget.
                state[_STATUS] = Status.RUNNING
                state[_RANGE_COUNT:_RANGES_END] = session.ranges_for(target.sessions.layout(target.memory))
                state[_HELPER_FN:_HOT_END] = target._bound  # and no hot range yet
                # What the last program's native helpers were allowed, the target decides again.
                state[_MAP_COUNT] = state[_NATIVE] = state[_PACKET_NATIVE] = state[_PACKET_CTX] = 0
                next_env = ExecutionContext(target._companion, limit, packet, user) if target._companion else None
                if next_env is not None:
                    next_env.tail_calls = run.tail_calls
                    envs.append(next_env)
                run = _Run(session, state, next_env, tail_calls=run.tail_calls, limit=limit)
                program, invoke = target, target._entry
        finally:
            for used in envs:
                used.release()
            for region in mapped:
                memory.remove(region)
            pool.release(session)

    def _fill_maps(self, run: _Run, user: object) -> None:
        """What native helpers read: which they may serve, the run's CPU, the map table (descriptors by pointer)."""
        if self._native_called:  # else no map table, no bits: the slots are zero (see _session)
            state = run.state
            bits, cpu, fields = native_run_setup(self.helpers, self._native_called, self._map_pointers, user)
            if fields:
                state[_MAP_TABLE] = run.session.fill_map_table(fields)
            state[_MAP_COUNT] = len(fields) // MAP_FIELDS
            state[_NATIVE:_CLOCK_END] = [bits, cpu & U64, self._clock_fn]  # NATIVE, CPU, CLOCK_FN
            fill_tracing_slots(state, user)  # the task's answers and the generator state, when served natively

    def _finish(self, run: _Run, r0: int) -> RunResult:
        """The run's result, or the error its status stands for."""
        state = run.state
        if run.error is not None:
            raise run.error
        executed = int(state[_INSTRUCTIONS]) if self.count_instructions else 0  # 0: "not counted"
        if not state[_STATUS]:  # the common case first, without enum conversions
            return RunResult(r0, executed, _REGISTERS.unpack_from(run.session.words, _REGS * 8))
        status = Status(state[Slot.STATUS])
        if status is Status.STOPPED:
            r0 = int(state[Slot.STOP_R0])
            registers = _REGISTERS.unpack_from(run.session.words, _REGS * 8)
            return RunResult(r0, executed, (r0, *registers[1:]))
        raise status_error(status, state, self._traps, self.instruction_limit_for(run))

    def _fill_packet(self, run: _Run, user: object) -> None:
        """What the native packet and checksum helpers read (see pybpf.vm.jit.native_packet)."""
        if self._packet_helpers:  # else the slots are zero (see _session)
            fill_packet_slots(run.state, self.helpers, self._packet_helpers, user)

    def instruction_limit_for(self, run: _Run) -> int:
        """The limit ``run`` was given (``run()``'s ``instruction_limit``, else the program's)."""
        return run.limit

    # -- callbacks from native code (they must never raise) -------------------------------------

    # The callbacks' signatures are the native ABI: positional arguments only.
    def _serve_helper(self, key: int, helper: int, pc: int, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:  # noqa: PLR0917
        run = self._runs[key]
        try:
            fn = self.helpers.get(helper)
            if fn is None:
                raise HelperError(unknown_call(helper), pc)
            env = run.env
            if env is None:
                raise VmError("a helper was called, but the program was prepared without helper calls", pc)
            env.helper_pc = pc
            sync_packet_back(run.state, env.user)  # native xdp_adjust_* may have moved the packet
            before = env.executed
            try:
                result = fn(env, r1, r2, r3, r4, r5)
            except (PybpfError, ProgramStop):
                raise
            except Exception as error:
                raise HelperError(f"{call_name(helper)} failed: {type(error).__name__}: {error}", pc) from error
            finally:  # callbacks the helper ran (in the interpreter) count as the interpreter counts them
                run.state[_INSTRUCTIONS] += env.executed - before
            if not isinstance(result, int):
                raise HelperError(f"{call_name(helper)} returned {type(result).__name__}, not an int", pc)
            if run.state[Slot.PACKET_CTX]:  # the helper may have moved or resized the packet
                refresh_packet_slots(run.state, env.user)
            if env.pending_tail is not None:
                # Native code returns to run()'s dispatcher, which starts the target's native code.
                run.tail_target = self._tail_target(env.pending_tail)
                env.pending_tail = None
                run.tail_calls = env.tail_calls
                run.state[Slot.ERROR_PC] = pc
                run.state[Slot.STATUS] = Status.TAIL_CALL
            return result & U64
        except ProgramStop as stop:
            run.state[Slot.STOP_R0] = stop.r0
            run.state[Slot.STATUS] = Status.STOPPED
        except BaseException as error:  # recorded, then raised by run() once native code returned
            run.error = error
            run.state[Slot.STATUS] = Status.PYTHON_ERROR
        return 0

    def _serve_fault(self, key: int, address: int, size: int, is_write: int, pc: int) -> int:
        """An access outside the range table: allowed if a region holds it now, else the error is recorded."""
        run = self._runs[key]
        try:
            self.memory.region_for(address, size, pc, bool(is_write))
            run.session.fill_all_ranges(self.memory)  # a region mapped during the run: found natively from now
            return 1
        except BaseException as error:
            run.error = error
            run.state[Slot.STATUS] = Status.PYTHON_ERROR
        return 0

    def _tail_target(self, interpreter: Interpreter) -> JitProgram:
        """The compiled program a tail call to ``interpreter`` runs (compiled once per target)."""
        if interpreter is self.source or interpreter is self._companion:
            return self
        known = self._tail_targets.get(id(interpreter))
        if known is None:
            # The pair keeps the id valid; the target counts if this program does (the count goes on).
            known = (interpreter, JitProgram.of(interpreter, count_instructions=self.count_instructions))
            self._tail_targets[id(interpreter)] = known
        return known[1]

    # -- preparation ----------------------------------------------------------------------------

    def _lddw_constants(self) -> tuple[dict[int, int], dict[int, int], list[int]]:
        """``lddw`` values: inline by pc, and (by pc, the table index) those the resolver gives."""
        inline: dict[int, int] = {}
        table: dict[int, int] = {}
        values: list[int] = []
        for item in self.insns:
            insn = item.insn
            if not isinstance(insn, LoadImm64):
                continue
            if insn.src is PseudoSrc.IMM64:
                inline[item.pc] = insn.value
            elif insn.src is PseudoSrc.FUNC:
                inline[item.pc] = self.code_address(item.pc + 1 + insn.imm)
            elif self.resolver is None:
                raise VmError(
                    f"lddw with pseudo source {insn.src.name} needs a resolver (the runtime's), and none was given",
                    item.pc,
                )
            else:
                table[item.pc] = len(values)
                values.append(self.resolver.resolve(insn, item.pc) & U64)
        return inline, table, values


def _address_of(callback: Any) -> int:
    address = ctypes.cast(callback, ctypes.c_void_p).value
    if address is None:
        raise NotSupportedError("ctypes gave a callback no address")
    return address
