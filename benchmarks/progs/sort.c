/* Insertion sort of 64 u32 on the stack, from pseudo-random data seeded by the input. */
#include "bench.h"

#define N 64

PROGRAM(sort)(const u32 *seed, u64 len)
{
	u32 values[N];
	u32 state = len >= 4 ? seed[0] : 1;
	u64 check = 0;

	NO_UNROLL
	for (u32 round = 0; round < 8; round++) {
		NO_UNROLL
		for (u32 i = 0; i < N; i++) {
			state = state * 1103515245u + 12345u;
			values[i] = state >> 8;
		}
		NO_UNROLL
		for (u32 i = 1; i < N; i++) {
			u32 key = values[i];
			u32 j = i;

			NO_UNROLL
			while (j > 0 && values[j - 1] > key) {
				values[j] = values[j - 1];
				j--;
			}
			values[j] = key;
		}
		NO_UNROLL
		for (u32 i = 0; i < N; i++)
			check = check * 31 + values[i];
	}
	return check;
}

BENCH_ENTRY(sort, 4)
