/* Shared definitions for the benchmark programs: raw programs, r1 = input, r2 = its length.
 *
 * The same C builds three ways:
 * - default (clang -target bpf): one raw program per object in section "bench" (bench_interp.py,
 *   bench_jit.py run it with r1/r2 set);
 * - BENCH_NATIVE (gcc -O2 -shared for the host): an exported function u64 name(input, len), the
 *   physical limit bench_jit.py compares against;
 * - BENCH_KERNEL (clang -target bpf): an XDP program the kernel verifies and test-runs: the input
 *   is an array map's value (the kernel's test run gives packets, not raw memory) and r0 goes
 *   to a second map, since an XDP retval keeps only 32 bits.
 * BENCH_ENTRY(name, size) at the end of a source makes that XDP program (size: input bytes).
 */
#ifndef BENCH_H
#define BENCH_H

typedef unsigned char u8;
typedef unsigned int u32;
typedef unsigned long long u64;

#if defined(BENCH_NATIVE)
#define PROGRAM(name) u64 name
#define NO_UNROLL
#define BENCH_ENTRY(name, size)
#elif defined(BENCH_KERNEL)
#define PROGRAM(name) static __attribute__((always_inline)) u64 name
/* Keep loops as loops: the point is to measure the engines on branches. */
#define NO_UNROLL _Pragma("clang loop unroll(disable)")
struct xdp_md;
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
#define BENCH_ENTRY(name, size)                                                          \
	struct {                                                                         \
		int (*type)[2];                                                          \
		int (*max_entries)[1];                                                   \
		u32 *key;                                                                \
		struct { u8 bytes[size]; } *value;                                       \
	} bench_input __attribute__((section(".maps"), used));                          \
	struct {                                                                         \
		int (*type)[2];                                                          \
		int (*max_entries)[1];                                                   \
		u32 *key;                                                                \
		u64 *value;                                                              \
	} bench_output __attribute__((section(".maps"), used));                         \
	__attribute__((section("xdp"), used)) int name##_xdp(struct xdp_md *ctx)         \
	{                                                                                \
		u32 zero = 0;                                                            \
		void *input = bpf_map_lookup_elem(&bench_input, &zero);                  \
		u64 *output = bpf_map_lookup_elem(&bench_output, &zero);                 \
		if (!input || !output)                                                   \
			return 0;                                                        \
		*output = name(input, size);                                             \
		return 2;                                                                \
	}                                                                                \
	char LICENSE[] __attribute__((section("license"), used)) = "GPL";
#else
/* One program per object, in a section the benchmark looks up by name. */
#define PROGRAM(name) __attribute__((section("bench"), used)) u64 name
/* Keep loops as loops: the point is to measure the interpreter on branches. */
#define NO_UNROLL _Pragma("clang loop unroll(disable)")
#define BENCH_ENTRY(name, size)
#endif

#endif
