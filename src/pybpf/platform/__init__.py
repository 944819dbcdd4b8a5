"""pybpf.platform: pure, declarative tables describing the Linux BPF platform.

One helper-prototype table (:data:`HELPER_PROTOS`), one kfunc table (:data:`KFUNC_PROTOS`) and one program-type table
(:data:`PROG_TYPES`) shared by the loader, verifier and runtime, plus context layouts, libbpf
section-name conventions, map-type rules and the uapi enums generated from ``linux/bpf.h``.
Nothing here touches the OS.
"""

from pybpf.platform.capabilities import Capability
from pybpf.platform.context import ContextLayout, Conversion, CtxField
from pybpf.platform.helper_types import ArgFlag, ArgType, HelperArg, HelperProto, RetType
from pybpf.platform.helpers import HELPER_PROTOS, helper_proto
from pybpf.platform.kfunc_types import KfuncArg, KfuncArgKind, KfuncFlag, KfuncProto, KfuncRetKind, KfuncSet
from pybpf.platform.kfuncs import KFUNC_BY_NAME, KFUNC_PROTOS, kfunc_by_name
from pybpf.platform.maptypes import MAP_TYPES, MapOp, MapTypeSpec, check_map_spec, map_type_spec
from pybpf.platform.progtypes import PROG_TYPES, PacketAccess, ProgTypeSpec, prog_type_spec
from pybpf.platform.section import SectionFlag, SectionInfo, parse_section
from pybpf.platform.uapi_generated import (
    BpfAttachType,
    BpfLinkType,
    BpfMapFlag,
    BpfMapType,
    BpfProgType,
    BpfUpdateFlag,
    HelperId,
    XdpAction,
)

__all__ = [
    "HELPER_PROTOS",
    "KFUNC_BY_NAME",
    "KFUNC_PROTOS",
    "MAP_TYPES",
    "PROG_TYPES",
    "ArgFlag",
    "ArgType",
    "BpfAttachType",
    "BpfLinkType",
    "BpfMapFlag",
    "BpfMapType",
    "BpfProgType",
    "BpfUpdateFlag",
    "Capability",
    "ContextLayout",
    "Conversion",
    "CtxField",
    "HelperArg",
    "HelperId",
    "HelperProto",
    "KfuncArg",
    "KfuncArgKind",
    "KfuncFlag",
    "KfuncProto",
    "KfuncRetKind",
    "KfuncSet",
    "MapOp",
    "MapTypeSpec",
    "PacketAccess",
    "ProgTypeSpec",
    "RetType",
    "SectionFlag",
    "SectionInfo",
    "XdpAction",
    "check_map_spec",
    "helper_proto",
    "kfunc_by_name",
    "map_type_spec",
    "parse_section",
    "prog_type_spec",
]
