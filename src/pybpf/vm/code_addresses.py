"""Code addresses: how a function's address looks to a program, for both engines.

``lddw rX, <func>`` (``PseudoSrc.FUNC``) loads ``CODE_BASE + pc * 8`` for the function's first pc.
``CODE_BASE`` lies in the kernel half of the x86-64 address space, so it can never collide with a
user-space buffer's address; ``callx`` and callback helpers turn it back into a pc.
"""

from __future__ import annotations

from collections.abc import Container

CODE_BASE = 0xFFFF_8000_0000_0000


def code_address(pc: int) -> int:
    """The code address of the instruction at ``pc``."""
    return CODE_BASE + pc * 8


def function_pc(target: int, starts: Container[int]) -> int | None:
    """The pc a code address (or a plain pc) designates, or None if it is not an instruction start."""
    offset = target - CODE_BASE
    pc = offset // 8 if offset >= 0 and offset % 8 == 0 else target
    return pc if pc in starts else None
