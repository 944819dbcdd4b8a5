/* Sieve of Eratosthenes over the input buffer (one byte per number); returns the prime count. */
#include "bench.h"

PROGRAM(sieve)(u8 *flags, u64 len)
{
	u64 count = 0;

	if (len > 65536)
		len = 65536;
	NO_UNROLL
	for (u64 i = 0; i < len; i++)
		flags[i] = 1;
	NO_UNROLL
	for (u64 i = 2; i < len; i++) {
		if (!flags[i])
			continue;
		count++;
		NO_UNROLL
		for (u64 j = i * i; j < len; j += i)
			flags[j] = 0;
	}
	return count;
}

BENCH_ENTRY(sieve, 16384)
