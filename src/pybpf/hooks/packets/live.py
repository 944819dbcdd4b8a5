"""Live attachment: a packet program run on every frame an interface receives, via AF_PACKET.

:func:`attach_xdp` (and :func:`attach_tc`) open a raw ``AF_PACKET`` socket bound to the
interface with ``PACKET_IGNORE_OUTGOING`` set, so the frames we transmit are not handed back to
us, and start a reader thread that runs the program on each received frame:

- DROP/ABORTED: counted; the frame goes no further *in the program's view*;
- TX: the (possibly rewritten) frame is sent back out of the same interface;
- REDIRECT: sent out of the target interface (``bpf_redirect``'s ifindex or a devmap slot's);
  a cpumap or xskmap target is only counted;
- PASS: nothing more.

What user space cannot do: a packet socket receives a *copy* of each frame, after the driver
and alongside the kernel's own stack. So the kernel still processes every frame whatever the
program answers (a DROP does not drop it from the host, a TX is an extra frame, not a
replacement), and frames the kernel handles before packet taps (real XDP, tc ingress) are not
seen here. The hook observes and reacts; it cannot steal packets. Frames arrive as the socket
delivers them: VLAN tags offloaded to metadata are not in the bytes, and locally generated
traffic on offloading devices may carry partial checksums.
"""

from __future__ import annotations

import socket
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

from pybpf.errors import PybpfError, TestRunError
from pybpf.hooks.link import HookRuntime, Link, LinkError, LinkKind
from pybpf.hooks.packets.runner import PacketAction, PacketRunner
from pybpf.platform.uapi_generated import BpfProgType
from pybpf.runtime.program import Program

SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23
"""Since Linux 4.20: the socket is not given the frames sent on its interface."""
PACKET_OUTGOING = 4
ETH_P_ALL = 0x0003
RECEIVE_BUFFER = 65535
POLL_INTERVAL_S = 0.1
"""How often the reader thread checks whether it was asked to stop."""
JOIN_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class LinkCounters:
    """What a live attachment has done so far."""

    received: int
    verdicts: dict[str, int]
    actions: dict[str, int]
    transmitted: int  # frames sent out (TX and REDIRECT)
    send_errors: int
    refused: int  # frames the hook would not run the program on (too short, too long)
    errors: int  # program faults
    last_error: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "verdicts": dict(self.verdicts),
            "actions": dict(self.actions),
            "transmitted": self.transmitted,
            "send_errors": self.send_errors,
            "refused": self.refused,
            "errors": self.errors,
            "last_error": self.last_error,
        }


def open_packet_socket(ifname: str) -> socket.socket:
    """A raw packet socket bound to ``ifname`` that does not see its own transmissions."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    try:
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        sock.bind((ifname, ETH_P_ALL))
    except OSError:
        sock.close()
        raise
    return sock


class PacketLink(Link):
    """A packet program attached to an interface through an AF_PACKET socket (see the module doc)."""

    def __init__(
        self,
        kind: LinkKind,
        program: Program,
        ifname: str,
        *,
        runtime: HookRuntime | None = None,
        instruction_limit: int | None = None,
    ) -> None:
        try:
            ifindex = socket.if_nametoindex(ifname)
        except OSError as error:
            raise LinkError(f"no network interface named {ifname!r}") from error
        self.ifname = ifname
        self.ifindex = ifindex
        self._runner = PacketRunner(program, ifindex=ifindex, instruction_limit=instruction_limit)
        try:
            self._socket = open_packet_socket(ifname)
        except OSError as error:
            raise LinkError(f"cannot open a packet socket on {ifname}: {error}") from error
        self._socket.settimeout(POLL_INTERVAL_S)
        self._senders: dict[int, socket.socket] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._received = 0
        self._verdicts: Counter[str] = Counter()
        self._actions: Counter[str] = Counter()
        self._transmitted = 0
        self._send_errors = 0
        self._refused = 0
        self._errors = 0
        self._last_error: str | None = None
        super().__init__(kind, program, ifname, runtime=runtime)
        self._run_lock = self.runtime.run_lock(program)
        self._thread = threading.Thread(target=self._read_loop, name=f"pybpf-{kind}-{ifname}", daemon=True)
        self._thread.start()

    # -- the reader thread --------------------------------------------------------------------------

    def _read_loop(self) -> None:
        while not self._stop.is_set():
            try:
                frame, address = self._socket.recvfrom(RECEIVE_BUFFER)
            except TimeoutError:
                continue
            except OSError as error:
                if not self._stop.is_set():  # else the socket was closed under us by detach()
                    with self._lock:
                        self._last_error = f"receive on {self.ifname}: {error}"
                return
            if address[2] == PACKET_OUTGOING:
                continue  # kernels before 4.20 ignore PACKET_IGNORE_OUTGOING
            self._handle(frame)

    def _handle(self, frame: bytes) -> None:
        with self._lock:
            self._received += 1
        try:
            with self._run_lock:
                result = self._runner.run(frame)
        except TestRunError:
            with self._lock:
                self._refused += 1
            return
        except PybpfError as error:
            with self._lock:
                self._errors += 1
                self._last_error = str(error)
            return
        except Exception as error:  # a thread boundary: a bug must not silently end the attachment
            with self._lock:
                self._errors += 1
                self._last_error = f"{type(error).__name__}: {error}"
            return
        sent = None
        if result.action is PacketAction.TX:
            sent = self._send(self.ifindex, result.data)
        elif result.action is PacketAction.REDIRECT and result.redirect_ifindex:
            sent = self._send(result.redirect_ifindex, result.data)
        with self._lock:
            self._verdicts[result.verdict] += 1
            self._actions[result.action.value] += 1
            if sent is True:
                self._transmitted += 1
            elif sent is False:
                self._send_errors += 1

    def _send(self, ifindex: int, frame: bytes) -> bool:
        try:
            if ifindex == self.ifindex:
                self._socket.send(frame)
                return True
            sender = self._senders.get(ifindex)
            if sender is None:
                sender = open_packet_socket(socket.if_indextoname(ifindex))
                self._senders[ifindex] = sender
            sender.send(frame)
        except OSError as error:
            with self._lock:
                self._last_error = f"send on ifindex {ifindex}: {error}"
            return False
        return True

    # -- the link -----------------------------------------------------------------------------------

    def counters(self) -> LinkCounters:
        with self._lock:
            return LinkCounters(
                received=self._received,
                verdicts=dict(sorted(self._verdicts.items())),
                actions=dict(sorted(self._actions.items())),
                transmitted=self._transmitted,
                send_errors=self._send_errors,
                refused=self._refused,
                errors=self._errors,
                last_error=self._last_error,
            )

    def _unhook(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(JOIN_TIMEOUT_S)
        self._socket.close()
        for sender in self._senders.values():
            sender.close()
        self._senders.clear()


def attach_xdp(
    program: Program, ifname: str, *, runtime: HookRuntime | None = None, instruction_limit: int | None = None
) -> PacketLink:
    """Run an XDP program on every frame ``ifname`` receives (in user space: see the module doc)."""
    if program.prog_type is not BpfProgType.XDP:
        raise LinkError(f"attach_xdp needs an XDP program; {program.name} is {program.type_spec.name}")
    return PacketLink(LinkKind.XDP, program, ifname, runtime=runtime, instruction_limit=instruction_limit)


def attach_tc(
    program: Program, ifname: str, *, runtime: HookRuntime | None = None, instruction_limit: int | None = None
) -> PacketLink:
    """Run a tc (sched_cls/sched_act) program on every frame ``ifname`` receives (ingress)."""
    if program.prog_type not in (BpfProgType.SCHED_CLS, BpfProgType.SCHED_ACT):
        raise LinkError(f"attach_tc needs a sched_cls or sched_act program; {program.name} is {program.type_spec.name}")
    return PacketLink(LinkKind.TC, program, ifname, runtime=runtime, instruction_limit=instruction_limit)
