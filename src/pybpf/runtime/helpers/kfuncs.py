"""Kfunc implementations for user-space runs, by kernel name (:data:`KFUNC_IMPLS`).

Each follows its kernel source (kernel/bpf/bpf_iter.c for the numeric iterator,
kernel/bpf/helpers.c for the rest). A kfunc is called like a helper, ``(env, r1..r5) -> r0``;
:func:`kfunc_table` keys the implementations a program type may call by
:func:`~pybpf.vm.execution.kfunc_key` for the interpreter's and JIT's ``helpers`` table.

The string kfuncs read with fault handling, as ``__get_kernel_nofault`` does: an address no
region maps gives -EFAULT, except below the kernel half of the address space, where the kernel
answers -ERANGE before reading (``copy_from_kernel_nofault_allowed``: NULL and other small
numbers are user addresses). pybpf's regions stand for kernel memory wherever they are mapped.
"""

# Every kfunc takes (env, r1..r5): the helper ABI fixes six positional parameters.
# ruff: noqa: PLR0917

from __future__ import annotations

import errno
import struct
from collections.abc import Callable, Mapping

from pybpf.platform.kfuncs import KFUNC_PROTOS
from pybpf.platform.uapi_generated import BpfProgType
from pybpf.runtime.helpers._common import E2BIG, EFAULT, EINVAL, ERANGE, U32, U64, read, s32, write
from pybpf.runtime.helpers.arena_kfuncs import ARENA_KFUNC_IMPLS
from pybpf.runtime.helpers.dynptr_kfuncs import DYNPTR_KFUNC_IMPLS
from pybpf.runtime.helpers.kernel_objects import OBJECT_KFUNC_IMPLS
from pybpf.vm.execution import ExecutionContext, HelperFn, kfunc_key
from pybpf.vm.memory import Region, RegionKind

BPF_MAX_LOOPS = 8 * 1024 * 1024
XATTR_SIZE_MAX = 1 << 16
_ITER_NUM = struct.Struct("<ii")  # struct bpf_iter_num_kern { int cur; int end; }
# Signed results inside the string bodies (returned as u64 by _strings).
_NOT_FOUND = -errno.ENOENT
_TOO_BIG = -errno.E2BIG
# Addresses the kernel would treat as user space (x86-64: below TASK_SIZE_MAX) and refuse.
_USER_SPACE_END = 1 << 47


# -- the numeric iterator ------------------------------------------------------------------------


def iter_num_new(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    start, end = s32(r2), s32(r3)
    if start > end:
        write(env, r1, _ITER_NUM.pack(0, 0))
        return EINVAL
    if end - start > BPF_MAX_LOOPS:
        write(env, r1, _ITER_NUM.pack(0, 0))
        return E2BIG
    # next() increments first, so the state starts one below.
    write(env, r1, _ITER_NUM.pack(s32(start - 1), end))
    return 0


def iter_num_next(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    cur, end = _ITER_NUM.unpack(read(env, r1, _ITER_NUM.size))
    if cur + 1 >= end:
        write(env, r1, _ITER_NUM.pack(0, 0))
        return 0
    write(env, r1, _ITER_NUM.pack(cur + 1, end))
    return r1  # &s->cur: the state's first field


def iter_num_destroy(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    write(env, r1, _ITER_NUM.pack(0, 0))
    return 0


# -- the bit iterator ----------------------------------------------------------------------------

_ITER_BITS = struct.Struct("<Qii")  # struct bpf_iter_bits_kern { u64 bits_copy or *bits; int nr_bits, bit; }
_BIT_OFFSET = 12  # &kit->bit, what next() returns
_BITS_WORDS_MAX = (1 << 31) // 64
_MEM_ALLOC_MAX = 4096  # bpf_mem_alloc's largest size class


def _probe_read(env: ExecutionContext, address: int, size: int) -> bytes | int:
    """copy_from_kernel_nofault: the bytes, or the negative errno (-ERANGE below the kernel half)."""
    region = env.memory.find(address, size)
    if region is not None:
        return bytes(region.view[address - region.address : address - region.address + size])
    return ERANGE if address < _USER_SPACE_END else EFAULT


def iter_bits_new(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    nr_words = r3 & U32
    write(env, r1, _ITER_BITS.pack(0, 0, -1))
    if not r2 or not nr_words:
        return EINVAL
    if nr_words > _BITS_WORDS_MAX:
        return E2BIG
    nr_bytes = nr_words * 8
    if nr_bytes == 8:
        copied = _probe_read(env, r2, 8)
        if isinstance(copied, int):
            return EFAULT
        write(env, r1, _ITER_BITS.pack(int.from_bytes(copied, "little"), 64, -1))
        return 0
    if nr_bytes > _MEM_ALLOC_MAX:
        return E2BIG
    copied = _probe_read(env, r2, nr_bytes)
    if isinstance(copied, int):
        return copied
    # The kernel's bpf_mem_alloc'ed copy: a region of its own, unmapped again by destroy().
    region = env.memory.add(Region.from_bytes(RegionKind.HELPER_MEM, "bpf_iter_bits copy", copied))
    write(env, r1, _ITER_BITS.pack(region.address, nr_bytes * 8, -1))
    return 0


def iter_bits_next(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    bits_or_pointer, nr_bits, bit = _ITER_BITS.unpack(read(env, r1, _ITER_BITS.size))
    if not nr_bits or bit >= nr_bits:
        return 0
    words = bits_or_pointer if nr_bits == 64 else int.from_bytes(read(env, bits_or_pointer, nr_bits // 8), "little")
    remaining = words >> (bit + 1)
    bit = bit + 1 + ((remaining & -remaining).bit_length() - 1) if remaining else nr_bits
    write(env, r1 + _BIT_OFFSET, struct.pack("<i", bit))
    return 0 if bit >= nr_bits else r1 + _BIT_OFFSET


def iter_bits_destroy(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    pointer, nr_bits, _ = _ITER_BITS.unpack(read(env, r1, _ITER_BITS.size))
    if nr_bits > 64:
        region = env.memory.find(pointer, 1)
        if region is not None and region.address == pointer:
            env.memory.remove(region)
    return 0


# -- sections: nothing to do in user space (the verifier checked their pairing) ------------------


def no_op(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    return 0


# -- user memory: a user-space run has no user address space apart from pybpf's memory ----------

BPF_F_PAD_ZEROS = 1


def copy_from_user_str(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """Every address a program can name is pybpf's (the kernel's, for the kernel): no user page
    is mapped at it, so the copy faults as strncpy_from_user does on a kernel address."""
    size = r2 & U32
    if r4 & ~BPF_F_PAD_ZEROS:
        return EINVAL
    if not size:
        return 0
    if r4 & BPF_F_PAD_ZEROS:
        write(env, r1, bytes(size))
    return EFAULT


# -- tasks: user space has none to hand out ----------------------------------------------------


def task_from_pid(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    return 0  # NULL: no kernel task exists to acquire


# -- strings -------------------------------------------------------------------------------------


class _Fault(Exception):
    """A string read hit unmapped memory (the kfunc returns -EFAULT)."""


class _Reader:
    """Byte-at-a-time reads of one string argument, with the kernel's fault rules."""

    def __init__(self, env: ExecutionContext, address: int) -> None:
        self.env = env
        self.address = address

    def allowed(self) -> bool:
        return self.address >= _USER_SPACE_END or self.env.memory.find(self.address, 1) is not None

    def __getitem__(self, index: int) -> int:
        region = self.env.memory.find(self.address + index, 1)
        if region is None:
            raise _Fault
        return int(region.view[self.address + index - region.address])


def _strings(*addresses: int, env: ExecutionContext, body: Callable[..., int]) -> int:
    readers = [_Reader(env, address) for address in addresses]
    if not all(reader.allowed() for reader in readers):
        return ERANGE
    try:
        return body(*readers) & U64
    except _Fault:
        return EFAULT


def _lower(byte: int) -> int:
    return byte + 32 if 0x41 <= byte <= 0x5A else byte


def _compare(s1: _Reader, s2: _Reader, ignore_case: bool) -> int:
    for index in range(XATTR_SIZE_MAX):
        c1, c2 = s1[index], s2[index]
        if ignore_case:
            c1, c2 = _lower(c1), _lower(c2)
        if c1 != c2:
            return -1 if c1 < c2 else 1
        if c1 == 0:
            return 0
    return _TOO_BIG


def strcmp(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    return _strings(r1, r2, env=env, body=lambda a, b: _compare(a, b, False))


def strcasecmp(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    return _strings(r1, r2, env=env, body=lambda a, b: _compare(a, b, True))


def _strnchr(s: _Reader, count: int, char: int) -> int:
    index = 0
    while index < count and index < XATTR_SIZE_MAX:
        byte = s[index]
        if byte == char:
            return index
        if byte == 0:
            return _NOT_FOUND
        index += 1
    return _TOO_BIG if index == XATTR_SIZE_MAX else _NOT_FOUND


def strnchr(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    return _strings(r1, env=env, body=lambda s: _strnchr(s, r2 & U64, r3 & 0xFF))


def strchr(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    return _strings(r1, env=env, body=lambda s: _strnchr(s, XATTR_SIZE_MAX, r2 & 0xFF))


def _strchrnul(s: _Reader, char: int) -> int:
    for index in range(XATTR_SIZE_MAX):
        byte = s[index]
        if byte in (0, char):
            return index
    return _TOO_BIG


def strchrnul(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    return _strings(r1, env=env, body=lambda s: _strchrnul(s, r2 & 0xFF))


def _strrchr(s: _Reader, char: int) -> int:
    last = _NOT_FOUND
    for index in range(XATTR_SIZE_MAX):
        byte = s[index]
        if byte == char:
            last = index
        if byte == 0:
            return last
    return _TOO_BIG


def strrchr(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    # ``int c`` compared with a char: only a value in char range can match.
    char = s32(r2)
    return _strings(r1, env=env, body=lambda s: _strrchr(s, char & 0xFF if -128 <= char <= 255 else -1))


def _strnlen(s: _Reader, count: int) -> int:
    index = 0
    while index < count and index < XATTR_SIZE_MAX:
        if s[index] == 0:
            return index
        index += 1
    return _TOO_BIG if index == XATTR_SIZE_MAX else index


def strnlen(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    return _strings(r1, env=env, body=lambda s: _strnlen(s, r2 & U64))


def strlen(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    return _strings(r1, env=env, body=lambda s: _strnlen(s, XATTR_SIZE_MAX))


def _span(s: _Reader, chars: _Reader, accept: bool) -> int:
    for index in range(XATTR_SIZE_MAX):
        byte = s[index]
        if byte == 0:
            return index
        found = False
        for position in range(XATTR_SIZE_MAX):
            candidate = chars[position]
            if candidate == 0:
                break
            if candidate == byte:
                found = True
                break
        else:
            return _TOO_BIG
        if found != accept:
            return index
    return _TOO_BIG


def strspn(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    return _strings(r1, r2, env=env, body=lambda s, accept: _span(s, accept, True))


def strcspn(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    return _strings(r1, r2, env=env, body=lambda s, reject: _span(s, reject, False))


def _strnstr(s1: _Reader, s2: _Reader, length: int) -> int:
    index = 0
    while index < length and index < XATTR_SIZE_MAX:
        offset = 0
        while index + offset <= length and offset < XATTR_SIZE_MAX:
            c2 = s2[offset]
            if c2 == 0:
                return index
            if index + offset == length:
                return _NOT_FOUND
            c1 = s1[index + offset]
            if c1 == 0:
                return _NOT_FOUND
            if c1 != c2:
                break
            offset += 1
        if offset == XATTR_SIZE_MAX:
            return _TOO_BIG
        index += 1
    return _TOO_BIG if index == XATTR_SIZE_MAX else _NOT_FOUND


def strnstr(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    return _strings(r1, r2, env=env, body=lambda a, b: _strnstr(a, b, r3 & U64))


def strstr(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    return _strings(r1, r2, env=env, body=lambda a, b: _strnstr(a, b, XATTR_SIZE_MAX))


KFUNC_IMPLS: Mapping[str, HelperFn] = {
    "bpf_iter_num_new": iter_num_new,
    "bpf_iter_num_next": iter_num_next,
    "bpf_iter_num_destroy": iter_num_destroy,
    "bpf_iter_bits_new": iter_bits_new,
    "bpf_iter_bits_next": iter_bits_next,
    "bpf_iter_bits_destroy": iter_bits_destroy,
    "bpf_rcu_read_lock": no_op,
    "bpf_rcu_read_unlock": no_op,
    "bpf_preempt_disable": no_op,
    "bpf_preempt_enable": no_op,
    "bpf_copy_from_user_str": copy_from_user_str,
    "bpf_task_from_pid": task_from_pid,
    "bpf_strcmp": strcmp,
    "bpf_strcasecmp": strcasecmp,
    "bpf_strchr": strchr,
    "bpf_strchrnul": strchrnul,
    "bpf_strnchr": strnchr,
    "bpf_strrchr": strrchr,
    "bpf_strlen": strlen,
    "bpf_strnlen": strnlen,
    "bpf_strspn": strspn,
    "bpf_strcspn": strcspn,
    "bpf_strstr": strstr,
    "bpf_strnstr": strnstr,
    **DYNPTR_KFUNC_IMPLS,
    **ARENA_KFUNC_IMPLS,
    **OBJECT_KFUNC_IMPLS,
}
"""Every kfunc pybpf runs in user space, by kernel name (each has an entry in KFUNC_PROTOS)."""


def kfunc_table(prog_type: BpfProgType | int) -> dict[int, HelperFn]:
    """The implementations a program of ``prog_type`` may call, keyed for the ``helpers`` table."""
    table: dict[int, HelperFn] = {}
    for proto in KFUNC_PROTOS.values():
        fn = KFUNC_IMPLS.get(proto.name)
        if fn is not None and proto.allowed_for(prog_type):
            table[kfunc_key(proto.id)] = fn
    return table
