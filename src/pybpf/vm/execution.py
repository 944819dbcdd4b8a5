"""Per-run state, the run loop, and what helpers see of a running program.

:class:`ExecutionContext` is created for every run. The interpreter's operation closures receive
it (next to the register list) and it is the ``env`` handed to every helper: helpers reach the
memory, the running program, and the three ways a helper can steer execution:

- :meth:`ExecutionContext.call_function` calls a function of the program (bpf_loop,
  for_each_map_elem callbacks) in a new frame and returns its r0;
- :meth:`ExecutionContext.tail_call` replaces the running program (bpf_tail_call);
- :meth:`ExecutionContext.stop` ends the program at once with a given r0.

The run loop (:func:`execute`) calls one closure per instruction; each returns the next pc. A
negative "pc" is an *event* for the loop (exit, tail call, resynchronise after a nested run), so
the hot loop tests one integer per step and never inspects opcodes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn, Protocol

from pybpf.errors import CallDepthError, InstructionLimitError, PybpfError, VmError
from pybpf.isa.insn import LoadImm64
from pybpf.vm.memory import AddressSpace, Region, RegionKind

if TYPE_CHECKING:
    from pybpf.vm.interpreter import Interpreter

U64 = (1 << 64) - 1

STACK_SIZE = 512
"""Bytes of stack per frame (MAX_BPF_STACK)."""
MAX_CALL_FRAMES = 8
"""Frames a program may have at once, its main frame included (MAX_CALL_FRAMES)."""
MAX_TAIL_CALLS = 33
"""Tail calls one run may make (MAX_TAIL_CALL_CNT)."""
MAX_LOOPS = 8 * 1024 * 1024
"""may_goto's per-run budget (BPF_MAX_LOOPS)."""
DEFAULT_INSTRUCTION_LIMIT = 10_000_000
"""Instructions one run may execute unless the caller says otherwise."""

# Events: negative values an operation returns instead of a next pc.
EXIT = -1
"""The program (or the callback frame a nested run waits for) has returned."""
TAIL_CALL = -2
"""A helper requested a tail call: switch to ``pending_tail`` at pc 0."""
RESUME = -3
"""A helper ran nested code: re-read the budget, then continue at ``resume_pc``."""

Op = Callable[[list[int], "ExecutionContext"], int]
"""One pre-decoded instruction: mutate registers/memory, return the next pc (or an event)."""


KFUNC_KEY_BASE = 1 << 32
"""Kfunc implementations share the ``helpers`` table with helpers, under ``KFUNC_KEY_BASE + kfunc id``
(helper ids are 32-bit, so the keys never collide); a ``call`` with ``src_reg = 2`` dispatches there."""


def kfunc_key(kfunc_id: int) -> int:
    """The ``helpers`` table key of the implementation of kfunc ``kfunc_id`` (pybpf's id)."""
    return KFUNC_KEY_BASE + (kfunc_id & 0xFFFFFFFF)


def call_name(key: int) -> str:
    """How an error names the helper or kfunc stored under ``key``."""
    return f"kfunc #{key - KFUNC_KEY_BASE}" if key >= KFUNC_KEY_BASE else f"helper {key}"


def unknown_call(key: int) -> str:
    """The error for a ``helpers`` table without ``key``."""
    return f"unknown kfunc #{key - KFUNC_KEY_BASE}" if key >= KFUNC_KEY_BASE else f"unknown helper id {key}"


class HelperFn(Protocol):
    """A helper function: ``env`` is the running program's :class:`ExecutionContext`; returns r0."""

    # Six positional arguments are the helper ABI: the context, then r1-r5.
    def __call__(self, env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int, /) -> int: ...  # noqa: PLR0917


class PseudoResolver(Protocol):
    """Resolves ``lddw`` pseudo sources (map fd/value, BTF id, map index) to 64-bit values at load time."""

    def resolve(self, insn: LoadImm64, pc: int) -> int: ...


@dataclass(frozen=True, slots=True)
class RunResult:
    """What a run produced: r0, how many instructions ran, and the final registers r0-r10."""

    r0: int
    instructions: int
    registers: tuple[int, ...]


class ProgramStop(Exception):
    """Raised by :meth:`ExecutionContext.stop` to unwind every frame; caught by ``Interpreter.run``.

    Helpers must let it propagate (never catch ``Exception`` around ``env`` calls without re-raising).
    """

    def __init__(self, r0: int) -> None:
        self.r0 = r0 & U64
        super().__init__(f"program stopped with r0 = {self.r0:#x}")


class ExecutionContext:
    """The state of one run, and the environment helpers receive.

    ``user`` is whatever the caller of ``Interpreter.run`` passed (the runtime's per-run data).
    """

    __slots__ = (
        "events",
        "frames",
        "helper_pc",
        "limit",
        "may_goto_left",
        "memory",
        "ops",
        "packet",
        "pending_tail",
        "program",
        "regs",
        "remaining",
        "resume_pc",
        "stacks",
        "tail_calls",
        "user",
    )

    def __init__(self, program: Interpreter, limit: int, packet: Region | None = None, user: object = None) -> None:
        self.program = program
        self.memory: AddressSpace = program.memory
        self.ops: list[Op] = program.ops
        self.regs = [0] * 11
        self.frames: list[tuple[int, int, int, int, int, int]] = []
        self.stacks: list[Region] = []
        self.limit = limit
        self.remaining = limit
        self.may_goto_left = MAX_LOOPS
        self.tail_calls = 0
        self.pending_tail: Interpreter | None = None
        self.events = False  # set when a helper did something the run loop must look at
        self.resume_pc = 0
        self.helper_pc = -1
        self.packet = packet
        self.user = user

    # -- frames ---------------------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """The number of frames now live (1 in the main function)."""
        return len(self.frames) + 1

    @property
    def executed(self) -> int:
        """Instructions executed so far (exact between instructions, e.g. inside a helper)."""
        return self.limit - self.remaining

    def stack_top(self, frame: int) -> int:
        """r10 for frame number ``frame`` (0 = main); each frame has its own 512-byte stack region."""
        while len(self.stacks) <= frame:
            index = len(self.stacks)
            region = Region.zeroed(RegionKind.STACK, f"stack of frame {index}", STACK_SIZE)
            self.memory.add(region)
            self.stacks.append(region)
        return self.stacks[frame].end

    def push_frame(self, pc: int, return_pc: int, target: int) -> int:
        """Enter a bpf-to-bpf call at ``pc``: save r6-r9 and r10, give the callee a fresh stack."""
        frame = len(self.frames) + 1
        if frame >= MAX_CALL_FRAMES:
            raise CallDepthError(f"call to pc {target} exceeds the limit of {MAX_CALL_FRAMES} call frames", pc)
        regs = self.regs
        self.frames.append((return_pc, regs[6], regs[7], regs[8], regs[9], regs[10]))
        regs[10] = self.stack_top(frame)
        return target

    def release(self) -> None:
        """Unmap this run's stacks (called once the run is over)."""
        for region in self.stacks:
            self.memory.remove(region)
        self.stacks.clear()

    # -- what helpers may do --------------------------------------------------------------------

    @property
    def pc(self) -> int:
        """The pc of the helper call being served."""
        return self.helper_pc

    def call_function(self, target: int, *args: int) -> int:
        """Call the program's function at ``target`` (a code address or a pc) and return its r0.

        ``args`` (at most five) go to r1-r5; the rest of r1-r5 are zero. The callee gets a new
        frame (it counts toward the 8-frame limit) and r6-r9 are preserved, as for a bpf-to-bpf call.
        """
        pc = self.helper_pc
        if len(args) > 5:
            raise VmError(f"a function takes at most 5 arguments (r1-r5), {len(args)} given", pc)
        entry = self.program.function_pc(target)
        if entry is None:
            raise VmError(f"callback target {target:#x} is not a function of program {self.program.name!r}", pc)
        regs = self.regs
        self.push_frame(pc, EXIT, entry)  # the callee's exit returns EXIT, which ends the nested run
        for number in range(1, 6):
            regs[number] = args[number - 1] & U64 if number <= len(args) else 0
        execute(self, entry)
        self.events = True  # the calling loop's view of the budget is stale now
        return regs[0]

    def tail_call(self, program: Interpreter) -> bool:
        """Request that ``program`` replace the running one once the helper returns.

        Returns False (the helper should then fail, and execution continues after the call)
        when this run already made :data:`MAX_TAIL_CALLS` tail calls. The new program starts at
        pc 0 with the same registers (r1 = the context) and the same stack frame.
        """
        pc = self.helper_pc
        if program.memory is not self.memory:
            raise VmError(f"tail call target {program.name!r} uses a different address space", pc)
        if self.frames:
            raise VmError("tail calls from inside a bpf-to-bpf function or callback are not supported", pc)
        if self.tail_calls >= MAX_TAIL_CALLS:
            return False
        self.tail_calls += 1
        self.pending_tail = program
        self.events = True
        return True

    def stop(self, r0: int) -> NoReturn:
        """End the whole program now with ``r0`` (unwinding every frame). Does not return."""
        raise ProgramStop(r0)

    def after_helper(self, next_pc: int) -> int:
        """Turn what a helper requested into the event the run loop must handle."""
        self.events = False
        if self.pending_tail is not None:
            return TAIL_CALL
        self.resume_pc = next_pc
        return RESUME


def execute(run: ExecutionContext, pc: int) -> None:
    """Run from ``pc`` until an exit event; ``run.remaining`` counts the budget down."""
    regs = run.regs
    while True:
        ops = run.ops
        limit = run.remaining
        executed = 0
        try:
            # The budget is the length of the range: no per-step counter or comparison is needed.
            for executed in range(1, limit + 1):  # noqa: B007 - read after the loop
                pc = ops[pc](regs, run)
                if pc < 0:
                    break
            else:
                executed = limit
                raise InstructionLimitError(f"instruction budget of {run.limit} exhausted before this instruction", pc)
        except (PybpfError, ProgramStop):
            run.remaining -= executed
            raise
        except Exception as error:  # a bug in an operation must still surface as a VmError with its pc
            run.remaining -= executed
            raise VmError(f"internal error: {type(error).__name__}: {error}", pc) from error
        run.remaining -= executed
        if pc == EXIT:
            return
        if pc == TAIL_CALL:
            target = run.pending_tail
            run.pending_tail = None
            if target is None:
                raise VmError("tail call event without a target", pc)
            run.program = target
            run.ops = target.ops
            pc = 0
        elif pc == RESUME:
            pc = run.resume_pc
        else:
            raise VmError(f"unknown run-loop event {pc}", pc)
