/* An extern Kconfig value (.kconfig): libbpf fills it in at load time; pybpf's loader does not
 * support externs yet and must say so, naming the symbol. */
#include "bpf_helpers.h"

extern unsigned int LINUX_KERNEL_VERSION __attribute__((section(".kconfig")));

SEC("socket")
int kernel_version_filter(struct __sk_buff *skb)
{
	return LINUX_KERNEL_VERSION >= 0x050f00 ? skb->len : 0;
}

char LICENSE[] SEC("license") = "GPL";
