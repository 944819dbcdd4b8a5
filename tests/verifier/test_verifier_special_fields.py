"""Spin locks and timers checked against the map value's BTF, as the kernel checks them.

The kernel finds a value's ``struct bpf_spin_lock`` / ``struct bpf_timer`` in the map's BTF
(``btf_record``): the helpers must get exactly that field's address (``process_spin_lock``,
``process_timer_func``), loads, stores and helper accesses may not touch its bytes
(``check_map_access``), a lock is the object one lookup returned, and a timer must be initialised
with its own map. Each C program is verified by us and loaded into the kernel: the expected
verdict and message are the kernel's (the second test checks that they still are).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pybpf.btf import Btf
from pybpf.btf.parse import StringTable
from pybpf.btf.record import FieldKind, SpecialField, special_fields
from pybpf.btf.types import Int, IntEncoding, Member, Struct
from pybpf.errors import BtfFieldError
from pybpf.obj import load_spec
from pybpf.verifier import verify_program

from .c_objects import KERNEL_AVAILABLE, KERNEL_REASON, compile_c, kernel_verdict

HEADER = r"""
#include "bpf_helpers.h"
#include "bpf_helpers_more.h"
struct val { struct bpf_spin_lock lock; __u32 packets; __u64 bytes; };
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 4); __type(key, __u32);
    __type(value, struct val); } locked SEC(".maps");
struct plain_val { __u32 a; __u32 packets; __u64 bytes; };
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 4); __type(key, __u32);
    __type(value, struct plain_val); } plain SEC(".maps");
struct nested { __u64 a; struct { struct bpf_spin_lock l; __u32 b; } inner; };
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, __u32);
    __type(value, struct nested); } deep SEC(".maps");
struct elem { __u64 data; struct bpf_timer timer; };
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, __u32);
    __type(value, struct elem); } timers SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, __u32);
    __type(value, struct elem); } timers2 SEC(".maps");
static long (*timer_init)(struct bpf_timer *timer, void *map, __u64 flags) = (void *)BPF_FUNC_timer_init;
char LICENSE[] SEC("license") = "GPL";
"""
LOOK = r"""
    __u32 key = 0;
    struct val *v = bpf_map_lookup_elem(&locked, &key);
    if (!v) return XDP_PASS;
"""
LOOK = r"""
    __u32 key = 0;
    struct val *v = bpf_map_lookup_elem(&locked, &key);
    if (!v) return XDP_PASS;
"""


def xdp(body: str, look: str = LOOK) -> str:
    return HEADER + 'SEC("xdp") int prog(struct xdp_md *ctx) {' + look + body + "\n    return XDP_PASS;\n}"


PROGRAMS: dict[str, str] = {
 "lock-ok": xdp("bpf_spin_lock(&v->lock); v->packets++; bpf_spin_unlock(&v->lock);"),
 "lock-wrong-off": xdp("bpf_spin_lock((void *)&v->packets); bpf_spin_unlock((void *)&v->packets);"),
 "lock-no-field": xdp("bpf_spin_lock((void *)p); bpf_spin_unlock((void *)p);", r"""
    __u32 key = 0;
    struct plain_val *p = bpf_map_lookup_elem(&plain, &key);
    if (!p) return XDP_PASS;
"""),
 "lock-direct-read": xdp("if (*(volatile __u32 *)&v->lock) return XDP_DROP;"),
 "lock-direct-write": xdp("*(volatile __u32 *)&v->lock = 1;"),
 "lock-wide-read": xdp("if (*(volatile __u64 *)v) return XDP_DROP;"),
 "lock-helper-covers": xdp("__u32 k2 = 1; bpf_map_update_elem(&locked, &k2, v, 0);"),
 "unlock-other-lookup": xdp("struct val *w = bpf_map_lookup_elem(&locked, &key); if (!w) return XDP_PASS;"
                                 " bpf_spin_lock(&v->lock); bpf_spin_unlock(&w->lock);"),
 "lock-held-at-exit": xdp("bpf_spin_lock(&v->lock); if (v->packets) return XDP_DROP; bpf_spin_unlock(&v->lock);"),
 "nested-lock-ok": xdp("bpf_spin_lock(&d->inner.l); d->inner.b++; bpf_spin_unlock(&d->inner.l);", r"""
    __u32 key = 0;
    struct nested *d = bpf_map_lookup_elem(&deep, &key);
    if (!d) return XDP_PASS;
"""),
 "timer-ok": HEADER + r"""SEC("tc") int prog(struct __sk_buff *skb) {
    __u32 key = 0; struct elem *e = bpf_map_lookup_elem(&timers, &key); if (!e) return 0;
    timer_init(&e->timer, &timers, 1); return 0; }""",
 "timer-wrong-off": HEADER + r"""SEC("tc") int prog(struct __sk_buff *skb) {
    __u32 key = 0; struct elem *e = bpf_map_lookup_elem(&timers, &key); if (!e) return 0;
    timer_init((void *)&e->data, &timers, 1); return 0; }""",
 "timer-other-map": HEADER + r"""SEC("tc") int prog(struct __sk_buff *skb) {
    __u32 key = 0; struct elem *e = bpf_map_lookup_elem(&timers, &key); if (!e) return 0;
    timer_init(&e->timer, &timers2, 1); return 0; }""",
 "timer-direct-read": HEADER + r"""SEC("tc") int prog(struct __sk_buff *skb) {
    __u32 key = 0; struct elem *e = bpf_map_lookup_elem(&timers, &key); if (!e) return 0;
    return *(volatile __u64 *)&e->timer == 3; }""",
 "timer-no-field": HEADER + r"""SEC("tc") int prog(struct __sk_buff *skb) {
    __u32 key = 0; struct plain_val *p = bpf_map_lookup_elem(&plain, &key); if (!p) return 0;
    timer_init((void *)p, &plain, 1); return 0; }""",
}

# The kernel's verdict: None (accepted) or the last line of its reason (ours must be the same).
EXPECTED: dict[str, str | None] = {
    'lock-ok': None,
    'nested-lock-ok': None,
    'timer-ok': None,
    'lock-wrong-off': "off 4 doesn't point to 'struct bpf_spin_lock' that is at 0",
    'lock-no-field': "map 'plain' has no valid bpf_spin_lock",
    'lock-direct-read': 'bpf_spin_lock cannot be accessed directly by load/store',
    'lock-direct-write': 'bpf_spin_lock cannot be accessed directly by load/store',
    'lock-wide-read': 'bpf_spin_lock cannot be accessed directly by load/store',
    'lock-helper-covers': 'bpf_spin_lock cannot be accessed directly by load/store',
    'unlock-other-lookup': 'bpf_spin_unlock of different lock',
    'lock-held-at-exit': 'BPF_EXIT instruction in main prog cannot be used inside bpf_spin_lock-ed region',
    'timer-wrong-off': "off 0 doesn't point to 'struct bpf_timer' that is at 8",
    'timer-other-map': "timer pointer in R1 map_uid=0 doesn't match map pointer in R2 map_uid=0",
    'timer-direct-read': 'bpf_timer cannot be accessed directly by load/store',
    'timer-no-field': "map 'plain' has no valid bpf_timer",
}


@pytest.mark.clang
@pytest.mark.parametrize("name", list(PROGRAMS))
def test_special_field_verdict(tmp_path: Path, name: str) -> None:
    spec = load_spec(compile_c(tmp_path, name, PROGRAMS[name]))
    report = verify_program(spec.programs["prog"], spec)
    expected = EXPECTED[name]
    assert report.accepted == (expected is None), report.summary()
    if expected is not None:
        assert report.reason == expected


@pytest.mark.clang
@pytest.mark.kernel
@pytest.mark.skipif(not KERNEL_AVAILABLE, reason=KERNEL_REASON or "bpf() unavailable")
@pytest.mark.parametrize("name", list(PROGRAMS))
def test_special_field_expectation_matches_kernel(tmp_path: Path, name: str) -> None:
    accepted, log = kernel_verdict(compile_c(tmp_path, name, PROGRAMS[name]))
    expected = EXPECTED[name]
    assert accepted == (expected is None), log[-2000:]
    if expected is not None:
        assert expected in log, log[-2000:]


def _btf(*types: object) -> Btf:
    return Btf(types, StringTable(b"\0"))  # type: ignore[arg-type]


_U32 = Int("u32", 4, IntEncoding(0), 0, 32)
_LOCK = Struct("bpf_spin_lock", 4, (Member("val", 1, 0),))


def test_fields_found_in_nested_structs() -> None:
    inner = Struct("", 8, (Member("l", 2, 0), Member("b", 1, 32)))
    value = Struct("v", 16, (Member("a", 1, 0), Member("inner", 3, 64)))
    assert special_fields(_btf(_U32, _LOCK, inner, value), 4) == (SpecialField(FieldKind.SPIN_LOCK, 8, 4),)


def test_two_locks_in_one_value_are_refused() -> None:
    """The kernel refuses to create such a map (E2BIG): at most one lock per value."""
    value = Struct("v", 8, (Member("a", 2, 0), Member("b", 2, 32)))
    with pytest.raises(BtfFieldError):
        special_fields(_btf(_U32, _LOCK, value), 3)
