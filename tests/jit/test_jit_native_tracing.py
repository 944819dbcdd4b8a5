"""Native get_current_pid_tgid/uid_gid/comm and get_prandom_u32 against the interpreter.

A raw tracepoint program stores what the tracing helpers answer in an array: the task's ids, the
name copied with several sizes (strscpy_pad semantics: size - 1 bytes at most, zero padding), and
random draws. Native code must give the interpreter's bytes without calling Python, and both
engines must draw one random stream: a seeded object gives the same numbers whether its runs use
the interpreter, the JIT, or both interleaved (the generator's state is shared native memory).
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jit_build import PROGS, build_object, trampoline_calls

from pybpf.asm import assemble
from pybpf.platform.uapi_generated import HelperId
from pybpf.runtime.helpers.services import RunState, RuntimeServices, TaskInfo
from pybpf.runtime.helpers.system import get_current_uid_gid
from pybpf.runtime.loader import load
from pybpf.runtime.maps.ringbuf import RingBufferConsumer
from pybpf.runtime.object import Object
from pybpf.runtime.program import Engine
from pybpf.vm import AddressSpace, ExecutionContext, HelperFn
from pybpf.vm.jit import JitProgram
from pybpf.vm.native_tracing import PRANDOM_WORDS, TAUSWORTHE_STEPS, PrandomState, tausworthe

SOURCE = r"""
#include "bpf_helpers.h"

static __u64 (*bpf_get_current_uid_gid)(void) = (void *)BPF_FUNC_get_current_uid_gid;

#define DRAWS 6

struct out {
	__u64 pid_tgid;
	__u64 uid_gid;
	char comm16[16];
	char comm4[4];
	char comm1[1];
	char pad[3];
	char comm24[24];
	__u32 draws[DRAWS];
	long comm_rc;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct out);
} results SEC(".maps");

SEC("raw_tracepoint/sys_enter")
int tracing(void *ctx)
{
	__u32 zero = 0;
	struct out *out = bpf_map_lookup_elem(&results, &zero);

	if (!out)
		return 1;
	__builtin_memset(out->comm24, 0x55, sizeof(out->comm24));
	out->pid_tgid = bpf_get_current_pid_tgid();
	out->uid_gid = bpf_get_current_uid_gid();
	out->comm_rc = bpf_get_current_comm(out->comm16, sizeof(out->comm16));
	bpf_get_current_comm(out->comm4, sizeof(out->comm4));
	bpf_get_current_comm(out->comm1, sizeof(out->comm1));
	bpf_get_current_comm(out->comm24, sizeof(out->comm24));
	for (int i = 0; i < DRAWS; i++)
		out->draws[i] = bpf_get_prandom_u32();
	return 0;
}
"""
OUT = struct.Struct("<QQ16s4s1s3s24s6Iq")
TRACING_HELPERS = (
    HelperId.GET_CURRENT_PID_TGID,
    HelperId.GET_CURRENT_UID_GID,
    HelperId.GET_CURRENT_COMM,
    HelperId.GET_PRANDOM_U32,
)


@pytest.fixture(scope="module")
def tracing_object(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_object(SOURCE, tmp_path_factory.mktemp("native_tracing"))


def _run(obj: Object, engine: Engine) -> tuple[object, ...]:
    program = obj.program("tracing")
    assert program.test_run(ctx_in=bytes(16), engine=engine).retval == 0
    return OUT.unpack(obj.maps["results"].lookup_raw(bytes(4)))


def _python_calls(obj: Object, engine: Engine) -> tuple[tuple[object, ...], list[int]]:
    calls: list[int] = []
    with trampoline_calls(HelperId.GET_CURRENT_PID_TGID) as pid, trampoline_calls(
        HelperId.GET_CURRENT_UID_GID
    ) as uid, trampoline_calls(HelperId.GET_CURRENT_COMM) as comm, trampoline_calls(
        HelperId.GET_PRANDOM_U32
    ) as draws:
        result = _run(obj, engine)
    calls = [*pid, *uid, *comm, *draws]
    return result, calls


TASKS = [
    TaskInfo(pid=1234, tgid=1200, uid=1000, gid=100, comm=b"worker"),
    TaskInfo(pid=0xFFFF_FFFF, tgid=0x8000_0001, uid=0, gid=0xFFFF_FFFE, comm=b"exactly15chars!"),
    TaskInfo(pid=1, tgid=1, uid=65534, gid=65534, comm=b""),
]


@pytest.mark.parametrize("task", TASKS, ids=["short", "full", "empty"])
def test_task_helpers_match_the_interpreter_without_python(tracing_object: Path, task: TaskInfo) -> None:
    with load(tracing_object, seed=11) as reference, load(tracing_object, seed=11) as native:
        reference.services.task = native.services.task = task
        expected = _run(reference, "interp")
        got, calls = _python_calls(native, "jit")
    assert got == expected
    assert calls == []
    pid_tgid, uid_gid, comm16, comm4, comm1, _, comm24, *_draws, rc = got
    assert pid_tgid == (task.tgid << 32) | task.pid
    assert uid_gid == (task.gid << 32) | task.uid
    assert rc == 0
    assert comm16 == task.comm.ljust(16, b"\0")
    assert comm4 == task.comm[:3].ljust(4, b"\0")
    assert comm1 == b"\0"
    assert comm24 == task.comm.ljust(24, b"\0")  # padding overwrites the 0x55 fill to the end


def test_interleaved_engines_draw_the_interpreters_stream(tracing_object: Path) -> None:
    with load(tracing_object, seed=2024) as only_interp, load(tracing_object, seed=2024) as mixed:
        expected = [_run(only_interp, "interp")[7:13] for _ in range(6)]
        got = [_run(mixed, engine)[7:13] for engine in ("jit", "interp", "jit", "jit", "interp", "jit")]
    assert got == expected
    flat = [word for draws in got for word in draws]
    assert len(set(flat)) == len(flat)  # the stream moves on within a run and from run to run


def test_other_seeds_and_cpus_draw_other_streams(tracing_object: Path) -> None:
    with load(tracing_object, seed=1, ncpus=2) as first, load(tracing_object, seed=2, ncpus=2) as second:
        one = _run(first, "jit")[7:13]
        other = _run(second, "jit")[7:13]
        cpu1 = first.program("tracing").test_run(ctx_in=bytes(16), engine="jit", cpu=1)
        assert cpu1.retval == 0
        on_cpu1 = OUT.unpack(first.maps["results"].lookup_raw(bytes(4)))[7:13]
        expected_cpu1 = tuple(first.services.prandom.words(1))  # stepped six times since seeding
    assert one != other
    assert on_cpu1 != one
    assert expected_cpu1 != (0, 0, 0, 0)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seeds=st.lists(st.integers(0, 0xFFFF_FFFF), min_size=2 * PRANDOM_WORDS, max_size=2 * PRANDOM_WORDS),
    cpu=st.integers(0, 1),
)
def test_native_generator_steps_like_python(tracing_object: Path, seeds: list[int], cpu: int) -> None:
    """Any state (seeds below the components' minimums too): native draws equal PrandomState's."""
    with load(tracing_object, ncpus=2) as native:
        native.services.prandom = PrandomState(2, seeds)
        reference = PrandomState(2, seeds)
        with trampoline_calls(HelperId.GET_PRANDOM_U32) as calls:
            assert native.program("tracing").test_run(ctx_in=bytes(16), engine="jit", cpu=cpu).retval == 0
        got = OUT.unpack(native.maps["results"].lookup_raw(bytes(4)))[7:13]
        assert list(got) == [reference.next_u32(cpu) for _ in range(6)]
        assert native.services.prandom.words(cpu) == reference.words(cpu)
        assert calls == []


@given(value=st.integers(0, 0xFFFF_FFFF))
def test_tausworthe_components_match_the_recurrence(value: int) -> None:
    """Each component is ((s & c) << d) ^ (((s << a) ^ s) >> b) in 32-bit arithmetic (lib/random32.c)."""
    for step in TAUSWORTHE_STEPS:
        left = ((value & step.mask) << step.left) % 2**32
        right = (((value << step.shift) % 2**32) ^ value) >> step.right
        assert tausworthe(step, value) == left ^ right


def test_zero_seeds_do_not_degenerate() -> None:
    state = PrandomState(1, [0] * PRANDOM_WORDS)
    draws = {state.next_u32(0) for _ in range(1000)}
    assert len(draws) == 1000
    assert all(word >= step.minimum for word, step in zip(state.words(0), TAUSWORTHE_STEPS, strict=True))


def test_a_replacement_helper_keeps_the_trampoline() -> None:
    """Only the runtime's own functions are served natively: a replaced helper is called in Python."""

    def fixed_pid(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:  # noqa: PLR0917
        return 0x1234_0000_5678

    memory = AddressSpace()
    services = RuntimeServices(memory, task=TASKS[0])
    helpers: dict[int, HelperFn] = {
        HelperId.GET_CURRENT_PID_TGID: fixed_pid,
        HelperId.GET_CURRENT_UID_GID: get_current_uid_gid,
    }
    program = f"""
        call {HelperId.GET_CURRENT_PID_TGID}
        mov %r6, %r0
        call {HelperId.GET_CURRENT_UID_GID}
        xor %r0, %r6
        exit
    """
    with trampoline_calls(HelperId.GET_CURRENT_PID_TGID) as pid_calls, trampoline_calls(
        HelperId.GET_CURRENT_UID_GID
    ) as uid_calls:
        result = JitProgram(assemble(program), helpers=helpers, memory=memory).run(user=RunState(services))
    assert result.r0 == 0x1234_0000_5678 ^ ((TASKS[0].gid << 32) | TASKS[0].uid)
    assert len(pid_calls) == 1
    assert uid_calls == []


def test_kprobe_count_events_match_the_interpreter() -> None:
    """The repository's kprobe program: the same record fields from both engines, no Python for the task."""
    records = {}
    for engine in ("interp", "jit"):
        with load(PROGS / "kprobe_count.o", engine=engine) as obj:
            program = next(iter(obj.programs.values()))
            with trampoline_calls(HelperId.GET_CURRENT_PID_TGID) as pid_calls, trampoline_calls(
                HelperId.GET_CURRENT_COMM
            ) as comm_calls:
                assert program.test_run(ctx_in=bytes(168)).retval == 0
            events: list[bytes] = []
            consumer = RingBufferConsumer()
            consumer.add(obj.maps["events"], events.append)
            assert consumer.poll() == 1
            records[engine] = events[0]
            if engine == "jit":
                assert pid_calls == comm_calls == []
    interp, jit = records["interp"], records["jit"]
    assert interp[:8] == jit[:8]  # pid, tgid
    assert interp[16:32] == jit[16:32]  # comm (the timestamp between them differs)
