"""Batches: one program run over many packets (``Program.run_batch``), inside one native call where possible.

A Python-to-native call costs hundreds of nanoseconds and a test run tens of microseconds of
Python around it, so a batch under the JIT is one call of the native batch loop
(:func:`pybpf.vm.jit.entries.build_batch`): the packets sit in one contiguous buffer, and before
each run native code copies the packet to the run's packet buffer and sets what differs between
packets. For XDP that is ``data_end``; for socket-buffer programs (tc, socket filters,
cgroup_skb, lwt) a whole ``__sk_buff`` image per packet, precomputed here exactly as
``bpf_prog_test_run_skb`` builds it (len, protocol, pkt_type, the test socket's family and
addresses, the data pointers), so fields a program writes (mark, cb, priority...) start every
packet afresh. Results equal one :meth:`Program.test_run` per packet: the u32 retval, the packet
as the program left it (``data_out=True``), and the maps, which see the runs in order.

A program batches natively (:func:`native_batch_blocker` says why not) when it makes no tail
call and no ``callx``, and every helper it calls either needs no per-run Python state (map,
time/random/CPU and string helpers, spin locks; not bpf_loop or bpf_for_each_map_elem, whose
callbacks run in the interpreter against one run's instruction budget) or is one of the packet
and checksum helpers the JIT serves natively (bpf_csum_diff, bpf_l3/l4_csum_replace,
bpf_csum_update, bpf_skb_load_bytes, bpf_skb_store_bytes: :mod:`pybpf.vm.jit.native_packet`;
and in XDP batches bpf_xdp_adjust_head/tail/meta, which need to know where the context keeps
its packet pointers: :mod:`pybpf.vm.jit.native_xdp`). Helpers that read or reshape the packet in Python
(skb_change_head/tail, skb_adjust_room, vlan push/pop, redirect, hash, perf/ringbuf output of
the packet) need the run's PacketContext, which a native batch does not keep per packet: such
programs, other program types and the interpreter run one test run per packet.

Two differences from per-packet test runs: a packet test_run would refuse (an skb shorter than
an Ethernet header...) raises before any packet runs, where per-packet runs would have run the
packets before it; and the stack is not cleared between packets (as in the kernel's repeat
loop; only a program reading uninitialised stack could tell).
"""

from __future__ import annotations

import ctypes
import struct
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pybpf.errors import TestRunError
from pybpf.isa.insn import Call, CallKfunc, CallReg
from pybpf.platform.context import ContextLayout, Conversion
from pybpf.platform.packet_layout import ETH_HLEN, XDP_MAX_LINEAR
from pybpf.platform.uapi_generated import HelperId
from pybpf.runtime.context import ContextImage, InternalLayout
from pybpf.runtime.helpers.maps import MAP_HELPERS
from pybpf.runtime.helpers.packet_context import PacketContext
from pybpf.runtime.helpers.services import RunState
from pybpf.runtime.helpers.strings import STRING_HELPERS
from pybpf.runtime.helpers.system import SYSTEM_HELPERS
from pybpf.runtime.program import BatchResult, Engine, Program
from pybpf.runtime.progtypes import run_kind
from pybpf.runtime.progtypes.skb import SkbKind, check_frame, set_frame_fields
from pybpf.runtime.progtypes.xdp import XDP_POINTERS, XdpKind, packet_frame
from pybpf.vm.jit.batch import NativeBatch, low_words, run_native_batch
from pybpf.vm.jit.entries import BatchOutput
from pybpf.vm.jit.native_packet import NATIVE_PACKET_HELPERS, runtime_packet_helper
from pybpf.vm.jit.native_xdp import XDP_ADJUST_HELPERS, PacketFrame

U32 = 0xFFFF_FFFF
_PER_RUN_MAP_HELPERS = frozenset({HelperId.TAIL_CALL, HelperId.LOOP, HelperId.FOR_EACH_MAP_ELEM})
"""Tail calls switch programs in Python; callbacks run in the interpreter against one run's budget."""
BATCH_SAFE_HELPERS = frozenset(
    int(helper)
    for table in (MAP_HELPERS, SYSTEM_HELPERS, STRING_HELPERS)
    for helper in table
    if helper not in _PER_RUN_MAP_HELPERS
) | {int(HelperId.SPIN_LOCK), int(HelperId.SPIN_UNLOCK)}
"""Helpers that need nothing of a run's packet: they behave the same inside a native batch."""


@dataclass(frozen=True, slots=True)
class PacketBatchResult(BatchResult):
    """:class:`~pybpf.runtime.program.BatchResult` plus the packets after their runs and how the batch ran.

    ``data_out[i]`` is what ``test_run(packets[i]).data_out`` gives (only when asked for:
    ``run_batch(..., data_out=True)``); ``native`` says whether the batch ran inside one native call.
    """

    data_out: tuple[bytes, ...] | None = None
    native: bool = True


def native_batch_blocker(program: Program) -> str | None:
    """Why ``program`` cannot run a batch inside one native call, or None when it can."""
    kind = run_kind(program.prog_type)
    if not isinstance(kind, XdpKind | SkbKind):
        return f"{program.type_spec.name} programs have no native batch (only XDP and socket-buffer types)"
    if program.layout.slot_for(Conversion.PACKET_END) is None:
        return f"the {program.type_spec.name} context has no data_end"
    if program.jit.may_tail_call:
        return "the program may tail call (the dispatcher lives in Python)"
    helpers = program.interpreter.helpers
    for item in program.interpreter.insns:
        insn = item.insn
        if isinstance(insn, CallReg):
            return f"callx at pc {item.pc} may call any helper"
        if isinstance(insn, CallKfunc):
            return f"the kfunc call at pc {item.pc} runs in Python"
        if not isinstance(insn, Call):
            continue
        helper = int(insn.helper)
        if helper in NATIVE_PACKET_HELPERS:
            if not runtime_packet_helper(helpers, helper):
                return f"helper {_name(helper)} is not the runtime's: it runs in Python with the run's packet"
            if helper in XDP_ADJUST_HELPERS and not _has_packet_pointers(program):
                return f"helper {_name(helper)} needs an XDP context with data, data_end and data_meta"
        elif helper not in BATCH_SAFE_HELPERS:
            return f"helper {_name(helper)} needs the run's packet state in Python"
    return None


def _has_packet_pointers(program: Program) -> bool:
    kind = run_kind(program.prog_type)
    return isinstance(kind, XdpKind) and all(
        program.layout.slot_for(conversion) is not None for conversion in XDP_POINTERS
    )


def _name(helper: int) -> str:
    try:
        return f"bpf_{HelperId(helper).name.lower()}"
    except ValueError:
        return f"#{helper}"


def run_batch(
    program: Program,
    packets: Sequence[bytes],
    *,
    engine: Engine | None = None,
    cpu: int | None = None,
    data_out: bool = False,
    ifindex: int = 0,
    rx_queue: int = 0,
) -> PacketBatchResult:
    """``program`` once per packet, natively when it can (see the module doc); ``Program.run_batch`` calls this.

    ``ifindex`` (0: the test-run default, loopback) and ``rx_queue`` are one context for the whole
    batch, as every packet's ``test_run`` would get from :func:`batch_context`: the ingress device
    (``xdp_md.ingress_ifindex``/``rx_queue_index``, ``__sk_buff.ifindex``/``ingress_ifindex``).
    """
    native = program.resolve_engine(engine) == "jit"
    if not native or native_batch_blocker(program) is not None:
        runs = [
            program.test_run(packet, batch_context(program, packet, ifindex, rx_queue), cpu=cpu, engine=engine)
            for packet in packets
        ]
        total = sum(run.duration_ns for run in runs)
        outputs = tuple(run.data_out for run in runs) if data_out else None
        return PacketBatchResult(
            array("I", (run.retval for run in runs)), total / len(runs) if runs else 0.0, outputs, native=False
        )
    if not packets:
        return PacketBatchResult(array("I"), 0.0, () if data_out else None, native=True)
    return _run_native(program, packets, cpu, data_out, ifindex=ifindex, rx_queue=rx_queue)


def batch_context(program: Program, packet: bytes, ifindex: int, rx_queue: int = 0) -> bytes | None:
    """The ctx_in a test run of ``packet`` on device ``ifindex`` (0: none, the default context) takes."""
    if not ifindex:
        if rx_queue:
            raise TestRunError("an rx queue needs an ingress ifindex")
        return None
    if isinstance(run_kind(program.prog_type), XdpKind):
        # struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex.
        return struct.pack("<6I", 0, len(packet), 0, ifindex, rx_queue, 0)
    uapi = program.layout.uapi
    image = bytearray(uapi.size)
    for name in ("ifindex", "ingress_ifindex"):
        field = uapi.field(name)
        image[field.offset : field.end] = ifindex.to_bytes(field.end - field.offset, "little")
    return bytes(image)


def _run_native(
    program: Program, packets: Sequence[bytes], cpu: int | None, data_out: bool, *, ifindex: int, rx_queue: int
) -> PacketBatchResult:
    kind = run_kind(program.prog_type)
    skb = kind if isinstance(kind, SkbKind) else None
    # Per distinct packet, not per packet: a batch often repeats a few frames (set() hashes in C).
    distinct = set(packets)
    if skb is not None:
        for packet in distinct:
            check_frame(packet)
        visible = packets if skb.is_l2 else [packet[ETH_HLEN:] for packet in packets]
    else:
        for packet in distinct:
            if len(packet) > XDP_MAX_LINEAR:
                raise TestRunError(
                    f"packet of {len(packet)} bytes: XDP fragments are not supported (max {XDP_MAX_LINEAR})"
                )
        visible = packets
    hidden = ETH_HLEN if skb is not None and not skb.is_l2 else 0
    sizes = {len(packet) - hidden for packet in distinct}
    # One length for all (the usual replay of one frame size): repeat it in C instead of measuring each packet.
    lengths = array("Q", sizes) * len(packets) if len(sizes) == 1 else array("Q", map(len, visible))
    joined = b"".join(visible)
    buffer = (ctypes.c_uint8 * (len(joined) or 1)).from_buffer_copy(joined or b"\0")
    # The run's packet buffer must hold the longest packet: prepare one of that size.
    longest = bytes(max(map(len, distinct)))
    ctx_in = batch_context(program, longest, ifindex, rx_queue)
    # The XDP context's ingress device and queue stay as prepare sets them: the native loop only moves data_end.
    prepared = kind.prepare(program.interpreter.memory, program.layout, longest, ctx_in)
    try:
        packet_state = prepared.packet_state
        slot = program.layout.slot_for(Conversion.PACKET_END)
        if packet_state is None or slot is None:  # native_batch_blocker checked both
            raise TestRunError(f"{program.type_spec.name}: no packet to batch over")
        images = None
        if skb is not None:
            # Keyed by frame alone (its length here is the frame's minus the hidden header): no tuple per packet.
            by_frame = distinct_images(
                program.layout, [(frame, len(frame) - hidden) for frame in distinct], packet_state.data,
                packet_state.data_meta, ctx_in=ctx_in,
            )
            joined_images = b"".join(map({key[0]: image for key, image in by_frame.items()}.__getitem__, packets))
            images = (ctypes.c_uint8 * len(joined_images)).from_buffer_copy(joined_images)
        frame = _xdp_frame(program, prepared.context.address, packet_state) if skb is None else None
        # An XDP packet may grow to the frame's end: each output slot is then a whole frame.
        stride = packet_state.region.size if frame is not None else max(sizes)
        output = BatchOutput.for_packets(len(packets), stride) if data_out else None
        state = RunState(program.services, packet=packet_state, ctx=prepared.context.address, cpu=cpu)
        # run_native_batch, not JitProgram.run_batch: its r0s stay one array('Q'), never a list.
        retvals, elapsed = run_native_batch(
            program.jit,
            prepared.context,
            NativeBatch(
                buffer, lengths, packet_state.data, prepared.context.address + slot, images, skb is not None,
                output, frame,
            ),
            user=state,
        )
    finally:
        prepared.close()
    outputs = None
    if output is not None:
        head = bytes(ETH_HLEN) if skb is not None and not skb.is_l2 else b""  # as SkbRun.finish pushes it back
        # One copy of the whole output and plain slices of it (a comprehension: measured twice as
        # fast as chaining map/slice, and far cheaper than indexing ctypes arrays per packet).
        raw = bytes(output.buffer)
        ends = memoryview(output.lengths).cast("B").cast("Q")[: len(packets)].tolist()
        starts = range(0, output.stride * len(packets), output.stride)
        if head:
            outputs = tuple([head + raw[start : start + size] for start, size in zip(starts, ends, strict=True)])
        else:
            outputs = tuple([raw[start : start + size] for start, size in zip(starts, ends, strict=True)])
    retval_array = low_words(retvals)
    return PacketBatchResult(retval_array, elapsed / len(packets), outputs)


def _xdp_frame(program: Program, context: int, packet: PacketContext) -> PacketFrame | None:
    """What native xdp_adjust_* need of the batch's frame, when the program calls one (else None)."""
    if not program.adjusts_xdp_frame:
        return None  # no frame: no headroom to clear before every packet
    return packet_frame(program.layout, context, packet)


def _address_patches(uapi: ContextLayout, *fields: tuple[str, int, int]) -> tuple[tuple[int, int, int], ...]:
    """``(offset in the image, first, last byte in the network header)`` of each named address field."""
    return tuple((uapi.field(name).offset, first, last) for name, first, last in fields)


def skb_context_images(
    layout: InternalLayout,
    frames: Sequence[tuple[bytes, int]],
    data: int,
    data_meta: int,
    *,
    ctx_in: bytes | None = None,
) -> ctypes.Array[ctypes.c_uint8]:
    """One ``__sk_buff`` image per ``(frame, length the program sees)``, as ``SkbKind.prepare`` builds it.

    Without ctx_in: the frame's protocol and pkt_type (eth_type_trans), the loopback ifindex, the
    test socket's family and addresses for IPv4/IPv6, len, and the data pointers of a packet at
    ``data`` (with the metadata pointer at ``data_meta``), as ``sync_skb`` sets them. ``ctx_in``
    (the fields ``SkbKind.prepare`` accepts, already checked by it) starts every image, and then,
    as there, a zero ``wire_len`` becomes the packet's length.
    """
    images = distinct_images(layout, frames, data, data_meta, ctx_in=ctx_in)
    joined = b"".join(map(images.__getitem__, frames))
    return (ctypes.c_uint8 * (len(joined) or 1)).from_buffer_copy(joined or b"\0")


def distinct_images(
    layout: InternalLayout,
    frames: Iterable[tuple[bytes, int]],
    data: int,
    data_meta: int,
    *,
    ctx_in: bytes | None = None,
) -> dict[tuple[bytes, int], bytes]:
    """The image :func:`skb_context_images` gives each distinct ``(frame, length)`` of ``frames``."""
    scratch = ContextImage(layout, "batch context image")
    size = layout.size
    zeros = bytes(size)
    uapi = layout.uapi
    # Where set_frame_fields puts the addresses: (image offset, first frame byte, last frame byte) per ethertype.
    addresses = {
        b"\x08\x00": _address_patches(uapi, ("local_ip4", 12, 16), ("remote_ip4", 16, 20)),
        b"\x86\xdd": _address_patches(uapi, ("local_ip6", 8, 24), ("remote_ip6", 24, 40)),
    }
    # One image per distinct (frame, length), joined in C: batches often repeat a few frames.
    # An image depends on the frame only through its MAC destination and ethertype (with the two
    # bytes that tell 802.2 from 802.3), its length, and the IP addresses: build one per
    # (head, length) and patch the addresses in.
    heads: dict[tuple[bytes, int], bytes] = {}
    images: dict[tuple[bytes, int], bytes] = {}
    for frame, length in set(frames):
        key = (frame[:6] + frame[12:16], length)
        head = heads.get(key)
        if head is None:
            scratch.region.view[:] = zeros
            if ctx_in is not None:
                scratch.load_uapi(ctx_in)
            set_frame_fields(scratch, frame)
            if ctx_in is not None and not scratch.get("wire_len"):
                scratch.set("wire_len", length)
            scratch.set("len", length)
            scratch.set_pointer(Conversion.PACKET_DATA, data)
            scratch.set_pointer(Conversion.PACKET_META, data_meta)
            scratch.set_pointer(Conversion.PACKET_END, data + length)
            heads[key] = images[frame, length] = bytes(scratch.region.view)
            continue
        image = bytearray(head)
        for offset, first, last in addresses.get(frame[12:14], ()):
            image[offset : offset + last - first] = frame[ETH_HLEN + first : ETH_HLEN + last]
        images[frame, length] = bytes(image)
    return images
