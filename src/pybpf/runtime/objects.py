"""Program-allocated objects and the lists and rb-trees holding them, for user-space runs.

:class:`ObjectHeap` is one runtime's allocator for ``bpf_obj_new``: each object is a zeroed
:class:`~pybpf.vm.memory.Region` of its struct's size mapped into the runtime's address space
(so the interpreter and native code reach its fields at its real address), with a reference
count (``bpf_refcount``: 1 at allocation, one more per ``bpf_refcount_acquire``); the last
``bpf_obj_drop`` unmaps it, first dropping whatever the lists and trees inside it still hold
(``bpf_obj_free_fields``).

The verifier forbids loads and stores of a ``bpf_list_head``/``bpf_rb_root``/node's bytes, so
the heap keeps the graphs beside memory, by the root's address: a list is a Python list of
node addresses, an rb-tree a red-black tree of them (:class:`RbTree`, with lib/rbtree.c's
insertion and erase, so ``bpf_rbtree_root/left/right`` see the kernel's shape), ordered by the
program's ``less`` callback. A node belongs to at most one root (its ``owner``), as the kernel
marks it. :meth:`ObjectHeap.free_fields` drops what every root inside a freed range holds: a map
element deleted or overwritten, global data torn down, an object dropped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from pybpf.errors import HelperError
from pybpf.vm.memory import AddressSpace, Region, RegionKind


@dataclass(slots=True)
class HeapObject:
    """One live object: its memory, struct name and reference count."""

    region: Region
    name: str
    refcount: int = 1


@dataclass(slots=True)
class RbNode:
    address: int
    red: bool = True
    parent: RbNode | None = None
    left: RbNode | None = None
    right: RbNode | None = None


@dataclass(slots=True)
class RbTree:
    """A red-black tree of node addresses (lib/rbtree.c's algorithms: the same shape as the kernel's)."""

    root: RbNode | None = None
    nodes: dict[int, RbNode] = field(default_factory=dict)

    def first(self) -> int:
        node = self.root
        while node is not None and node.left is not None:
            node = node.left
        return node.address if node is not None else 0

    def child(self, address: int, left: bool) -> int:
        node = self.nodes[address]
        found = node.left if left else node.right
        return found.address if found is not None else 0

    def insert(self, address: int, less: Callable[[int, int], bool]) -> None:
        """``rb_add``: walk down by ``less(new, node)`` (left when true), link, recolour."""
        new = RbNode(address)
        parent, node, go_left = None, self.root, False
        while node is not None:
            parent = node
            go_left = less(address, node.address)
            node = node.left if go_left else node.right
        new.parent = parent
        if parent is None:
            self.root = new
        elif go_left:
            parent.left = new
        else:
            parent.right = new
        self.nodes[address] = new
        self._insert_fixup(new)

    def _rotate(self, node: RbNode, left: bool) -> None:
        pivot = node.right if left else node.left
        if pivot is None:
            return
        inner = pivot.left if left else pivot.right
        if left:
            node.right = inner
        else:
            node.left = inner
        if inner is not None:
            inner.parent = node
        pivot.parent = node.parent
        if node.parent is None:
            self.root = pivot
        elif node is node.parent.left:
            node.parent.left = pivot
        else:
            node.parent.right = pivot
        if left:
            pivot.left = node
        else:
            pivot.right = node
        node.parent = pivot

    def _insert_fixup(self, node: RbNode) -> None:
        while node.parent is not None and node.parent.red:
            parent = node.parent
            grand = parent.parent
            if grand is None:
                break
            parent_is_left = parent is grand.left
            uncle = grand.right if parent_is_left else grand.left
            if uncle is not None and uncle.red:
                parent.red = uncle.red = False
                grand.red = True
                node = grand
                continue
            if node is (parent.right if parent_is_left else parent.left):
                self._rotate(parent, left=parent_is_left)
                node, parent = parent, node
            parent.red, grand.red = False, True
            self._rotate(grand, left=not parent_is_left)
        if self.root is not None:
            self.root.red = False

    def remove(self, address: int) -> None:
        """``rb_erase``: a node with two children is replaced by its successor."""
        node = self.nodes.pop(address)
        if node.left is not None and node.right is not None:
            successor = node.right
            while successor.left is not None:
                successor = successor.left
            self._erase(node, successor)
            return
        self._erase(node, None)

    def _replace(self, old: RbNode, new: RbNode | None) -> None:
        parent = old.parent
        if parent is None:
            self.root = new
        elif old is parent.left:
            parent.left = new
        else:
            parent.right = new
        if new is not None:
            new.parent = parent

    def _erase(self, node: RbNode, successor: RbNode | None) -> None:
        if successor is None:
            child = node.left if node.left is not None else node.right
            parent = node.parent
            self._replace(node, child)
            removed_red = node.red
        else:
            child = successor.right
            removed_red = successor.red
            if successor.parent is node:
                parent = successor
            else:
                parent = successor.parent
                self._replace(successor, child)
                successor.right = node.right
                if successor.right is not None:
                    successor.right.parent = successor
            self._replace(node, successor)
            successor.left = node.left
            if successor.left is not None:
                successor.left.parent = successor
            successor.red = node.red
        if not removed_red:
            self._erase_fixup(child, parent)

    def _erase_fixup(self, node: RbNode | None, parent: RbNode | None) -> None:
        while node is not self.root and (node is None or not node.red) and parent is not None:
            is_left = node is parent.left
            sibling = parent.right if is_left else parent.left
            if sibling is not None and sibling.red:
                sibling.red, parent.red = False, True
                self._rotate(parent, left=is_left)
                sibling = parent.right if is_left else parent.left
            if sibling is None:
                node, parent = parent, parent.parent
                continue
            near = sibling.left if is_left else sibling.right
            far = sibling.right if is_left else sibling.left
            if (near is None or not near.red) and (far is None or not far.red):
                sibling.red = True
                node, parent = parent, parent.parent
                continue
            if far is None or not far.red:
                if near is not None:
                    near.red = False
                sibling.red = True
                self._rotate(sibling, left=not is_left)
                sibling = parent.right if is_left else parent.left
                if sibling is None:
                    break
                far = sibling.right if is_left else sibling.left
            sibling.red, parent.red = parent.red, False
            if far is not None:
                far.red = False
            self._rotate(parent, left=is_left)
            node = self.root
            break
        if node is not None:
            node.red = False

    def addresses(self) -> list[int]:
        return list(self.nodes)


class ObjectHeap:
    """One runtime's ``bpf_obj_new`` objects, lists and rb-trees (see the module doc)."""

    def __init__(self, memory: AddressSpace) -> None:
        self.memory = memory
        self._objects: dict[int, HeapObject] = {}  # by address
        self.lists: dict[int, list[int]] = {}  # head address -> node addresses, first to last
        self.trees: dict[int, RbTree] = {}  # root address -> tree of node addresses
        self._owner: dict[int, int] = {}  # node address -> the head/root holding it
        self._guard = threading.RLock()

    def __len__(self) -> int:
        return len(self._objects)

    def allocate(self, size: int, name: str) -> int:
        region = self.memory.add(Region.zeroed(RegionKind.OTHER, f"bpf_obj_new struct {name}", max(size, 1)))
        with self._guard:
            self._objects[region.address] = HeapObject(region, name)
        return region.address

    def owns(self, address: int) -> bool:
        """Whether ``address`` is the start of a live object of this heap."""
        with self._guard:
            return address in self._objects

    def object_at(self, address: int) -> HeapObject:
        """The live object holding ``address`` (a node's address finds its object)."""
        region = self.memory.find(address)
        found = self._objects.get(region.address) if region is not None else None
        if found is None:
            raise HelperError(f"{address:#x} is not inside an object bpf_obj_new allocated")
        return found

    def acquire(self, address: int) -> int:
        """bpf_refcount_acquire: one more reference, or 0 when the count already reached 0."""
        with self._guard:
            found = self.object_at(address)
            if found.refcount <= 0:
                return 0
            found.refcount += 1
            return address

    def drop(self, address: int) -> None:
        """bpf_obj_drop: one reference less; the last frees the object and what its roots hold."""
        with self._guard:
            found = self.object_at(address)
            found.refcount -= 1
            if found.refcount > 0:
                return
            region = found.region
            del self._objects[region.address]
        self.free_fields(region.address, region.size)
        self.memory.remove(region)

    def free_fields(self, address: int, size: int) -> None:
        """``bpf_obj_free_fields`` for ``[address, address + size)``: every list and tree rooted
        there is emptied and its objects dropped."""
        with self._guard:
            heads = [head for head in self.lists if address <= head < address + size]
            roots = [root for root in self.trees if address <= root < address + size]
            nodes = [node for head in heads for node in self.lists.pop(head)]
            nodes += [node for root in roots for node in self.trees.pop(root).addresses()]
            for node in nodes:
                self._owner.pop(node, None)
        for node in nodes:
            self.drop(node)

    # -- lists ---------------------------------------------------------------------------------

    def push(self, head: int, node: int, *, front: bool) -> bool:
        """Insert ``node``; False (its reference dropped) when it is already in a list or tree."""
        with self._guard:
            if node not in self._owner:
                self._owner[node] = head
                nodes = self.lists.setdefault(head, [])
                if front:
                    nodes.insert(0, node)
                else:
                    nodes.append(node)
                return True
        self.drop(node)
        return False

    def pop(self, head: int, *, front: bool) -> int:
        with self._guard:
            nodes = self.lists.get(head)
            if not nodes:
                return 0
            node = nodes.pop(0 if front else -1)
            del self._owner[node]
            return node

    def peek(self, head: int, *, front: bool) -> int:
        with self._guard:
            nodes = self.lists.get(head)
            return (nodes[0] if front else nodes[-1]) if nodes else 0

    # -- rb-trees ------------------------------------------------------------------------------

    def tree(self, root: int) -> RbTree:
        with self._guard:
            return self.trees.setdefault(root, RbTree())

    def add(self, root: int, node: int, less: Callable[[int, int], bool]) -> bool:
        """Insert ``node`` ordered by ``less``; False (its reference dropped) when already owned."""
        with self._guard:
            owned = node in self._owner
            if not owned:
                self._owner[node] = root
        if owned:
            self.drop(node)
            return False
        self.tree(root).insert(node, less)
        return True

    def owner(self, node: int) -> int:
        with self._guard:
            return self._owner.get(node, 0)

    def remove(self, root: int, node: int) -> int:
        with self._guard:
            if self._owner.get(node) != root:
                return 0
            del self._owner[node]
            self.trees[root].remove(node)
            return node

    def close(self) -> None:
        """Unmap every object still allocated (the runtime is going away)."""
        with self._guard:
            objects = list(self._objects.values())
            self._objects.clear()
            self.lists.clear()
            self.trees.clear()
            self._owner.clear()
        for found in objects:
            if found.region in self.memory:
                self.memory.remove(found.region)


__all__ = ["HeapObject", "ObjectHeap", "RbNode", "RbTree"]
