// SPDX-License-Identifier: GPL-2.0
/*
 * dwork_demo - delayed work and the shape of a work queue on Linux 6.12.
 *
 * Part 1, concurrency.  Four queues each get PROBE_ITEMS items that sleep
 * for PROBE_HOLD_MS.  Every item counts how many items of its own queue
 * run at the same moment, and the highest count (the "peak") is what the
 * queue allowed:
 *	an ordered queue (alloc_ordered_workqueue)	-> 1, in queueing order
 *	unbound, max_active = 1				-> 1
 *	unbound, max_active = 2				-> 2
 *	unbound, max_active = 0 (the default, 256)	-> more than 2
 *
 * Part 2, delayed work.  A delayed item that re-arms itself (the gaps are
 * measured in jiffies), queue_delayed_work() versus mod_delayed_work() on
 * an item that is already waiting (its timer's expiry is read before and
 * after), flush versus cancel on a waiting item, and cancel versus
 * cancel_sync on a running one.
 *
 * A "tick" keeps re-arming itself until the module is unloaded; exit stops
 * it, destroys the queue and prints one "teardown:" line that the spec
 * checks.
 *
 * Each handler prints one line when it runs (the tick only the first
 * time), naming the CPU, so a timeline of the kernel log (kmodlab's --html
 * report) shows the probe items overlap, or not, and the delays.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/completion.h>
#include <linux/delay.h>
#include <linux/jiffies.h>
#include <linux/ktime.h>
#include <linux/module.h>
#include <linux/workqueue.h>

#include <kmodlab/ktap.h>

#define PROBE_ITEMS	4	/* items queued on each probed queue */
#define PROBE_HOLD_MS	25	/* how long each of them sleeps */
#define REARM_MS	10	/* the re-arming item's period */
#define REARM_RUNS	4	/* ... and how often it runs */
#define MOVED_MS	20	/* mod_delayed_work() moves an expiry to this */
#define TICK_MS		20	/* the tick that lives until exit */
#define FAR_AWAY	(10 * HZ) /* a delay no test waits for: 10 s */
#define WAIT_LIMIT_MS	1000	/* no wait in init lasts longer */

/* ---- Part 1: how many items of one queue run at once ---------------- */

struct probe;

struct probe_item {
	struct work_struct work;
	struct probe *probe;
	int index;		/* position in the queueing order */
};

struct probe {
	const char *name;
	unsigned int flags;
	int max_active;
	bool ordered;
	struct workqueue_struct *wq;
	atomic_t running;	/* items of this queue running right now */
	atomic_t peak;		/* the most that ever ran at once */
	atomic_t started;	/* items that have started, for the order */
	atomic_t finished;
	bool out_of_order;	/* some item started before an earlier one */
	struct completion all_done;
	struct probe_item items[PROBE_ITEMS];
};

static struct probe probes[] = {
	{ .name = "kmodlab_ordered", .ordered = true },
	{ .name = "kmodlab_max1", .flags = WQ_UNBOUND, .max_active = 1 },
	{ .name = "kmodlab_max2", .flags = WQ_UNBOUND, .max_active = 2 },
	{ .name = "kmodlab_dflt", .flags = WQ_UNBOUND, .max_active = 0 },
};

enum { P_ORDERED, P_MAX1, P_MAX2, P_DEFAULT };

static void probe_fn(struct work_struct *work)
{
	struct probe_item *item = container_of(work, struct probe_item, work);
	struct probe *p = item->probe;
	int order = atomic_inc_return(&p->started) - 1;
	int now = atomic_inc_return(&p->running);
	int peak = atomic_read(&p->peak);

	/*
	 * Unbound workers may change CPUs when they sleep: the CPU printed
	 * is where this item starts.
	 */
	pr_info("%s: item %d starts on CPU %d, %d of the queue's items running\n",
		p->name, item->index, raw_smp_processor_id(), now);

	if (order != item->index)
		WRITE_ONCE(p->out_of_order, true);
	/* Raise the peak to "now" unless another item already raised it. */
	while (now > peak && !atomic_try_cmpxchg(&p->peak, &peak, now))
		;

	msleep(PROBE_HOLD_MS);		/* stay busy, so others can overlap */

	atomic_dec(&p->running);
	if (atomic_inc_return(&p->finished) == PROBE_ITEMS)
		complete(&p->all_done);
}

static int probe_start(struct probe *p)
{
	int i;

	if (p->ordered)
		p->wq = alloc_ordered_workqueue("%s", 0, p->name);
	else
		p->wq = alloc_workqueue("%s", p->flags, p->max_active, p->name);
	if (!p->wq)
		return -ENOMEM;
	init_completion(&p->all_done);
	for (i = 0; i < PROBE_ITEMS; i++) {
		p->items[i].probe = p;
		p->items[i].index = i;
		INIT_WORK(&p->items[i].work, probe_fn);
		queue_work(p->wq, &p->items[i].work);
	}
	return 0;
}

/* ---- Part 2: delayed items on our own queue ------------------------- */

static struct workqueue_struct *dwq;	/* "kmodlab_dwork", unbound */

/* A delayed item that counts its runs. */
struct counted {
	const char *name;
	struct delayed_work dwork;
	atomic_t runs;
	struct completion ran;
};

static struct counted rearm;	/* re-arms itself REARM_RUNS - 1 times */
static struct counted moved;	/* queued far away, then mod_delayed_work */
static struct counted flushed;	/* queued far away, then flushed */
static struct counted dropped;	/* queued far away, then cancelled */
static struct counted tick;	/* re-arms itself until exit */

static unsigned long rearm_jiffies[REARM_RUNS];
static bool stopping;		/* set by exit: the tick stops re-arming */

static void counted_fn(struct work_struct *work)
{
	struct counted *c = container_of(to_delayed_work(work),
					 struct counted, dwork);

	pr_info("%s item runs on CPU %d\n", c->name, raw_smp_processor_id());
	atomic_inc(&c->runs);
	complete(&c->ran);
}

static void rearm_fn(struct work_struct *work)
{
	struct delayed_work *dwork = to_delayed_work(work);
	int run = atomic_inc_return(&rearm.runs);

	rearm_jiffies[run - 1] = jiffies;
	if (run == 1)
		pr_info("rearm item run 1 on CPU %d\n", raw_smp_processor_id());
	else
		pr_info("rearm item run %d on CPU %d, %lu jiffies after run %d\n",
			run, raw_smp_processor_id(),
			rearm_jiffies[run - 1] - rearm_jiffies[run - 2], run - 1);
	if (run < REARM_RUNS)
		queue_delayed_work(dwq, dwork, msecs_to_jiffies(REARM_MS));
	else
		complete(&rearm.ran);
}

static void tick_fn(struct work_struct *work)
{
	/* It runs until unload: the teardown line counts the later runs. */
	if (atomic_inc_return(&tick.runs) == 1)
		pr_info("tick run 1 on CPU %d; it re-arms every %d ms until unload\n",
			raw_smp_processor_id(), TICK_MS);
	if (!READ_ONCE(stopping))
		queue_delayed_work(dwq, to_delayed_work(work),
				   msecs_to_jiffies(TICK_MS));
}

/*
 * The "blocker" runs as soon as it is queued and then waits for init to
 * release it, so init knows for sure that it is running (and not yet
 * finished) when it cancels it.
 */
static struct delayed_work blocker;
static DECLARE_COMPLETION(blocker_started);
static DECLARE_COMPLETION(blocker_release);
static bool blocker_finished;

static void blocker_fn(struct work_struct *work)
{
	pr_info("blocker starts on CPU %d and waits for init\n",
		raw_smp_processor_id());
	complete(&blocker_started);
	wait_for_completion_timeout(&blocker_release,
				    msecs_to_jiffies(WAIT_LIMIT_MS));
	msleep(20);			/* still busy a little after release */
	WRITE_ONCE(blocker_finished, true);
}

static void counted_init(struct counted *c, const char *name, work_func_t fn)
{
	c->name = name;
	INIT_DELAYED_WORK(&c->dwork, fn);
	atomic_set(&c->runs, 0);
	init_completion(&c->ran);
}

/* Bounded wait: true if @done completed within WAIT_LIMIT_MS. */
static bool wait_done(struct completion *done)
{
	return wait_for_completion_timeout(done,
			msecs_to_jiffies(WAIT_LIMIT_MS)) > 0;
}

static int __init dwork_demo_init(void)
{
	ktime_t start = ktime_get(), t0;
	unsigned long base, far_expiry, again_expiry, moved_expiry;
	unsigned long min_gap = ULONG_MAX;
	bool again_queued, mod_was_pending, moved_ran;
	bool flush_ret, flushed_pending, dropped_ret, dropped_pending;
	bool blocker_ran, cancel_ret, finished_after_cancel, finished_after_sync;
	bool probes_done = true;
	bool rearm_done;
	int flushed_runs, i, err;
	s64 flush_ms;
	struct ktap t;

	dwq = alloc_workqueue("kmodlab_dwork", WQ_UNBOUND, 0);
	if (!dwq)
		return -ENOMEM;

	/* Part 1 runs in the background while part 2 goes on. */
	for (i = 0; i < ARRAY_SIZE(probes); i++) {
		err = probe_start(&probes[i]);
		if (err)
			goto undo;
	}

	counted_init(&rearm, "rearm", rearm_fn);
	counted_init(&moved, "moved", counted_fn);
	counted_init(&flushed, "flushed", counted_fn);
	counted_init(&dropped, "dropped", counted_fn);
	counted_init(&tick, "tick", tick_fn);
	INIT_DELAYED_WORK(&blocker, blocker_fn);

	queue_delayed_work(dwq, &tick.dwork, msecs_to_jiffies(TICK_MS));
	queue_delayed_work(dwq, &rearm.dwork, msecs_to_jiffies(REARM_MS));

	/*
	 * queue_delayed_work() on an item that is already waiting does
	 * nothing (and says so); mod_delayed_work() moves its timer.
	 */
	base = jiffies;
	queue_delayed_work(dwq, &moved.dwork, FAR_AWAY);
	far_expiry = READ_ONCE(moved.dwork.timer.expires);
	again_queued = queue_delayed_work(dwq, &moved.dwork, 1);
	again_expiry = READ_ONCE(moved.dwork.timer.expires);
	mod_was_pending = mod_delayed_work(dwq, &moved.dwork,
					   msecs_to_jiffies(MOVED_MS));
	moved_expiry = READ_ONCE(moved.dwork.timer.expires);
	moved_ran = wait_done(&moved.ran);

	/* flush: a waiting item runs now, and flush waits until it is done. */
	queue_delayed_work(dwq, &flushed.dwork, FAR_AWAY);
	t0 = ktime_get();
	flush_ret = flush_delayed_work(&flushed.dwork);
	flush_ms = ktime_ms_delta(ktime_get(), t0);
	flushed_runs = atomic_read(&flushed.runs);
	flushed_pending = delayed_work_pending(&flushed.dwork);

	/* cancel: a waiting item is dropped and never runs. */
	queue_delayed_work(dwq, &dropped.dwork, FAR_AWAY);
	dropped_ret = cancel_delayed_work_sync(&dropped.dwork);
	dropped_pending = delayed_work_pending(&dropped.dwork);

	/*
	 * cancel_delayed_work() on a running item: it is not pending, so
	 * there is nothing to remove, and the call returns at once.
	 */
	queue_delayed_work(dwq, &blocker, 0);
	blocker_ran = wait_done(&blocker_started);
	cancel_ret = cancel_delayed_work(&blocker);
	finished_after_cancel = READ_ONCE(blocker_finished);
	/* The _sync variant waits until the running handler has returned. */
	complete(&blocker_release);
	cancel_delayed_work_sync(&blocker);
	finished_after_sync = READ_ONCE(blocker_finished);

	rearm_done = wait_done(&rearm.ran);
	for (i = 1; i < REARM_RUNS; i++)
		min_gap = min(min_gap, rearm_jiffies[i] - rearm_jiffies[i - 1]);

	for (i = 0; i < ARRAY_SIZE(probes); i++)
		probes_done &= wait_done(&probes[i].all_done);

	ktap_plan(&t, 12);

	for (i = 0; i < ARRAY_SIZE(probes); i++)
		ktap_diag("%s: peak %d of %d items at once, %s", probes[i].name,
			  atomic_read(&probes[i].peak), PROBE_ITEMS,
			  probes[i].out_of_order ? "out of order" : "in order");
	ktap_check(&t, probes_done && atomic_read(&probes[P_ORDERED].peak) == 1,
		   "ordered_never_overlaps");
	ktap_check(&t, probes_done && !probes[P_ORDERED].out_of_order,
		   "ordered_runs_in_queueing_order");
	ktap_check(&t, probes_done && atomic_read(&probes[P_MAX1].peak) == 1,
		   "max_active_1_runs_one_at_a_time");
	ktap_check(&t, probes_done && atomic_read(&probes[P_MAX2].peak) == 2,
		   "max_active_2_runs_two_at_a_time");
	ktap_check(&t, probes_done && atomic_read(&probes[P_DEFAULT].peak) > 2,
		   "default_limit_runs_more_than_2");

	ktap_diag("re-armed item: %d runs, smallest gap %lu jiffies (period %lu)",
		  atomic_read(&rearm.runs), min_gap,
		  msecs_to_jiffies(REARM_MS));
	ktap_check(&t, rearm_done && min_gap >= msecs_to_jiffies(REARM_MS),
		   "rearm_gaps_at_least_one_period");

	ktap_diag("moved item: queued to expire at T+%ld jiffies, queued again: T+%ld, moved: T+%ld",
		  (long)(far_expiry - base), (long)(again_expiry - base),
		  (long)(moved_expiry - base));
	ktap_check(&t, !again_queued && again_expiry == far_expiry,
		   "queue_again_keeps_the_expiry");
	ktap_check(&t, mod_was_pending && time_before(moved_expiry, far_expiry) &&
		       moved_ran && atomic_read(&moved.runs) == 1,
		   "mod_delayed_work_moves_the_expiry");

	ktap_diag("flush took %lld ms", flush_ms);
	ktap_check(&t, flush_ret && flushed_runs == 1 && !flushed_pending &&
		       flush_ms < WAIT_LIMIT_MS,
		   "flush_runs_a_waiting_item_now");
	ktap_check(&t, dropped_ret && !dropped_pending &&
		       atomic_read(&dropped.runs) == 0,
		   "cancel_drops_a_waiting_item");
	ktap_check(&t, blocker_ran && !cancel_ret && !finished_after_cancel,
		   "cancel_does_not_wait_for_a_running_item");
	ktap_check(&t, blocker_ran && finished_after_sync,
		   "cancel_sync_waits_for_a_running_item");

	ktap_diag("init took %lld ms", ktime_ms_delta(ktime_get(), start));
	ktap_finish(&t);

	/* The probe queues are idle now; destroy_workqueue() would drain them anyway. */
	for (i = 0; i < ARRAY_SIZE(probes); i++)
		destroy_workqueue(probes[i].wq);
	return 0;

undo:
	while (--i >= 0)
		destroy_workqueue(probes[i].wq);
	destroy_workqueue(dwq);
	return err;
}

static void __exit dwork_demo_exit(void)
{
	bool tick_was_pending, pending;

	/* The tick must not re-arm once we start tearing down. */
	WRITE_ONCE(stopping, true);
	tick_was_pending = cancel_delayed_work_sync(&tick.dwork);
	/*
	 * The other items have run or were cancelled in init, unless a check
	 * failed: cancel them all, so that no timer of ours outlives the
	 * module (destroy_workqueue() does not cancel delayed work whose
	 * timer has not fired yet).
	 */
	cancel_delayed_work_sync(&rearm.dwork);
	cancel_delayed_work_sync(&moved.dwork);
	cancel_delayed_work_sync(&flushed.dwork);
	cancel_delayed_work_sync(&dropped.dwork);
	cancel_delayed_work_sync(&blocker);

	pending = delayed_work_pending(&tick.dwork) ||
		  delayed_work_pending(&rearm.dwork) ||
		  delayed_work_pending(&moved.dwork) ||
		  delayed_work_pending(&flushed.dwork) ||
		  delayed_work_pending(&dropped.dwork) ||
		  delayed_work_pending(&blocker);

	destroy_workqueue(dwq);

	pr_info("teardown: ticks=%d tick_was_pending=%d dropped_runs=%d pending=%d\n",
		atomic_read(&tick.runs), tick_was_pending,
		atomic_read(&dropped.runs), pending);
}

module_init(dwork_demo_init);
module_exit(dwork_demo_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("kmodlab");
MODULE_DESCRIPTION("Delayed work, re-arming, mod/flush/cancel, ordered queues and max_active observed");
