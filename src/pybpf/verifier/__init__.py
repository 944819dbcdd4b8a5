"""pybpf.verifier: a static verifier whose verdicts follow the Linux kernel's.

Layers built so far:

* :mod:`.tnum` and :mod:`.scalar` — the kernel's scalar domain (tnum + 64/32-bit signed and
  unsigned bounds, ``reg_bounds_sync``, whose step-by-step specification is
  :mod:`.scalar_reference`); :mod:`.scalar_ops` its ALU transfer functions and
  :mod:`.branch` the refinement of both operands of a conditional jump;
* :mod:`.cfg` and :mod:`.structure` — the structural pass the kernel runs before exploring paths;
* :mod:`.state` — register and stack-slot state with the pruning tests ``regsafe``/``stacksafe``;
* :mod:`.machine` (frames, references, options), :mod:`.transfer` (ALU, pointer arithmetic,
  branches), :mod:`.memory` (loads/stores per region), :mod:`.calls` (helpers, bpf-to-bpf calls,
  callbacks), :mod:`.explore` (path-sensitive exploration), :mod:`.states` (the explored-state
  lists at the kernel's prune points: checkpoint spacing, miss/hit eviction, infinite-loop
  detection, peak states) and :mod:`.checker` (:func:`verify`, :func:`verify_program`) producing a
  :class:`VerifierReport`;
* :mod:`.callbacks` — synchronous callbacks as loops run 0..n times (the helper call is the loop
  head; imprecise scalars widened on each return), timer callbacks as entry points of their own;
  :mod:`.global_funcs` — global (non-static, BTF ``global`` linkage) functions verified once
  from their BTF prototype, calls to them checked against it (r0 comes back an unknown scalar),
  their argument kinds read from the prototype's types and ``arg:<tag>`` decl tags by
  :mod:`.global_args`;
  :mod:`.stack_depth` — combined stack depth over call chains (frames of tracing programs that
  get a private stack left out) and the 256-byte limit under a tail-calling subprogram;
* :mod:`.spectre` — the Spectre mitigations of unprivileged loads: speculative paths, the
  speculation barriers their errors cost (reported as :class:`Barrier`), pointer-arithmetic
  sanitation and Spectre-v4 stores;
* :mod:`.dynptr` — ``struct bpf_dynptr`` objects in two ``STACK_DYNPTR`` stack slots: building,
  using and releasing them (``process_dynptr_func``), their destruction by stack writes, ring
  buffer dynptrs as references, ``bpf_dynptr_data`` and ``bpf_dynptr_slice(_rdwr)`` slices,
  ``CONST_PTR_TO_DYNPTR`` arguments, the dynptr kfuncs' arguments (:mod:`.kfuncs` calls it);
* :mod:`.btf_access` — reads of kernel structs through BTF-typed pointers and map pointers,
  checked against the layouts pybpf models (:mod:`pybpf.platform.kernel_types`) as the kernel's
  ``btf_struct_access`` checks them against vmlinux BTF;
* :mod:`.kfuncs` — kfunc calls checked against :data:`pybpf.platform.KFUNC_PROTOS` (program-type
  sets, GPL, references, NULL returns, RCU/preemption sections, ``KF_TRUSTED_ARGS``/``KF_RCU``
  pointer trust); :mod:`.kptrs` — kptrs in map values (loads, stores, ``bpf_kptr_xchg``) and the
  trust modifiers of ``PTR_TO_BTF_ID`` (``PTR_TRUSTED``, ``PTR_UNTRUSTED``, ``MEM_RCU``...);
  :mod:`.btf_ctx` — a BTF tracing program's arguments typed from its target's prototype; :mod:`.iters` — open-coded
  iterators in ``STACK_ITER`` slots, ``next()`` as a loop head (drained/active fork, widening of
  imprecise scalars, convergence while the loop is explored);
* :mod:`.graphs` — program-allocated objects (``bpf_obj_new``/``bpf_obj_drop``,
  ``bpf_refcount_acquire``: ``PTR_TO_BTF_ID | MEM_ALLOC`` of the program's BTF, owning references
  to drop or give away) and the linked lists and rb-trees holding them: roots in map values and
  global data with their ``contains:`` tags, the lock of the same allocation held for every
  operation, owning references turned non-owning by an insertion and invalidated at unlock,
  ``bpf_rbtree_add``'s ``less`` verified as a synchronous callback, field accesses checked
  against the object's struct;
* :mod:`.arena` — BPF arenas: the program's one arena map (found before exploring),
  ``addr_space_cast``, ``PTR_TO_ARENA`` pointers (any arithmetic, any access: a page that is not
  allocated reads 0), and the kernel's post-verification arena rewrites the runtime applies;
* :mod:`.capabilities` — the capability checks ``bpf(2)`` makes of an unprivileged loader before
  verifying (program types, map types);
* :mod:`.rewrite` — the kernel's post-verification dead-code rewrites; :mod:`.kernel_log` —
  ``log_level`` 1/2 text in the kernel's format.

Known differences from the kernel. Unless said otherwise each errs on the side of rejecting or of
exploring more:

* Loops: callback iterations, iterator loops and ``may_goto`` loops converge as the kernel's
  (imprecise scalars widened, precise ones kept; :mod:`.callbacks`, :mod:`.iters`), but a path
  pruned against an iteration still in progress leaves every state above it compared by ranges,
  ignoring precision, for the rest of the verification (the kernel propagates the marks once the
  loop is done).
* Pruning: dynptr slots are compared with their dynptr ids mapped too, and a spin lock by its
  pointer's id exactly (the kernel maps only references / maps lock ids). States are kept where
  and as long as 6.18 keeps them (:mod:`.states`: its prune points, a checkpoint only every 2
  jumps and 8 instructions -- 20 jumps or 100 instructions next to a loop in progress --, eviction
  after ``n * hits + n`` misses), so processed counts and ``peak_states`` mostly equal the
  kernel's, and so do the verdicts of programs that only pass or fail by those heuristics (a
  chain of 8192 jumps, a callback whose counter never repeats: both "BPF program is too large");
  a visit counts as processed even when it is pruned, as in the kernel. Not modelled:
  ``jmp_history_cnt > 40`` forcing a checkpoint (our history is kept per instruction).
* Kernel objects: ``PTR_TO_BTF_ID`` pointers (sockets, tasks) are readable without a layout check
  unless pybpf models their struct (:mod:`.btf_access`); a map pointer reads pybpf's own
  ``struct bpf_map``/``struct bpf_array`` layout (the fields CO-RE relocates to; a non-array map's
  larger kernel struct, e.g. ``bpf_htab``, is modelled as its ``struct bpf_map`` only);
  ``bpf_find_vma`` checks its task argument by struct name only. Trust modifiers are tracked
  (:mod:`.kptrs`) for ``bpf_get_current_task_btf``, acquired references, kptr loads and a BTF
  tracing program's arguments (:mod:`.btf_ctx`) — the latter only when the caller hands in
  vmlinux BTF (``verify_program(target_btf=...)``, ``pybpf.load(vmlinux_btf=...)``), else they
  are numbers, and the kernel's list of raw tracepoint arguments that may be NULL is not
  modelled; a pointer member read through an unmodelled struct is a number, so the
  ``BTF_TYPE_SAFE_*`` allow-lists of trusted walks are not modelled either.
* Calls: any kfunc outside pybpf's table is refused (the object does not load; ``callx`` is
  refused too, as by the kernel: "unknown opcode 8d"); kfunc BTF arguments are matched by struct
  name (a first-member walk only for the structs :data:`pybpf.platform.kfuncs.FIRST_MEMBER_STRUCTS`
  lists). A global function's ``arg:trusted``/``arg:untrusted`` struct is taken by name (the
  kernel also requires it to match vmlinux's type); ``arg:untrusted`` on a non-struct is refused.
* Map values: the special fields are the spin lock, timer, workqueue and refcount structs, kptrs
  (referenced, untrusted, per-CPU) and list heads / rb-tree roots (:mod:`.graphs`). A root inside an
  allocated object (a nested graph, under a lock in that object), per-CPU objects
  (``bpf_percpu_obj_new``) and ``bpf_res_spin_lock`` around graphs are not modelled (a graph kfunc
  given such a root is refused); a pointer member read from an allocated object yields a scalar (the
  kernel gives an untrusted pointer); a BTF whose ``contains:`` names a missing struct fails the
  load (libbpf retries the map without BTF, and the program is refused later). A kptr's pointee is a
  kernel struct when :mod:`pybpf.platform.kptr_types` names it, else program-local (the kernel looks
  the name up in vmlinux), and a program-local type's ``bpf_refcount`` does not make its loads RCU
  pointers.
* Arenas (:mod:`.arena`): ``scalar op= arena pointer`` makes an arena pointer for every ALU
  operation, 32- and 64-bit (what 6.18 does with the cases tried; its exact rule is inferred);
  "JIT is required to use arena" and "arena's user address must be set via map_extra or mmap()"
  are not checked (user space always has both); the log prints an arena ``lddw`` as
  ``map[fd:N][0]+off`` where the kernel prints the user address it resolved it to.
* Stack: private stacks (:mod:`.stack_depth`) are modelled for an x86-64 JIT as of 6.14+, whatever
  machine verifies; struct_ops programs that request one are not modelled.
* Unprivileged loads follow the kernel's Spectre handling as of 6.17/6.18 (:mod:`.spectre`):
  barriers are recorded, not inserted as instructions (a user-space VM never speculates); which
  errors a barrier recovers from follows the kernel's errno classes (EPERM/EACCES/EINVAL) as we
  know them per message; speculative states count towards the 8192 pending branch states ("The
  sequence of N jumps is too complex"), pushed in the kernel's order for the common cases. They
  may not use functions (bpf-to-bpf calls, function pointers, kfuncs) nor the helpers
  ``bpf_base_func_proto`` keeps for CAP_BPF and CAP_PERFMON, and :mod:`.capabilities` refuses,
  as ``bpf_prog_load`` and ``map_create`` do, every program type but socket filters and cgroup skb
  programs and the maps that need CAP_BPF or CAP_NET_ADMIN (a BPF token is not modelled). These
  verdicts are checked against the kernel's selftest expectations only: this machine refuses
  unprivileged ``bpf()``.

Found by the verdict-differential fuzzer (tests/verifier/fuzz_oracle.py) and kept:

* tracepoint context reads at negative offsets are refused (the kernel's ``tp_prog_is_valid_access``
  lets them through by comparing the offset with ``sizeof(void *)`` as unsigned);
* a write to r10 is refused wherever it is (:mod:`.structure`), also in code the kernel's
  exploration proves dead (it finds these writes only on the paths it walks, e.g. in a
  ``bpf_loop(0, cb)`` callback it never enters);
* accepting where the kernel rejects, in rare cases where the kernel is less precise than these
  bounds (about 1 program in 10,000 of the fuzzer's; both programs are safe): a branch our bounds
  and tnum together prove impossible is pruned here while the kernel may still walk it (its
  ``is_branch_taken`` compares ranges only; refining the dead edge then yields contradictory bounds,
  which it logs as a "REG INVARIANTS VIOLATION", forgets — the tnum stays — and walks on), and after
  an unsigned 64-bit comparison of a value whose signed range crosses zero the kernel keeps the
  unsigned bound but drops the signed one we keep.
"""

from __future__ import annotations

from pybpf.verifier.branch import branch_outcomes, refine
from pybpf.verifier.cfg import Cfg, Edge, EdgeKind, Subprog, walk
from pybpf.verifier.checker import maps_of, verify, verify_program
from pybpf.verifier.machine import MapInfo
from pybpf.verifier.report import Barrier, Diagnostic, VerifierReport
from pybpf.verifier.scalar import Scalar, sync
from pybpf.verifier.scalar_ops import alu, endian, neg
from pybpf.verifier.state import (
    BPF_REG_SIZE,
    MAX_BPF_STACK,
    IdMap,
    RegState,
    RegType,
    SlotByte,
    StackSlot,
    StackState,
    regsafe,
    stacksafe,
    states_safe,
)
from pybpf.verifier.structure import (
    BPF_COMPLEXITY_LIMIT_INSNS,
    BPF_COMPLEXITY_LIMIT_JMP_SEQ,
    BPF_MAXINSNS,
    ProgramStructure,
    StructureConfig,
    check_structure,
)
from pybpf.verifier.tnum import Tnum

__all__ = [
    "BPF_COMPLEXITY_LIMIT_INSNS",
    "BPF_COMPLEXITY_LIMIT_JMP_SEQ",
    "BPF_MAXINSNS",
    "BPF_REG_SIZE",
    "MAX_BPF_STACK",
    "Barrier",
    "Cfg",
    "Diagnostic",
    "Edge",
    "EdgeKind",
    "IdMap",
    "MapInfo",
    "ProgramStructure",
    "RegState",
    "RegType",
    "Scalar",
    "SlotByte",
    "StackSlot",
    "StackState",
    "StructureConfig",
    "Subprog",
    "Tnum",
    "VerifierReport",
    "alu",
    "branch_outcomes",
    "check_structure",
    "endian",
    "maps_of",
    "neg",
    "refine",
    "regsafe",
    "stacksafe",
    "states_safe",
    "sync",
    "verify",
    "verify_program",
    "walk",
]
