/* Shared definitions for the interpreter benchmarks: raw programs, r1 = input, r2 = its length. */
#ifndef BENCH_H
#define BENCH_H

typedef unsigned char u8;
typedef unsigned int u32;
typedef unsigned long long u64;

/* One program per object, in a section the benchmark looks up by name. */
#define PROGRAM(name) __attribute__((section("bench"), used)) u64 name

/* Keep loops as loops: the point is to measure the interpreter on branches. */
#define NO_UNROLL _Pragma("clang loop unroll(disable)")

#endif
