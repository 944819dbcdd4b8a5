/* TC classifier: read the IPv4 protocol with bpf_skb_load_bytes and mark UDP/TCP packets. */
#include "bpf_helpers.h"
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>

#define MARK_TCP 0x10
#define MARK_UDP 0x20

SEC("tc")
int tc_mark(struct __sk_buff *skb)
{
	__u8 proto;

	if (skb->protocol != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	if (bpf_skb_load_bytes(skb, ETH_HLEN + __builtin_offsetof(struct iphdr, protocol), &proto, 1) < 0)
		return TC_ACT_OK;
	/* One store of a computed value: clang would otherwise merge the two ctx stores through a
	 * modified ctx pointer, which the verifier rejects. */
	skb->mark = proto == 6 ? MARK_TCP : proto == 17 ? MARK_UDP : 0;
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
