// SPDX-License-Identifier: GPL-2.0
/*
 * asm_demo - GCC extended inline assembly in a kernel module (x86_64, AT&T
 * syntax), each result checked against what the kernel or plain C says.
 *
 *   rdtsc       - the time-stamp counter, read many times in a row: it must
 *                 never go backwards, and it must agree with the kernel's own
 *                 rdtsc() read just before and just after;
 *   cpuid       - leaf 0: the vendor string and the highest standard leaf,
 *                 compared with what the kernel recorded at boot
 *                 (boot_cpu_data); rbx is handled in two ways;
 *   lock xadd   - a counter incremented from every online CPU at once: the
 *   lock cmpxchg  total must be exact;
 *   plain incl  - the same race without the lock prefix, reported as a
 *                 diagnostic only (whether updates get lost is up to timing);
 *   addressing  - immediate, register, memory, base + index * scale +
 *                 displacement, and lea, each compared with the same
 *                 computation in C.
 *
 * init runs everything (waits are bounded) and prints one KTAP document.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/completion.h>
#include <linux/cpu.h>
#include <linux/cpumask.h>
#include <linux/jiffies.h>
#include <linux/ktime.h>
#include <linux/module.h>
#include <linux/processor.h>
#include <linux/smp.h>
#include <linux/string.h>
#include <linux/workqueue.h>
#include <asm/cpufeature.h>
#include <asm/msr.h>
#include <asm/processor.h>

#include <kmodlab/ktap.h>

#define TSC_READS	1000	/* consecutive rdtsc reads checked for order */
#define RACE_ITERS	20000	/* increments per CPU in each race */
#define RACE_MAX_CPUS	8	/* racers at most; the guest has 2 CPUs */
#define START_LIMIT_MS	200	/* how long a racer waits for the others */
#define WAIT_LIMIT_MS	2000	/* how long init waits for a whole race */

/* ---------------------------------------------------------------- rdtsc */

/*
 * rdtsc puts the low 32 bits of the counter in eax and the high 32 bits in
 * edx.  Two more instructions join them in rax, which is the one output
 * ("=a").  rdx is changed too but is not an output, so it goes in the
 * clobber list: GCC will not keep anything there across the statement.
 * (The kernel's own rdtsc() instead takes two outputs, "=a" and "=d", and
 * joins them in C.  On x86_64, "=A" with a 64-bit variable does NOT mean
 * edx:eax, it means rax or rdx: a classic bug carried over from 32-bit.)
 *
 * volatile: the statement has no inputs, so without volatile GCC may assume
 * it returns the same value every time, and merge two reads into one or hoist
 * the read out of a loop.
 */
static inline u64 asm_rdtsc(void)
{
	u64 tsc;

	asm volatile("rdtsc\n\t"
		     "shlq $32, %%rdx\n\t"
		     "orq %%rdx, %[tsc]"
		     : [tsc] "=a" (tsc)
		     :
		     : "rdx");
	return tsc;
}

struct tsc_result {
	bool never_backwards;	/* each read >= the one before */
	bool advanced;		/* the last read > the first */
	bool within_kernel;	/* kernel rdtsc() <= ours <= kernel rdtsc() */
	u64 span;		/* last - first */
};

static void check_tsc(struct tsc_result *r)
{
	u64 first, prev, now, before, ours, after;
	int i;

	/*
	 * Stay on one CPU: the counters of different CPUs need not agree
	 * exactly, and a migration between two reads could then look like
	 * time going backwards.
	 */
	preempt_disable();
	first = prev = asm_rdtsc();
	r->never_backwards = true;
	for (i = 1; i < TSC_READS; i++) {
		now = asm_rdtsc();
		if (now < prev)
			r->never_backwards = false;
		prev = now;
	}
	before = rdtsc();	/* the kernel's own wrapper, <asm/msr.h> */
	ours = asm_rdtsc();
	after = rdtsc();
	preempt_enable();

	r->advanced = prev > first;
	r->span = prev - first;
	r->within_kernel = before <= ours && ours <= after;
}

/* ---------------------------------------------------------------- cpuid */

/*
 * cpuid takes the leaf in eax (and a sub-leaf in ecx) and overwrites eax,
 * ebx, ecx and edx.  rbx is a callee-saved register: a function must give
 * it back unchanged.  Naming it as an output ("=b") is the clean way: GCC
 * then knows rbx changes and saves and restores it when it has to.
 */
static void cpuid_b_output(u32 leaf, u32 *eax, u32 *ebx, u32 *ecx, u32 *edx)
{
	asm volatile("cpuid"
		     : "=a" (*eax), "=b" (*ebx), "=c" (*ecx), "=d" (*edx)
		     : "a" (leaf), "c" (0));
}

/*
 * The same, for code where rbx may not be named at all (32-bit position-
 * independent user code keeps its GOT pointer in ebx, and GCC there refuses
 * "=b"): park rbx in a register GCC picks, run cpuid, and swap the two back.
 * The scratch operand is early-clobber ("=&r"): it is written before all
 * inputs are read, so it must not share a register with an input.
 * %q1 prints the 64-bit name of operand 1 (e.g. %rsi, not %esi).
 */
static void cpuid_b_swapped(u32 leaf, u32 *eax, u32 *ebx, u32 *ecx, u32 *edx)
{
	u64 rbx_copy;

	asm volatile("movq %%rbx, %q1\n\t"
		     "cpuid\n\t"
		     "xchgq %%rbx, %q1"
		     : "=a" (*eax), "=&r" (rbx_copy), "=c" (*ecx), "=d" (*edx)
		     : "a" (leaf), "c" (0));
	*ebx = (u32)rbx_copy;
}

/* Leaf 0 spells the vendor in ebx, edx, ecx: "Genu" "ineI" "ntel". */
static void vendor_string(char out[13], u32 ebx, u32 ecx, u32 edx)
{
	memcpy(out, &ebx, 4);
	memcpy(out + 4, &edx, 4);
	memcpy(out + 8, &ecx, 4);
	out[12] = '\0';
}

/* The vendor strings the kernel's own CPU drivers match (c_ident). */
static const struct {
	const char *ident;
	u8 vendor;
} known_vendors[] = {
	{ "GenuineIntel", X86_VENDOR_INTEL },
	{ "AuthenticAMD", X86_VENDOR_AMD },
	{ "HygonGenuine", X86_VENDOR_HYGON },
	{ "CentaurHauls", X86_VENDOR_CENTAUR },
	{ "  Shanghai  ", X86_VENDOR_ZHAOXIN },
};

/* ------------------------------------------------------- atomic counters */

/*
 * lock xadd: exchange and add.  The register operand ("+r") goes in with
 * the increment and comes out with the counter's old value; the counter is
 * read and written in place ("+m").  The lock prefix makes the whole
 * read-modify-write one indivisible operation across all CPUs.  "memory"
 * makes the statement a compiler barrier, as the kernel's atomics are.
 */
static inline u32 asm_xadd(u32 *counter, u32 inc)
{
	asm volatile("lock xaddl %[inc], %[mem]"
		     : [inc] "+r" (inc), [mem] "+m" (*counter)
		     :
		     : "memory");
	return inc;
}

/*
 * lock cmpxchg: if *counter still equals eax (the value we read), store
 * new and set ZF; otherwise load the current value into eax and clear ZF.
 * "=@ccz" is a flag output: GCC reads ZF itself, no sete needed.
 */
static inline bool asm_cmpxchg(u32 *counter, u32 *expected, u32 new)
{
	bool swapped;

	asm volatile("lock cmpxchgl %[new], %[mem]"
		     : "+a" (*expected), [mem] "+m" (*counter), "=@ccz" (swapped)
		     : [new] "r" (new)
		     : "memory");
	return swapped;
}

static inline void asm_cmpxchg_inc(u32 *counter)
{
	u32 old = READ_ONCE(*counter);

	/* On failure cmpxchg has refreshed old: retry with that value. */
	while (!asm_cmpxchg(counter, &old, old + 1))
		;
}

/* incl on memory without lock: a load, an add and a store that others can interleave. */
static inline void asm_plain_inc(u32 *counter)
{
	asm volatile("incl %[mem]" : [mem] "+m" (*counter));
}

enum race_kind { RACE_XADD, RACE_CMPXCHG, RACE_PLAIN };

static const char *const race_names[] = { "lock xadd", "lock cmpxchg", "plain incl" };

struct racer {
	struct work_struct work;
	int cpu;		/* the CPU it was queued on */
	int ran_on;		/* the CPU it ran on */
	bool started_together;	/* all racers arrived before it began */
};

static struct racer racers[RACE_MAX_CPUS];
static int nr_racers;
static enum race_kind race_kind;
static u32 race_counter ____cacheline_aligned;
static atomic_t race_arrived;
static atomic_t race_left;
static DECLARE_COMPLETION(race_done);

static void racer_fn(struct work_struct *work)
{
	struct racer *r = container_of(work, struct racer, work);
	unsigned long give_up = jiffies + msecs_to_jiffies(START_LIMIT_MS);
	int i;

	r->ran_on = raw_smp_processor_id();

	/* Start line: spin until every racer is running, so that they overlap. */
	atomic_inc(&race_arrived);
	while (atomic_read(&race_arrived) < nr_racers &&
	       time_before(jiffies, give_up))
		cpu_relax();
	r->started_together = atomic_read(&race_arrived) == nr_racers;

	for (i = 0; i < RACE_ITERS; i++) {
		switch (race_kind) {
		case RACE_XADD:
			asm_xadd(&race_counter, 1);
			break;
		case RACE_CMPXCHG:
			asm_cmpxchg_inc(&race_counter);
			break;
		case RACE_PLAIN:
			asm_plain_inc(&race_counter);
			break;
		}
	}

	if (atomic_dec_and_test(&race_left))
		complete(&race_done);
}

struct race_result {
	bool finished;		/* all racers done within WAIT_LIMIT_MS */
	bool together;		/* every racer saw all the others at the start */
	bool on_own_cpu;	/* every racer ran on the CPU it was queued on */
	u32 total;
	u32 expected;
	s64 us;
};

/* One race: a work item per online CPU, each doing RACE_ITERS increments. */
static void run_race(enum race_kind kind, struct race_result *res)
{
	ktime_t start = ktime_get();
	int i;

	race_kind = kind;
	WRITE_ONCE(race_counter, 0);
	atomic_set(&race_arrived, 0);
	atomic_set(&race_left, nr_racers);
	reinit_completion(&race_done);

	for (i = 0; i < nr_racers; i++)
		queue_work_on(racers[i].cpu, system_wq, &racers[i].work);

	res->finished = wait_for_completion_timeout(&race_done,
			msecs_to_jiffies(WAIT_LIMIT_MS)) > 0;
	res->us = ktime_us_delta(ktime_get(), start);
	res->total = READ_ONCE(race_counter);
	res->expected = (u32)nr_racers * RACE_ITERS;
	res->together = res->on_own_cpu = res->finished;
	for (i = 0; res->finished && i < nr_racers; i++) {
		res->together &= racers[i].started_together;
		res->on_own_cpu &= racers[i].ran_on == racers[i].cpu;
	}
	ktap_diag("%-12s: total %u of %u from %d CPU(s)%s in %lld us",
		  race_names[kind], res->total, res->expected, nr_racers,
		  res->together ? " running together" : "", res->us);
}

/* ------------------------------------------------------------ addressing */

#define IMM_ADDEND	0x2a	/* an assemble-time constant */

static int table[8] = { 3, 1, 4, 1, 5, 9, 2, 6 };
static int in_memory = 1000;

/* Immediate: "i" allows only a constant; GCC prints it as $42. */
static int add_immediate(int x)
{
	asm("addl %[imm], %[x]" : [x] "+r" (x) : [imm] "i" (IMM_ADDEND));
	return x;
}

/* Register to register: both operands in registers GCC chooses. */
static int multiply_registers(int x, int y)
{
	asm("imull %[y], %[x]" : [x] "+r" (x) : [y] "r" (y));
	return x;
}

/* A memory source ("m"): GCC passes the variable's address, e.g. in_memory(%rip). */
static int add_from_memory(int x)
{
	asm("addl %[m], %[x]" : [x] "+r" (x) : [m] "m" (in_memory));
	return x;
}

/*
 * A memory destination ("+m"): the add happens in memory.  "ir" lets GCC
 * pass the addend as an immediate or in a register, whichever fits.
 */
static void add_to_memory(int *p, int addend)
{
	asm("addl %[a], %[m]" : [m] "+m" (*p) : [a] "ir" (addend));
}

/*
 * disp(base, index, scale) addresses base + index * scale + disp.  Here base
 * is the array, index the element number, scale the element size (4), disp
 * a fixed byte offset: with disp = 2 * 4, the load reads table[idx + 2].
 * %c prints a constant without its $.  GCC only sees a pointer in a
 * register, not that the asm reads the array: the "memory" clobber says so.
 */
static int load_indexed(const int *base, unsigned long idx)
{
	int v;

	asm("movl %c[disp](%[base],%[idx],4), %[v]"
	    : [v] "=r" (v)
	    : [base] "r" (base), [idx] "r" (idx), [disp] "i" (2 * sizeof(int))
	    : "memory");
	return v;
}

/* lea computes the same kind of address but reads nothing from memory. */
static const int *address_indexed(const int *base, unsigned long idx)
{
	const int *p;

	asm("leaq %c[disp](%[base],%[idx],4), %[p]"
	    : [p] "=r" (p)
	    : [base] "r" (base), [idx] "r" (idx), [disp] "i" (2 * sizeof(int)));
	return p;
}

/* A sum over the array, one scaled-index load per element. */
static int sum_indexed(const int *base, unsigned long n)
{
	unsigned long i;
	int sum = 0;

	for (i = 0; i < n; i++)
		asm("addl (%[base],%[i],4), %[sum]"
		    : [sum] "+r" (sum)
		    : [base] "r" (base), [i] "r" (i)
		    : "memory");
	return sum;
}

/* ------------------------------------------------------------------ init */

static int __init asm_demo_init(void)
{
	struct race_result xadd = {}, cmpxchg = {}, plain = {};
	u32 a, b, c, d, a2, b2, c2, d2;
	struct tsc_result tsc = {};
	char vendor[13], vendor2[13];
	bool load_ok, lea_ok;
	int cpu, i, known = -1;
	int mem, c_sum;
	struct ktap t;

	ktap_plan(&t, 13);

	/* rdtsc */
	if (boot_cpu_has(X86_FEATURE_TSC)) {
		check_tsc(&tsc);
		ktap_diag("rdtsc: %d reads spanning %llu cycles", TSC_READS, tsc.span);
		ktap_check(&t, tsc.never_backwards && tsc.advanced, "rdtsc_monotonic");
		ktap_check(&t, tsc.within_kernel, "rdtsc_agrees_with_kernel");
	} else {
		ktap_skip(&t, "rdtsc_monotonic", "no TSC");
		ktap_skip(&t, "rdtsc_agrees_with_kernel", "no TSC");
	}

	/* cpuid leaf 0 */
	cpuid_b_output(0, &a, &b, &c, &d);
	cpuid_b_swapped(0, &a2, &b2, &c2, &d2);
	vendor_string(vendor, b, c, d);
	vendor_string(vendor2, b2, c2, d2);
	for (i = 0; i < ARRAY_SIZE(known_vendors); i++)
		if (!strcmp(vendor, known_vendors[i].ident))
			known = i;
	ktap_diag("cpuid 0: \"%s\", max leaf %u; the kernel says \"%s\" (vendor %u), max leaf %d",
		  vendor, a, boot_cpu_data.x86_vendor_id,
		  boot_cpu_data.x86_vendor, boot_cpu_data.cpuid_level);
	ktap_check(&t, !strcmp(vendor, boot_cpu_data.x86_vendor_id) &&
		       (int)a == boot_cpu_data.cpuid_level, "cpuid_vendor_matches_kernel");
	if (known >= 0)
		ktap_check(&t, known_vendors[known].vendor == boot_cpu_data.x86_vendor,
			   "cpuid_vendor_enum_matches_kernel");
	else
		ktap_skip(&t, "cpuid_vendor_enum_matches_kernel", "vendor not in our table");
	ktap_check(&t, !strcmp(vendor, vendor2) && a == a2,
		   "cpuid_rbx_swap_variant_agrees");

	/* Races: one work item per online CPU, queued on that CPU. */
	cpus_read_lock();
	for_each_online_cpu(cpu) {
		if (nr_racers == RACE_MAX_CPUS)
			break;
		INIT_WORK(&racers[nr_racers].work, racer_fn);
		racers[nr_racers].cpu = cpu;
		nr_racers++;
	}
	cpus_read_unlock();

	run_race(RACE_XADD, &xadd);
	ktap_check(&t, xadd.finished && xadd.total == xadd.expected,
		   "lock_xadd_total_exact");
	if (xadd.finished) {
		run_race(RACE_CMPXCHG, &cmpxchg);
		ktap_check(&t, cmpxchg.finished && cmpxchg.total == cmpxchg.expected,
			   "lock_cmpxchg_total_exact");
	} else {
		ktap_result(&t, false, "lock_cmpxchg_total_exact");
	}
	ktap_check(&t, xadd.on_own_cpu && xadd.finished && cmpxchg.on_own_cpu,
		   "racers_ran_on_their_cpus");

	/* Not a check: a plain increment may or may not lose updates. */
	if (xadd.finished && cmpxchg.finished) {
		run_race(RACE_PLAIN, &plain);
		ktap_diag("plain incl without lock lost %u of %u updates (not a check)",
			  plain.expected - plain.total, plain.expected);
	}

	/* Addressing forms, each against plain C. */
	ktap_check(&t, add_immediate(100) == 100 + IMM_ADDEND, "immediate_operand");
	ktap_check(&t, multiply_registers(-6, 7) == -6 * 7, "register_operands");
	mem = 5;
	add_to_memory(&mem, 37);
	ktap_check(&t, add_from_memory(23) == 23 + in_memory && mem == 5 + 37,
		   "memory_operands");

	load_ok = true;
	lea_ok = true;
	for (i = 0; i + 2 < ARRAY_SIZE(table); i++) {
		load_ok &= load_indexed(table, i) == table[i + 2];
		lea_ok &= address_indexed(table, i) == &table[i + 2];
	}
	c_sum = 0;
	for (i = 0; i < ARRAY_SIZE(table); i++)
		c_sum += table[i];
	ktap_diag("load_indexed(table, 2) = %d, table[2 + 2] = %d",
		  load_indexed(table, 2), table[4]);
	ktap_check(&t, load_ok && sum_indexed(table, ARRAY_SIZE(table)) == c_sum,
		   "base_index_scale_disp_load");
	ktap_check(&t, lea_ok, "base_index_scale_disp_lea");

	ktap_finish(&t);
	return 0;
}

static void __exit asm_demo_exit(void)
{
	int i;

	/* A race that timed out in init may still be running: wait for it. */
	for (i = 0; i < nr_racers; i++)
		cancel_work_sync(&racers[i].work);
	pr_info("unloaded, %d racer(s) idle\n", nr_racers);
}

module_init(asm_demo_init);
module_exit(asm_demo_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("kmodlab");
MODULE_DESCRIPTION("GCC extended inline assembly on x86_64: rdtsc, cpuid, lock xadd/cmpxchg, addressing forms");
