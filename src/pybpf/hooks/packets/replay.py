"""pcap replay: a packet program run on every frame of a capture, as if each had just arrived.

:func:`replay` feeds frames one by one to a :class:`~pybpf.hooks.packets.runner.PacketRunner`
(maps keep their contents from one packet to the next, as on a real interface) and returns a
:class:`ReplayReport`: verdict and action counts, the frames that leave the program (passed,
transmitted or redirected, with the bytes the program left), the frames the hook refused
(too short for an skb, too long for one XDP page), throughput, and, given the object, every map
at the end. A program fault (an out-of-bounds access the verifier would have refused) stops
the replay with :class:`ReplayError` naming the packet.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pybpf.errors import PybpfError, TestRunError
from pybpf.hooks.link import hook_runtime
from pybpf.hooks.packets.capture import CapturedPacket
from pybpf.hooks.packets.runner import PacketAction, PacketRunner
from pybpf.runtime.object import MapEntry, Object
from pybpf.runtime.program import Program

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
) -> ReplayReport:
    """Run ``program`` on every frame of ``packets`` in order and report what happened.

    ``obj`` (the program's object) adds its maps at the end to the report; ``ifindex`` is the
    ingress device the context reports; ``keep_outputs=False`` keeps only counts (long captures).
    """
    runner = PacketRunner(program, ifindex=ifindex, instruction_limit=instruction_limit)
    # Live links on the same object may run in other threads: runs on one address space are serialised.
    run_lock = hook_runtime().run_lock(program)
    verdicts: Counter[str] = Counter()
    actions: Counter[PacketAction] = Counter()
    outputs: list[OutputPacket] = []
    refused: list[RefusedPacket] = []
    instructions = 0
    count = 0
    started = time.perf_counter_ns()
    for index, packet in enumerate(packets):
        timestamp, frame = (packet.timestamp, packet.data) if isinstance(packet, CapturedPacket) else (0.0, packet)
        if progress is not None and index and index % progress_every == 0:
            progress(index)
        count = index + 1
        try:
            with run_lock:
                result = runner.run(frame)
        except TestRunError as error:
            refused.append(RefusedPacket(index, str(error)))
            continue
        except PybpfError as error:
            raise ReplayError(f"packet {index} ({len(frame)} bytes): {error}", index) from error
        verdicts[result.verdict] += 1
        actions[result.action] += 1
        instructions += result.instructions
        if keep_outputs and result.action.emits:
            outputs.append(
                OutputPacket(
                    index, timestamp, result.action, result.verdict, result.data, result.modified,
                    result.redirect_ifindex,
                )
            )
    elapsed = time.perf_counter_ns() - started
    if progress is not None:
        progress(count)
    return ReplayReport(
        program=program.name,
        prog_type=program.type_spec.name,
        packets=count,
        verdicts=dict(sorted(verdicts.items())),
        actions=dict(sorted(actions.items(), key=lambda item: item[0].value)),
        outputs=tuple(outputs),
        refused=tuple(refused),
        elapsed_ns=elapsed,
        instructions=instructions,
        maps=snapshot_maps(obj) if obj is not None else {},
    )
