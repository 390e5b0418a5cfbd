// SPDX-License-Identifier: GPL-2.0
/*
 * kthread_demo - kernel threads and completions on Linux 6.12.
 *
 * Two threads, both started with kthread_run():
 *
 *	kmodlab_ticker - wakes up every TICK_MS, counts a tick and signals it
 *			 through a completion, until kthread_should_stop();
 *			 it lives from init to exit.
 *	kmodlab_worker - does one job, hands the result over through a
 *			 completion, then naps (for seconds) until it is told
 *			 to stop; init stops it and gets the result back as
 *			 kthread_stop()'s return value.
 *
 * Besides these, one kmodlab_cpu/N per online CPU, created with
 * kthread_create_on_cpu(), which binds it to CPU N: it must run there, and
 * only there.  These threads nap until exit stops them.
 *
 * Each thread prints a line when it does something (the ticker for its
 * first PRINT_TICKS ticks only) naming its CPU, so a timeline of the kernel
 * log (kmodlab's --html report) shows where and when the threads ran.
 *
 * Every wait in init is bounded (wait_for_completion_timeout), so a thread
 * that never signals costs a second, not a hung insmod.  init reports what
 * it saw as a KTAP document; exit stops the threads and prints a
 * "teardown:" line that the spec checks.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/completion.h>
#include <linux/cpu.h>
#include <linux/cpumask.h>
#include <linux/delay.h>
#include <linux/err.h>
#include <linux/jiffies.h>
#include <linux/kthread.h>
#include <linux/ktime.h>
#include <linux/module.h>
#include <linux/sched.h>
#include <linux/string.h>

#include <kmodlab/ktap.h>

#define TICK_MS		10	/* the ticker's period */
#define TICKS_WANTED	3	/* init waits for this many ticks */
#define WORKER_NAP_S	3	/* the worker naps this long between checks */
#define JOB_N		1000	/* the worker's job: 1 + 2 + ... + JOB_N */
#define WAIT_LIMIT_MS	1000	/* no wait in init lasts longer */
#define PRINT_TICKS	5	/* ticks that get a line; exit counts them all */
#define BOUND_NAP_S	5	/* the bound threads nap this long between checks */
#define MAX_CPUS	8	/* bound threads at most; the guest has 2 CPUs */

/* ---- the ticker ------------------------------------------------------ */

static struct task_struct *ticker;
static atomic_t ticks;
static unsigned long tick_jiffies[TICKS_WANTED];
static pid_t ticker_pid;
static bool ticker_bad_context;
static struct completion ticked;	/* completed once per tick */

/* Is this a kernel thread of ours, in process context, named @name? */
static bool in_own_kthread(const char *name)
{
	return in_task() && (current->flags & PF_KTHREAD) &&
	       strcmp(current->comm, name) == 0;
}

static int ticker_fn(void *data)
{
	WRITE_ONCE(ticker_pid, current->pid);
	if (!in_own_kthread("kmodlab_ticker"))
		WRITE_ONCE(ticker_bad_context, true);

	while (!kthread_should_stop()) {
		int n = atomic_inc_return(&ticks);

		if (n <= TICKS_WANTED)
			tick_jiffies[n - 1] = jiffies;
		/*
		 * The scheduler may move an unbound thread whenever it
		 * sleeps: this is the CPU it is on for this tick.
		 */
		if (n <= PRINT_TICKS)
			pr_info("ticker: tick %d on CPU %d\n", n,
				raw_smp_processor_id());
		/* Each complete() lets exactly one waiter through. */
		complete(&ticked);
		/*
		 * An interruptible sleep: kthread_stop() wakes the thread,
		 * so it notices the stop request at once.
		 */
		schedule_timeout_interruptible(msecs_to_jiffies(TICK_MS));
	}
	/* This value is what kthread_stop() returns. */
	return atomic_read(&ticks);
}

/* ---- the worker ------------------------------------------------------ */

static long job_result;
static bool worker_bad_context;
static struct completion job_done;

static int worker_fn(void *data)
{
	long sum = 0;
	int i;

	if (!in_own_kthread("kmodlab_worker"))
		WRITE_ONCE(worker_bad_context, true);
	for (i = 1; i <= JOB_N; i++)
		sum += i;
	usleep_range(5000, 10000);	/* a thread may sleep: it is an ordinary task */
	WRITE_ONCE(job_result, sum);
	pr_info("worker: job done on CPU %d, result %ld\n",
		raw_smp_processor_id(), sum);
	complete(&job_done);

	/*
	 * Nothing left to do, but a thread that kthread_stop() will stop
	 * must not return on its own: wait for the request.
	 */
	while (!kthread_should_stop())
		schedule_timeout_interruptible(WORKER_NAP_S * HZ);
	return sum;
}

/* ---- the bound threads, one per CPU ---------------------------------- */

struct bound_thread {
	struct task_struct *task;	/* NULL if it could not be created */
	int cpu;			/* the CPU it is bound to */
	int ran_on;			/* where it started; -1 until it has */
	struct completion started;
};

static struct bound_thread bound[MAX_CPUS];
static int nr_bound;

static int bound_fn(void *data)
{
	struct bound_thread *b = data;

	/* Bound to one CPU, the thread never leaves it: this is exact. */
	WRITE_ONCE(b->ran_on, raw_smp_processor_id());
	pr_info("%s: bound to CPU %d, runs on CPU %d\n", current->comm,
		b->cpu, b->ran_on);
	complete(&b->started);
	while (!kthread_should_stop())
		schedule_timeout_interruptible(BOUND_NAP_S * HZ);
	return 0;
}

/*
 * kthread_create_on_cpu() creates the thread, names it after the CPU
 * ("%u" in the name) and binds it there; like kthread_create() it leaves
 * the thread asleep until wake_up_process().
 */
static void start_bound_threads(void)
{
	int cpu;

	cpus_read_lock();	/* no CPU comes or goes while we bind */
	for_each_online_cpu(cpu) {
		struct bound_thread *b;
		struct task_struct *task;

		if (nr_bound == MAX_CPUS)
			break;
		b = &bound[nr_bound];
		b->cpu = cpu;
		b->ran_on = -1;
		init_completion(&b->started);
		task = kthread_create_on_cpu(bound_fn, b, cpu, "kmodlab_cpu/%u");
		b->task = IS_ERR(task) ? NULL : task;
		if (b->task)
			wake_up_process(b->task);
		nr_bound++;
	}
	cpus_read_unlock();
}

static bool wait_done(struct completion *done)
{
	return wait_for_completion_timeout(done,
			msecs_to_jiffies(WAIT_LIMIT_MS)) > 0;
}

static int __init kthread_demo_init(void)
{
	struct task_struct *worker;
	DECLARE_COMPLETION_ONSTACK(never);
	unsigned long min_gap = ULONG_MAX, left;
	bool ticks_ok = true, job_ok, bound_ok = true;
	int stop_ret, i;
	s64 stop_ms, timeout_ms;
	ktime_t t0;
	struct ktap t;

	init_completion(&ticked);
	init_completion(&job_done);

	/* kthread_run() = kthread_create() + wake_up_process(). */
	ticker = kthread_run(ticker_fn, NULL, "kmodlab_ticker");
	if (IS_ERR(ticker))
		return PTR_ERR(ticker);
	worker = kthread_run(worker_fn, NULL, "kmodlab_worker");
	if (IS_ERR(worker)) {
		kthread_stop(ticker);
		return PTR_ERR(worker);
	}

	start_bound_threads();

	/* One bounded wait per tick: a completion counts its complete()s. */
	for (i = 0; i < TICKS_WANTED; i++)
		ticks_ok &= wait_done(&ticked);
	for (i = 1; ticks_ok && i < TICKS_WANTED; i++)
		min_gap = min(min_gap, tick_jiffies[i] - tick_jiffies[i - 1]);

	job_ok = wait_done(&job_done);
	/* Let the worker settle into its nap, then stop it. */
	msleep(50);
	t0 = ktime_get();
	stop_ret = kthread_stop(worker);
	stop_ms = ktime_ms_delta(ktime_get(), t0);

	/* A wait that nobody completes: it returns 0 when the time is up. */
	t0 = ktime_get();
	left = wait_for_completion_timeout(&never, msecs_to_jiffies(20));
	timeout_ms = ktime_ms_delta(ktime_get(), t0);

	for (i = 0; i < nr_bound; i++)
		bound_ok &= bound[i].task && wait_done(&bound[i].started) &&
			    READ_ONCE(bound[i].ran_on) == bound[i].cpu;

	ktap_plan(&t, 8);
	ktap_diag("ticker pid %d, insmod pid %d, %d tick(s) so far, smallest gap %lu jiffies",
		  ticker_pid, current->pid, atomic_read(&ticks), min_gap);
	ktap_check(&t, ticks_ok, "ticker_signals_each_tick");
	ktap_check(&t, ticks_ok && !READ_ONCE(ticker_bad_context) &&
		       ticker_pid != current->pid,
		   "ticker_runs_in_its_own_kthread");
	ktap_check(&t, ticks_ok && min_gap >= msecs_to_jiffies(TICK_MS),
		   "ticker_sleeps_between_ticks");
	ktap_diag("worker: result %ld, kthread_stop returned %d after %lld ms",
		  READ_ONCE(job_result), stop_ret, stop_ms);
	ktap_check(&t, job_ok && !READ_ONCE(worker_bad_context) &&
		       READ_ONCE(job_result) == (long)JOB_N * (JOB_N + 1) / 2,
		   "worker_hands_over_its_result");
	ktap_check(&t, stop_ret == (long)JOB_N * (JOB_N + 1) / 2,
		   "kthread_stop_returns_the_thread_result");
	ktap_check(&t, stop_ms < WAIT_LIMIT_MS, "kthread_stop_wakes_a_napping_thread");
	ktap_diag("unsignalled wait: returned %lu after %lld ms", left, timeout_ms);
	ktap_check(&t, left == 0 && timeout_ms >= 20 - 1000 / HZ,
		   "bounded_wait_times_out");
	for (i = 0; i < nr_bound; i++)
		ktap_diag("thread bound to CPU %d: %s, ran on CPU %d", bound[i].cpu,
			  bound[i].task ? "created" : "not created",
			  READ_ONCE(bound[i].ran_on));
	if (nr_bound < 2)
		ktap_skip(&t, "bound_threads_run_on_their_cpu",
			  "only one CPU is online");
	else
		ktap_check(&t, bound_ok, "bound_threads_run_on_their_cpu");
	ktap_finish(&t);
	return 0;
}

static void __exit kthread_demo_exit(void)
{
	int ret, i;

	/* A bound thread that never ran gets -EINTR, without running bound_fn. */
	for (i = 0; i < nr_bound; i++)
		if (bound[i].task)
			kthread_stop(bound[i].task);

	/*
	 * Sets the stop flag, wakes the thread and waits until ticker_fn()
	 * has returned.  The ticker must not exit on its own before this:
	 * its task_struct could be gone by the time we call it.
	 */
	ret = kthread_stop(ticker);
	pr_info("teardown: ticks=%d stop_returned_ticks=%d\n",
		atomic_read(&ticks), ret == atomic_read(&ticks));
}

module_init(kthread_demo_init);
module_exit(kthread_demo_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("kmodlab");
MODULE_DESCRIPTION("Kernel threads and completions: kthread_run, kthread_should_stop, kthread_stop, bounded waits");
