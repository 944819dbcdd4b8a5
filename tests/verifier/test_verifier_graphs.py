"""Program-allocated objects, linked lists and rb-trees: our verdicts and messages are the kernel's.

Each C program of :mod:`graph_programs` (bpf_obj_new/drop, bpf_refcount_acquire, list pushes
and pops, rb-tree adds with a ``less`` callback, non-owning references, the lock rules) is
verified by us; the expected verdict and message are the kernel's 6.18 (the second test loads
each program into the kernel and checks that they still are). The BTF tests check how the
special-field search reads graph roots and their ``contains:`` tags.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pybpf.btf.record import FieldKind
from pybpf.obj import load_spec
from pybpf.verifier import maps_of, verify_program

from .c_objects import KERNEL_AVAILABLE, KERNEL_REASON, compile_c, kernel_verdict
from .graph_programs import PROGRAMS

# The kernel's verdict: None (accepted) or its reason (for a leak, the line naming the reference).
EXPECTED: dict[str, str | None] = {
    'list-push-pop': None,
    'obj-new-drop': None,
    'non-owning-under-lock': None,
    'list-front-peek': None,
    'map-value-list': None,
    'rbtree-add-first-remove': None,
    'refcount-two-graphs': None,
    'leak': 'Unreleased reference id=2 alloc_insn=3',
    'push-no-lock': 'bpf_spin_lock at off=16 must be held for bpf_list_head',
    'push-other-lock': 'bpf_spin_lock at off=16 must be held for bpf_list_head',
    'use-after-drop': "R6 invalid mem access 'scalar'",
    'use-after-unlock': "R6 invalid mem access 'scalar'",
    'push-twice': 'arg#1 expected pointer to allocated object',
    'drop-non-owning': 'R1 must be referenced or trusted',
    'wrong-node-type': ('operation on bpf_list_head expects arg#1 bpf_list_node at offset=8 in struct foo, '
                        'but arg is at offset=8 in struct bar'),
    'wrong-node-member': 'arg#1 offset=8, but expected bpf_list_node at offset=32 in struct two',
    'direct-node-access': 'direct access to bpf_list_node is disallowed',
    'pop-unchecked': "R6 invalid mem access 'ptr_or_null_'",
    'new-under-lock': 'function calls are not allowed while holding a lock',
    'drop-inner-pointer': 'R1 must have zero offset when passed to release func or trusted arg to kfunc',
    'refcount-no-field': "arg#0 doesn't point to a type with bpf_refcount field",
    'pop-leak': 'Unreleased reference id=2 alloc_insn=5',
    'map-value-other-lock': 'bpf_spin_lock at off=0 must be held for bpf_list_head',
    'rbtree-remove-owning-unlocked': 'bpf_rbtree_remove can only take non-owning or refcounted bpf_rb_node pointer',
    'object-out-of-bounds': 'access beyond struct foo at off 40 size 4',
    'rbtree-callback-range': 'At callback return the register R0 has smin=2 smax=2 should have been in [0, 1]',
    'rbtree-first-no-lock': 'bpf_spin_lock at off=16 must be held for bpf_rb_root',
    'owning-survives-unlock': None,
    'refcount-from-non-owning': None,
    'obj-new-not-struct': 'bpf_obj_new/bpf_percpu_obj_new type ID argument must be of a struct',
    'helper-under-lock': 'function calls are not allowed while holding a lock',
    'rbtree-root-left-right': None,
    'write-after-drop-in-tree-unlock': "R6 invalid mem access 'scalar'",
    'stash-local-kptr': None,
    'stash-local-kptr-leak': 'Unreleased reference id=4 alloc_insn=20',
    'rbtree-kfunc-in-callback': None,
}


def test_every_program_has_an_expectation() -> None:
    assert set(EXPECTED) == set(PROGRAMS)


@pytest.mark.clang
@pytest.mark.parametrize("name", list(PROGRAMS))
def test_graph_verdict(tmp_path: Path, name: str) -> None:
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
def test_graph_expectation_matches_kernel(tmp_path: Path, name: str) -> None:
    accepted, log = kernel_verdict(compile_c(tmp_path, name, PROGRAMS[name]))
    expected = EXPECTED[name]
    assert accepted == (expected is None), log[-2000:]
    if expected is not None:
        assert expected in log, log[-2000:]


@pytest.mark.clang
def test_global_data_roots_found_at_their_symbols(tmp_path: Path) -> None:
    spec = load_spec(compile_c(tmp_path, "roots", PROGRAMS["refcount-two-graphs"]))
    fields = maps_of(spec)[".bss.D"].fields or ()
    by_kind = {field.kind: field for field in fields}
    assert set(by_kind) == {FieldKind.SPIN_LOCK, FieldKind.LIST_HEAD, FieldKind.RB_ROOT}
    # Placed where the ELF symbols say (clang's DATASEC leaves every offset 0), 8-byte aligned.
    offsets = sorted(field.offset for field in fields)
    assert offsets == [0, 8, 24]
    head, root = by_kind[FieldKind.LIST_HEAD].root, by_kind[FieldKind.RB_ROOT].root
    assert head is not None and (head.value_type, head.node_name, head.node_offset) == ("rc", "l", 8)
    assert root is not None and (root.value_type, root.node_name, root.node_offset) == ("rc", "r", 32)
    assert head.value_type_id == root.value_type_id > 0
