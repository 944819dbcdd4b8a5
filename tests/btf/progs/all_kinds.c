typedef unsigned int u32;
typedef unsigned long long u64;
enum color { RED = 1, GREEN = -2, BLUE = 7 };
enum big { B1 = 0x100000000ULL, B2 = 0xffffffffffffffffULL };
enum ucol { U1 = 0x80000000u };
struct fwd_only;
union un { int a; char b[3]; };
struct flags { unsigned int a:3; unsigned int b:5; int c:7; u64 d; };
struct inner { int x; union { short s; u32 u; }; struct { char c1, c2; }; };
#define __tag(x) __attribute__((btf_decl_tag(x)))
#define __ttag(x) __attribute__((btf_type_tag(x)))
struct tagged { int __tag("field") f; int __ttag("user") *p; } __tag("st");
struct all {
  volatile const int vci;
  int * restrict rp;
  struct fwd_only *fw;
  union un u;
  struct flags fl;
  struct inner in[2];
  enum color col;
  enum big b;
  enum ucol uc;
  float f; double d;
  _Bool bo; char ch; signed char sc; unsigned char uch;
  struct tagged t;
  int (*fp)(int a, const char *b);
  int arr[3][4];
};
struct all g_all;
static volatile int s_counter = 3;
int __tag("fn") helper(struct all *a, int k) __tag("fn2");
int helper(struct all *a, int k) { return a->arr[k][1] + a->fl.c + s_counter; }
__attribute__((section("xdp"), used))
int prog(void *ctx)
{
	int r = helper(&g_all, 1);
	if (r > 3)
		return 2;
	return g_all.in[1].s;
}
char _license[] __attribute__((section("license"), used)) = "GPL";

/* clang's own sizeof/alignof/offsetof, for tests to compare our layout computations with. */
#define LAYOUT(name, value) const volatile unsigned long layout_##name __attribute__((used)) = (value)
LAYOUT(sizeof_all, sizeof(struct all));
LAYOUT(alignof_all, _Alignof(struct all));
LAYOUT(sizeof_flags, sizeof(struct flags));
LAYOUT(sizeof_inner, sizeof(struct inner));
LAYOUT(alignof_inner, _Alignof(struct inner));
LAYOUT(sizeof_un, sizeof(union un));
LAYOUT(offsetof_in, __builtin_offsetof(struct all, in));
LAYOUT(offsetof_arr, __builtin_offsetof(struct all, arr));
LAYOUT(offsetof_fp, __builtin_offsetof(struct all, fp));
LAYOUT(offsetof_inner_u, __builtin_offsetof(struct inner, u));
LAYOUT(offsetof_inner_c2, __builtin_offsetof(struct inner, c2));
struct __attribute__((packed)) packed { char c; int i; };
struct packed g_packed;
LAYOUT(alignof_packed, _Alignof(struct packed));
LAYOUT(sizeof_packed, sizeof(struct packed));
