// SPDX-License-Identifier: GPL-2.0
/*
 * hrtimer_demo - high-resolution timers on Linux 6.12.
 *
 * An hrtimer expires at a ktime_t (nanoseconds), not at a jiffy.  The
 * callback returns HRTIMER_RESTART to run again (after moving its own
 * expiry forward with hrtimer_forward_now()) or HRTIMER_NORESTART to stop.
 * init checks, in a KTAP document:
 *
 *	- a timer started with HRTIMER_MODE_REL runs its callback in hardirq
 *	  context; one started with HRTIMER_MODE_REL_SOFT runs it in softirq
 *	  context;
 *	- a callback that restarts itself PULSES times, then returns
 *	  HRTIMER_NORESTART, runs exactly PULSES times, never before its
 *	  k-th expiry (start + k * period), and is then inactive; the
 *	  intervals, measured with ktime_get(), are printed;
 *	- hrtimer_cancel() takes a waiting timer off before it fires;
 *	- a timer started in HRTIMER_MODE_REL_PINNED fires on the CPU that
 *	  started it, for each online CPU (smp_call_function_single() runs
 *	  the start on that CPU).
 *
 * A "heartbeat" hrtimer restarts itself until the module is unloaded: exit
 * stops it with hrtimer_cancel() and prints a "teardown:" line the spec
 * checks.
 *
 * Each callback prints one line per run (the heartbeat for its first
 * HEARTBEAT_PRINTS runs only) naming the CPU and the context, so a
 * timeline of the kernel log (kmodlab's --html report) shows where and
 * when the timers fired.
 *
 * Times under QEMU's emulation are coarse and jittery, so the checks only
 * use lower bounds (a timer never fires early) and generous upper bounds.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/completion.h>
#include <linux/cpu.h>
#include <linux/cpumask.h>
#include <linux/delay.h>
#include <linux/hrtimer.h>
#include <linux/ktime.h>
#include <linux/module.h>
#include <linux/preempt.h>
#include <linux/smp.h>

#include <kmodlab/ktap.h>

#define PULSE_US	5000	/* the pulse timer's period: 5 ms */
#define PULSE_PERIOD	ns_to_ktime(PULSE_US * NSEC_PER_USEC)
#define PULSES		6	/* callbacks before it returns NORESTART */
#define HEARTBEAT_MS	10	/* the heartbeat's period */
#define FAR_AWAY_S	10	/* a delay no test waits for */
#define WAIT_LIMIT_MS	1000	/* no wait in init lasts longer */
#define QUIET_MS	20	/* how long init watches for unwanted extra runs */
#define HEARTBEAT_PRINTS 3	/* heartbeat runs that get a line */
#define MAX_CPUS	8	/* CPUs the pinned check tries; the guest has 2 */

/* The pulse: restarts itself until it has run PULSES times. */
static struct hrtimer pulse;
static ktime_t pulse_start;
static ktime_t pulse_at[PULSES];
static atomic_t pulse_runs;
static u64 pulse_overruns;
static bool pulse_bad_context;
static DECLARE_COMPLETION(pulse_done);

static enum hrtimer_restart pulse_fn(struct hrtimer *t)
{
	int run = atomic_inc_return(&pulse_runs);

	if (run <= PULSES)
		pulse_at[run - 1] = ktime_get();
	/* HRTIMER_MODE_REL (not _SOFT): the callback runs in a hard interrupt. */
	if (!(in_hardirq() && !in_task()))
		WRITE_ONCE(pulse_bad_context, true);
	/* An interrupt handler cannot move: smp_processor_id() is exact. */
	pr_info("pulse run %d on CPU %d (in_hardirq=%d)\n", run,
		smp_processor_id(), !!in_hardirq());

	if (run >= PULSES) {
		complete(&pulse_done);
		return HRTIMER_NORESTART;
	}
	/*
	 * Move the expiry one period past the previous one (more if we are
	 * late: the return value counts the periods skipped), then ask the
	 * core to queue the timer again.
	 */
	pulse_overruns += hrtimer_forward_now(t, PULSE_PERIOD) - 1;
	return HRTIMER_RESTART;
}

/* A one-shot soft timer: the same API, the callback runs in a softirq. */
static struct hrtimer soft;
static atomic_t soft_runs;
static bool soft_bad_context;
static DECLARE_COMPLETION(soft_done);

static enum hrtimer_restart soft_fn(struct hrtimer *t)
{
	atomic_inc(&soft_runs);
	if (!(in_serving_softirq() && !in_hardirq() && !in_task()))
		WRITE_ONCE(soft_bad_context, true);
	pr_info("soft timer run on CPU %d (in_hardirq=%d in_softirq=%d)\n",
		smp_processor_id(), !!in_hardirq(), !!in_softirq());
	complete(&soft_done);
	return HRTIMER_NORESTART;
}

/* A timer that is cancelled before it fires. */
static struct hrtimer doomed;
static atomic_t doomed_runs;

static enum hrtimer_restart doomed_fn(struct hrtimer *t)
{
	atomic_inc(&doomed_runs);
	return HRTIMER_NORESTART;
}

/* The heartbeat: restarts itself until exit cancels it. */
static struct hrtimer heartbeat;
static atomic_t heartbeat_runs;

static enum hrtimer_restart heartbeat_fn(struct hrtimer *t)
{
	int run = atomic_inc_return(&heartbeat_runs);

	/* It runs until unload: the teardown line counts the later runs. */
	if (run <= HEARTBEAT_PRINTS)
		pr_info("heartbeat run %d on CPU %d (in_hardirq=%d)\n", run,
			smp_processor_id(), !!in_hardirq());
	hrtimer_forward_now(t, ms_to_ktime(HEARTBEAT_MS));
	return HRTIMER_RESTART;
}

/* One pinned timer per online CPU, each started on its own CPU. */
struct pinned_timer {
	struct hrtimer timer;
	int cpu;			/* the CPU that starts it */
	int ran_on;			/* where it fired; -1 until it has */
	atomic_t runs;
	struct completion fired;
};

static struct pinned_timer pinned[MAX_CPUS];
static int nr_pinned;

static enum hrtimer_restart pinned_fn(struct hrtimer *t)
{
	struct pinned_timer *p = container_of(t, struct pinned_timer, timer);

	atomic_inc(&p->runs);
	WRITE_ONCE(p->ran_on, smp_processor_id());
	pr_info("pinned timer started on CPU %d fired on CPU %d (in_hardirq=%d)\n",
		p->cpu, p->ran_on, !!in_hardirq());
	complete(&p->fired);
	return HRTIMER_NORESTART;
}

/*
 * Runs on p->cpu, called by smp_call_function_single(): in the interrupt
 * that delivered the request, or with interrupts off when p->cpu is the
 * caller's own CPU.  Starting an hrtimer there is allowed.  _PINNED keeps
 * the timer on this CPU's clock base.
 */
static void start_pinned(void *info)
{
	struct pinned_timer *p = info;

	hrtimer_start(&p->timer, PULSE_PERIOD, HRTIMER_MODE_REL_PINNED);
}

static bool wait_done(struct completion *done)
{
	return wait_for_completion_timeout(done,
			msecs_to_jiffies(WAIT_LIMIT_MS)) > 0;
}

static int __init hrtimer_demo_init(void)
{
	s64 min_us = S64_MAX, max_us = 0, total_us;
	bool pulse_ok, soft_ok, never_early = true, pulse_active;
	bool doomed_was_active, doomed_active, pinned_ok = true;
	int doomed_cancel, cpu, i;
	struct ktap t;

	/*
	 * hrtimer_init() picks the clock and the mode; the callback is set by
	 * hand.  CLOCK_MONOTONIC never jumps (unlike CLOCK_REALTIME).
	 */
	hrtimer_init(&pulse, CLOCK_MONOTONIC, HRTIMER_MODE_REL);
	pulse.function = pulse_fn;
	hrtimer_init(&soft, CLOCK_MONOTONIC, HRTIMER_MODE_REL_SOFT);
	soft.function = soft_fn;
	hrtimer_init(&doomed, CLOCK_MONOTONIC, HRTIMER_MODE_REL);
	doomed.function = doomed_fn;
	hrtimer_init(&heartbeat, CLOCK_MONOTONIC, HRTIMER_MODE_REL);
	heartbeat.function = heartbeat_fn;

	hrtimer_start(&heartbeat, ms_to_ktime(HEARTBEAT_MS), HRTIMER_MODE_REL);

	/* The timer's clock reads at least pulse_start when it is started. */
	pulse_start = ktime_get();
	hrtimer_start(&pulse, PULSE_PERIOD, HRTIMER_MODE_REL);
	/* The mode given to hrtimer_start() must match hrtimer_init()'s. */
	hrtimer_start(&soft, PULSE_PERIOD, HRTIMER_MODE_REL_SOFT);

	hrtimer_start(&doomed, ktime_set(FAR_AWAY_S, 0), HRTIMER_MODE_REL);
	doomed_was_active = hrtimer_active(&doomed);
	doomed_cancel = hrtimer_cancel(&doomed);
	doomed_active = hrtimer_active(&doomed);

	cpus_read_lock();	/* no CPU comes or goes while we start them */
	for_each_online_cpu(cpu) {
		struct pinned_timer *p;

		if (nr_pinned == MAX_CPUS)
			break;
		p = &pinned[nr_pinned];
		hrtimer_init(&p->timer, CLOCK_MONOTONIC, HRTIMER_MODE_REL_PINNED);
		p->timer.function = pinned_fn;
		p->cpu = cpu;
		p->ran_on = -1;
		init_completion(&p->fired);
		nr_pinned++;
		smp_call_function_single(cpu, start_pinned, p, 1);
	}
	cpus_read_unlock();

	pulse_ok = wait_done(&pulse_done);
	soft_ok = wait_done(&soft_done);
	for (i = 0; i < nr_pinned; i++)
		pinned_ok &= wait_done(&pinned[i].fired);
	msleep(QUIET_MS);
	pulse_active = hrtimer_active(&pulse);

	/*
	 * Run k (counting from 1) cannot happen before its expiry, which is
	 * at least pulse_start + k * period: hrtimer_forward_now() only ever
	 * moves the expiry in whole periods.
	 */
	for (i = 0; pulse_ok && i < PULSES; i++) {
		s64 since_start = ktime_us_delta(pulse_at[i], pulse_start);

		if (since_start < (s64)(i + 1) * PULSE_US)
			never_early = false;
		if (i > 0) {
			s64 gap = ktime_us_delta(pulse_at[i], pulse_at[i - 1]);

			min_us = min(min_us, gap);
			max_us = max(max_us, gap);
		}
	}
	total_us = ktime_us_delta(pulse_at[PULSES - 1], pulse_start);

	ktap_plan(&t, 8);
	ktap_diag("hrtimer resolution %u ns", hrtimer_resolution);
	ktap_check(&t, pulse_ok && !READ_ONCE(pulse_bad_context),
		   "hard_timer_runs_in_hardirq");
	ktap_check(&t, soft_ok && atomic_read(&soft_runs) == 1 &&
		       !READ_ONCE(soft_bad_context),
		   "soft_timer_runs_in_softirq");
	ktap_diag("pulse: %d runs, %llu overrun(s), last at %lld us, gaps %lld..%lld us (period %d us)",
		  atomic_read(&pulse_runs), pulse_overruns, total_us,
		  min_us, max_us, PULSE_US);
	ktap_check(&t, pulse_ok && atomic_read(&pulse_runs) == PULSES && !pulse_active,
		   "restart_then_norestart_runs_exactly_n_times");
	ktap_check(&t, pulse_ok && never_early, "never_fires_early");
	/* Generous: PULSES periods plus 200 ms of emulation delays. */
	ktap_check(&t, pulse_ok && total_us <= PULSES * PULSE_US + 200 * USEC_PER_MSEC,
		   "pulses_finish_within_bounds");
	ktap_check(&t, doomed_was_active && doomed_cancel == 1 && !doomed_active &&
		       atomic_read(&doomed_runs) == 0,
		   "cancel_takes_a_waiting_timer_off");
	ktap_check(&t, atomic_read(&heartbeat_runs) > 0 && hrtimer_active(&heartbeat),
		   "heartbeat_keeps_restarting");
	for (i = 0; i < nr_pinned; i++) {
		ktap_diag("pinned timer started on CPU %d: fired %d time(s), on CPU %d",
			  pinned[i].cpu, atomic_read(&pinned[i].runs),
			  READ_ONCE(pinned[i].ran_on));
		pinned_ok &= atomic_read(&pinned[i].runs) == 1 &&
			     READ_ONCE(pinned[i].ran_on) == pinned[i].cpu;
	}
	if (nr_pinned < 2)
		ktap_skip(&t, "pinned_timer_fires_on_its_cpu",
			  "only one CPU is online");
	else
		ktap_check(&t, pinned_ok, "pinned_timer_fires_on_its_cpu");
	ktap_finish(&t);
	return 0;
}

static void __exit hrtimer_demo_exit(void)
{
	int was_active, i;
	bool active;

	/*
	 * hrtimer_cancel() removes a queued timer and, if the callback is
	 * running right now, waits for it and removes the restart it asks
	 * for: one call stops a self-restarting hrtimer.
	 */
	was_active = hrtimer_cancel(&heartbeat);
	hrtimer_cancel(&pulse);
	hrtimer_cancel(&soft);
	hrtimer_cancel(&doomed);
	for (i = 0; i < nr_pinned; i++)
		hrtimer_cancel(&pinned[i].timer);

	active = hrtimer_active(&heartbeat) || hrtimer_active(&pulse) ||
		 hrtimer_active(&soft) || hrtimer_active(&doomed);
	pr_info("teardown: heartbeats=%d was_active=%d pulses=%d active=%d\n",
		atomic_read(&heartbeat_runs), was_active,
		atomic_read(&pulse_runs), active);
}

module_init(hrtimer_demo_init);
module_exit(hrtimer_demo_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("kmodlab");
MODULE_DESCRIPTION("High-resolution timers: hrtimer_init/start, RESTART/NORESTART, hard and soft modes, hrtimer_cancel");
