// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * asm_user - the classic user-space inline assembly demos (x86_64, AT&T syntax).
 *
 * Each demo computes something with GCC extended asm, computes it again in plain C, prints
 * both and says `ok` or `FAILED`. kmodlab builds it as a static program; the spec runs it in
 * the test VM, and the end-to-end tests run it on the host too: the same instructions must give
 * the same answers under both kernels. Exit status 0 when every demo agreed.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static int failures;

static void report(const char *name, long long asm_value, long long c_value)
{
	int ok = asm_value == c_value;

	printf("%s: asm=%lld c=%lld %s\n", name, asm_value, c_value, ok ? "ok" : "FAILED");
	failures += !ok;
}

/* 1. The smallest extended asm: one input, one output, AT&T order (source, destination). */
static int add(int a, int b)
{
	int sum;

	asm("movl %1, %0\n\t"
	    "addl %2, %0"
	    : "=&r"(sum) /* early clobber: written before %2 is read */
	    : "r"(a), "r"(b));
	return sum;
}

/* 2. A read-write operand ("+r") and an immediate ("i", printed as $N). */
static long add_const(long x)
{
	asm("addq %1, %0" : "+r"(x) : "i"(1000));
	return x;
}

/* 3. Fixed registers: mull takes eax and writes edx:eax. */
static uint64_t mul32(uint32_t a, uint32_t b)
{
	uint32_t lo, hi;

	asm("mull %3" : "=a"(lo), "=d"(hi) : "a"(a), "rm"(b) : "cc");
	return (uint64_t)hi << 32 | lo;
}

/* 4. Memory operands and disp(base, index, scale): only the index is scaled. */
static int load_indexed(const int *table, long i)
{
	int v;

	asm("movl 8(%1,%2,4), %0" : "=r"(v) : "r"(table), "r"(i), "m"(*(const int(*)[8])table));
	return v;
}

/* 5. A loop with a local numeric label: `1b` jumps back to the nearest `1:`. */
static long sum_to(long n)
{
	long sum = 0;

	asm("test %1, %1\n\t"
	    "jz 2f\n"
	    "1:\n\t"
	    "addq %1, %0\n\t"
	    "decq %1\n\t"
	    "jnz 1b\n"
	    "2:"
	    : "+r"(sum), "+r"(n)
	    :
	    : "cc");
	return sum;
}

/* 6. A flag output: "=@ccc" is the carry flag after `bt`, no setc needed. */
static int bit_is_set(unsigned long word, unsigned long bit)
{
	int carry;

	asm("btq %2, %1" : "=@ccc"(carry) : "r"(word), "r"(bit));
	return carry;
}

/* 7. bsr and bswap: instructions C has no operator for. */
static int highest_bit(unsigned long x)
{
	long bit;

	asm("bsrq %1, %0" : "=r"(bit) : "rm"(x) : "cc");
	return (int)bit;
}

static uint32_t byte_swap(uint32_t x)
{
	asm("bswapl %0" : "+r"(x));
	return x;
}

/* 8. lock xadd: atomically add and get the old value; "+m" plus the "memory" clobber. */
static int fetch_add(int *counter, int inc)
{
	asm volatile("lock xaddl %0, %1" : "+r"(inc), "+m"(*counter) : : "memory");
	return inc;
}

/* 9. rep movsb: fixed registers rdi, rsi, rcx, all changed ("+D", "+S", "+c"). */
static void copy_bytes(void *dst, const void *src, size_t n)
{
	asm volatile("rep movsb" : "+D"(dst), "+S"(src), "+c"(n) : : "memory");
}

/* 10. cpuid: leaf 0 gives the highest leaf in eax and the vendor in ebx, edx, ecx. */
static unsigned int cpuid_vendor(char vendor[13])
{
	unsigned int eax, ebx, ecx, edx;

	asm volatile("cpuid" : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx) : "a"(0), "c"(0));
	memcpy(vendor, &ebx, 4);
	memcpy(vendor + 4, &edx, 4);
	memcpy(vendor + 8, &ecx, 4);
	vendor[12] = '\0';
	return eax;
}

/* 11. rdtsc, volatile: without it GCC may read the counter once and reuse the value. */
static uint64_t rdtsc(void)
{
	uint32_t lo, hi;

	asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

/* 12. A system call without libc: number in rax, arguments in rdi, rsi, rdx; the kernel
 *     returns in rax and clobbers rcx (return address) and r11 (flags). */
static long raw_syscall3(long nr, long a, long b, long c)
{
	long ret;

	asm volatile("syscall"
		     : "=a"(ret)
		     : "a"(nr), "D"(a), "S"(b), "d"(c)
		     : "rcx", "r11", "memory");
	return ret;
}

int main(void)
{
	static const int table[8] = { 10, 11, 12, 13, 14, 15, 16, 17 };
	static const char msg[] = "raw syscall: hello from write(2) without libc\n";
	char vendor[13], copied[32] = "";
	unsigned int max_leaf;
	uint64_t t0, t1;
	int counter = 40;
	int old;

	setvbuf(stdout, NULL, _IOLBF, 0);
	report("add", add(40, 2), 40 + 2);
	report("add_const", add_const(234), 234 + 1000);
	report("mul32", (long long)mul32(0xfffffffeu, 3), 0xfffffffeull * 3);
	report("load_indexed", load_indexed(table, 3), table[3 + 2]);
	report("sum_to", sum_to(100), 100 * 101 / 2);
	report("bit_is_set", bit_is_set(0x20, 5) * 10 + bit_is_set(0x20, 4), 10);
	report("highest_bit", highest_bit(0x1234), 63 - __builtin_clzl(0x1234));
	report("byte_swap", byte_swap(0x11223344u), __builtin_bswap32(0x11223344u));
	old = fetch_add(&counter, 2);
	report("fetch_add", old * 100 + counter, 40 * 100 + 42);
	copy_bytes(copied, "rep movsb copies", sizeof("rep movsb copies"));
	report("rep_movsb", strcmp(copied, "rep movsb copies"), 0);

	max_leaf = cpuid_vendor(vendor);
	printf("cpuid: vendor %s, highest standard leaf %u\n", vendor, max_leaf);
	/* Within a few reads, even where the counter ticks slowly (an emulated CPU). */
	t0 = rdtsc();
	for (int i = 0; i < 1000 && (t1 = rdtsc()) <= t0; i++)
		;
	report("rdtsc_advances", t1 > t0, 1);

	fflush(stdout);
	report("raw_syscall_write",
	       raw_syscall3(SYS_write, STDOUT_FILENO, (long)msg, sizeof(msg) - 1),
	       (long long)(sizeof(msg) - 1));
	report("raw_syscall_getpid", raw_syscall3(SYS_getpid, 0, 0, 0), getpid());

	if (failures) {
		printf("%d demos FAILED\n", failures);
		return 1;
	}
	printf("all demos agree\n");
	return 0;
}
