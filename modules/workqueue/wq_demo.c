// SPDX-License-Identifier: GPL-2.0
/*
 * wq_demo - work queues on Linux 6.12, including a teardown that leaves
 * nothing behind.
 *
 * Three work items:
 *   hello   - runs once on the system work queue (schedule_work);
 *   sleeper - runs on our own queue, sleeps in every run (msleep) and queues
 *             itself again until init tells it to stop;
 *   tick    - a delayed work on our own queue that re-arms itself every
 *             TICK_PERIOD_MS until the module is unloaded;
 * and one "pinned" item per online CPU, queued there with schedule_work_on():
 * each must run on that CPU, in that CPU's own kworker/N:M.
 *
 * Every handler prints one line per run (the endless ones only for their
 * first few runs) naming the CPU and the worker thread, so a timeline of
 * the kernel log (kmodlab's --html report) shows where and when they ran.
 *
 * init starts all three, waits (always with a time limit) until each has done
 * enough, and reports what it saw as a KTAP document.  exit stops the
 * re-arming, cancels, flushes and destroys the queue, then prints one
 * "teardown:" line with the counts, which the spec checks.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/completion.h>
#include <linux/cpu.h>
#include <linux/cpumask.h>
#include <linux/delay.h>
#include <linux/jiffies.h>
#include <linux/ktime.h>
#include <linux/module.h>
#include <linux/preempt.h>
#include <linux/sched.h>
#include <linux/string.h>
#include <linux/workqueue.h>

#include <kmodlab/ktap.h>

#define SLEEPER_SLEEP_MS	10	/* every sleeper run sleeps this long */
#define SLEEPER_MIN_RUNS	3	/* init lets the sleeper run this often */
#define TICK_PERIOD_MS		20	/* the tick re-arms itself this far ahead */
#define TICK_MIN_REARMS		3	/* init waits for this many re-arms */
#define WAIT_LIMIT_MS		1000	/* no wait in init lasts longer than this */
#define PRINT_RUNS		5	/* runs of an endless item that get a line */
#define MAX_CPUS		8	/* pinned items at most; the guest has 2 CPUs */

/* What a work item records about its runs. */
struct run_record {
	atomic_t runs;			/* how many times the handler ran */
	bool bad_context;		/* some run was not in a kworker's process context */
	char first_comm[TASK_COMM_LEN];	/* the thread that ran it first */
};

static struct workqueue_struct *demo_wq;

static struct work_struct hello_work;
static struct work_struct sleeper_work;
static struct delayed_work tick_work;

static struct run_record hello_rec, sleeper_rec, tick_rec;
static atomic_t tick_rearms;

static bool sleeper_stop;	/* set by init: the sleeper stops re-queueing */
static bool stopping;		/* set by exit: nothing re-queues or re-arms */

static DECLARE_COMPLETION(hello_done);
static DECLARE_COMPLETION(sleeper_reached_min);
static DECLARE_COMPLETION(sleeper_stopped);
static DECLARE_COMPLETION(tick_reached_min);

/* One item per online CPU, queued on that CPU's per-CPU worker pool. */
struct pinned_item {
	struct work_struct work;
	int cpu;			/* where it was queued */
	int ran_on;			/* where it ran; -1 until it has */
	char comm[TASK_COMM_LEN];	/* the worker that ran it */
};

static struct pinned_item pinned[MAX_CPUS];
static int nr_pinned;
static atomic_t pinned_left;
static DECLARE_COMPLETION(pinned_done);

/*
 * Every handler calls this first: count the run and check where it runs.
 * A work item must run in process context (so it may sleep), outside any
 * interrupt, on a workqueue worker thread (PF_WQ_WORKER, named kworker/...).
 */
static unsigned int record_run(struct run_record *rec)
{
	unsigned int run = atomic_inc_return(&rec->runs);
	bool in_kworker = in_task() && !in_interrupt() &&
			  (current->flags & PF_WQ_WORKER) &&
			  str_has_prefix(current->comm, "kworker");

	if (run == 1)
		strscpy(rec->first_comm, current->comm);
	if (!in_kworker)
		WRITE_ONCE(rec->bad_context, true);
	return run;
}

/*
 * One line per run, for the first PRINT_RUNS runs.  Worker threads may
 * move between CPUs when they sleep, so raw_smp_processor_id() says where
 * this run is at this moment (no warning about preemption: we only print
 * it).  A per-CPU kworker/N:M never leaves CPU N.
 */
static void print_run(const char *item, unsigned int run)
{
	if (run <= PRINT_RUNS)
		pr_info("%s run %u on CPU %d in %s\n", item, run,
			raw_smp_processor_id(), current->comm);
}

static void hello_fn(struct work_struct *work)
{
	print_run("hello", record_run(&hello_rec));
	complete(&hello_done);
}

static void sleeper_fn(struct work_struct *work)
{
	unsigned int run = record_run(&sleeper_rec);

	print_run("sleeper", run);
	if (run == SLEEPER_MIN_RUNS)
		complete(&sleeper_reached_min);

	/* Sleeping is allowed here: a worker thread is an ordinary task. */
	msleep(SLEEPER_SLEEP_MS);

	if (READ_ONCE(sleeper_stop) || READ_ONCE(stopping)) {
		complete(&sleeper_stopped);
		return;
	}
	/* The item is no longer pending while its handler runs: queue it again. */
	queue_work(demo_wq, work);
}

static void tick_fn(struct work_struct *work)
{
	struct delayed_work *dwork = to_delayed_work(work);

	/* It runs until unload: the teardown line counts the runs not printed. */
	print_run("tick", record_run(&tick_rec));
	if (READ_ONCE(stopping))
		return;
	queue_delayed_work(demo_wq, dwork, msecs_to_jiffies(TICK_PERIOD_MS));
	if (atomic_inc_return(&tick_rearms) == TICK_MIN_REARMS)
		complete(&tick_reached_min);
}

static void pinned_fn(struct work_struct *work)
{
	struct pinned_item *p = container_of(work, struct pinned_item, work);

	/* A bound kworker stays on its CPU, so this is exact. */
	WRITE_ONCE(p->ran_on, raw_smp_processor_id());
	strscpy(p->comm, current->comm);
	pr_info("pinned item for CPU %d ran on CPU %d in %s\n", p->cpu,
		p->ran_on, p->comm);
	if (atomic_dec_and_test(&pinned_left))
		complete(&pinned_done);
}

/* Bounded wait: true if @done completed within WAIT_LIMIT_MS. */
static bool wait_done(struct completion *done)
{
	return wait_for_completion_timeout(done,
			msecs_to_jiffies(WAIT_LIMIT_MS)) > 0;
}

static bool ran_in_kworker(struct run_record *rec)
{
	return atomic_read(&rec->runs) > 0 && !READ_ONCE(rec->bad_context);
}

static int __init wq_demo_init(void)
{
	ktime_t start = ktime_get();
	bool hello_ran, sleeper_min, sleeper_halted, tick_min;
	bool pinned_ran, pinned_ok = true;
	unsigned int sleeper_runs;
	s64 sleeper_ms;
	struct ktap t;
	int cpu, i;

	/*
	 * WQ_UNBOUND: our items mostly sleep and care nothing for CPU
	 * locality, so any CPU may run them and they start as soon as a
	 * worker is free.  No WQ_MEM_RECLAIM: nothing here runs on the memory
	 * reclaim path, so we do not need (and do not pay for) a rescuer
	 * thread.  max_active 0 means the default limit (256).
	 */
	demo_wq = alloc_workqueue("kmodlab_wq", WQ_UNBOUND, 0);
	if (!demo_wq)
		return -ENOMEM;

	INIT_WORK(&hello_work, hello_fn);
	INIT_WORK(&sleeper_work, sleeper_fn);
	INIT_DELAYED_WORK(&tick_work, tick_fn);

	schedule_work(&hello_work);		/* the system queue */
	queue_work(demo_wq, &sleeper_work);	/* our queue */
	queue_delayed_work(demo_wq, &tick_work,
			   msecs_to_jiffies(TICK_PERIOD_MS));

	hello_ran = wait_done(&hello_done);
	sleeper_min = wait_done(&sleeper_reached_min);
	WRITE_ONCE(sleeper_stop, true);
	sleeper_halted = wait_done(&sleeper_stopped);
	sleeper_ms = ktime_ms_delta(ktime_get(), start);
	sleeper_runs = atomic_read(&sleeper_rec.runs);
	tick_min = wait_done(&tick_reached_min);

	/*
	 * schedule_work_on() queues on the system's per-CPU queue, on the
	 * given CPU: that CPU's own workers (kworker/N:M) run the item.
	 */
	cpus_read_lock();	/* no CPU comes or goes while we queue */
	for_each_online_cpu(cpu) {
		if (nr_pinned == MAX_CPUS)
			break;
		pinned[nr_pinned].cpu = cpu;
		pinned[nr_pinned].ran_on = -1;
		INIT_WORK(&pinned[nr_pinned].work, pinned_fn);
		nr_pinned++;
	}
	atomic_set(&pinned_left, nr_pinned);
	for (i = 0; i < nr_pinned; i++)
		schedule_work_on(pinned[i].cpu, &pinned[i].work);
	cpus_read_unlock();
	pinned_ran = wait_done(&pinned_done);

	ktap_plan(&t, 8);

	ktap_diag("hello ran %d time(s), first on %s",
		  atomic_read(&hello_rec.runs), hello_rec.first_comm);
	ktap_check(&t, hello_ran && atomic_read(&hello_rec.runs) == 1,
		   "system_work_ran");
	ktap_check(&t, ran_in_kworker(&hello_rec), "system_work_in_kworker");

	/*
	 * Each sleeper run sleeps at least SLEEPER_SLEEP_MS, so in sleeper_ms
	 * it cannot have run more than 1 + sleeper_ms / SLEEPER_SLEEP_MS
	 * times; fewer than SLEEPER_MIN_RUNS means it stopped re-queueing.
	 */
	ktap_diag("sleeper ran %u time(s) in %lld ms, first on %s",
		  sleeper_runs, sleeper_ms, sleeper_rec.first_comm);
	ktap_check(&t, sleeper_min && sleeper_halted, "sleeper_requeued_and_stopped");
	ktap_check(&t, ran_in_kworker(&sleeper_rec), "sleeper_in_kworker");
	ktap_check(&t, sleeper_runs >= SLEEPER_MIN_RUNS &&
		       sleeper_runs <= 1 + sleeper_ms / SLEEPER_SLEEP_MS,
		   "sleeper_runs_within_bounds");

	ktap_diag("tick re-armed %d time(s), first run on %s",
		  atomic_read(&tick_rearms), tick_rec.first_comm);
	ktap_check(&t, tick_min, "tick_rearmed");
	ktap_check(&t, ran_in_kworker(&tick_rec), "tick_in_kworker");

	for (i = 0; i < nr_pinned; i++) {
		ktap_diag("pinned item: queued on CPU %d, ran on CPU %d in %s",
			  pinned[i].cpu, READ_ONCE(pinned[i].ran_on),
			  pinned_ran ? pinned[i].comm : "?");
		pinned_ok &= READ_ONCE(pinned[i].ran_on) == pinned[i].cpu;
	}
	ktap_check(&t, pinned_ran && pinned_ok, "schedule_work_on_runs_on_that_cpu");

	ktap_diag("init took %lld ms", ktime_ms_delta(ktime_get(), start));
	ktap_finish(&t);

	/* Failures are reported through KTAP; the tick keeps running until exit. */
	return 0;
}

static void __exit wq_demo_exit(void)
{
	bool tick_was_armed, pending;
	int i;

	/* 1. No handler may queue or arm anything from now on. */
	WRITE_ONCE(stopping, true);

	/*
	 * 2. Cancel each item and wait until its handler is not running
	 *    anywhere.  The _sync variants also cope with items that queue
	 *    themselves again.  hello_work lives on the system queue, which
	 *    we must not flush: cancelling our own item is the replacement.
	 */
	tick_was_armed = cancel_delayed_work_sync(&tick_work);
	cancel_work_sync(&sleeper_work);
	cancel_work_sync(&hello_work);
	for (i = 0; i < nr_pinned; i++)
		cancel_work_sync(&pinned[i].work);

	/* 3. Wait for anything still on our queue (nothing, by now). */
	flush_workqueue(demo_wq);

	pending = work_pending(&hello_work) || work_pending(&sleeper_work) ||
		  delayed_work_pending(&tick_work);

	/* 4. Only an empty, quiet queue may be destroyed. */
	destroy_workqueue(demo_wq);

	pr_info("teardown: hello=%d sleeper=%d tick=%d rearms=%d tick_was_armed=%d pending=%d\n",
		atomic_read(&hello_rec.runs), atomic_read(&sleeper_rec.runs),
		atomic_read(&tick_rec.runs), atomic_read(&tick_rearms),
		tick_was_armed, pending);
}

module_init(wq_demo_init);
module_exit(wq_demo_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("kmodlab");
MODULE_DESCRIPTION("Work queue demo: system and dedicated queues, sleeping, self-re-arming and teardown");
