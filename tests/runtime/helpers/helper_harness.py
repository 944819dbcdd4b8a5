"""Shared set-up for the helper tests: an address space, services, a run state and a bare env."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pybpf.isa import Exit, Instruction, LabeledInsn, LoadImm64
from pybpf.runtime.helpers import ManualClock, RunState, RuntimeServices, TaskInfo
from pybpf.vm import AddressSpace, ExecutionContext, Interpreter, Region, RegionKind

U32 = (1 << 32) - 1
U64 = (1 << 64) - 1


def neg(code: int) -> int:
    return -code & U64


def labeled(insns: Sequence[Instruction]) -> list[LabeledInsn]:
    out: list[LabeledInsn] = []
    pc = 0
    for insn in insns:
        out.append(LabeledInsn(pc, insn))
        pc += 2 if isinstance(insn, LoadImm64) else 1
    return out


@dataclass
class Harness:
    memory: AddressSpace
    services: RuntimeServices
    state: RunState
    env: ExecutionContext
    clock: ManualClock  # the services' clock, which tests advance by hand

    def region(self, data: bytes | int, *, writable: bool = True, name: str = "buf") -> Region:
        """Map a fresh region holding ``data`` (or that many zero bytes)."""
        raw = bytes(data)
        region = Region.from_bytes(RegionKind.OTHER, name, raw, writable)
        self.memory.add(region)
        return region

    def read(self, address: int, size: int) -> bytes:
        return self.memory.read_bytes(address, size)


def make_harness(*, seed: int | None = 1, task: TaskInfo | None = None) -> Harness:
    memory = AddressSpace()
    clock = ManualClock(1_000_000_000)
    services = RuntimeServices(memory, clock=clock, seed=seed, cpus=4, task=task)
    state = RunState(services)
    program = Interpreter(labeled([Exit()]), memory=memory)
    env = ExecutionContext(program, 1000, user=state)
    return Harness(memory, services, state, env, clock)
