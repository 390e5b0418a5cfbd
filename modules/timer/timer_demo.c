// SPDX-License-Identifier: GPL-2.0
/*
 * timer_demo - kernel timers (struct timer_list) on Linux 6.12.
 *
 * A timer calls a function once, at or after a given jiffies value, in
 * softirq context.  This module embeds its timers in structures, sets them
 * up with timer_setup() and finds the structure in the callback with
 * from_timer().  init checks, in a KTAP document:
 *
 *	- a one-shot timer fires, in softirq context, and never early;
 *	- mod_timer() on a waiting timer moves its expiry (and says it was
 *	  pending); timer_delete() takes a waiting timer off;
 *	- a timer that re-arms itself from its callback fires periodically,
 *	  with gaps of at least one period, measured in jiffies;
 *	- after timer_shutdown_sync(), mod_timer() is ignored;
 *	- add_timer_on() fires the timer on the CPU it names, for each
 *	  online CPU.
 *
 * The periodic timer keeps running until the module is unloaded: exit stops
 * it with timer_delete_sync() and prints a "teardown:" line the spec checks.
 *
 * Each callback prints one line per run (the periodic timer for its first
 * PERIODIC_MIN runs only) naming the CPU, so a timeline of the kernel log
 * (kmodlab's --html report) shows where and when the timers fired.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/completion.h>
#include <linux/cpu.h>
#include <linux/cpumask.h>
#include <linux/delay.h>
#include <linux/jiffies.h>
#include <linux/module.h>
#include <linux/preempt.h>
#include <linux/timer.h>

#include <kmodlab/ktap.h>

#define DEMO_MAGIC	0x71e3a1a5u
#define PERIOD_MS	12	/* the periodic timer's period */
#define PERIODIC_MIN	5	/* init watches this many periodic runs */
#define ONESHOT_MS	20
#define FAR_AWAY	(10 * HZ) /* a delay no test waits for: 10 s */
#define WAIT_LIMIT_MS	1000	/* no wait in init lasts longer */
#define MAX_CPUS	8	/* CPUs the add_timer_on() check tries; the guest has 2 */

struct demo_timer {
	unsigned int magic;		/* from_timer() must find this */
	const char *name;		/* for the line each run prints */
	struct timer_list timer;
	atomic_t runs;
	int cpu;			/* where the latest run happened */
	unsigned long period;		/* jiffies; 0 = one-shot */
	unsigned long fired_at[PERIODIC_MIN];	/* jiffies of the first runs */
	unsigned long expires_seen;	/* timer.expires in the first run */
	bool bad_context;
	struct completion fired;	/* the first run (one-shot) or the Nth */
};

/* demo_timer_init() sets each one up, magic number included. */
static struct demo_timer oneshot, moved, deleted, shut, periodic;
static struct demo_timer pinned[MAX_CPUS];	/* one per online CPU */
static int pinned_cpu[MAX_CPUS];		/* the CPU each was put on */
static int nr_pinned;

static bool stopping;		/* set by exit: the periodic timer stops */
static bool bad_owner;		/* from_timer() gave a wrong pointer */

static void demo_timer_fn(struct timer_list *t)
{
	struct demo_timer *d = from_timer(d, t, timer);
	int run;

	if (d->magic != DEMO_MAGIC) {
		WRITE_ONCE(bad_owner, true);
		return;
	}
	run = atomic_inc_return(&d->runs);
	if (run <= PERIODIC_MIN)
		d->fired_at[run - 1] = jiffies;
	if (run == 1)
		d->expires_seen = t->expires;
	/* A softirq cannot move to another CPU: smp_processor_id() is exact. */
	WRITE_ONCE(d->cpu, smp_processor_id());
	/* Timer callbacks run in the TIMER_SOFTIRQ: no sleeping here. */
	if (!(in_serving_softirq() && in_interrupt() && !in_hardirq() &&
	      !in_task()))
		WRITE_ONCE(d->bad_context, true);
	/* The periodic timer runs until unload: teardown counts the rest. */
	if (run <= PERIODIC_MIN)
		pr_info("%s timer run %d on CPU %d (in_softirq=%d)\n", d->name,
			run, d->cpu, !!in_softirq());

	/* Periodic: re-arm relative to now, until exit says stop. */
	if (d->period && !READ_ONCE(stopping))
		mod_timer(t, jiffies + d->period);

	if (run == (d->period ? PERIODIC_MIN : 1))
		complete(&d->fired);
}

static void demo_timer_init(struct demo_timer *d, const char *name,
			    unsigned long period)
{
	d->magic = DEMO_MAGIC;
	d->name = name;
	d->period = period;
	d->cpu = -1;
	atomic_set(&d->runs, 0);
	init_completion(&d->fired);
	timer_setup(&d->timer, demo_timer_fn, 0);
}

static bool wait_done(struct completion *done)
{
	return wait_for_completion_timeout(done,
			msecs_to_jiffies(WAIT_LIMIT_MS)) > 0;
}

static int __init timer_demo_init(void)
{
	unsigned long period = msecs_to_jiffies(PERIOD_MS);
	unsigned long base, far_expiry, moved_expiry, min_gap = ULONG_MAX;
	bool oneshot_ok, periodic_ok, moved_ok;
	int first_mod, second_mod, deleted_ret, shut_mod, i;
	bool deleted_pending, shut_pending, pinned_ok = true;
	struct ktap t;
	int cpu;

	demo_timer_init(&oneshot, "one-shot", 0);
	demo_timer_init(&moved, "moved", 0);
	demo_timer_init(&deleted, "deleted", 0);
	demo_timer_init(&shut, "shut-down", 0);
	demo_timer_init(&periodic, "periodic", period);

	/* The periodic timer starts first and runs in the background. */
	mod_timer(&periodic.timer, jiffies + period);

	/* A one-shot timer. */
	mod_timer(&oneshot.timer, jiffies + msecs_to_jiffies(ONESHOT_MS));

	/*
	 * mod_timer() returns 0 when the timer was not pending and 1 when it
	 * was: either way the timer now expires at the new time.
	 */
	base = jiffies;
	first_mod = mod_timer(&moved.timer, base + FAR_AWAY);
	far_expiry = READ_ONCE(moved.timer.expires);
	second_mod = mod_timer(&moved.timer, jiffies + msecs_to_jiffies(ONESHOT_MS));
	moved_expiry = READ_ONCE(moved.timer.expires);

	/* timer_delete() takes a waiting timer off; it will not fire. */
	mod_timer(&deleted.timer, jiffies + FAR_AWAY);
	deleted_ret = timer_delete(&deleted.timer);
	deleted_pending = timer_pending(&deleted.timer);

	/* After timer_shutdown_sync(), arming the timer is silently ignored. */
	timer_shutdown_sync(&shut.timer);
	shut_mod = mod_timer(&shut.timer, jiffies + 1);
	shut_pending = timer_pending(&shut.timer);

	/*
	 * mod_timer() queues a timer on the CPU that calls it.  add_timer_on()
	 * queues it on the CPU given, and pins it there: it fires on that CPU.
	 */
	cpus_read_lock();	/* no CPU comes or goes while we queue */
	for_each_online_cpu(cpu) {
		struct demo_timer *d;

		if (nr_pinned == MAX_CPUS)
			break;
		d = &pinned[nr_pinned];
		demo_timer_init(d, "pinned", 0);
		d->timer.expires = jiffies + msecs_to_jiffies(ONESHOT_MS);
		add_timer_on(&d->timer, cpu);
		pinned_cpu[nr_pinned++] = cpu;
	}
	cpus_read_unlock();

	oneshot_ok = wait_done(&oneshot.fired);
	moved_ok = wait_done(&moved.fired);
	periodic_ok = wait_done(&periodic.fired);
	for (i = 0; i < nr_pinned; i++)
		pinned_ok &= wait_done(&pinned[i].fired);
	msleep(2 * ONESHOT_MS);		/* time for any unwanted extra run */

	for (i = 1; i < PERIODIC_MIN; i++)
		min_gap = min(min_gap, periodic.fired_at[i] - periodic.fired_at[i - 1]);

	ktap_plan(&t, 9);
	ktap_check(&t, oneshot_ok && atomic_read(&oneshot.runs) == 1,
		   "oneshot_fired_once");
	ktap_check(&t, !READ_ONCE(bad_owner), "from_timer_finds_the_owner");
	ktap_check(&t, oneshot_ok && moved_ok && periodic_ok &&
		       !oneshot.bad_context && !moved.bad_context &&
		       !periodic.bad_context,
		   "runs_in_softirq_context");
	ktap_diag("one-shot: expires %lu, fired at %lu",
		  oneshot.expires_seen, oneshot.fired_at[0]);
	ktap_check(&t, oneshot_ok &&
		       time_after_eq(oneshot.fired_at[0], oneshot.expires_seen),
		   "never_fires_early");
	ktap_diag("moved: expiry T+%ld, after mod_timer T+%ld (returned %d then %d)",
		  (long)(far_expiry - base), (long)(moved_expiry - base),
		  first_mod, second_mod);
	ktap_check(&t, first_mod == 0 && second_mod == 1 &&
		       time_before(moved_expiry, far_expiry) && moved_ok &&
		       atomic_read(&moved.runs) == 1,
		   "mod_timer_moves_the_expiry");
	ktap_check(&t, deleted_ret == 1 && !deleted_pending &&
		       atomic_read(&deleted.runs) == 0,
		   "timer_delete_takes_a_waiting_timer_off");
	ktap_diag("periodic: %d runs, smallest gap %lu jiffies (period %lu, HZ=%d)",
		  atomic_read(&periodic.runs), min_gap, period, HZ);
	ktap_check(&t, periodic_ok && min_gap >= period,
		   "periodic_gaps_at_least_one_period");
	ktap_check(&t, shut_mod == 0 && !shut_pending &&
		       atomic_read(&shut.runs) == 0,
		   "shutdown_timer_cannot_be_armed");
	for (i = 0; i < nr_pinned; i++) {
		ktap_diag("add_timer_on(CPU %d): fired %d time(s), on CPU %d",
			  pinned_cpu[i], atomic_read(&pinned[i].runs),
			  READ_ONCE(pinned[i].cpu));
		pinned_ok &= atomic_read(&pinned[i].runs) == 1 &&
			     READ_ONCE(pinned[i].cpu) == pinned_cpu[i];
	}
	if (nr_pinned < 2)
		ktap_skip(&t, "add_timer_on_fires_on_that_cpu",
			  "only one CPU is online");
	else
		ktap_check(&t, pinned_ok, "add_timer_on_fires_on_that_cpu");
	ktap_finish(&t);
	return 0;
}

static void __exit timer_demo_exit(void)
{
	int was_pending, i;
	bool pending;

	/*
	 * Stop the re-arming first, then delete the timer and wait for a
	 * callback that may be running right now on another CPU.
	 */
	WRITE_ONCE(stopping, true);
	was_pending = timer_delete_sync(&periodic.timer);

	/* The one-shot timers have fired or were taken off; make sure anyway. */
	timer_delete_sync(&oneshot.timer);
	timer_delete_sync(&moved.timer);
	timer_delete_sync(&deleted.timer);
	for (i = 0; i < nr_pinned; i++)
		timer_delete_sync(&pinned[i].timer);

	pending = timer_pending(&periodic.timer) || timer_pending(&oneshot.timer) ||
		  timer_pending(&moved.timer) || timer_pending(&deleted.timer) ||
		  timer_pending(&shut.timer);
	pr_info("teardown: periodic_runs=%d was_pending=%d deleted_runs=%d pending=%d\n",
		atomic_read(&periodic.runs), was_pending,
		atomic_read(&deleted.runs), pending);
}

module_init(timer_demo_init);
module_exit(timer_demo_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("kmodlab");
MODULE_DESCRIPTION("Kernel timers: timer_setup, mod_timer, from_timer, periodic re-arming, timer_delete_sync");
