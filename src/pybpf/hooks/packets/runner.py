"""One packet through one program: the per-packet path shared by pcap replay and live attachment.

A :class:`PacketRunner` builds each packet's context exactly as a test run does (the program
type's :class:`~pybpf.runtime.progtypes.RunKind`) and runs it through the same code as
:meth:`Program.test_run`; what it adds is what a hook needs and a test run throws away: the
redirect the run recorded, and the frame after the run as the next hop would see it. The
return value becomes a :class:`PacketAction` following what the kernel does with it:

- XDP (``enum xdp_action``): ABORTED, DROP, PASS, TX, REDIRECT; any other value is an invalid
  action, which the kernel warns about and treats like ABORTED (``bpf_warn_invalid_xdp_action``).
- tc (``TC_ACT_*``, as ``sch_handle_ingress``/``tcx``): OK, RECLASSIFY, PIPE, UNSPEC and unknown
  values continue (PASS); SHOT drops; STOLEN, QUEUED and TRAP consume the packet (DROP from
  the stack's point of view); REDIRECT sends it to ``bpf_redirect``'s device.
- socket filters: the return value is how many bytes to keep; 0 drops.
- cgroup_skb: bit 0 allows (PASS) or denies (DROP).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum

from pybpf.errors import NotSupportedError
from pybpf.platform.packet_layout import ETH_HLEN
from pybpf.platform.uapi_generated import BpfMapType, BpfProgType, TcAct, XdpAction
from pybpf.platform.verdicts import verdict_name
from pybpf.runtime.helpers.services import Redirect, RunState
from pybpf.runtime.program import Program
from pybpf.runtime.progtypes import run_kind

U32 = 0xFFFF_FFFF

PACKET_PROG_TYPES = frozenset(
    {
        BpfProgType.XDP,
        BpfProgType.SCHED_CLS,
        BpfProgType.SCHED_ACT,
        BpfProgType.SOCKET_FILTER,
        BpfProgType.CGROUP_SKB,
    }
)
"""Program types a packet hook can run: they take a frame and return a verdict or a length."""

L3_TYPES = frozenset({BpfProgType.SOCKET_FILTER, BpfProgType.CGROUP_SKB})
"""Types that see the packet from its network header (the Ethernet header is kept aside)."""

_TC_CONSUMED = frozenset({TcAct.SHOT, TcAct.STOLEN, TcAct.QUEUED, TcAct.TRAP})
_REDIRECT_DEVICE_MAPS = frozenset({BpfMapType.DEVMAP, BpfMapType.DEVMAP_HASH})


class PacketAction(Enum):
    """What happens to the packet after the program, whatever the program type's vocabulary."""

    PASS = "pass"  # on to the stack (possibly rewritten)
    DROP = "drop"
    TX = "tx"  # back out of the interface it arrived on
    REDIRECT = "redirect"  # out of another interface (or a CPU/socket map slot)
    ABORTED = "aborted"  # XDP_ABORTED or an invalid XDP action: dropped, counted as an error

    @property
    def emits(self) -> bool:
        """Whether the packet continues somewhere (to the stack or out of an interface)."""
        return self in (PacketAction.PASS, PacketAction.TX, PacketAction.REDIRECT)


@dataclass(frozen=True, slots=True)
class PacketResult:
    """One run: the return value, its name, the action, and the frame as it leaves the program."""

    retval: int
    verdict: str  # "XDP_TX", "TC_ACT_SHOT", or for types without verdict names "PASS"/"DROP"
    action: PacketAction
    data: bytes  # the whole Ethernet frame after the run (socket filters: truncated to what they keep)
    modified: bool
    redirect: Redirect | None
    redirect_ifindex: int | None  # the device a REDIRECT goes to, when the target is a device
    instructions: int


def xdp_action(retval: int) -> PacketAction:
    match retval:
        case XdpAction.DROP:
            return PacketAction.DROP
        case XdpAction.PASS:
            return PacketAction.PASS
        case XdpAction.TX:
            return PacketAction.TX
        case XdpAction.REDIRECT:
            return PacketAction.REDIRECT
        case _:
            return PacketAction.ABORTED


def tc_action(retval: int) -> PacketAction:
    signed = retval - (1 << 32) if retval >= 1 << 31 else retval
    if signed == TcAct.REDIRECT:
        return PacketAction.REDIRECT
    if signed in _TC_CONSUMED:
        return PacketAction.DROP
    return PacketAction.PASS


def redirect_ifindex(redirect: Redirect | None) -> int | None:
    """The ifindex a recorded redirect sends to: bpf_redirect's, or a devmap slot's ``ifindex``."""
    if redirect is None:
        return None
    if redirect.map is None:
        return redirect.ifindex
    if getattr(redirect.map, "type", None) not in _REDIRECT_DEVICE_MAPS:
        return None  # a cpumap or xskmap slot is not a device
    target = getattr(redirect.map, "redirect_target", None)
    value = target(redirect.key) if target is not None else None
    return int.from_bytes(value[:4], "little") if value else None


class PacketRunner:
    """Runs a packet program on one frame at a time, as a hook on ``ifindex`` (0: none) would.

    ``ifindex`` and ``rx_queue`` appear in the context (``xdp_md.ingress_ifindex``,
    ``__sk_buff.ifindex``/``ingress_ifindex``); without them the runtime's test-run defaults apply.
    """

    def __init__(
        self, program: Program, *, ifindex: int = 0, rx_queue: int = 0, instruction_limit: int | None = None
    ) -> None:
        if program.prog_type not in PACKET_PROG_TYPES:
            known = ", ".join(sorted(t.name.lower() for t in PACKET_PROG_TYPES))
            raise NotSupportedError(f"{program.type_spec.name} programs do not run on packets (only {known})")
        self.program = program
        self.ifindex = ifindex
        self.rx_queue = rx_queue
        self.instruction_limit = instruction_limit
        self._kind = run_kind(program.prog_type)
        self._skb_ctx = self._skb_context() if program.prog_type is not BpfProgType.XDP else None

    def _skb_context(self) -> bytes | None:
        if not self.ifindex:
            return None
        uapi = self.program.layout.uapi
        image = bytearray(uapi.size)
        for name in ("ifindex", "ingress_ifindex"):
            field = uapi.field(name)
            image[field.offset : field.end] = self.ifindex.to_bytes(field.end - field.offset, "little")
        return bytes(image)

    def _context(self, frame: bytes) -> bytes | None:
        if self.program.prog_type is not BpfProgType.XDP:
            return self._skb_ctx
        if not self.ifindex:
            return None
        # struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex.
        return struct.pack("<6I", 0, len(frame), 0, self.ifindex, self.rx_queue, 0)

    def run(self, frame: bytes, *, cpu: int | None = None) -> PacketResult:
        """Run the program on ``frame`` (an Ethernet frame); TestRunError if the hook refuses it."""
        program = self.program
        prepared = self._kind.prepare(program.interpreter.memory, program.layout, frame, self._context(frame))
        try:
            state = RunState(program.services, packet=prepared.packet_state, ctx=prepared.context.address, cpu=cpu)
            # The very run Program.test_run makes, so a hooked program behaves as its test runs do.
            r0, executed = program._run_once(prepared, state, self.instruction_limit)
            retval = prepared.retval(r0)
            packet = prepared.packet_state
            after = packet.packet_bytes() if packet is not None else frame
        finally:
            prepared.close()
        return packet_result(program.prog_type, retval, frame, after, redirect=state.redirect, instructions=executed)


def classify(prog_type: BpfProgType, retval: int) -> tuple[str, PacketAction]:
    """``(verdict name, action)`` of a return value: "XDP_TX", or for types without verdict names "PASS"/"DROP"."""
    if prog_type is BpfProgType.XDP:
        action = xdp_action(retval)
    elif prog_type in (BpfProgType.SCHED_CLS, BpfProgType.SCHED_ACT):
        action = tc_action(retval)
    elif prog_type is BpfProgType.SOCKET_FILTER:
        action = PacketAction.PASS if retval else PacketAction.DROP
    else:
        action = PacketAction.PASS if retval & 1 else PacketAction.DROP
    return verdict_name(prog_type, retval) or action.name, action


def leaving_frame(prog_type: BpfProgType, retval: int, frame: bytes, after: bytes) -> bytes:
    """The Ethernet frame that leaves the hook, from ``after``, the packet as the program left it
    (from the network header for socket filters and cgroup_skb)."""
    if prog_type is BpfProgType.SOCKET_FILTER:
        after = after[:retval]  # the return value is how many bytes to keep
    if prog_type in L3_TYPES:
        after = frame[:ETH_HLEN] + after  # these programs never see (or change) the MAC header
    return after


def packet_result(
    prog_type: BpfProgType, retval: int, frame: bytes, after: bytes, *, redirect: Redirect | None, instructions: int
) -> PacketResult:
    """The hook's view of one run: ``after`` as for :func:`leaving_frame`, ``redirect`` what the run
    recorded (kept only for a REDIRECT)."""
    verdict, action = classify(prog_type, retval)
    after = leaving_frame(prog_type, retval, frame, after)
    if action is not PacketAction.REDIRECT:
        redirect = None
    return PacketResult(
        retval=retval,
        verdict=verdict,
        action=action,
        data=after,
        modified=after != frame,
        redirect=redirect,
        redirect_ifindex=redirect_ifindex(redirect),
        instructions=instructions,
    )
