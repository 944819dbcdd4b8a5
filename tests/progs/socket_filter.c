/* Socket filter: keep only IPv4 UDP packets (legacy LD_ABS packet loads), truncated to 128 bytes. */
#include "bpf_helpers.h"
#include <linux/if_ether.h>
#include <linux/ip.h>

unsigned long long load_byte(void *skb, unsigned long long off) asm("llvm.bpf.load.byte");
unsigned long long load_half(void *skb, unsigned long long off) asm("llvm.bpf.load.half");

SEC("socket")
int udp_only(struct __sk_buff *skb)
{
	if (load_half(skb, 12) != ETH_P_IP)
		return 0;
	if (load_byte(skb, ETH_HLEN + __builtin_offsetof(struct iphdr, protocol)) != 17)
		return 0;
	return skb->len < 128 ? skb->len : 128;
}

char LICENSE[] SEC("license") = "GPL";
