/* bpf_redirect_map into a devmap: the slot is the low two bits of the ethertype's second byte
 * (IPv4 0x00 -> 0, IPv6 0xdd -> 1, ARP 0x06 -> 2); an empty slot falls back to XDP_PASS. */
#include "bpf_helpers_more.h"

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} tx_ports SEC(".maps");

SEC("xdp")
int redirect_dev(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u8 *eth = data;

	if (data + 14 > data_end)
		return XDP_ABORTED;
	return bpf_redirect_map(&tx_ports, eth[13] & 3, XDP_PASS);
}

char LICENSE[] SEC("license") = "GPL";
