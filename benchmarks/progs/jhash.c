/* jhash (Bob Jenkins' lookup3, as the kernel's <linux/jhash.h> computes it) over a 1500-byte
 * packet, chained 16 times (each round's hash seeds the next): 32-bit adds, xors and rotates. */
#include "bench.h"

#define ROUNDS 16
#define JHASH_INITVAL 0xdeadbeefu

static inline __attribute__((always_inline)) u32 rol32(u32 word, unsigned int shift)
{
	return (word << shift) | (word >> (32 - shift));
}

#define JHASH_MIX(a, b, c)                              \
	do {                                            \
		a -= c; a ^= rol32(c, 4); c += b;       \
		b -= a; b ^= rol32(a, 6); a += c;       \
		c -= b; c ^= rol32(b, 8); b += a;       \
		a -= c; a ^= rol32(c, 16); c += b;      \
		b -= a; b ^= rol32(a, 19); a += c;      \
		c -= b; c ^= rol32(b, 4); b += a;       \
	} while (0)

#define JHASH_FINAL(a, b, c)                            \
	do {                                            \
		c ^= b; c -= rol32(b, 14);              \
		a ^= c; a -= rol32(c, 11);              \
		b ^= a; b -= rol32(a, 25);              \
		c ^= b; c -= rol32(b, 16);              \
		a ^= c; a -= rol32(c, 4);               \
		b ^= a; b -= rol32(a, 14);              \
		c ^= b; c -= rol32(b, 24);              \
	} while (0)

PROGRAM(jhash)(const u8 *packet, u64 len)
{
	u32 hash = 0;

	/* A whole number of 12-byte blocks, the last one handled as jhash's tail: 1500 = 125 * 12. */
	if (len > 1500)
		len = 1500;
	len -= len % 12;
	if (len == 0)
		return 0;
	NO_UNROLL
	for (u32 round = 0; round < ROUNDS; round++) {
		const u8 *key = packet;
		u32 left = len;
		u32 a, b, c;

		a = b = c = JHASH_INITVAL + left + hash;
		NO_UNROLL
		while (left > 12) {
			a += *(const u32 *)(key + 0);
			b += *(const u32 *)(key + 4);
			c += *(const u32 *)(key + 8);
			JHASH_MIX(a, b, c);
			left -= 12;
			key += 12;
		}
		/* The last 12 bytes: the kernel's tail switch, case 12 (byte by byte, as get_unaligned reads). */
		c += (u32)key[11] << 24 | (u32)key[10] << 16 | (u32)key[9] << 8 | key[8];
		b += (u32)key[7] << 24 | (u32)key[6] << 16 | (u32)key[5] << 8 | key[4];
		a += (u32)key[3] << 24 | (u32)key[2] << 16 | (u32)key[1] << 8 | key[0];
		JHASH_FINAL(a, b, c);
		hash = c;
	}
	return hash;
}

BENCH_ENTRY(jhash, 1500)
