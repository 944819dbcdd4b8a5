"""The run-state block shared by native code and Python, and the statuses native code reports.

Every generated function receives a pointer to one run-state block: an array of 64-bit slots
(:class:`Slot` gives their indices). Python fills the inputs before a run (initial registers,
stack tops, the accessible address ranges, the loop budget) and reads the outputs after it
(status, final registers). Native code never raises: it writes a :class:`Status` (and the pc it
concerns) into the block and returns at once from every frame; :mod:`pybpf.vm.jit.program` turns
the status into the typed error the interpreter would have raised.
"""

from __future__ import annotations

from enum import IntEnum, unique


@unique  # two slots at one index would silently alias (native code would clobber one with the other)
class Slot(IntEnum):
    """Indices of the 64-bit slots of the run-state block."""

    STATUS = 0
    """A :class:`Status`; anything but RUNNING makes every frame return at once."""
    ERROR_PC = 1
    """The pc the status concerns."""
    ERROR_VALUE = 2
    """A value the status concerns (the callx target...)."""
    STOP_R0 = 3
    """r0 when a helper or a packet load stopped the program."""
    BUDGET = 4
    """Loop iterations left: decremented at every loop header (see ``Status.BUDGET``)."""
    MAY_GOTO_LEFT = 5
    """may_goto's loop budget (BPF_MAX_LOOPS)."""
    RANGE_COUNT = 6
    """How many (start, end, writable) triples the range table holds."""
    RANGES = 7
    """Native address of the range table: the regions mapped when the run started."""
    PACKET_ADDRESS = 8
    """Where LD_ABS/LD_IND read (0 when the run has no packet)."""
    PACKET_SIZE = 9
    REGS = 10
    """r0-r10: initial values of r0-r9 in, final values of r0-r10 out (11 slots)."""
    STACK_TOPS = 21
    """r10 for each call depth, 0 (main) to 7 (8 slots)."""
    INITIAL_REGS = 29
    """r0-r9 every run of a native repeat starts with (10 slots; ``REGS`` holds the last run's)."""
    HELPER_FN = 39
    """Native address of the running program's helper trampoline."""
    FAULT_FN = 40
    """Native address of the running program's memory fault handler."""
    CONSTANTS = 41
    """Native address of the running program's constant table (resolved ``lddw`` values)."""
    HOT_START = 42
    """The range the last table scan found (start, end, writable): accesses check it inline first.

    Python resets it (start = end = 2**64 - 1, which no access passes) whenever it refills the table.
    """
    HOT_END = 43
    HOT_WRITABLE = 44
    MAP_TABLE = 45
    """Native address of the run's map table (:data:`MAP_FIELDS` slots per map) native map helpers use."""
    MAP_COUNT = 46
    """How many maps the map table holds (0: every map helper goes through the trampoline)."""

    NATIVE = 47
    """Which helpers native code serves itself this run (:class:`NativeHelper` bits)."""
    CPU = 48
    """The run's virtual CPU (``bpf_get_smp_processor_id``'s answer)."""
    CLOCK_FN = 49
    """Native address of libc's ``clock_gettime`` (``bpf_ktime_get_ns`` reads CLOCK_MONOTONIC)."""
    TIMESPEC = 50
    """Two slots (tv_sec, tv_nsec) ``clock_gettime`` writes into."""
    TIMESPEC_NSEC = 51
    PACKET_NATIVE = 52
    """Which packet/checksum helpers native code serves itself this run (``native_packet.PacketNative`` bits)."""
    PACKET_CTX = 53
    """The context pointer the packet helpers accept as r1 (0: the run has no packet)."""
    PACKET_DATA = 54
    """The packet's ``data`` (native address); Python refreshes it after a helper reshapes the packet."""
    PACKET_END = 55
    """The packet's ``data_end``; a native batch sets it (and ``PACKET_DATA``) for every packet."""
    PACKET_META = 56
    """The packet's ``data_meta`` (XDP batches, for the native xdp_adjust_* helpers)."""
    PACKET_FRAME = 57
    """The XDP frame's first byte (xdp_adjust_head/meta keep ``XDP_FRAME_STRUCT`` bytes free after it)."""
    PACKET_FRAME_END = 58
    """How far xdp_adjust_tail may grow the packet (the frame minus skb_shared_info)."""
    CONTEXT_DATA_SLOT = 59
    """Native address of the context's data pointer, which the native xdp_adjust_* helpers update."""
    CONTEXT_END_SLOT = 60
    CONTEXT_META_SLOT = 61
    TASK_PID_TGID = 62
    """``bpf_get_current_pid_tgid``'s answer for the run (see :mod:`pybpf.vm.jit.natives.tracing`)."""
    TASK_UID_GID = 63
    """``bpf_get_current_uid_gid``'s answer for the run."""
    TASK_COMM = 64
    """Two slots: the current task's name (16 bytes, zero padded) ``bpf_get_current_comm`` copies."""
    TASK_COMM_HIGH = 65
    PRANDOM_STATE = 66
    """Native address of the run's CPU's generator state (:class:`pybpf.vm.native_tracing.PrandomState`)."""
    RING_TABLE = 67
    """Native address of the ring table: (map pointer, ring descriptor) pairs (see ``natives.ringbuf_ir``)."""
    RING_COUNT = 68
    """How many rings the ring table holds (0: every ring helper goes through the trampoline)."""
    INSTRUCTIONS = 69
    """Instructions executed so far in the run (code compiled with ``count_instructions`` only).

    Native code adds each straight-line segment's length on entering it; the helper trampoline
    adds what callbacks ran in the interpreter. A repeat resets it before every run.
    """
    ARENA_ADDRESS = 70
    """Native address of the program's arena buffer (see :mod:`pybpf.vm.jit.arena_ir`; 0: no arena)."""
    ARENA_PRESENT = 71
    """Native address of the arena's page table: one byte per page, non-zero when allocated."""
    ARENA_BASE32 = 72
    """The low 32 bits of the arena's user address: what a program's arena offsets count from."""
    ARENA_SIZE = 73
    """The arena's size in bytes."""
    ARENA_USER_HIGH = 74
    """The upper 32 bits of the arena's user address (in place): what a cast to user space ORs in."""


STATE_SLOTS = max(Slot) + 1
"""The size of the run-state block, in 64-bit slots."""
RANGE_FIELDS = 3
"""Slots per range-table entry: start, end (exclusive), writable (0 or 1)."""
MAP_FIELDS = 3
"""Slots per map-table entry: map pointer, native descriptor address, this run's CPU offset
(see :mod:`pybpf.vm.native_maps`)."""


class NativeHelper(IntEnum):
    """Bits of ``Slot.NATIVE``: set when the run's helper and its source match what native code does."""

    SMP_PROCESSOR_ID = 1
    """The runtime's get_smp_processor_id, with the run's CPU in ``Slot.CPU``."""
    KTIME_GET_NS = 2
    """The runtime's ktime_get_ns reading the host's CLOCK_MONOTONIC (not a manual test clock)."""
    MAP_LOOKUP_ELEM = 4
    """The runtime's map_lookup_elem: maps in the map table are looked up natively."""
    MAP_UPDATE_ELEM = 8
    """The runtime's map_update_elem: existing elements of maps in the map table are updated natively."""
    GET_CURRENT_PID_TGID = 16
    """The runtime's get_current_pid_tgid, with the run's answer in ``Slot.TASK_PID_TGID``."""
    GET_CURRENT_UID_GID = 32
    """The runtime's get_current_uid_gid (``Slot.TASK_UID_GID``)."""
    GET_CURRENT_COMM = 64
    """The runtime's get_current_comm (``Slot.TASK_COMM``)."""
    GET_PRANDOM_U32 = 128
    """The runtime's get_prandom_u32, stepping the generator at ``Slot.PRANDOM_STATE``."""
    RINGBUF_RESERVE = 256
    """The runtime's ringbuf_reserve, for the rings of ``Slot.RING_TABLE``."""
    RINGBUF_SUBMIT = 512
    RINGBUF_DISCARD = 1024
    RINGBUF_OUTPUT = 2048


class Status(IntEnum):
    """What native code reports in ``Slot.STATUS``."""

    RUNNING = 0
    """No event: the program returned normally."""
    STOPPED = 1
    """The program ended early (helper ``env.stop``, out-of-packet LD_ABS) with ``Slot.STOP_R0``."""
    PYTHON_ERROR = 2
    """A helper or the memory fault handler recorded an exception on the Python side."""
    CALL_DEPTH = 3
    """A bpf-to-bpf call at ``Slot.ERROR_PC`` would exceed the 8-frame limit."""
    BUDGET = 4
    """The loop budget ran out at the loop header ``Slot.ERROR_PC``."""
    BAD_CALL = 5
    """``callx`` at ``Slot.ERROR_PC`` to ``Slot.ERROR_VALUE``, which is no function of the program."""
    TRAP = 6
    """An instruction at ``Slot.ERROR_PC`` that cannot execute (kfunc call, falling off the end...)."""
    NO_PACKET = 7
    """LD_ABS/LD_IND at ``Slot.ERROR_PC`` in a run without a packet."""
    TAIL_CALL = 8
    """The helper at ``Slot.ERROR_PC`` requested a tail call; the main function stored its registers."""
    TAIL_CALL_IN_FUNCTION = 9
    """A tail call requested (at ``Slot.ERROR_PC``) inside a bpf-to-bpf function: refused."""
