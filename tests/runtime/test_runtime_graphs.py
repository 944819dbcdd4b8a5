"""Program-allocated objects, linked lists and rb-trees at run time: interpreter, JIT and kernel agree.

tests/progs/graphs.c pushes and pops list items (front and back), keeps items in a global list
across runs, adds scrambled keys to an rb-tree (reporting the root and its children, the tree's
shape, then draining it in order), moves a refcounted object between a list and a tree, and
stashes objects in a map value's kptr. The
same sequence of BPF_PROG_TEST_RUNs must give the same return values and ``results`` on every
engine and in the kernel; the user-space heap must hold exactly what the graphs still own.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator

import pytest
from kernel_oracle import PROGS, loaded_in_kernel

import pybpf
from pybpf.kernel.object import KernelObject
from pybpf.runtime.object import Object
from pybpf.runtime.objects import RbNode, RbTree
from pybpf.runtime.program import ENGINES, Engine

OBJECT = PROGS / "graphs.o"
SEQUENCE = ("list_order", "keep", "keep", "keep", "tree_order", "shared", "stash_item", "stash_item", "stash_item",
            "map_list", "map_list", "map_list")

Outcome = list[tuple[str, int, list[int]]]


def _sequence(obj: Object | KernelObject, engine: Engine | None) -> Outcome:
    out = []
    for name in SEQUENCE:
        if isinstance(obj, Object):
            retval = obj.program(name).test_run(bytes(64), engine=engine).retval
        else:
            retval = obj.program(name).test_run(bytes(64)).retval
        results = [struct.unpack("<q", bytes(entry.value))[0] for entry in obj.map_entries("results")]  # type: ignore[arg-type]
        out.append((name, retval, results[:12]))
    return out


@pytest.fixture
def kernel() -> Iterator[KernelObject]:
    yield from loaded_in_kernel(OBJECT)


@pytest.mark.parametrize("engine", ENGINES)
def test_lists_and_trees_run(engine: Engine) -> None:
    with pybpf.load(OBJECT) as user:
        outcome = _sequence(user, engine)
        heap = user.services.heap
        # The items `keep` left in its global list, the one stashed in a kptr, the one in lists[7].
        assert len(heap) == 5
    by_run = dict(zip(range(len(outcome)), outcome, strict=True))
    # list_order: keys (i * 7) % 11 for i < 8, odd i pushed at the front; popped front, front,
    # back, back, front, front, back, back, then an empty list (-1).
    assert by_run[0][2][:9] == [9, 6, 5, 2, 3, 0, 10, 7, -1]
    assert [by_run[i][1] for i in (1, 2, 3)] == [1, 3, 5]  # each keep saw the previous one's key
    assert by_run[4][2][1:12] == [*range(10), -1]  # drained in key order
    assert by_run[5][1] == 0 and by_run[5][2][:4] == [0, 42, 42, 0]
    assert [by_run[i][1] for i in (6, 7, 8)] == [4, 9, 14]  # each stash saw (and dropped) the last
    assert [by_run[i][1] for i in (9, 10, 11)] == [0, 1, 2]


@pytest.mark.kernel
@pytest.mark.parametrize("engine", ENGINES)
def test_same_results_as_the_kernel(kernel: KernelObject, engine: Engine) -> None:
    with pybpf.load(OBJECT) as user:
        assert _sequence(user, engine) == _sequence(kernel, None)


def test_heap_memory_goes_with_the_runtime() -> None:
    def objects(user: Object) -> int:
        return sum(1 for region in user.memory.regions if region.name.startswith("bpf_obj_new"))

    with pybpf.load(OBJECT) as user:
        user.program("keep").test_run(bytes(64))
        heap = user.services.heap
        assert len(heap) == 1 and objects(user) == 1
        (head,) = heap.lists
        (node,) = heap.lists[head]
        assert heap.owner(node) == head
        heap.free_fields(head, 16)  # as a map element's teardown frees its roots
        assert len(heap) == 0 and objects(user) == 0


def test_a_stashed_object_goes_with_its_map() -> None:
    with pybpf.load(OBJECT) as user:
        heap = user.services.heap
        user.program("stash_item").test_run(bytes(64))
        user.program("stash_item").test_run(bytes(64))
        assert len(heap) == 1  # the second stash dropped the first object
        user.maps["stash"].close()  # bpf_obj_free_fields: the kptr's object is dropped
        assert len(heap) == 0


@pytest.mark.parametrize("teardown", ["delete", "update", "close"])
def test_a_map_element_frees_what_its_list_holds(teardown: str) -> None:
    key = (7).to_bytes(4, "little")
    with pybpf.load(OBJECT) as user:
        heap = user.services.heap
        for _ in range(3):
            user.program("map_list").test_run(bytes(64))
        assert len(heap) == 1  # each run replaced the item
        lists = user.maps["lists"]
        if teardown == "delete":
            lists.delete_raw(key)
        elif teardown == "update":
            lists.update_raw(key, bytes(24))  # bpf_obj_free_fields on the old value
        else:
            lists.close()
        assert len(heap) == 0


def _check_red_black(tree: RbTree) -> list[int]:
    """The in-order keys, asserting the red-black invariants on the way."""
    keys: list[int] = []

    def walk(node: RbNode | None, parent: RbNode | None) -> int:
        if node is None:
            return 1
        assert node.parent is parent
        left, right = node.left, node.right
        if node.red:
            assert not (left is not None and left.red) and not (right is not None and right.red)
        black_left = walk(left, node)
        keys.append(node.address)
        assert walk(right, node) == black_left
        return black_left + (0 if node.red else 1)

    assert tree.root is None or not tree.root.red
    walk(tree.root, None)
    return keys


def test_rbtree_keeps_order_and_balance() -> None:
    generator = random.Random(7)
    tree, present = RbTree(), set[int]()
    for step in range(600):
        if present and generator.random() < 0.4:
            key = generator.choice(sorted(present))
            tree.remove(key)
            present.discard(key)
        else:
            key = generator.randrange(1, 10_000)
            if key in present:
                continue
            tree.insert(key, lambda a, b: a < b)
            present.add(key)
        if step % 50 == 0:
            assert _check_red_black(tree) == sorted(present)
    assert _check_red_black(tree) == sorted(present)
    assert tree.first() == min(present)
