/* Line info test: every statement's text is unique so the test can find its line. */
static __attribute__((noinline)) int square(int v)
{
	int sq = v * v; /* MARK_SQUARE */
	return sq + 1;
}

__attribute__((section("socket"), used))
int entry(void *ctx)
{
	unsigned long p = (unsigned long)ctx; /* MARK_CTX */
	int total = square((int)p);
	if (total > 10) /* MARK_BRANCH */
		total -= 3;
	return total; /* MARK_RETURN */
}

__attribute__((section("socket/second"), used))
int second(void *ctx)
{
	return square(7) * 2; /* MARK_SECOND */
}

char _license[] __attribute__((section("license"), used)) = "GPL";
