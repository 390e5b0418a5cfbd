// SPDX-License-Identifier: GPL-2.0
/*
 * lock_demo - spinlocks and a mutex guarding shared counters that several
 * contexts update at the same time, on Linux 6.12.
 *
 * Four counters, each with its own lock and its own set of users:
 *
 *   spin_count   spin_lock()           work items on every CPU (process
 *                                      context only)
 *   bh_count     spin_lock_bh()        the same work items, plus a timer_list
 *                spin_lock() in timer  callback (softirq context)
 *   irq_count    spin_lock_irqsave()   the work items, plus an hrtimer
 *                spin_lock() in hrtimer callback in hard interrupt context
 *   mutex_count  mutex_lock()          the work items, each of which sleeps
 *                                      once while holding the mutex
 *
 * Each counter gets one "round": the timer (if any) is started first, then
 * one work item per online CPU increments until it has done its share and
 * the timer has finished.  Everyone counts their own increments, so the
 * shared total must equal the sum exactly.  init runs the four rounds with
 * bounded waits and prints a KTAP document; exit stops and cancels
 * everything and prints a "teardown:" line.
 *
 * Every worker prints one line when it is done and every timer run prints
 * one line, each naming its CPU, so a timeline of the kernel log (kmodlab's
 * --html report) shows the timers firing while the workers run.
 *
 * The module is clean under lockdep (CONFIG_PROVE_LOCKING) and
 * CONFIG_DEBUG_ATOMIC_SLEEP: every lock is taken the same way everywhere it
 * could be interrupted by one of its other users.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/completion.h>
#include <linux/cpu.h>
#include <linux/cpumask.h>
#include <linux/delay.h>
#include <linux/hrtimer.h>
#include <linux/jiffies.h>
#include <linux/ktime.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/preempt.h>
#include <linux/sched.h>
#include <linux/smp.h>
#include <linux/spinlock.h>
#include <linux/timer.h>
#include <linux/workqueue.h>

#include <kmodlab/ktap.h>

#define MAX_WORKERS		8	/* work items at most; the guest has 2 CPUs */
#define WORKER_MIN_ITERS	2000	/* increments per work item, at least */
#define MUTEX_ITERS		500	/* increments per work item in the mutex round */
#define TIMER_FIRES		5	/* how often a timer callback runs per round */
#define TIMER_ITERS		200	/* increments per timer callback */
#define ROUND_LIMIT_MS		1000	/* workers give up after this long */
#define WAIT_LIMIT_MS		2000	/* no wait in init lasts longer than this */

enum round_kind { ROUND_SPIN, ROUND_BH, ROUND_IRQ, ROUND_MUTEX, NR_ROUNDS };

static const char *const round_names[NR_ROUNDS] = {
	"spin_lock", "spin_lock_bh", "spin_lock_irqsave", "mutex_lock",
};

/* Each lock guards the counter below it, and nothing else. */
static DEFINE_SPINLOCK(spin_only_lock);
static unsigned long spin_count;

static DEFINE_SPINLOCK(bh_lock);
static unsigned long bh_count;

static DEFINE_SPINLOCK(irq_lock);
static unsigned long irq_count;

static DEFINE_MUTEX(count_mutex);
static unsigned long mutex_count;
static atomic_t mutex_sleeps;	/* msleep() calls made while holding the mutex */

/* ------------------------------------------------ the locked operations */

/*
 * Only work items take spin_only_lock, and none of them ever runs in an
 * interrupt, so plain spin_lock() is enough: whoever holds it can only be
 * made to wait by another CPU, which spins until it is released.
 */
static noinline void spin_add(void)
{
	spin_lock(&spin_only_lock);
	spin_count++;
	spin_unlock(&spin_only_lock);
}

/*
 * bh_lock is also taken by a timer callback, which runs in softirq context.
 * If that softirq ran on this CPU while this task held the lock, the
 * callback would spin forever on a lock its own CPU can never release.
 * _bh disables softirqs on this CPU for as long as the lock is held.
 */
static noinline void bh_add_from_task(void)
{
	spin_lock_bh(&bh_lock);
	bh_count++;
	spin_unlock_bh(&bh_lock);
}

/* In the timer callback softirqs are already off on this CPU: spin_lock(). */
static noinline void bh_add_from_timer(void)
{
	spin_lock(&bh_lock);
	bh_count++;
	spin_unlock(&bh_lock);
}

/*
 * irq_lock is also taken in hard interrupt context (the hrtimer callback),
 * so a task must disable interrupts on its CPU while it holds the lock.
 * _irqsave saves the previous interrupt state in flags and _irqrestore puts
 * it back, so this is correct even if the caller had interrupts disabled.
 */
static noinline void irq_add_from_task(void)
{
	unsigned long flags;

	spin_lock_irqsave(&irq_lock, flags);
	irq_count++;
	spin_unlock_irqrestore(&irq_lock, flags);
}

/* In a hard interrupt handler interrupts are already off: spin_lock(). */
static noinline void irq_add_from_hardirq(void)
{
	spin_lock(&irq_lock);
	irq_count++;
	spin_unlock(&irq_lock);
}

/*
 * A mutex may be held across a sleep: a task that finds it taken sleeps
 * too, instead of spinning.  Only process context may take a mutex.
 */
static noinline void mutex_add(bool nap)
{
	mutex_lock(&count_mutex);
	mutex_count++;
	if (nap) {
		msleep(1);
		atomic_inc(&mutex_sleeps);
	}
	mutex_unlock(&count_mutex);
}

/* ------------------------------------------------------- work items */

struct worker {
	struct work_struct work;
	int cpu;		/* the CPU it is queued on */
	int ran_on;		/* the CPU it ran on */
	unsigned long iters;	/* increments it made */
};

static struct worker workers[MAX_WORKERS];
static int nr_workers;

static enum round_kind round_kind;
static unsigned long round_deadline;	/* jiffies: workers stop here regardless */
static bool timer_side_done;		/* the round's timer has fired its last */
static bool stopping;			/* set by exit: no timer re-arms */
static atomic_t workers_left;
static DECLARE_COMPLETION(workers_done);

static void worker_fn(struct work_struct *work)
{
	struct worker *w = container_of(work, struct worker, work);
	unsigned long min = round_kind == ROUND_MUTEX ? MUTEX_ITERS : WORKER_MIN_ITERS;
	unsigned long n = 0;

	w->ran_on = raw_smp_processor_id();
	/*
	 * Keep going until our share is done and the timer (if any) has
	 * finished, so that the two contexts really overlap.
	 */
	while (!(n >= min && READ_ONCE(timer_side_done)) &&
	       time_before(jiffies, round_deadline)) {
		switch (round_kind) {
		case ROUND_SPIN:
			spin_add();
			break;
		case ROUND_BH:
			bh_add_from_task();
			break;
		case ROUND_IRQ:
			irq_add_from_task();
			break;
		default:
			mutex_add(n == min / 2);
			break;
		}
		n++;
		if (!(n % 256))
			cond_resched();	/* the kernel is not preemptible here */
	}
	w->iters = n;
	/* A per-CPU kworker stays on its CPU: ran_on is exact. */
	pr_info("%s round: worker for CPU %d done on CPU %d, %lu increments\n",
		round_names[round_kind], w->cpu, w->ran_on, n);
	if (atomic_dec_and_test(&workers_left))
		complete(&workers_done);
}

/* ---------------------------------------------------- the timer sides */

static struct timer_list bh_timer;
static struct hrtimer irq_timer;
static atomic_t timer_fires;
static bool timer_wrong_context;
static DECLARE_COMPLETION(timer_first_fire);

/* Counts a timer run; true if the timer should run again. */
static bool timer_fired(const char *timer, bool right_context)
{
	int fires = atomic_inc_return(&timer_fires);

	if (!right_context)
		WRITE_ONCE(timer_wrong_context, true);
	/*
	 * TIMER_FIRES runs per round: a line each.  No lock is held here.
	 * A hard interrupt may have interrupted a softirq, so ask for the
	 * innermost context first.
	 */
	pr_info("%s run %d on CPU %d in %s context\n", timer, fires,
		smp_processor_id(), in_hardirq() ? "hardirq" :
		in_serving_softirq() ? "softirq" : "task");
	if (fires == 1)
		complete(&timer_first_fire);
	if (fires < TIMER_FIRES && !READ_ONCE(stopping))
		return true;
	WRITE_ONCE(timer_side_done, true);
	return false;
}

/* A timer_list callback runs in softirq context (TIMER_SOFTIRQ). */
static void bh_timer_fn(struct timer_list *t)
{
	int i;

	for (i = 0; i < TIMER_ITERS; i++)
		bh_add_from_timer();
	if (timer_fired("timer_list", in_serving_softirq() && !in_hardirq()))
		mod_timer(t, jiffies + 1);
}

/* HRTIMER_MODE_REL_HARD: this callback runs in hard interrupt context. */
static enum hrtimer_restart irq_timer_fn(struct hrtimer *t)
{
	int i;

	for (i = 0; i < TIMER_ITERS; i++)
		irq_add_from_hardirq();
	if (!timer_fired("hrtimer", in_hardirq()))
		return HRTIMER_NORESTART;
	hrtimer_forward_now(t, ms_to_ktime(1));
	return HRTIMER_RESTART;
}

/* ----------------------------------------------------------- rounds */

struct round_result {
	bool timer_started;	/* the timer fired once before the workers began */
	bool finished;		/* all workers returned in time */
	bool on_own_cpus;	/* every worker ran on the CPU it was queued on */
	int fires;		/* timer runs */
	unsigned long total;	/* the shared counter at the end */
	unsigned long expected;	/* everyone's own counts added up */
	s64 ms;
};

static void run_round(enum round_kind kind, unsigned long *counter,
		      struct round_result *r)
{
	bool has_timer = kind == ROUND_BH || kind == ROUND_IRQ;
	ktime_t start = ktime_get();
	int i;

	round_kind = kind;
	round_deadline = jiffies + msecs_to_jiffies(ROUND_LIMIT_MS);
	WRITE_ONCE(timer_side_done, !has_timer);
	atomic_set(&timer_fires, 0);
	atomic_set(&workers_left, nr_workers);
	reinit_completion(&workers_done);
	reinit_completion(&timer_first_fire);

	/*
	 * The timer goes first and must have fired once before the workers
	 * start: that way its context is known to lockdep from the start.
	 */
	if (kind == ROUND_BH)
		mod_timer(&bh_timer, jiffies + 1);
	else if (kind == ROUND_IRQ)
		hrtimer_start(&irq_timer, ms_to_ktime(1), HRTIMER_MODE_REL_HARD);
	r->timer_started = !has_timer ||
		wait_for_completion_timeout(&timer_first_fire,
				msecs_to_jiffies(WAIT_LIMIT_MS)) > 0;

	for (i = 0; i < nr_workers; i++)
		queue_work_on(workers[i].cpu, system_wq, &workers[i].work);
	r->finished = wait_for_completion_timeout(&workers_done,
			msecs_to_jiffies(WAIT_LIMIT_MS)) > 0;

	/* Normally both have stopped on their own; make sure. */
	if (kind == ROUND_BH)
		timer_delete_sync(&bh_timer);
	else if (kind == ROUND_IRQ)
		hrtimer_cancel(&irq_timer);

	r->ms = ktime_ms_delta(ktime_get(), start);
	r->fires = atomic_read(&timer_fires);
	r->expected = (unsigned long)r->fires * TIMER_ITERS;
	r->on_own_cpus = r->finished;
	for (i = 0; r->finished && i < nr_workers; i++) {
		r->expected += workers[i].iters;
		r->on_own_cpus &= workers[i].ran_on == workers[i].cpu;
	}
	r->total = *counter;	/* every user has stopped: no lock needed */

	if (nr_workers >= 2)
		ktap_diag("%-17s: total %lu, expected %lu (workers %lu + %lu, timer %d x %d) in %lld ms",
			  round_names[kind], r->total, r->expected,
			  workers[0].iters, workers[1].iters, r->fires,
			  has_timer ? TIMER_ITERS : 0, r->ms);
	else
		ktap_diag("%-17s: total %lu, expected %lu in %lld ms",
			  round_names[kind], r->total, r->expected, r->ms);
}

static bool exact(const struct round_result *r)
{
	return r->timer_started && r->finished && r->total == r->expected;
}

/* ------------------------------------------------------ init and exit */

static int __init lock_demo_init(void)
{
	struct round_result res[NR_ROUNDS] = {};
	bool all_on_own_cpus = true;
	struct ktap t;
	int cpu, k;

	timer_setup(&bh_timer, bh_timer_fn, 0);
	hrtimer_init(&irq_timer, CLOCK_MONOTONIC, HRTIMER_MODE_REL_HARD);
	irq_timer.function = irq_timer_fn;

	cpus_read_lock();
	for_each_online_cpu(cpu) {
		if (nr_workers == MAX_WORKERS)
			break;
		INIT_WORK(&workers[nr_workers].work, worker_fn);
		workers[nr_workers].cpu = cpu;
		nr_workers++;
	}
	cpus_read_unlock();

	ktap_plan(&t, 8);
	ktap_diag("%d worker(s), one per online CPU", nr_workers);

	run_round(ROUND_SPIN, &spin_count, &res[ROUND_SPIN]);
	ktap_check(&t, exact(&res[ROUND_SPIN]), "spin_lock_total_exact");

	WRITE_ONCE(timer_wrong_context, false);
	run_round(ROUND_BH, &bh_count, &res[ROUND_BH]);
	ktap_check(&t, exact(&res[ROUND_BH]), "spin_lock_bh_total_exact");
	ktap_check(&t, res[ROUND_BH].fires == TIMER_FIRES &&
		       !READ_ONCE(timer_wrong_context), "timer_list_ran_in_softirq");

	WRITE_ONCE(timer_wrong_context, false);
	run_round(ROUND_IRQ, &irq_count, &res[ROUND_IRQ]);
	ktap_check(&t, exact(&res[ROUND_IRQ]), "spin_lock_irqsave_total_exact");
	ktap_check(&t, res[ROUND_IRQ].fires == TIMER_FIRES &&
		       !READ_ONCE(timer_wrong_context), "hrtimer_ran_in_hardirq");

	run_round(ROUND_MUTEX, &mutex_count, &res[ROUND_MUTEX]);
	ktap_check(&t, exact(&res[ROUND_MUTEX]), "mutex_total_exact");
	ktap_check(&t, res[ROUND_MUTEX].finished &&
		       atomic_read(&mutex_sleeps) == nr_workers,
		   "mutex_held_across_sleep");

	for (k = 0; k < NR_ROUNDS; k++)
		all_on_own_cpus &= res[k].on_own_cpus;
	ktap_check(&t, all_on_own_cpus, "workers_ran_on_every_cpu");

	ktap_finish(&t);
	return 0;
}

static void __exit lock_demo_exit(void)
{
	bool idle;
	int i;

	/* 1. No timer callback re-arms from now on. */
	WRITE_ONCE(stopping, true);

	/*
	 * 2. Stop the timers for good and wait for running callbacks.
	 *    timer_shutdown_sync() also makes later mod_timer() calls no-ops.
	 */
	timer_shutdown_sync(&bh_timer);
	hrtimer_cancel(&irq_timer);

	/* 3. A round that timed out in init may still have workers running. */
	for (i = 0; i < nr_workers; i++)
		cancel_work_sync(&workers[i].work);

	idle = !timer_pending(&bh_timer) && !hrtimer_active(&irq_timer) &&
	       !spin_is_locked(&spin_only_lock) && !spin_is_locked(&bh_lock) &&
	       !spin_is_locked(&irq_lock) && !mutex_is_locked(&count_mutex);

	pr_info("teardown: spin=%lu bh=%lu irq=%lu mutex=%lu idle=%d\n",
		spin_count, bh_count, irq_count, mutex_count, idle);
}

module_init(lock_demo_init);
module_exit(lock_demo_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("kmodlab");
MODULE_DESCRIPTION("spin_lock, spin_lock_bh, spin_lock_irqsave and a mutex, hammered from several contexts");
