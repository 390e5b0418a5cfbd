// SPDX-License-Identifier: GPL-2.0
/*
 * bhwq_demo - BH work queues, the replacement for tasklets (Linux 6.9+).
 *
 * A work item queued on system_bh_wq (or on a queue allocated with WQ_BH)
 * does not run on a kworker thread: it runs in softirq context, on the CPU
 * that queued it, like a tasklet.  Everything else is the ordinary work
 * queue API: INIT_WORK, queue_work, from_work, delayed work, cancel,
 * flush, and disable_work/enable_work (6.10+).  init checks, in a KTAP
 * document, the same guarantees the tasklet example checks:
 *
 *	- it runs, in softirq context, on the queueing CPU;
 *	- queue_work_on(cpu, system_bh_wq, ...) runs it on that CPU, for
 *	  each online CPU: something a tasklet cannot be asked to do;
 *	- queueing it twice before it runs gives one run (and queue_work()
 *	  says so), and items queued on one CPU run in queueing order;
 *	- it can queue itself again from its own handler;
 *	- a disabled item cannot be queued; delayed BH work runs in softirq
 *	  context too, and cancelling it from a waiting state drops it.
 *
 * exit queues the item once more, stops it with disable_work_sync() and
 * prints a "teardown:" line that the spec checks.
 *
 * Every handler run prints one line naming its CPU, so a timeline of the
 * kernel log (kmodlab's --html report) shows where and when each ran.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/bottom_half.h>
#include <linux/completion.h>
#include <linux/cpu.h>
#include <linux/cpumask.h>
#include <linux/delay.h>
#include <linux/module.h>
#include <linux/preempt.h>
#include <linux/sched.h>
#include <linux/smp.h>
#include <linux/workqueue.h>

#include <kmodlab/ktap.h>

#define DEMO_MAGIC	0x6b68b0d5u
#define REQUEUE_RUNS	5	/* the self-queueing phase runs this often */
#define ORDER_ITEMS	3	/* items queued together to check the order */
#define WAIT_LIMIT_MS	1000	/* no wait in init lasts longer */
#define QUIET_MS	20	/* how long init watches for unwanted extra runs */
#define MAX_CPUS	8	/* CPUs the queue_work_on() phase tries; the guest has 2 */

struct bh_demo {
	unsigned int magic;		/* from_work() must find this */
	struct work_struct work;
	atomic_t runs;
	int requeue_left;		/* >0: the handler queues itself again */
	int last_cpu;
	bool bad_context;		/* some run was not in a softirq */
	bool bad_owner;
	struct completion ran;
	struct completion requeue_done;
};

static struct bh_demo demo = { .magic = DEMO_MAGIC };

/* In softirq context, outside any task and hardirq: where tasklets run. */
static bool in_bh_context(void)
{
	return in_serving_softirq() && in_interrupt() && !in_hardirq() &&
	       !in_task();
}

static void demo_work_fn(struct work_struct *work)
{
	struct bh_demo *d = from_work(d, work, work);
	int run, cpu;

	if (d->magic != DEMO_MAGIC) {
		WRITE_ONCE(demo.bad_owner, true);
		return;
	}
	run = atomic_inc_return(&d->runs);
	/* A softirq cannot move to another CPU: smp_processor_id() is exact. */
	cpu = smp_processor_id();
	WRITE_ONCE(d->last_cpu, cpu);
	if (!in_bh_context())
		WRITE_ONCE(d->bad_context, true);
	/* About a dozen runs in all: one line each keeps the log readable. */
	pr_info("bh work run %d on CPU %d (in_softirq=%d)\n", run, cpu,
		!!in_softirq());

	if (d->requeue_left > 0) {
		if (--d->requeue_left > 0)
			queue_work(system_bh_wq, work);
		else
			complete(&d->requeue_done);
	}
	complete(&d->ran);
}

/* Items queued together: each notes its position in the running order. */
struct order_item {
	struct work_struct work;
	int index;
};

static struct order_item order_items[ORDER_ITEMS];
static atomic_t order_seen;
static bool out_of_order;
static DECLARE_COMPLETION(order_done);

static void order_fn(struct work_struct *work)
{
	struct order_item *item = from_work(item, work, work);
	int pos = atomic_inc_return(&order_seen) - 1;

	if (pos != item->index)
		WRITE_ONCE(out_of_order, true);
	pr_info("order item %d ran in position %d on CPU %d\n", item->index,
		pos, smp_processor_id());
	if (pos == ORDER_ITEMS - 1)
		complete(&order_done);
}

/* A delayed BH item: its timer queues it on system_bh_wq when it expires. */
static struct delayed_work later;
static atomic_t later_runs;
static bool later_bad_context;
static DECLARE_COMPLETION(later_ran);

static void later_fn(struct work_struct *work)
{
	atomic_inc(&later_runs);
	if (!in_bh_context())
		WRITE_ONCE(later_bad_context, true);
	pr_info("delayed bh work ran on CPU %d (in_softirq=%d)\n",
		smp_processor_id(), !!in_softirq());
	complete(&later_ran);
}

static bool wait_done(struct completion *done)
{
	return wait_for_completion_timeout(done,
			msecs_to_jiffies(WAIT_LIMIT_MS)) > 0;
}

/*
 * Queue the item on each online CPU in turn (at most MAX_CPUS) with
 * queue_work_on() and note where each run happened.  Returns how many CPUs
 * were tried; ran_on[i] is -1 if the run for cpus[i] did not come in time.
 */
static int queue_on_each_cpu(int *cpus, int *ran_on)
{
	int cpu, n = 0;

	cpus_read_lock();	/* no CPU comes or goes while we walk them */
	for_each_online_cpu(cpu) {
		if (n == MAX_CPUS)
			break;
		cpus[n] = cpu;
		ran_on[n] = -1;
		reinit_completion(&demo.ran);
		/*
		 * Another CPU's BH pool is kicked with an irq_work on that
		 * CPU, which raises the softirq there.
		 */
		if (queue_work_on(cpu, system_bh_wq, &demo.work) &&
		    wait_done(&demo.ran))
			ran_on[n] = READ_ONCE(demo.last_cpu);
		n++;
	}
	cpus_read_unlock();
	return n;
}

static int __init bhwq_demo_init(void)
{
	bool first_ran, double_ran, requeue_ran, order_ran, later_ok;
	bool second_queued, queued_while_disabled, dropped_ret;
	bool each_cpu_ok = true;
	int cpu, first_cpu, first_runs, double_runs, requeue_runs;
	int cpus[MAX_CPUS], ran_on[MAX_CPUS], nr_cpus;
	int disabled_runs, i;
	struct ktap t;

	INIT_WORK(&demo.work, demo_work_fn);
	init_completion(&demo.ran);
	init_completion(&demo.requeue_done);

	/* 1. Queue it once, from a known CPU. */
	cpu = get_cpu();
	queue_work(system_bh_wq, &demo.work);
	put_cpu();
	first_ran = wait_done(&demo.ran);
	first_cpu = READ_ONCE(demo.last_cpu);
	msleep(QUIET_MS);
	first_runs = atomic_read(&demo.runs);

	/*
	 * 2. Queue it twice before it can run.  The second queue_work()
	 *    finds the item pending and returns false.  Also queue three
	 *    other items: on one CPU, BH items run in queueing order.
	 */
	reinit_completion(&demo.ran);
	for (i = 0; i < ORDER_ITEMS; i++) {
		order_items[i].index = i;
		INIT_WORK(&order_items[i].work, order_fn);
	}
	local_bh_disable();
	queue_work(system_bh_wq, &demo.work);
	second_queued = queue_work(system_bh_wq, &demo.work);
	for (i = 0; i < ORDER_ITEMS; i++)
		queue_work(system_bh_wq, &order_items[i].work);
	local_bh_enable();
	double_ran = wait_done(&demo.ran);
	order_ran = wait_done(&order_done);
	msleep(QUIET_MS);
	double_runs = atomic_read(&demo.runs) - first_runs;

	/* 3. Let the handler queue itself until REQUEUE_RUNS runs are done. */
	demo.requeue_left = REQUEUE_RUNS;
	queue_work(system_bh_wq, &demo.work);
	requeue_ran = wait_done(&demo.requeue_done);
	msleep(QUIET_MS);
	requeue_runs = atomic_read(&demo.runs) - first_runs - double_runs;

	/*
	 * 4. disable_work_sync() cancels the item, waits for a running
	 *    handler and makes queue_work() refuse it until enable_work():
	 *    the work queue's tasklet_disable()/tasklet_enable().
	 */
	disable_work_sync(&demo.work);
	queued_while_disabled = queue_work(system_bh_wq, &demo.work);
	msleep(QUIET_MS);
	disabled_runs = atomic_read(&demo.runs) - first_runs - double_runs -
			requeue_runs;
	enable_work(&demo.work);

	/* 5. Delayed BH work: the timer fires, the handler runs in a softirq. */
	INIT_DELAYED_WORK(&later, later_fn);
	queue_delayed_work(system_bh_wq, &later, msecs_to_jiffies(10));
	later_ok = wait_done(&later_ran);
	queue_delayed_work(system_bh_wq, &later, 10 * HZ);
	dropped_ret = cancel_delayed_work_sync(&later);

	/* 6. Choose the CPU: queue_work_on() puts it on that CPU's BH pool. */
	nr_cpus = queue_on_each_cpu(cpus, ran_on);

	ktap_plan(&t, 10);
	ktap_diag("queued on CPU %d, ran on CPU %d", cpu, first_cpu);
	ktap_check(&t, first_ran && first_runs == 1, "bh_work_ran_once");
	ktap_check(&t, !READ_ONCE(demo.bad_owner), "from_work_finds_the_owner");
	ktap_check(&t, atomic_read(&demo.runs) > 0 && !READ_ONCE(demo.bad_context),
		   "runs_in_softirq_context");
	ktap_check(&t, first_ran && first_cpu == cpu, "runs_on_the_queueing_cpu");
	ktap_diag("queued twice, ran %d time(s)", double_runs);
	ktap_check(&t, double_ran && !second_queued && double_runs == 1,
		   "queued_twice_runs_once");
	ktap_check(&t, order_ran && !READ_ONCE(out_of_order),
		   "runs_in_queueing_order");
	ktap_diag("self-queueing: %d run(s)", requeue_runs);
	ktap_check(&t, requeue_ran && requeue_runs == REQUEUE_RUNS,
		   "queues_itself_again");
	ktap_check(&t, !queued_while_disabled && disabled_runs == 0,
		   "disabled_item_is_not_queued");
	ktap_check(&t, later_ok && !READ_ONCE(later_bad_context) && dropped_ret &&
		       atomic_read(&later_runs) == 1,
		   "delayed_bh_work_runs_or_is_cancelled");
	for (i = 0; i < nr_cpus; i++) {
		ktap_diag("queue_work_on(%d), ran on CPU %d", cpus[i], ran_on[i]);
		each_cpu_ok &= ran_on[i] == cpus[i];
	}
	if (nr_cpus < 2)
		ktap_skip(&t, "queue_work_on_runs_on_that_cpu",
			  "only one CPU is online");
	else
		ktap_check(&t, each_cpu_ok, "queue_work_on_runs_on_that_cpu");
	ktap_finish(&t);
	return 0;
}

static void __exit bhwq_demo_exit(void)
{
	int before = atomic_read(&demo.runs);
	bool was_pending, pending;

	/*
	 * Queue it once more, then stop it for good.  Unlike tasklet_kill(),
	 * disable_work_sync() drops a pending run (and says it was pending),
	 * waits for a running one, and refuses any later queue_work().
	 */
	local_bh_disable();
	queue_work(system_bh_wq, &demo.work);
	was_pending = disable_work_sync(&demo.work);
	local_bh_enable();
	cancel_delayed_work_sync(&later);

	pending = work_pending(&demo.work) || delayed_work_pending(&later);
	pr_info("teardown: runs=%d last_run_dropped=%d pending=%d\n",
		atomic_read(&demo.runs),
		was_pending && atomic_read(&demo.runs) == before, pending);
}

module_init(bhwq_demo_init);
module_exit(bhwq_demo_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("kmodlab");
MODULE_DESCRIPTION("BH work queue: system_bh_wq as a tasklet replacement, softirq context, disable_work");
