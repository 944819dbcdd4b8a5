/* Sum a 64 KiB buffer as u64 words: load/add/branch-heavy. */
#include "bench.h"

PROGRAM(sum64k)(const u64 *data, u64 len)
{
	u64 words = len / 8, sum = 0;

	if (words > 8192)
		words = 8192;
	NO_UNROLL
	for (u64 i = 0; i < words; i++)
		sum += data[i];
	return sum;
}

BENCH_ENTRY(sum64k, 65536)
