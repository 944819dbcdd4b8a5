"""The pybpf exception hierarchy.

Every error pybpf raises on bad input is a :class:`PybpfError`; callers never see a bare
Python exception escape from parsing, assembling, loading or running a program. Each error
keeps its context as attributes (pc, line, section...) so front ends can render it, and its
``str()`` is a complete sentence a user can act on.

This module is layer 0: it imports nothing from the package.
"""

from __future__ import annotations


class PybpfError(Exception):
    """Base class of every error raised by pybpf."""


class NotSupportedError(PybpfError):
    """A feature is not available here (missing library, kernel feature, platform)."""


class InvalidInstructionError(PybpfError):
    """An instruction (or a program's structure) breaks the encoding rules.

    ``pc`` is the slot index (8-byte units, as llvm-objdump and the kernel count).
    """

    def __init__(self, pc: int | None, reason: str) -> None:
        self.pc = pc
        self.reason = reason
        where = f"instruction {pc}: " if pc is not None else ""
        super().__init__(f"{where}{reason}")


class AssemblerError(PybpfError):
    """Assembly text that cannot be assembled; names line and column (both 1-based)."""

    def __init__(self, line: int, column: int, reason: str, source: str | None = None) -> None:
        self.line = line
        self.column = column
        self.reason = reason
        self.source = source
        super().__init__(f"line {line}, column {column}: {reason}")


class VmError(PybpfError):
    """A program failed while running (it faulted, or ran away)."""

    def __init__(self, message: str, pc: int | None = None) -> None:
        self.pc = pc
        where = f"pc {pc}: " if pc is not None else ""
        super().__init__(f"{where}{message}")


class MemoryAccessError(VmError):
    """A load or store outside every region, or into a region it may not write."""

    def __init__(self, pc: int | None, address: int, size: int, is_write: bool, detail: str) -> None:
        self.address = address
        self.size = size
        self.is_write = is_write
        self.detail = detail
        kind = "write" if is_write else "read"
        super().__init__(f"invalid {kind} of {size} byte(s) at {address:#x}: {detail}", pc)


class InstructionLimitError(VmError):
    """The program executed more instructions than its budget allows."""


class CallDepthError(VmError):
    """Too many nested bpf-to-bpf call frames (the kernel allows 8)."""


class HelperError(VmError):
    """A helper call failed: unknown helper id, or the helper rejected its arguments."""


class LoadError(PybpfError):
    """An object file (ELF) cannot be loaded; names the file, section and symbol when known."""

    def __init__(
        self,
        reason: str,
        *,
        file: str | None = None,
        section: str | None = None,
        symbol: str | None = None,
    ) -> None:
        self.reason = reason
        self.file = file
        self.section = section
        self.symbol = symbol
        parts = []
        if file:
            parts.append(file)
        if section:
            parts.append(f"section {section}")
        if symbol:
            parts.append(f"symbol {symbol}")
        prefix = ": ".join(parts)
        super().__init__(f"{prefix}: {reason}" if prefix else reason)


class BtfError(LoadError):
    """BTF or .BTF.ext data that does not parse."""


class BtfFieldError(BtfError):
    """A map value's special fields (spin lock, timer...) the kernel refuses, e.g. one twice."""


def _btf_where(type_id: int | None, offset: int | None) -> str:
    parts = []
    if type_id is not None:
        parts.append(f"type id {type_id}")
    if offset is not None:
        parts.append(f"offset {offset:#x}")
    return ", ".join(parts)


class BtfFormatError(BtfError):
    """BTF or .BTF.ext bytes that break the format (truncated, bad magic, bad string offset...).

    ``offset`` is the byte offset in the blob where decoding failed and ``type_id`` the type being
    decoded, when known; ``reason`` is the bare explanation.
    """

    def __init__(
        self,
        reason: str,
        *,
        offset: int | None = None,
        type_id: int | None = None,
        section: str | None = None,
    ) -> None:
        where = _btf_where(type_id, offset)
        super().__init__(f"{where}: {reason}" if where else reason, section=section)
        self.reason = reason
        self.offset = offset
        self.type_id = type_id


class BtfTypeError(BtfError):
    """A type id that does not exist, or whose kind does not allow the operation (size of a function...)."""

    def __init__(self, reason: str, *, type_id: int | None = None) -> None:
        where = _btf_where(type_id, None)
        super().__init__(f"{where}: {reason}" if where else reason)
        self.reason = reason
        self.type_id = type_id


class CoreReloError(BtfError):
    """A CO-RE relocation that cannot be computed at all (bad access string, ambiguous candidates).

    A relocation whose target simply does not exist is not an error: it resolves to a poisoned
    result, as libbpf does.
    """

    def __init__(self, reason: str, *, type_id: int | None = None, access_str: str | None = None) -> None:
        parts = []
        if type_id is not None:
            parts.append(f"type id {type_id}")
        if access_str is not None:
            parts.append(f"access {access_str!r}")
        where = " ".join(parts)
        super().__init__(f"CO-RE relocation ({where}): {reason}" if where else f"CO-RE relocation: {reason}")
        self.reason = reason
        self.type_id = type_id
        self.access_str = access_str


class MapError(PybpfError):
    """A map operation failed; ``errno`` is the kernel's errno name for it (ENOENT, E2BIG...)."""

    def __init__(self, message: str, errno_name: str | None = None) -> None:
        self.errno_name = errno_name
        super().__init__(message)


class KernelError(PybpfError):
    """The bpf() syscall failed; keeps errno and, for program loads, the verifier log."""

    def __init__(self, message: str, errno: int = 0, log: str = "") -> None:
        self.errno = errno
        self.log = log
        super().__init__(message)


class BpfCommandError(KernelError):
    """One bpf(2) command failed with an errno.

    ``command`` is the uapi name of the command (``BPF_MAP_CREATE``...), ``errno`` the
    kernel's errno, and ``log`` the verifier or BTF log when the command produced one.
    """

    def __init__(self, message: str, errno: int = 0, log: str = "", command: str = "") -> None:
        self.command = command
        super().__init__(message, errno, log)


class PermissionDeniedError(BpfCommandError):
    """EPERM/EACCES outside the verifier: the caller lacks CAP_BPF (or root)."""


class ObjectNotFoundError(BpfCommandError):
    """ENOENT: no such map element, pinned path, or object id."""


class ArgumentTooBigError(BpfCommandError):
    """E2BIG: an argument (program, key, value, attr) is larger than the kernel accepts."""


class InvalidArgumentError(BpfCommandError):
    """EINVAL: the kernel rejected an argument (bad type, size, flags...)."""


class NoSpaceError(BpfCommandError):
    """ENOSPC: a map is full, or an output buffer is too small."""


class AlreadyExistsError(BpfCommandError):
    """EEXIST: the key or pin path already exists."""


class ResourceBusyError(BpfCommandError):
    """EBUSY: the object is in use (frozen map written, attach point taken...)."""


class KernelNotSupportedError(BpfCommandError, NotSupportedError):
    """ENOSYS/EOPNOTSUPP/ENOTSUPP: this kernel lacks the command, type or feature."""


class VerifierRejectedError(BpfCommandError):
    """The kernel verifier rejected a program; ``log`` holds its whole log."""


class NotElfError(LoadError):
    """The input is not an ELF file at all (bad magic, or too short to hold an ELF header)."""


class WrongMachineError(LoadError):
    """An ELF file for another machine (not EM_BPF), word size (not ELFCLASS64) or byte order."""


class TruncatedObjectError(LoadError):
    """An ELF file whose headers, sections or tables run past the end of the data."""


class MalformedObjectError(LoadError):
    """An ELF file that parses but breaks the rules a BPF object follows (misaligned code...)."""


class UnknownRelocationError(LoadError):
    """A relocation type the BPF loader does not know, or one applied where it cannot be."""


class UndefinedSymbolError(LoadError):
    """A relocation refers to a symbol that is not defined in the object."""


class MissingMapError(LoadError):
    """An instruction refers to a map (or map slot) that the object does not define."""


class UnsupportedExternError(LoadError, NotSupportedError):
    """The object uses ``extern`` symbols (Kconfig, ksyms), which pybpf does not resolve yet."""


class UnknownKfuncError(LoadError):
    """A program calls a kfunc (``extern ... __ksym`` function) that cannot be resolved: pybpf's
    kfunc table does not know it (user space), or the kernel's BTF has no such function."""


class UnknownSectionError(LoadError):
    """A program section name matches none of libbpf's section conventions (``SEC("...")``)."""

    def __init__(self, section: str, reason: str | None = None, *, file: str | None = None) -> None:
        super().__init__(reason or "unknown program section name", file=file, section=section)


class MapErrnoError(MapError):
    """A map operation refused with the errno the kernel gives for it.

    ``errno`` is the number (a helper returns ``-errno`` to the program) and ``errno_name`` its
    name; ``ENOTSUPP`` is the kernel-internal 524, which user space sees as a bare number.
    """

    ERRNO: int = 0
    ERRNO_NAME: str = ""

    def __init__(self, message: str, errno: int | None = None, errno_name: str | None = None) -> None:
        self.errno = self.ERRNO if errno is None else errno
        super().__init__(message, errno_name or self.ERRNO_NAME or f"errno {self.errno}")


class MapKeyNotFoundError(MapErrnoError):
    """ENOENT: no element under the key (or an empty queue, stack or slot)."""

    ERRNO = 2
    ERRNO_NAME = "ENOENT"


class MapKeyExistsError(MapErrnoError):
    """EEXIST: BPF_NOEXIST for a key that is present (every array index is)."""

    ERRNO = 17
    ERRNO_NAME = "EEXIST"


class MapFullError(MapErrnoError):
    """E2BIG (hash, array index, queue) or ENOSPC (LPM trie): no room for a new element."""

    ERRNO = 7
    ERRNO_NAME = "E2BIG"


class MapInvalidArgumentError(MapErrnoError):
    """EINVAL: bad flags, key, value or map definition."""

    ERRNO = 22
    ERRNO_NAME = "EINVAL"


class MapPermissionError(MapErrnoError):
    """EPERM: a user-space write to a frozen or read-only map, or a read of a write-only one."""

    ERRNO = 1
    ERRNO_NAME = "EPERM"


class MapBusyError(MapErrnoError):
    """EBUSY: freezing a map that cannot be frozen now."""

    ERRNO = 16
    ERRNO_NAME = "EBUSY"


class MapOperationNotSupportedError(MapErrnoError, NotSupportedError):
    """EOPNOTSUPP or ENOTSUPP: this map type has no such operation."""

    ERRNO = 95
    ERRNO_NAME = "EOPNOTSUPP"


class ContextAccessError(PybpfError):
    """A program accesses its context (r1) in a way its program type does not allow.

    Raised by the runtime's context-access conversion (the kernel's ``convert_ctx_access`` step,
    which runs after verification): ``pc`` is the slot index, ``source`` the C source line
    (``file:line: text``) when the object carries line info, ``reason`` the bare explanation.
    """

    def __init__(self, pc: int, reason: str, source: str | None = None) -> None:
        self.pc = pc
        self.reason = reason
        self.source = source
        where = f" ({source})" if source else ""
        super().__init__(f"pc {pc}: {reason}{where}")


class TestRunError(PybpfError):
    """A test run's input is invalid for the program type (the kernel's EINVAL from BPF_PROG_TEST_RUN)."""

    __test__ = False  # not a pytest test class, despite the name


class VerifierError(PybpfError):
    """Our verifier rejected a program.

    ``pc`` is the slot index of the offending instruction (None when the whole program is at
    fault, e.g. it is too large), ``reason`` the bare explanation (the kernel's wording where
    the kernel has one, such as ``"unreachable insn 3"``), and ``source`` the C source line
    (``file:line: text``) when the program carries line info.
    """

    def __init__(self, pc: int | None, reason: str, source: str | None = None) -> None:
        self.pc = pc
        self.reason = reason
        self.source = source
        where = f"instruction {pc}: " if pc is not None else ""
        origin = f" ({source})" if source else ""
        super().__init__(f"{where}{reason}{origin}")


class MissingCapabilityError(VerifierError):
    """``bpf(2)`` would refuse the load with ``EPERM`` before verifying anything: the program
    type, or a map the program uses, needs capabilities the loader lacks. ``capabilities``
    names them (``CAP_BPF``, ...)."""

    def __init__(self, reason: str, capabilities: tuple[str, ...]) -> None:
        super().__init__(None, reason)
        self.capabilities = capabilities


class ProgramRejectedError(VerifierError):
    """Loading refused a program our verifier rejects (``pybpf.load(..., verify=False)`` skips it).

    ``program`` names the program; ``report`` is the :class:`pybpf.verifier.VerifierReport`
    (typed loosely here because this module imports nothing from the package).
    """

    def __init__(self, program: str, pc: int | None, reason: str, source: str | None = None,
                 report: object = None) -> None:
        super().__init__(pc, reason, source)
        self.program = program
        self.report = report
        self.args = (f"program {program} rejected by the verifier: {self.args[0]}",)
