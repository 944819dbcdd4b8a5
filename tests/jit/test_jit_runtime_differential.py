"""Every object in tests/progs run with both engines on the same inputs: same retval, data, ctx and maps.

Each engine gets its own freshly loaded object (same prandom seed, same stopped clock), so map state and random
streams evolve identically; inputs run in sequence on each, so later runs see the maps the
earlier runs left behind, and the maps are compared after every run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pybpf.errors import PybpfError
from pybpf.runtime.helpers.services import ManualClock
from pybpf.runtime.loader import load
from pybpf.runtime.object import Object
from pybpf.runtime.program import Engine
from pybpf.runtime.progtypes import run_kind

PROGS = Path(__file__).resolve().parents[1] / "progs"
OBJECTS = sorted(PROGS.glob("*.o"))

ETH_IPV4 = bytes.fromhex("00112233445566778899aabb0800")
ETH_IPV6 = bytes.fromhex("00112233445566778899aabb86dd")
IPV4_UDP = bytes.fromhex("4500002e1234400040110000c0a80001c0a800c7") + bytes.fromhex("d43100350012abcd") + b"payload-te"
IPV4_TCP = bytes.fromhex("450000341234400040060000c0a80001c0a800c7") + bytes.fromhex("d4310050000000010000000050022000")
IPV6_UDP = (
    bytes.fromhex("6000000000123a40") + bytes(range(16)) + bytes(range(16, 32)) + bytes.fromhex("d43100350012abcd")
)
PACKETS = (
    bytes(64),
    ETH_IPV4 + IPV4_UDP,
    ETH_IPV4 + IPV4_TCP + bytes(40),
    ETH_IPV6 + IPV6_UDP + bytes(30),
    ETH_IPV4 + IPV4_UDP + bytes(1400),
)
CONTEXTS = (bytes(64), bytes(range(1, 65)))


def _outcome(obj: Object, name: str, data: bytes, ctx: bytes | None, engine: Engine) -> tuple[Any, ...]:
    try:
        result = obj.program(name).test_run(data, ctx, engine=engine)
    except PybpfError as error:  # both engines must fail the same way
        return ("error", type(error).__name__, str(error))
    return ("ok", result.retval, result.data_out, result.ctx_out, result.redirect)


def _maps(obj: Object) -> dict[str, list[Any]]:
    return {name: sorted((entry.key, entry.value) for entry in obj.map_entries(name)) for name in obj.maps}


@pytest.mark.parametrize("path", OBJECTS, ids=lambda path: path.stem)
def test_both_engines_agree_on_every_program(path: Path) -> None:
    with load(path, seed=7) as reference, load(path, seed=7, engine="jit") as native:
        for obj in (reference, native):  # ktime helpers must read the same time under both engines
            obj.services.clock = ManualClock(1_000_000_007)
        checked = 0
        for name, program in reference.programs.items():
            kind = run_kind(program.prog_type)
            inputs = [(packet, None) for packet in PACKETS] if kind.takes_data else [(b"", ctx) for ctx in CONTEXTS]
            for data, ctx in inputs:
                expected = _outcome(reference, name, data, ctx, "interp")
                got = _outcome(native, name, data, ctx, "jit")
                assert got == expected, f"{name} on {data[:20].hex()}.../{ctx!r}"
                assert _maps(native) == _maps(reference), f"maps after {name}"
                checked += expected[0] == "ok"
        assert checked, "no program of the object ran successfully: the comparison would be vacuous"


def test_tail_chain_makes_33_tail_calls_natively() -> None:
    with load(PROGS / "tail_chain.o", engine="jit") as obj:
        result = obj.program("chain").test_run(bytes(64))
    assert result.retval == 34  # the program ran once, then 33 tail calls; the 34th falls through
    assert result.instructions == 0  # and it really ran as native code


def test_tail_calls_dispatch_to_each_target() -> None:
    packets = (ETH_IPV4 + IPV4_UDP, ETH_IPV6 + IPV6_UDP + bytes(30), bytes(64))
    with load(PROGS / "tail_calls.o") as reference, load(PROGS / "tail_calls.o", engine="jit") as native:
        marks = set()
        for packet in packets:
            skb = bytes(192)  # __sk_buff: the targets set skb->mark (offset 8), which ctx_out shows
            expected = reference.program("dispatch").test_run(packet, skb)
            got = native.program("dispatch").test_run(packet, skb)
            assert (got.retval, got.data_out, got.ctx_out) == (expected.retval, expected.data_out, expected.ctx_out)
            assert got.ctx_out is not None
            marks.add(int.from_bytes(got.ctx_out[8:12], "little"))
        assert _maps(native) == _maps(reference)
    assert marks == {4, 6}  # IPv6 -> tail_ipv6, anything else -> tail_ipv4; no tail call would leave 0
