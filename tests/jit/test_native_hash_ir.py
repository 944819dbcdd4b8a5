"""The key hash, key comparison and index probe as native code computes them, against Python.

The IR functions of :mod:`pybpf.vm.jit.natives.hash_ir` are compiled alone (an exported wrapper
calls each) and called through ctypes on random bytes of every length from 0 to 40, with and
without a masked tail byte: the hash must be :func:`native_hash` of the same bytes, the probe
must find exactly what :meth:`NativeIndex.lookup` finds.
"""

from __future__ import annotations

import ctypes
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pybpf.vm.jit.llvm import NativeCode, require_llvmlite
from pybpf.vm.jit.natives.hash_ir import hash_function, key_equal_function, probe_function
from pybpf.vm.native_maps import NativeMapDescriptor, NativeMapFlag, NativeMapKind
from pybpf.vm.native_maps.hashing import native_hash, tail_mask
from pybpf.vm.native_maps.index import NativeIndex

_U64 = ctypes.c_uint64


def _compile() -> tuple[NativeCode, dict[str, Any]]:
    ir, _ = require_llvmlite()
    i64 = ir.IntType(64)
    module = ir.Module(name="hash_ir_test")
    builder_of = SimpleNamespace(
        ir=ir, i64=i64, module=module, state_type=i64.as_pointer(), tag=lambda instruction, kind: instruction
    )
    wrappers = {}
    for name, internal, arguments in (
        ("test_hash", hash_function(builder_of), 4),
        ("test_probe", probe_function(builder_of), 6),
        ("test_key_equal", key_equal_function(builder_of), 4),
    ):
        wrapper = ir.Function(module, ir.FunctionType(i64, [i64] * arguments), name=name)
        builder = ir.IRBuilder(wrapper.append_basic_block("entry"))
        result = builder.call(internal, list(wrapper.args))
        builder.ret(result if result.type == i64 else builder.zext(result, i64))
        wrappers[name] = arguments
    native = NativeCode(str(module))
    functions = {
        name: ctypes.CFUNCTYPE(_U64, *([_U64] * count))(native.address(name)) for name, count in wrappers.items()
    }
    return native, functions


@pytest.fixture(scope="module")
def compiled() -> tuple[NativeCode, dict[str, Any]]:
    return _compile()


@settings(max_examples=200, deadline=None)
@given(data=st.binary(min_size=0, max_size=41), prefix_bits=st.integers(0, 7), seed=st.integers(0, 2**64 - 1))
def test_native_hash_is_pythons(
    compiled: tuple[NativeCode, dict[str, Any]], data: bytes, prefix_bits: int, seed: int
) -> None:
    functions = compiled[1]
    buffer = ctypes.create_string_buffer(data, len(data) + 1)
    whole = len(data)
    assert functions["test_hash"](ctypes.addressof(buffer), whole, 0, seed) == native_hash(data, seed)
    if prefix_bits and data:
        # An LPM prefix: the whole bytes but the last, then prefix_bits of it.
        mask = tail_mask(prefix_bits)
        expected = native_hash(data[:-1] + bytes([data[-1] & mask]), seed)
        assert functions["test_hash"](ctypes.addressof(buffer), whole - 1, mask, seed) == expected
        other = ctypes.create_string_buffer(data[:-1] + bytes([data[-1] & mask]), len(data))
        assert functions["test_key_equal"](ctypes.addressof(buffer), ctypes.addressof(other), whole - 1, mask) == 1


@settings(max_examples=40, deadline=None)
@given(
    keys=st.lists(st.binary(min_size=5, max_size=5), min_size=1, max_size=60, unique=True),
    removed=st.sets(st.integers(0, 59)),
    probes=st.lists(st.binary(min_size=5, max_size=5), max_size=10),
)
def test_native_probe_finds_what_python_finds(
    compiled: tuple[NativeCode, dict[str, Any]], keys: list[bytes], removed: set[int], probes: list[bytes]
) -> None:
    functions = compiled[1]
    index = NativeIndex(NativeMapDescriptor(NativeMapKind.HASH, NativeMapFlag(0), 5, 8))
    buffers = [ctypes.create_string_buffer(key, 5) for key in keys]
    for number, (key, buffer) in enumerate(zip(keys, buffers, strict=True)):
        index.insert(key, ctypes.addressof(buffer), 0x10 + number)
    for number in removed & set(range(len(keys))):
        index.remove(keys[number])
    for key in keys + probes:
        probe = ctypes.create_string_buffer(key, 5)
        found = functions["test_probe"](index.address, native_hash(key), ctypes.addressof(probe), 5, 0, 0)
        assert found == index.lookup(key)
        assert functions["test_key_equal"](ctypes.addressof(probe), ctypes.addressof(probe), 5, 0) == 1
