"""Map helpers and the helpers that call back into the program: bpf_loop, for_each_map_elem, tail_call.

Maps are reached by their pointer value through :class:`~pybpf.runtime.helpers.services.MapRegistry`
and driven through their program-side methods (:class:`pybpf.runtime.maps.base.Map`):
``lookup_address(key, cpu)`` (0 when absent), ``prog_update/prog_delete/prog_push/prog_pop/prog_peek``
(0 or -errno), ``for_each(callback, cpu)`` and, for prog arrays, ``program_at(index)``.
"""

# Every helper takes (env, r1..r5): the helper ABI fixes six positional parameters.
# ruff: noqa: PLR0917

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from pybpf.errors import HelperError
from pybpf.platform.uapi_generated import HelperId
from pybpf.runtime.helpers._common import E2BIG, EINVAL, ENOENT, U32, U64, find_map, read, require
from pybpf.vm.execution import ExecutionContext, HelperFn
from pybpf.vm.interpreter import Interpreter

BPF_MAX_LOOPS = 1 << 23
"""bpf_loop's nr_loops limit (kernel/bpf/bpf_iter.c)."""


def _key_size(env: ExecutionContext, map_object: object) -> int:
    size = getattr(map_object, "key_size", None)
    if not isinstance(size, int):
        raise HelperError(f"map {type(map_object).__name__} has no key_size", env.helper_pc)
    return size


def _value_size(env: ExecutionContext, map_object: object) -> int:
    size = getattr(map_object, "value_size", None)
    if not isinstance(size, int):
        raise HelperError(f"map {type(map_object).__name__} has no value_size", env.helper_pc)
    return size


def _ret(value: object) -> int:
    """A program-side map method's 0/-errno as the helper's return value."""
    return int(cast(int, value)) & U64


def map_lookup_elem(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    state, found = find_map(env, r1)
    key = read(env, r2, _key_size(env, found))
    lookup = cast(Callable[[bytes, int], int], require(env, found, "lookup_address"))
    address = lookup(key, state.current_cpu) & U64
    lookup_inner = getattr(found, "lookup_inner", None)
    if address and lookup_inner is not None:
        # A map-in-map yields an inner map's pointer, which the program passes to map helpers
        # next; user space may have put there a map the loader never saw, so make it findable.
        state.services.maps.register(lookup_inner(key))
    return address


def map_lookup_percpu_elem(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    _, found = find_map(env, r1)
    cpus = getattr(found, "ncpus", 1)
    if (r3 & U32) >= cpus:  # the kernel checks cpu >= nr_cpu_ids and returns NULL
        return 0
    key = read(env, r2, _key_size(env, found))
    lookup = cast(Callable[[bytes, int], int], require(env, found, "lookup_address"))
    return lookup(key, r3 & U32) & U64


def map_update_elem(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    state, found = find_map(env, r1)
    key = read(env, r2, _key_size(env, found))
    value = read(env, r3, _value_size(env, found))
    update = cast(Callable[[bytes, bytes, int, int], int], require(env, found, "prog_update"))
    return _ret(update(key, value, r4, state.current_cpu))


def map_delete_elem(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    _, found = find_map(env, r1)
    key = read(env, r2, _key_size(env, found))
    delete = cast(Callable[[bytes], int], require(env, found, "prog_delete"))
    return _ret(delete(key))


def map_push_elem(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    _, found = find_map(env, r1)
    value = read(env, r2, _value_size(env, found))
    push = cast(Callable[[bytes, int], int], require(env, found, "prog_push"))
    return _ret(push(value, r3))


def _pop_or_peek(env: ExecutionContext, r1: int, r2: int, method: str) -> int:
    _, found = find_map(env, r1)
    out = env.memory.view(r2, _value_size(env, found), env.helper_pc, writable=True)
    operation = cast(Callable[[memoryview], int], require(env, found, method))
    return _ret(operation(out))


def map_pop_elem(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    return _pop_or_peek(env, r1, r2, "prog_pop")


def map_peek_elem(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    return _pop_or_peek(env, r1, r2, "prog_peek")


def for_each_map_elem(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """callback(map, key, value, ctx) per element until it returns nonzero; the number visited."""
    state, found = find_map(env, r1)
    if r4:
        return EINVAL  # every map type's map_for_each_callback rejects flags
    map_pointer, callback, callback_ctx = r1, r2, r3

    def visit(key_address: int, value_address: int) -> int:
        return env.call_function(callback, map_pointer, key_address, value_address, callback_ctx)

    for_each = cast(Callable[[Callable[[int, int], int], int], int], require(env, found, "for_each"))
    return _ret(for_each(visit, state.current_cpu))


def loop(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """bpf_loop(nr_loops, callback, ctx, flags): callback(i, ctx) until it returns 1; iterations done."""
    nr_loops = r1 & U32  # the kernel's prototype takes a u32
    if r4:
        return EINVAL
    if nr_loops > BPF_MAX_LOOPS:
        return E2BIG
    for index in range(nr_loops):
        if env.call_function(r2, index, r3):
            return index + 1
    return nr_loops


def tail_call(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """Jump to prog_array[index]; when the jump cannot happen the program goes on after the call.

    The kernel leaves r0 undefined on that path; we return -EINVAL (index out of range),
    -ENOENT (empty slot) or -E2BIG (33 tail calls already made) so tests can tell why.
    """
    _, found = find_map(env, r2)
    index = r3 & U32
    max_entries = getattr(found, "max_entries", 0)
    if index >= max_entries:
        return EINVAL
    program_at = cast(Callable[[int], object], require(env, found, "program_at"))
    target = program_at(index)
    if target is None:
        return ENOENT
    # Slots hold runtime Programs (the loader's) or bare interpreters (tests driving the vm).
    interpreter = target if isinstance(target, Interpreter) else getattr(target, "interpreter", None)
    if not isinstance(interpreter, Interpreter):
        raise HelperError(f"prog array slot {index} holds {type(target).__name__}, not a program", env.helper_pc)
    return 0 if env.tail_call(interpreter) else E2BIG


MAP_HELPERS: dict[HelperId, HelperFn] = {
    HelperId.MAP_LOOKUP_ELEM: map_lookup_elem,
    HelperId.MAP_LOOKUP_PERCPU_ELEM: map_lookup_percpu_elem,
    HelperId.MAP_UPDATE_ELEM: map_update_elem,
    HelperId.MAP_DELETE_ELEM: map_delete_elem,
    HelperId.MAP_PUSH_ELEM: map_push_elem,
    HelperId.MAP_POP_ELEM: map_pop_elem,
    HelperId.MAP_PEEK_ELEM: map_peek_elem,
    HelperId.FOR_EACH_MAP_ELEM: for_each_map_elem,
    HelperId.LOOP: loop,
    HelperId.TAIL_CALL: tail_call,
}
