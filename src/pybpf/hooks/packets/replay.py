"""pcap replay: a packet program run on every frame of a capture, as if each had just arrived.

:func:`replay` feeds frames one by one to a :class:`~pybpf.hooks.packets.runner.PacketRunner`
(maps keep their contents from one packet to the next, as on a real interface) and returns a
:class:`ReplayReport`: verdict and action counts, the frames that leave the program (passed,
transmitted or redirected, with the bytes the program left), the frames the hook refused
(too short for an skb, too long for one XDP page), throughput, and, given the object, every map
at the end. A program fault (an out-of-bounds access the verifier would have refused) stops
the replay with :class:`ReplayError` naming the packet.

Under the JIT, a program that can batch (:func:`batch_blocker`) runs in native batches of
:data:`BATCH_CHUNK` packets (:func:`pybpf.runtime.batch.run_batch`, with the replay's device as
the one context of every batch) instead of one test run per packet, tens of nanoseconds per
packet instead of tens of microseconds; the report is the same but for the time. The frames a
hook refuses are picked out before each batch with the checks a test run makes.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pybpf.errors import PybpfError, TestRunError
from pybpf.hooks.link import hook_runtime
from pybpf.hooks.packets.capture import CapturedPacket
from pybpf.hooks.packets.runner import (
    L3_TYPES,
    PacketAction,
    PacketResult,
    PacketRunner,
    classify,
    leaving_frame,
)
from pybpf.isa.insn import Call
from pybpf.platform.packet_layout import ETH_HLEN, XDP_MAX_LINEAR
from pybpf.platform.uapi_generated import BpfProgType, HelperId
from pybpf.runtime.batch import native_batch_blocker, run_batch
from pybpf.runtime.object import MapEntry, Object
from pybpf.runtime.program import Program
from pybpf.runtime.progtypes.skb import check_frame

BATCH_CHUNK = 4096
"""Packets per native batch: bounds the batch's buffers, and the progress bar moves once per chunk."""

ProgressCallback = Callable[[int], None]
"""Called with the number of packets done so far, every ``progress_every`` packets and at the end."""


class ReplayError(PybpfError):
    """The program failed on a packet of the replay (the message names the packet's index)."""

    def __init__(self, message: str, index: int) -> None:
        super().__init__(message)
        self.index = index


@dataclass(frozen=True, slots=True)
class OutputPacket:
    """A frame that left the program: index in the input, timestamp, what happened, bytes after the run."""

    index: int
    timestamp: float
    action: PacketAction
    verdict: str
    data: bytes
    modified: bool
    redirect_ifindex: int | None = None


@dataclass(frozen=True, slots=True)
class RefusedPacket:
    """A frame the hook would not hand to the program, and why."""

    index: int
    reason: str


@dataclass(frozen=True, slots=True)
class MapSnapshot:
    """A map's type name and entries after the replay."""

    type: str
    entries: tuple[MapEntry, ...]

    def to_json(self) -> dict[str, Any]:
        rows: list[list[Any]] = []
        for entry in self.entries:
            value = [part.hex() for part in entry.value] if isinstance(entry.value, tuple) else entry.value.hex()
            rows.append([entry.key.hex(), value])
        return {"type": self.type, "entries": rows}


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """What a replay did. ``verdicts`` counts return values by name (XDP_PASS, TC_ACT_SHOT...)."""

    program: str
    prog_type: str
    packets: int
    verdicts: Mapping[str, int]
    actions: Mapping[PacketAction, int]
    outputs: tuple[OutputPacket, ...]
    refused: tuple[RefusedPacket, ...]
    elapsed_ns: int
    instructions: int
    maps: Mapping[str, MapSnapshot]

    @property
    def packets_per_second(self) -> float:
        return self.packets * 1e9 / self.elapsed_ns if self.elapsed_ns else 0.0

    @property
    def ns_per_packet(self) -> float:
        return self.elapsed_ns / self.packets if self.packets else 0.0

    def output_captures(self) -> list[CapturedPacket]:
        """The output frames as capture records (for :func:`~pybpf.hooks.packets.capture.write_capture`)."""
        return [CapturedPacket(out.timestamp, out.data) for out in self.outputs]

    def to_json(self) -> dict[str, Any]:
        return {
            "program": self.program,
            "prog_type": self.prog_type,
            "packets": self.packets,
            "verdicts": dict(self.verdicts),
            "actions": {action.value: count for action, count in self.actions.items()},
            "outputs": len(self.outputs),
            "modified": sum(1 for out in self.outputs if out.modified),
            "refused": [{"index": item.index, "reason": item.reason} for item in self.refused],
            "elapsed_ns": self.elapsed_ns,
            "packets_per_second": self.packets_per_second,
            "ns_per_packet": self.ns_per_packet,
            "instructions": self.instructions,
            "maps": {name: snapshot.to_json() for name, snapshot in self.maps.items()},
        }


def snapshot_maps(obj: Object) -> dict[str, MapSnapshot]:
    """Every map of ``obj`` as user space reads it now."""
    snapshots: dict[str, MapSnapshot] = {}
    for name in sorted(obj.maps):
        map_type = getattr(obj.maps[name], "type", None)
        type_name = map_type.name.lower() if map_type is not None else "unknown"
        snapshots[name] = MapSnapshot(type_name, tuple(obj.map_entries(name)))
    return snapshots


def replay(
    program: Program,
    packets: Iterable[CapturedPacket | bytes],
    *,
    obj: Object | None = None,
    ifindex: int = 0,
    keep_outputs: bool = True,
    progress: ProgressCallback | None = None,
    progress_every: int = 256,
    instruction_limit: int | None = None,
    batch: bool = True,
    chunk: int = BATCH_CHUNK,
) -> ReplayReport:
    """Run ``program`` on every frame of ``packets`` in order and report what happened.

    ``obj`` (the program's object) adds its maps at the end to the report; ``ifindex`` is the
    ingress device the context reports; ``keep_outputs=False`` keeps only counts (long captures).
    ``batch=False`` runs one test run per packet even where native batches of ``chunk`` packets
    could (:func:`batch_blocker`); both give the same report but for the time it took. In
    batches ``progress`` is called once per chunk (``progress_every`` applies to single runs),
    and an error in a batch (a native run stopped) names the chunk's first packet.
    """
    runner = PacketRunner(program, ifindex=ifindex, instruction_limit=instruction_limit)
    blocker = batch_blocker(program, instruction_limit) if batch else "batch=False"
    tally = _Tally(keep_outputs)
    # Live links on the same object may run in other threads: runs on one address space are serialised.
    run_lock = hook_runtime().run_lock(program)
    count = 0
    started = time.perf_counter_ns()
    if blocker is None:
        for first, frames in _chunks(packets, max(chunk, 1)):
            with run_lock:
                _run_chunk(runner, first, frames, tally)
            count = first + len(frames)
            if progress is not None:
                progress(count)  # the bar moves once per chunk
    else:
        for index, packet in enumerate(packets):
            timestamp, frame = _split(packet)
            if progress is not None and index and index % progress_every == 0:
                progress(index)
            count = index + 1
            try:
                with run_lock:
                    result = runner.run(frame)
            except TestRunError as error:
                tally.refused.append(RefusedPacket(index, str(error)))
                continue
            except PybpfError as error:
                raise ReplayError(f"packet {index} ({len(frame)} bytes): {error}", index) from error
            tally.add(index, timestamp, result)
    elapsed = time.perf_counter_ns() - started
    if progress is not None:
        progress(count)
    return ReplayReport(
        program=program.name,
        prog_type=program.type_spec.name,
        packets=count,
        verdicts=dict(sorted(tally.verdicts.items())),
        actions=dict(sorted(tally.actions.items(), key=lambda item: item[0].value)),
        outputs=tuple(tally.outputs),
        refused=tuple(tally.refused),
        elapsed_ns=elapsed,
        instructions=tally.instructions,
        maps=snapshot_maps(obj) if obj is not None else {},
    )


def batch_blocker(program: Program, instruction_limit: int | None = None) -> str | None:
    """Why a replay of ``program`` runs one test run per packet rather than native batches (None: it batches).

    Besides what :func:`~pybpf.runtime.batch.native_batch_blocker` refuses (helpers that need the
    run's packet in Python, bpf_redirect and bpf_redirect_map among them, so a batch never has a
    redirect target to report), a replay needs the JIT, no instruction budget (the JIT keeps
    none), and a packet without XDP metadata: the batch's output would carry the metadata in
    front of the frame, where a hook's output is the frame alone.
    """
    if instruction_limit is not None:
        return "an instruction budget is an interpreter run"
    if program.resolve_engine() != "jit":
        return "the program runs in the interpreter"
    blocker = native_batch_blocker(program)
    if blocker is not None:
        return blocker
    calls = {item.insn.helper for item in program.interpreter.insns if isinstance(item.insn, Call)}
    if HelperId.XDP_ADJUST_META in calls:
        return "bpf_xdp_adjust_meta: a batch's output starts with the metadata"
    return None


@dataclass(slots=True)
class _Tally:
    """What a replay counts as it goes."""

    keep_outputs: bool
    verdicts: Counter[str] = field(default_factory=Counter)
    actions: Counter[PacketAction] = field(default_factory=Counter)
    outputs: list[OutputPacket] = field(default_factory=list)
    refused: list[RefusedPacket] = field(default_factory=list)
    instructions: int = 0
    classes: dict[int, tuple[str, PacketAction, bool]] = field(default_factory=dict)
    """``classify`` of each return value seen in batches, and whether its action emits the packet."""

    def add(self, index: int, timestamp: float, result: PacketResult) -> None:
        self.verdicts[result.verdict] += 1
        self.actions[result.action] += 1
        self.instructions += result.instructions
        if self.keep_outputs and result.action.emits:
            self.outputs.append(
                OutputPacket(
                    index, timestamp, result.action, result.verdict, result.data, result.modified,
                    result.redirect_ifindex,
                )
            )


def _split(packet: CapturedPacket | bytes) -> tuple[float, bytes]:
    return (packet.timestamp, packet.data) if isinstance(packet, CapturedPacket) else (0.0, packet)


def _chunks(
    packets: Iterable[CapturedPacket | bytes], size: int
) -> Iterator[tuple[int, list[tuple[float, bytes]]]]:
    """``(index of the first, [(timestamp, frame)...])`` by ``size``: a long capture is never all in memory."""
    first = 0
    frames: list[tuple[float, bytes]] = []
    for packet in packets:
        frames.append((packet.timestamp, packet.data) if isinstance(packet, CapturedPacket) else (0.0, packet))
        if len(frames) == size:
            yield first, frames
            first += size
            frames = []
    if frames:
        yield first, frames


def _run_chunk(runner: PacketRunner, first: int, frames: list[tuple[float, bytes]], tally: _Tally) -> None:
    """One native batch over the frames of a chunk the hook accepts; the refused ones are noted, as one by one."""
    program = runner.program
    prog_type = program.prog_type
    indices: list[int] = []
    accepted: list[bytes] = []
    if prog_type is BpfProgType.XDP:  # the only refusal, inline: this loop runs for every packet
        for offset, (_, frame) in enumerate(frames):
            if len(frame) <= XDP_MAX_LINEAR:
                indices.append(offset)
                accepted.append(frame)
            else:
                tally.refused.append(RefusedPacket(first + offset, refusal(prog_type, frame) or ""))
    else:
        for offset, (_, frame) in enumerate(frames):
            reason = refusal(prog_type, frame)
            if reason is None:
                indices.append(offset)
                accepted.append(frame)
            else:
                tally.refused.append(RefusedPacket(first + offset, reason))
    if not accepted:
        return
    last = first + len(frames) - 1
    try:
        result = run_batch(
            program, accepted, data_out=tally.keep_outputs, ifindex=runner.ifindex, rx_queue=runner.rx_queue
        )
    except PybpfError as error:
        # No index to name: a native batch stops as a whole (only a defence-in-depth JIT faults at all).
        raise ReplayError(f"packets {first}..{last}: {error}", first) from error
    if not result.native:  # batch_blocker said it batches
        raise ReplayError(f"packets {first}..{last}: the batch did not run natively", first)
    # A few distinct return values for thousands of packets: name each once.
    classes = tally.classes
    for retval, count in Counter(result.retvals).items():
        if retval not in classes:
            verdict, action = classify(prog_type, retval)
            classes[retval] = (verdict, action, action.emits)
        verdict, action, _ = classes[retval]
        tally.verdicts[verdict] += count
        tally.actions[action] += count
    if result.data_out is None:
        return
    reshape = prog_type in L3_TYPES  # the batch pushes back a zeroed MAC header; leaving_frame restores it
    outputs = tally.outputs
    for offset, frame, retval, after in zip(indices, accepted, result.retvals, result.data_out, strict=True):
        verdict, action, emits = classes[retval]
        if emits:
            data = leaving_frame(prog_type, retval, frame, after[ETH_HLEN:]) if reshape else after
            outputs.append(OutputPacket(first + offset, frames[offset][0], action, verdict, data, data != frame))


def refusal(prog_type: BpfProgType, frame: bytes) -> str | None:
    """Why a test run of ``frame`` on a ``prog_type`` program would be refused (TestRunError's message), or None."""
    try:
        if prog_type is BpfProgType.XDP:
            if len(frame) > XDP_MAX_LINEAR:
                raise TestRunError(
                    f"packet of {len(frame)} bytes: XDP fragments are not supported (max {XDP_MAX_LINEAR})"
                )
        else:
            check_frame(frame)
    except TestRunError as error:
        return str(error)
    return None
