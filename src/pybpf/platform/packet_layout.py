"""The kernel's packet-buffer geometry that test runs and packet helpers reproduce (x86-64, Linux 6.18).

One place for the numbers the XDP and skb test runs (``net/bpf/test_run.c``), the Python packet
helpers and the JIT's native packet helpers must agree on.
"""

from __future__ import annotations

XDP_PACKET_HEADROOM = 256
"""Headroom in front of an XDP test run's packet."""
XDP_FRAME_SIZE = 4096
"""frame_sz of a BPF_PROG_TEST_RUN XDP buffer (one page)."""
XDP_FRAME_STRUCT = 40
"""sizeof(struct xdp_frame): adjust_head/adjust_meta keep it free at the start of the headroom."""
SKB_SHARED_INFO = 320
"""SKB_DATA_ALIGN(sizeof(struct skb_shared_info)): tail room XDP cannot grow into."""
XDP_METADATA_MAX = 252
"""Largest XDP metadata: skb_shared_info.meta_len is a u8 and the length a multiple of 4
(xdp_metalen_invalid). Linux before 6.16 capped it at 32; 6.18 accepts up to 252 (checked with
BPF_PROG_TEST_RUN here), within the headroom left after struct xdp_frame."""
XDP_MAX_LINEAR = XDP_FRAME_SIZE - XDP_PACKET_HEADROOM - SKB_SHARED_INFO
"""Longest packet an XDP test run takes without fragments."""
ETH_HLEN = 14
SKB_HEADROOM = 64
"""NET_SKB_PAD + NET_IP_ALIGN on x86-64: the headroom of a test-run skb."""
SKB_MAX_ALLOC = 16384 - SKB_SHARED_INFO
"""SKB_MAX_ALLOC: the longest packet skb_change_head/tail/adjust_room may make."""
LOOPBACK_IFINDEX = 1
"""Without an ingress device a test run runs the program on the loopback device (queue 0)."""
