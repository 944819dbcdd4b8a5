/* A Fibonacci-like sequence modulo 2^64 by iteration, starting from (input, 1): one dependent add
 * per step. The step count is a constant so the kernel's verifier walks the loop without pushing
 * a branch per iteration (an input-dependent bound hits its limit of 8,192 jumps); the start
 * value comes from the input so no compiler folds the result. */
#include "bench.h"

#define STEPS 20000

PROGRAM(fibonacci)(const u32 *input, u64 len)
{
	u64 a = len >= 4 ? input[0] : 0;
	u64 b = 1;

	NO_UNROLL
	for (u32 step = 0; step < STEPS; step++) {
		u64 next = a + b;

		a = b;
		b = next;
	}
	return a;
}

BENCH_ENTRY(fibonacci, 4)
