"""BPF_MAP_TYPE_LPM_TRIE: longest-prefix-match lookups (the kernel's lpm_trie.c).

A key is ``struct bpf_lpm_trie_key``: a host-order u32 ``prefixlen`` then ``key_size - 4``
bytes of big-endian data. The structure is the kernel's path-compressed binary trie, rebuilt
here node for node (intermediate nodes where two prefixes branch, postorder iteration), because
get_next_key's order follows from that shape (postorder: more specific prefixes first; a key
not in the trie starts over at the first one). Element updates follow the kernel since 6.13:
BPF_NOEXIST/BPF_EXIST are honoured, and replacing a prefix in a full trie works (ENOSPC only
for a new one).

Values live in slab slots; replacing an element's value rewrites its slot in place (the kernel
allocates a new node), so a program's pointer stays valid and sees the update.

Native lookups: beside the trie, an :class:`~pybpf.vm.native_maps.index.LpmIndex` holds every
prefix (length and masked bits) with its value's address, and the prefix lengths present; JIT
code probes it longest length first (one hash probe per length, see
:mod:`pybpf.vm.native_maps.index` for the costs). An element is entered after its value is
written and taken out before its slot is freed. Updates from programs stay in Python.
"""

from __future__ import annotations

from typing import ClassVar

from pybpf.errors import MapFullError, MapInvalidArgumentError, MapKeyExistsError, MapKeyNotFoundError
from pybpf.platform.uapi_generated import BpfMapFlag, BpfMapType
from pybpf.runtime.maps.base import EXIST, NOEXIST, Map
from pybpf.runtime.maps.definition import ACCESS_MASK, MapDef, check_flags, invalid
from pybpf.runtime.maps.slab import Slab
from pybpf.vm.memory import AddressSpace
from pybpf.vm.native_maps import NativeMapDescriptor, NativeMapFlag, NativeMapKind
from pybpf.vm.native_maps.index import LpmIndex

LPM_CREATE_FLAGS = BpfMapFlag.NO_PREALLOC | BpfMapFlag.NUMA_NODE | ACCESS_MASK
LPM_DATA_SIZE_MAX = 256
PREFIXLEN_SIZE = 4


class _Node:
    """A trie node; ``slot`` is None for an intermediate node (it holds no element)."""

    __slots__ = ("children", "data", "prefixlen", "raw", "slot")

    def __init__(self, prefixlen: int, data: int, raw: bytes, slot: int | None) -> None:
        self.children: list[_Node | None] = [None, None]
        self.prefixlen = prefixlen
        self.data = data
        self.raw = raw
        self.slot = slot


class LpmTrieMap(Map):
    """Prefixes to values, with longest-prefix-match lookups."""

    MAP_TYPES: ClassVar[tuple[BpfMapType, ...]] = (BpfMapType.LPM_TRIE,)
    SUPPORTS_BATCH = True

    def __init__(self, definition: MapDef, address_space: AddressSpace, ncpus: int = 1) -> None:
        super().__init__(definition, address_space, ncpus)
        self.data_size = self.key_size - PREFIXLEN_SIZE
        self.max_prefixlen = self.data_size * 8
        writable = not self.map_flags & BpfMapFlag.RDONLY_PROG
        self.slab = Slab(
            address_space, f"{self.name or 'lpm_trie'} values", self.value_stride, self.max_entries, writable=writable
        )
        self._root: _Node | None = None
        self.n_entries = 0
        self._native = NativeMapDescriptor(
            NativeMapKind.LPM_TRIE,
            NativeMapFlag(0),
            self.key_size,
            self.value_size,
            max_prefixlen=self.max_prefixlen,
        )
        self._native_index = LpmIndex(self._native)

    def validate(self) -> None:
        definition = self.definition
        if not definition.map_flags & BpfMapFlag.NO_PREALLOC:
            raise invalid(definition, "an LPM trie needs BPF_F_NO_PREALLOC")
        check_flags(definition, LPM_CREATE_FLAGS)
        data_size = definition.key_size - PREFIXLEN_SIZE
        if definition.max_entries == 0 or not 1 <= data_size <= LPM_DATA_SIZE_MAX or definition.value_size < 1:
            raise invalid(
                definition, f"needs max_entries, a key of 5..{PREFIXLEN_SIZE + LPM_DATA_SIZE_MAX} bytes and a value"
            )

    def close(self) -> None:
        self._native_index.close()
        self.slab.release()

    # -- bits ---------------------------------------------------------------------------------------

    def _split(self, key: bytes) -> tuple[int, int]:
        return int.from_bytes(key[:PREFIXLEN_SIZE], "little"), int.from_bytes(key[PREFIXLEN_SIZE:], "big")

    def _match(self, node: _Node, prefixlen: int, data: int) -> int:
        """longest_prefix_match: how many leading bits of ``node`` the key matches (capped at both lengths)."""
        limit = min(node.prefixlen, prefixlen)
        common = self.max_prefixlen - (node.data ^ data).bit_length()
        return min(common, limit)

    def _bit(self, data: int, index: int) -> int:
        return (data >> (self.max_prefixlen - 1 - index)) & 1

    # -- lookups ----------------------------------------------------------------------------------

    def _find_longest(self, key: bytes) -> _Node | None:
        prefixlen, data = self._split(key)
        if prefixlen > self.max_prefixlen:
            return None
        found = None
        node = self._root
        while node is not None:
            matched = self._match(node, prefixlen, data)
            if matched == self.max_prefixlen:
                return node
            if matched < node.prefixlen:
                break
            if node.slot is not None:
                found = node
            node = node.children[self._bit(data, node.prefixlen)]
        return found

    def native_descriptor(self) -> NativeMapDescriptor:
        """The prefix index native lookups probe (updates from programs stay in Python)."""
        return self._native

    def lookup_address(self, key: bytes, cpu: int = 0) -> int:
        node = self._find_longest(key)
        if node is None or node.slot is None:
            return 0
        return self.slab.address(node.slot)

    def _lookup_user(self, key: bytes, flags: int) -> bytes:
        node = self._find_longest(key)
        if node is None or node.slot is None:
            raise MapKeyNotFoundError(f"{self.label}: no prefix matches")
        return bytes(self.slab.view(node.slot)[: self.value_size])

    # -- updates ----------------------------------------------------------------------------------

    def _add_element(self, flags: int) -> int:
        """trie_check_add_elem: room for one more element (ENOENT for BPF_EXIST, ENOSPC when full)."""
        if flags == EXIST:
            raise MapKeyNotFoundError(f"{self.label}: no such prefix (BPF_EXIST)")
        if self.n_entries == self.max_entries:
            raise MapFullError(f"{self.label} is full ({self.max_entries} prefixes)", 28, "ENOSPC")
        self.n_entries += 1
        return self.slab.alloc()

    def _update(self, key: bytes, value: bytes, flags: int, cpu: int | None) -> None:
        if flags > EXIST:
            raise MapInvalidArgumentError(f"{self.label}: update flags {flags:#x} are invalid")
        prefixlen, data = self._split(key)
        if prefixlen > self.max_prefixlen:
            raise MapInvalidArgumentError(f"{self.label}: prefixlen {prefixlen} exceeds {self.max_prefixlen}")
        raw = key[PREFIXLEN_SIZE:]
        parent: _Node | None = None
        side = 0
        node = self._root
        matched = 0
        while node is not None:
            matched = self._match(node, prefixlen, data)
            if node.prefixlen != matched or node.prefixlen == prefixlen:
                break
            parent, side = node, self._bit(data, node.prefixlen)
            node = node.children[side]
        value = value[: self.value_size]
        if node is None:
            new_node = self._new_node(prefixlen, data, raw, self._add_element(flags), value)
            self._attach(parent, side, new_node)
            self._enter(new_node)
            return
        if node.prefixlen == matched:
            # The same prefix: replace the element's key bytes and value (or fill an intermediate node).
            fresh = node.slot is None
            if node.slot is not None:
                if flags == NOEXIST:
                    raise MapKeyExistsError(f"{self.label}: the prefix exists (BPF_NOEXIST)")
            else:
                node.slot = self._add_element(flags)
            node.data, node.raw = data, raw
            self.slab.view(node.slot)[: len(value)] = value
            if fresh:
                self._enter(node)
            return
        slot = self._add_element(flags)
        new_node = self._new_node(prefixlen, data, raw, slot, value)
        if matched == prefixlen:
            # The new prefix covers the node: it becomes the node's parent.
            new_node.children[self._bit(node.data, matched)] = node
            self._attach(parent, side, new_node)
            self._enter(new_node)
            return
        branch = _Node(matched, node.data, node.raw, None)
        if self._bit(data, matched):
            branch.children = [node, new_node]
        else:
            branch.children = [new_node, node]
        self._attach(parent, side, branch)
        self._enter(new_node)

    def _enter(self, node: _Node) -> None:
        """Make a new element (its value written) visible to native lookups."""
        if node.slot is not None:
            self._native_index.insert(node.raw, node.prefixlen, self.slab.address(node.slot))

    def _new_node(self, prefixlen: int, data: int, raw: bytes, slot: int, value: bytes) -> _Node:
        self.slab.view(slot)[: len(value)] = value
        return _Node(prefixlen, data, raw, slot)

    def _attach(self, parent: _Node | None, side: int, node: _Node | None) -> None:
        if parent is None:
            self._root = node
        else:
            parent.children[side] = node

    def _delete(self, key: bytes) -> None:
        prefixlen, data = self._split(key)
        if prefixlen > self.max_prefixlen:
            raise MapInvalidArgumentError(f"{self.label}: prefixlen {prefixlen} exceeds {self.max_prefixlen}")
        grandparent: _Node | None = None
        grand_side = 0
        parent: _Node | None = None
        side = 0
        node = self._root
        matched = 0
        while node is not None:
            matched = self._match(node, prefixlen, data)
            if node.prefixlen != matched or node.prefixlen == prefixlen:
                break
            grandparent, grand_side = parent, side
            parent, side = node, self._bit(data, node.prefixlen)
            node = node.children[side]
        if node is None or node.prefixlen != prefixlen or node.prefixlen != matched or node.slot is None:
            raise MapKeyNotFoundError(f"{self.label}: no such prefix")
        self.n_entries -= 1
        self._native_index.remove(node.raw, node.prefixlen)  # before the slot can be reused
        self.slab.free(node.slot)
        node.slot = None
        left, right = node.children
        if left is not None and right is not None:
            return  # it stays as an intermediate node
        if parent is not None and parent.slot is None and left is None and right is None:
            # Its intermediate parent has no reason to exist any more: promote the sibling.
            self._attach(grandparent, grand_side, parent.children[1 - side])
            return
        self._attach(parent, side, left if left is not None else right)

    # -- iteration --------------------------------------------------------------------------------

    def _leftmost(self, root: _Node | None) -> _Node | None:
        found = None
        node = root
        while node is not None:
            if node.slot is None:
                node = node.children[0]
            else:
                found = node
                node = node.children[0] if node.children[0] is not None else node.children[1]
        return found

    def _encode(self, node: _Node) -> bytes:
        return node.prefixlen.to_bytes(PREFIXLEN_SIZE, "little") + node.raw

    def _next_key(self, key: bytes | None) -> bytes | None:
        if self._root is None:
            return None
        found: _Node | None
        if key is None or self._split(key)[0] > self.max_prefixlen:
            found = self._leftmost(self._root)
            return None if found is None else self._encode(found)
        prefixlen, data = self._split(key)
        stack: list[_Node] = []
        node: _Node | None = self._root
        matched = 0
        while node is not None:
            stack.append(node)
            matched = self._match(node, prefixlen, data)
            if node.prefixlen != matched or node.prefixlen == prefixlen:
                break
            node = node.children[self._bit(data, node.prefixlen)]
        if node is None or node.prefixlen != prefixlen or node.prefixlen != matched or node.slot is None:
            found = self._leftmost(self._root)
            return None if found is None else self._encode(found)
        # The next node in postorder: the leftmost of the right sibling subtree, else the parent.
        node = stack.pop()
        while stack:
            parent = stack[-1]
            if parent.children[0] is node and parent.children[1] is not None:
                found = self._leftmost(parent.children[1])
                return None if found is None else self._encode(found)
            if parent.slot is not None:
                return self._encode(parent)
            node = stack.pop()
        return None

    def __len__(self) -> int:
        return self.n_entries
