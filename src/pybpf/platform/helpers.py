"""The helper-prototype table shared by the verifier and the runtime.

Each entry restates the kernel's ``bpf_func_proto`` for that helper (kernel/bpf/helpers.c,
kernel/bpf/ringbuf.c, kernel/bpf/bpf_iter.c, kernel/trace/bpf_trace.c, net/core/filter.c) as of
Linux 6.1x, where memory arguments carry MEM_RDONLY / MEM_UNINIT | MEM_WRITE and
``ARG_PTR_TO_LONG`` became an 8-byte aligned PTR_TO_FIXED_SIZE_MEM.  Where a helper has several
per-program-type protos (perf_event_output, get_socket_cookie, get_stackid...), the argument
shapes agree and we record the tracing/skb one.  ``changes_pkt_data`` follows the kernel's
``bpf_helper_changes_pkt_data()`` list.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from pybpf.errors import HelperError
from pybpf.platform.helper_types import ArgFlag, ArgType, HelperArg, HelperProto, RetType
from pybpf.platform.uapi_generated import HelperId

__all__ = ["HELPER_PROTOS", "helper_proto"]

# Argument shorthands, named after the kernel's composite ARG_* spellings.
_MAP = HelperArg(ArgType.CONST_MAP_PTR)
_KEY = HelperArg(ArgType.PTR_TO_MAP_KEY)
_VALUE = HelperArg(ArgType.PTR_TO_MAP_VALUE)
_UNINIT_VALUE = HelperArg(ArgType.PTR_TO_MAP_VALUE, ArgFlag.UNINIT | ArgFlag.WRITE)
_ANY = HelperArg(ArgType.ANYTHING)
_CTX = HelperArg(ArgType.PTR_TO_CTX)
_MEM_W = HelperArg(ArgType.PTR_TO_MEM, ArgFlag.WRITE)
_MEM_RO = HelperArg(ArgType.PTR_TO_MEM, ArgFlag.RDONLY)
_MEM_RO_OR_NULL = HelperArg(ArgType.PTR_TO_MEM, ArgFlag.RDONLY | ArgFlag.MAYBE_NULL)
_MEM_OR_NULL_W = HelperArg(ArgType.PTR_TO_MEM, ArgFlag.MAYBE_NULL | ArgFlag.WRITE)
_UNINIT_MEM = HelperArg(ArgType.PTR_TO_MEM, ArgFlag.UNINIT | ArgFlag.WRITE)
_SIZE = HelperArg(ArgType.CONST_SIZE)
_SIZE0 = HelperArg(ArgType.CONST_SIZE_OR_ZERO)
_ALLOC_SIZE0 = HelperArg(ArgType.CONST_ALLOC_SIZE_OR_ZERO)
_FUNC = HelperArg(ArgType.PTR_TO_FUNC)
_STACK_OR_NULL = HelperArg(ArgType.PTR_TO_STACK, ArgFlag.MAYBE_NULL)
_CONST_STR = HelperArg(ArgType.PTR_TO_CONST_STR)
_LONG_OUT = HelperArg(
    ArgType.PTR_TO_FIXED_SIZE_MEM, ArgFlag.UNINIT | ArgFlag.WRITE | ArgFlag.ALIGNED, size=8
)
_RINGBUF_RELEASE = HelperArg(ArgType.PTR_TO_RINGBUF_MEM, ArgFlag.RELEASE)
_SPIN_LOCK = HelperArg(ArgType.PTR_TO_SPIN_LOCK)
_TIMER = HelperArg(ArgType.PTR_TO_TIMER)
_SOCK_RELEASE = HelperArg(ArgType.PTR_TO_BTF_ID_SOCK_COMMON, ArgFlag.RELEASE)
# Dynptrs: UNINIT builds one in 16 bytes of stack, RDONLY reads an initialised one without
# changing it, RELEASE consumes (and NULLs) it; the DYNPTR_* flag names the kind it must be.
_DYNPTR_RO = HelperArg(ArgType.PTR_TO_DYNPTR, ArgFlag.RDONLY)
_DYNPTR_LOCAL_OUT = HelperArg(ArgType.PTR_TO_DYNPTR, ArgFlag.DYNPTR_LOCAL | ArgFlag.UNINIT | ArgFlag.WRITE)
_DYNPTR_RINGBUF_OUT = HelperArg(ArgType.PTR_TO_DYNPTR, ArgFlag.DYNPTR_RINGBUF | ArgFlag.UNINIT | ArgFlag.WRITE)
_DYNPTR_RINGBUF_RELEASE = HelperArg(ArgType.PTR_TO_DYNPTR, ArgFlag.DYNPTR_RINGBUF | ArgFlag.RELEASE)

_I = RetType.INTEGER
_P = HelperProto
_H = HelperId

_PROTOS: tuple[HelperProto, ...] = (
    # --- maps ---
    _P(_H.MAP_LOOKUP_ELEM, "map_lookup_elem", RetType.PTR_TO_MAP_VALUE_OR_NULL, (_MAP, _KEY),
       "Look up key in map; pointer to the value or NULL.", pkt_access=True),
    _P(_H.MAP_UPDATE_ELEM, "map_update_elem", _I, (_MAP, _KEY, _VALUE, _ANY),
       "Create or update the element for key (flags: BPF_ANY/NOEXIST/EXIST/F_LOCK).", pkt_access=True),
    _P(_H.MAP_DELETE_ELEM, "map_delete_elem", _I, (_MAP, _KEY),
       "Delete the element for key.", pkt_access=True),
    _P(_H.MAP_PUSH_ELEM, "map_push_elem", _I, (_MAP, _VALUE, _ANY),
       "Push a value onto a queue or stack map.", pkt_access=True),
    _P(_H.MAP_POP_ELEM, "map_pop_elem", _I, (_MAP, _UNINIT_VALUE),
       "Pop a value from a queue or stack map into the buffer."),
    _P(_H.MAP_PEEK_ELEM, "map_peek_elem", _I, (_MAP, _UNINIT_VALUE),
       "Copy the head of a queue or stack map without removing it."),
    _P(_H.MAP_LOOKUP_PERCPU_ELEM, "map_lookup_percpu_elem", RetType.PTR_TO_MAP_VALUE_OR_NULL,
       (_MAP, _KEY, _ANY), "Look up key in a per-CPU map on the given CPU.", pkt_access=True),
    _P(_H.FOR_EACH_MAP_ELEM, "for_each_map_elem", _I, (_MAP, _FUNC, _STACK_OR_NULL, _ANY),
       "Call the callback for each element; returns the number of elements visited."),
    _P(_H.LOOP, "loop", _I, (_ANY, _FUNC, _STACK_OR_NULL, _ANY),
       "Call the callback up to nr_loops times (at most 1 << 23); returns iterations done."),
    _P(_H.TAIL_CALL, "tail_call", RetType.VOID, (_CTX, _MAP, _ANY),
       "Jump to the program at index in a prog array; returns only if the jump fails."),
    # --- time, cpu, randomness ---
    _P(_H.KTIME_GET_NS, "ktime_get_ns", _I, (), "CLOCK_MONOTONIC time in ns."),
    _P(_H.KTIME_GET_BOOT_NS, "ktime_get_boot_ns", _I, (), "CLOCK_BOOTTIME time in ns."),
    _P(_H.KTIME_GET_COARSE_NS, "ktime_get_coarse_ns", _I, (), "Coarse CLOCK_MONOTONIC time in ns."),
    _P(_H.KTIME_GET_TAI_NS, "ktime_get_tai_ns", _I, (), "CLOCK_TAI time in ns."),
    _P(_H.JIFFIES64, "jiffies64", _I, (), "The 64-bit jiffies counter."),
    _P(_H.GET_PRANDOM_U32, "get_prandom_u32", _I, (), "A pseudo-random u32."),
    _P(_H.GET_SMP_PROCESSOR_ID, "get_smp_processor_id", _I, (), "The current CPU number."),
    _P(_H.GET_NUMA_NODE_ID, "get_numa_node_id", _I, (), "The current NUMA node id."),
    # --- printing and strings ---
    # r3-r5 carry the format arguments but the kernel leaves them unchecked (ARG_DONTCARE).
    _P(_H.TRACE_PRINTK, "trace_printk", _I, (_MEM_RO, _SIZE),
       "printk-style output to the trace pipe (up to three arguments in r3-r5).", gpl_only=True),
    _P(_H.TRACE_VPRINTK, "trace_vprintk", _I, (_MEM_RO, _SIZE, _MEM_RO_OR_NULL, _SIZE0),
       "trace_printk with an array of u64 arguments.", gpl_only=True),
    _P(_H.SNPRINTF, "snprintf", _I, (_MEM_OR_NULL_W, _SIZE0, _CONST_STR, _MEM_RO_OR_NULL, _SIZE0),
       "Format into a buffer; returns the length including the NUL.", gpl_only=True),
    _P(_H.STRNCMP, "strncmp", _I, (_MEM_RO, _SIZE, _CONST_STR),
       "Compare a buffer with a constant string."),
    _P(_H.STRTOL, "strtol", _I, (_MEM_RO, _SIZE, _ANY, _LONG_OUT),
       "Parse a signed integer; returns the number of characters consumed."),
    _P(_H.STRTOUL, "strtoul", _I, (_MEM_RO, _SIZE, _ANY, _LONG_OUT),
       "Parse an unsigned integer; returns the number of characters consumed."),
    # --- dynptrs (kernel/bpf/helpers.c) ---
    _P(_H.DYNPTR_FROM_MEM, "dynptr_from_mem", _I, (_UNINIT_MEM, _SIZE0, _ANY, _DYNPTR_LOCAL_OUT),
       "Make a local dynptr over size bytes of a map value (-E2BIG/-EINVAL: a NULL dynptr)."),
    _P(_H.DYNPTR_READ, "dynptr_read", _I, (_UNINIT_MEM, _SIZE0, _DYNPTR_RO, _ANY, _ANY),
       "Copy len bytes at offset of a dynptr into a buffer."),
    _P(_H.DYNPTR_WRITE, "dynptr_write", _I, (_DYNPTR_RO, _ANY, _MEM_RO, _SIZE0, _ANY),
       "Copy len bytes of a buffer to offset of a dynptr."),
    _P(_H.DYNPTR_DATA, "dynptr_data", RetType.PTR_TO_DYNPTR_MEM_OR_NULL, (_DYNPTR_RO, _ANY, _ALLOC_SIZE0),
       "Pointer to len (a constant) bytes at offset of a dynptr, or NULL if out of range or read-only."),
    # --- probing memory ---
    _P(_H.PROBE_READ, "probe_read", _I, (_UNINIT_MEM, _SIZE0, _ANY),
       "Read kernel or user memory (legacy; arch-dependent).", gpl_only=True),
    _P(_H.PROBE_READ_KERNEL, "probe_read_kernel", _I, (_UNINIT_MEM, _SIZE0, _ANY),
       "Read kernel memory safely.", gpl_only=True),
    _P(_H.PROBE_READ_USER, "probe_read_user", _I, (_UNINIT_MEM, _SIZE0, _ANY),
       "Read user memory safely.", gpl_only=True),
    _P(_H.PROBE_READ_STR, "probe_read_str", _I, (_UNINIT_MEM, _SIZE0, _ANY),
       "Read a NUL-terminated string (legacy; arch-dependent).", gpl_only=True),
    _P(_H.PROBE_READ_KERNEL_STR, "probe_read_kernel_str", _I, (_UNINIT_MEM, _SIZE0, _ANY),
       "Read a NUL-terminated kernel string.", gpl_only=True),
    _P(_H.PROBE_READ_USER_STR, "probe_read_user_str", _I, (_UNINIT_MEM, _SIZE0, _ANY),
       "Read a NUL-terminated user string.", gpl_only=True),
    _P(_H.PROBE_WRITE_USER, "probe_write_user", _I, (_ANY, _MEM_RO, _SIZE),
       "Write user memory of the current task.", gpl_only=True),
    _P(_H.COPY_FROM_USER, "copy_from_user", _I, (_UNINIT_MEM, _SIZE0, _ANY),
       "Copy user memory (may fault pages in, so sleepable programs only).", might_sleep=True),
    # --- current task ---
    _P(_H.GET_CURRENT_PID_TGID, "get_current_pid_tgid", _I, (), "tgid << 32 | pid of current."),
    _P(_H.GET_CURRENT_UID_GID, "get_current_uid_gid", _I, (), "gid << 32 | uid of current."),
    _P(_H.GET_CURRENT_COMM, "get_current_comm", _I, (_UNINIT_MEM, _SIZE),
       "Copy current->comm into the buffer."),
    _P(_H.GET_CURRENT_TASK, "get_current_task", _I, (), "Address of current's task_struct.",
       gpl_only=True),
    _P(_H.GET_CURRENT_TASK_BTF, "get_current_task_btf", RetType.PTR_TO_BTF_ID, (),
       "Trusted BTF pointer to current's task_struct.", gpl_only=True, ret_btf_type="task_struct"),
    _P(_H.KPTR_XCHG, "kptr_xchg", RetType.PTR_TO_BTF_ID_OR_NULL,
       (HelperArg(ArgType.KPTR_XCHG_DEST), HelperArg(ArgType.PTR_TO_BTF_ID, ArgFlag.MAYBE_NULL | ArgFlag.RELEASE)),
       "Atomically store the referenced pointer (or NULL) in the map value's kptr; the old one, "
       "a reference to release or store back, or NULL.", acquires_ref=True),
    _P(_H.FIND_VMA, "find_vma", _I,
       (HelperArg(ArgType.PTR_TO_BTF_ID, btf_type="task_struct"), _ANY, _FUNC, _STACK_OR_NULL, _ANY),
       "Call callback(task, vma, ctx) with the vma of task's memory holding addr; 0, or -ENOENT."),
    _P(_H.GET_CURRENT_CGROUP_ID, "get_current_cgroup_id", _I, (), "cgroup v2 id of current."),
    _P(_H.GET_CURRENT_ANCESTOR_CGROUP_ID, "get_current_ancestor_cgroup_id", _I, (_ANY,),
       "cgroup v2 id of current's ancestor at the given level."),
    _P(_H.GET_NS_CURRENT_PID_TGID, "get_ns_current_pid_tgid", _I, (_ANY, _ANY, _UNINIT_MEM, _SIZE),
       "pid and tgid of current as seen from a pid namespace."),
    _P(_H.SEND_SIGNAL, "send_signal", _I, (_ANY,), "Send a signal to the current process."),
    # --- output ---
    _P(_H.PERF_EVENT_OUTPUT, "perf_event_output", _I, (_CTX, _MAP, _ANY, _MEM_RO, _SIZE0),
       "Write a sample to a perf event array.", gpl_only=True),
    _P(_H.PERF_EVENT_READ, "perf_event_read", _I, (_MAP, _ANY),
       "Read a perf event counter.", gpl_only=True),
    _P(_H.RINGBUF_OUTPUT, "ringbuf_output", _I, (_MAP, _MEM_RO, _SIZE0, _ANY),
       "Copy data into a ring buffer."),
    _P(_H.RINGBUF_RESERVE, "ringbuf_reserve", RetType.PTR_TO_MEM_OR_NULL, (_MAP, _ALLOC_SIZE0, _ANY),
       "Reserve size bytes in a ring buffer; must be submitted or discarded.",
       acquires_ref=True, ret_size_arg=1),
    _P(_H.RINGBUF_SUBMIT, "ringbuf_submit", RetType.VOID, (_RINGBUF_RELEASE, _ANY),
       "Submit a reserved ring buffer sample."),
    _P(_H.RINGBUF_DISCARD, "ringbuf_discard", RetType.VOID, (_RINGBUF_RELEASE, _ANY),
       "Discard a reserved ring buffer sample."),
    _P(_H.RINGBUF_RESERVE_DYNPTR, "ringbuf_reserve_dynptr", _I, (_MAP, _ANY, _ANY, _DYNPTR_RINGBUF_OUT),
       "Reserve size bytes of a ring buffer as a dynptr (0, or -errno with a NULL dynptr that must "
       "still be submitted or discarded)."),
    _P(_H.RINGBUF_SUBMIT_DYNPTR, "ringbuf_submit_dynptr", RetType.VOID, (_DYNPTR_RINGBUF_RELEASE, _ANY),
       "Publish the ring buffer record a dynptr holds (nothing for a NULL dynptr)."),
    _P(_H.RINGBUF_DISCARD_DYNPTR, "ringbuf_discard_dynptr", RetType.VOID, (_DYNPTR_RINGBUF_RELEASE, _ANY),
       "Drop the ring buffer record a dynptr holds (nothing for a NULL dynptr)."),
    _P(_H.USER_RINGBUF_DRAIN, "user_ringbuf_drain", _I, (_MAP, _FUNC, _STACK_OR_NULL, _ANY),
       "Call the callback with a dynptr to each sample user space produced; returns samples drained."),
    _P(_H.RINGBUF_QUERY, "ringbuf_query", _I, (_MAP, _ANY),
       "Query ring buffer state (BPF_RB_AVAIL_DATA, RING_SIZE, CONS_POS, PROD_POS)."),
    # --- stacks and tracing ---
    _P(_H.GET_STACKID, "get_stackid", _I, (_CTX, _MAP, _ANY),
       "Walk the stack and store it in a stack trace map; returns its id.", gpl_only=True),
    _P(_H.GET_STACK, "get_stack", _I, (_CTX, _UNINIT_MEM, _SIZE0, _ANY),
       "Copy the kernel or user stack into the buffer.", gpl_only=True),
    _P(_H.GET_FUNC_IP, "get_func_ip", _I, (_CTX,), "Address of the traced function.", gpl_only=True),
    _P(_H.GET_ATTACH_COOKIE, "get_attach_cookie", _I, (_CTX,), "The cookie given at attach time."),
    _P(_H.OVERRIDE_RETURN, "override_return", _I, (_CTX, _ANY),
       "Make the probed function return rc without running (error injection).", gpl_only=True),
    # --- locks and timers ---
    _P(_H.SPIN_LOCK, "spin_lock", RetType.VOID, (_SPIN_LOCK,), "Take the bpf_spin_lock in a map value."),
    _P(_H.SPIN_UNLOCK, "spin_unlock", RetType.VOID, (_SPIN_LOCK,), "Release a held bpf_spin_lock."),
    _P(_H.TIMER_INIT, "timer_init", _I, (_TIMER, _MAP, _ANY), "Initialise a bpf_timer in a map value.",
       gpl_only=True),
    _P(_H.TIMER_SET_CALLBACK, "timer_set_callback", _I, (_TIMER, _FUNC), "Set a timer's callback.",
       gpl_only=True),
    _P(_H.TIMER_START, "timer_start", _I, (_TIMER, _ANY, _ANY), "Arm a timer (nsecs, flags).",
       gpl_only=True),
    _P(_H.TIMER_CANCEL, "timer_cancel", _I, (_TIMER,), "Cancel a timer.",
       gpl_only=True),
    # --- XDP ---
    _P(_H.XDP_ADJUST_HEAD, "xdp_adjust_head", _I, (_CTX, _ANY),
       "Move xdp_md->data by delta bytes.", changes_pkt_data=True),
    _P(_H.XDP_ADJUST_TAIL, "xdp_adjust_tail", _I, (_CTX, _ANY),
       "Move xdp_md->data_end by delta bytes.", changes_pkt_data=True),
    _P(_H.XDP_ADJUST_META, "xdp_adjust_meta", _I, (_CTX, _ANY),
       "Move xdp_md->data_meta by delta bytes.", changes_pkt_data=True),
    _P(_H.REDIRECT, "redirect", _I, (_ANY, _ANY), "Redirect the packet to another interface."),
    _P(_H.REDIRECT_MAP, "redirect_map", _I, (_MAP, _ANY, _ANY),
       "Redirect via a devmap/cpumap/xskmap entry; low bits of flags are the fallback action."),
    # --- skb data ---
    _P(_H.SKB_LOAD_BYTES, "skb_load_bytes", _I, (_CTX, _ANY, _UNINIT_MEM, _SIZE),
       "Copy bytes from the packet at offset."),
    _P(_H.SKB_STORE_BYTES, "skb_store_bytes", _I, (_CTX, _ANY, _MEM_RO, _SIZE, _ANY),
       "Store bytes into the packet at offset.", changes_pkt_data=True),
    _P(_H.SKB_PULL_DATA, "skb_pull_data", _I, (_CTX, _ANY),
       "Make len bytes of non-linear data directly accessible.", changes_pkt_data=True),
    _P(_H.SKB_ADJUST_ROOM, "skb_adjust_room", _I, (_CTX, _ANY, _ANY, _ANY),
       "Grow or shrink room at the network or MAC layer.", changes_pkt_data=True),
    _P(_H.SKB_CHANGE_HEAD, "skb_change_head", _I, (_CTX, _ANY, _ANY),
       "Grow headroom by len bytes.", changes_pkt_data=True),
    _P(_H.SKB_CHANGE_TAIL, "skb_change_tail", _I, (_CTX, _ANY, _ANY),
       "Resize the packet to len bytes.", changes_pkt_data=True),
    _P(_H.SKB_CHANGE_PROTO, "skb_change_proto", _I, (_CTX, _ANY, _ANY),
       "Switch between IPv4 and IPv6.", changes_pkt_data=True),
    _P(_H.SKB_CHANGE_TYPE, "skb_change_type", _I, (_CTX, _ANY), "Change skb->pkt_type."),
    _P(_H.SKB_VLAN_PUSH, "skb_vlan_push", _I, (_CTX, _ANY, _ANY),
       "Push a VLAN tag.", changes_pkt_data=True),
    _P(_H.SKB_VLAN_POP, "skb_vlan_pop", _I, (_CTX,), "Pop a VLAN tag.", changes_pkt_data=True),
    _P(_H.L3_CSUM_REPLACE, "l3_csum_replace", _I, (_CTX, _ANY, _ANY, _ANY, _ANY),
       "Incrementally update an L3 checksum.", changes_pkt_data=True),
    _P(_H.L4_CSUM_REPLACE, "l4_csum_replace", _I, (_CTX, _ANY, _ANY, _ANY, _ANY),
       "Incrementally update an L4 checksum.", changes_pkt_data=True),
    _P(_H.CSUM_DIFF, "csum_diff", _I, (_MEM_RO_OR_NULL, _SIZE0, _MEM_RO_OR_NULL, _SIZE0, _ANY),
       "Checksum difference between two buffers, folded into seed.", pkt_access=True),
    _P(_H.CSUM_UPDATE, "csum_update", _I, (_CTX, _ANY), "Add csum to skb->csum (CHECKSUM_COMPLETE)."),
    _P(_H.CLONE_REDIRECT, "clone_redirect", _I, (_CTX, _ANY, _ANY),
       "Clone the packet and redirect the clone.", changes_pkt_data=True),
    _P(_H.GET_HASH_RECALC, "get_hash_recalc", _I, (_CTX,), "skb->hash, recomputed if needed."),
    _P(_H.SET_HASH, "set_hash", _I, (_CTX, _ANY), "Set skb->hash."),
    _P(_H.GET_CGROUP_CLASSID, "get_cgroup_classid", _I, (_CTX,), "net_cls classid of the skb."),
    _P(_H.GET_ROUTE_REALM, "get_route_realm", _I, (_CTX,), "Routing realm of the skb's dst."),
    _P(_H.SKB_UNDER_CGROUP, "skb_under_cgroup", _I, (_CTX, _MAP, _ANY),
       "Whether the skb's socket is under the cgroup at index in a cgroup array."),
    _P(_H.GET_SOCKET_COOKIE, "get_socket_cookie", _I, (_CTX,), "Cookie of the context's socket."),
    _P(_H.GET_SOCKET_UID, "get_socket_uid", _I, (_CTX,), "Owner uid of the skb's socket."),
    _P(_H.FIB_LOOKUP, "fib_lookup", _I, (_CTX, _MEM_W, _SIZE, _ANY),
       "Look up the kernel FIB with struct bpf_fib_lookup in and out.", gpl_only=True),
    # --- sockets ---
    _P(_H.SK_LOOKUP_TCP, "sk_lookup_tcp", RetType.PTR_TO_SOCKET_OR_NULL, (_CTX, _MEM_RO, _SIZE, _ANY, _ANY),
       "Find a TCP socket by tuple; the reference must be released.", pkt_access=True, acquires_ref=True),
    _P(_H.SK_LOOKUP_UDP, "sk_lookup_udp", RetType.PTR_TO_SOCKET_OR_NULL, (_CTX, _MEM_RO, _SIZE, _ANY, _ANY),
       "Find a UDP socket by tuple; the reference must be released.", pkt_access=True, acquires_ref=True),
    _P(_H.SKC_LOOKUP_TCP, "skc_lookup_tcp", RetType.PTR_TO_SOCK_COMMON_OR_NULL,
       (_CTX, _MEM_RO, _SIZE, _ANY, _ANY),
       "Find a TCP sock_common (incl. request/timewait).", pkt_access=True, acquires_ref=True),
    _P(_H.SK_RELEASE, "sk_release", _I, (_SOCK_RELEASE,), "Release a socket reference."),
    _P(_H.SK_REDIRECT_MAP, "sk_redirect_map", _I, (_CTX, _MAP, _ANY, _ANY),
       "Redirect an sk_skb packet to a socket in a sockmap."),
    _P(_H.MSG_REDIRECT_MAP, "msg_redirect_map", _I, (_CTX, _MAP, _ANY, _ANY),
       "Redirect an sk_msg to a socket in a sockmap."),
)


def _index(protos: tuple[HelperProto, ...]) -> Mapping[int, HelperProto]:
    table: dict[int, HelperProto] = {}
    for proto in protos:
        if proto.id in table:
            raise ValueError(f"duplicate helper prototype for {proto.id!r}")
        table[int(proto.id)] = proto
    return MappingProxyType(table)


HELPER_PROTOS: Mapping[int, HelperProto] = _index(_PROTOS)


def helper_proto(helper_id: int) -> HelperProto:
    """The prototype of helper ``helper_id``; HelperError when we have none for it."""
    try:
        return HELPER_PROTOS[helper_id]
    except KeyError:
        try:
            name = HelperId(helper_id).name.lower()
        except ValueError:
            raise HelperError(f"unknown helper id {helper_id}") from None
        raise HelperError(f"helper {name} (id {helper_id}) is not supported") from None
