/* FNV-1a (64-bit) over a packet, repeated so one run does measurable work: byte loads and multiplies. */
#include "bench.h"

PROGRAM(fnv1a)(const u8 *packet, u64 len)
{
	u64 hash = 0xcbf29ce484222325ULL;

	if (len > 1500)
		len = 1500;
	NO_UNROLL
	for (u32 round = 0; round < 16; round++) {
		NO_UNROLL
		for (u64 i = 0; i < len; i++) {
			hash ^= packet[i];
			hash *= 0x100000001b3ULL;
		}
	}
	return hash;
}

BENCH_ENTRY(fnv1a, 1500)
