// SPDX-License-Identifier: GPL-2.0
/*
 * tasklet_demo - a tasklet on Linux 6.12, set up the modern way.
 *
 * A tasklet is a function that the kernel runs soon, in softirq context,
 * on the CPU that scheduled it.  This module embeds one in a structure,
 * sets it up with tasklet_setup() and finds the structure again in the
 * callback with from_tasklet().  init checks, in a KTAP document:
 *
 *	- that it runs, in softirq context (not in a task, not in a hardirq),
 *	  on the CPU that scheduled it;
 *	- that scheduling it twice before it runs gives one run;
 *	- that it can schedule itself again from its own callback;
 *
 * exit schedules it one last time and calls tasklet_kill(), which waits
 * until that run is over, then prints a "teardown:" line the spec checks.
 *
 * Tasklets are deprecated: new code should use a BH work queue (see the
 * bh_workqueue example) or a threaded interrupt handler.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/bottom_half.h>
#include <linux/completion.h>
#include <linux/delay.h>
#include <linux/interrupt.h>
#include <linux/module.h>
#include <linux/preempt.h>
#include <linux/smp.h>

#include <kmodlab/ktap.h>

#define DEMO_MAGIC	0x7a5c1e75u
#define RESCHED_RUNS	5	/* the self-rescheduling phase runs this often */
#define WAIT_LIMIT_MS	1000	/* no wait in init lasts longer */
#define QUIET_MS	20	/* how long init watches for unwanted extra runs */

struct tasklet_demo {
	unsigned int magic;		/* from_tasklet() must find this */
	struct tasklet_struct tasklet;
	atomic_t runs;
	int resched_left;		/* >0: the callback schedules itself again */
	int last_cpu;			/* where the latest run happened */
	bool bad_context;		/* some run was not in a softirq */
	bool bad_owner;			/* from_tasklet() gave a wrong pointer */
	struct completion ran;		/* completed by every run */
	struct completion resched_done;	/* the last self-scheduled run */
};

static struct tasklet_demo demo = { .magic = DEMO_MAGIC };

static void demo_tasklet_fn(struct tasklet_struct *t)
{
	/* The callback gets the tasklet; from_tasklet() finds its container. */
	struct tasklet_demo *d = from_tasklet(d, t, tasklet);

	if (d->magic != DEMO_MAGIC) {
		WRITE_ONCE(demo.bad_owner, true);
		return;
	}
	atomic_inc(&d->runs);
	WRITE_ONCE(d->last_cpu, smp_processor_id());
	/*
	 * Softirq context: the kernel is serving a softirq (here
	 * TASKLET_SOFTIRQ), which in_interrupt() counts, and this is not
	 * task context, so the callback must not sleep.
	 */
	if (!(in_serving_softirq() && in_interrupt() && !in_hardirq() &&
	      !in_task()))
		WRITE_ONCE(d->bad_context, true);

	if (d->resched_left > 0) {
		/* Only this callback changes resched_left while it is > 0. */
		if (--d->resched_left > 0)
			tasklet_schedule(t);
		else
			complete(&d->resched_done);
	}
	complete(&d->ran);
}

static bool wait_done(struct completion *done)
{
	return wait_for_completion_timeout(done,
			msecs_to_jiffies(WAIT_LIMIT_MS)) > 0;
}

static int __init tasklet_demo_init(void)
{
	bool first_ran, double_ran, resched_ran;
	int cpu, first_cpu, first_runs, double_runs, resched_runs;
	struct ktap t;

	tasklet_setup(&demo.tasklet, demo_tasklet_fn);
	init_completion(&demo.ran);
	init_completion(&demo.resched_done);

	/*
	 * 1. Schedule it once.  get_cpu() keeps us on one CPU while we
	 *    schedule, so we know which CPU's tasklet list it went on.
	 */
	cpu = get_cpu();
	tasklet_schedule(&demo.tasklet);
	put_cpu();
	first_ran = wait_done(&demo.ran);
	first_cpu = READ_ONCE(demo.last_cpu);
	msleep(QUIET_MS);
	first_runs = atomic_read(&demo.runs);

	/*
	 * 2. Schedule it twice before it can run: with bottom halves disabled
	 *    on this CPU, no softirq runs here until local_bh_enable().  The
	 *    second call finds it already scheduled and does nothing.
	 */
	reinit_completion(&demo.ran);
	local_bh_disable();
	tasklet_schedule(&demo.tasklet);
	tasklet_schedule(&demo.tasklet);
	local_bh_enable();
	double_ran = wait_done(&demo.ran);
	msleep(QUIET_MS);
	double_runs = atomic_read(&demo.runs) - first_runs;

	/* 3. Let the callback schedule itself until RESCHED_RUNS runs are done. */
	demo.resched_left = RESCHED_RUNS;
	tasklet_schedule(&demo.tasklet);
	resched_ran = wait_done(&demo.resched_done);
	msleep(QUIET_MS);
	resched_runs = atomic_read(&demo.runs) - first_runs - double_runs;

	ktap_plan(&t, 6);
	ktap_diag("scheduled on CPU %d, ran on CPU %d", cpu, first_cpu);
	ktap_check(&t, first_ran && first_runs == 1, "tasklet_ran_once");
	ktap_check(&t, !READ_ONCE(demo.bad_owner), "from_tasklet_finds_the_owner");
	ktap_check(&t, atomic_read(&demo.runs) > 0 && !READ_ONCE(demo.bad_context),
		   "runs_in_softirq_context");
	ktap_check(&t, first_ran && first_cpu == cpu,
		   "runs_on_the_scheduling_cpu");
	ktap_diag("scheduled twice, ran %d time(s)", double_runs);
	ktap_check(&t, double_ran && double_runs == 1,
		   "scheduled_twice_runs_once");
	ktap_diag("self-scheduling: %d run(s)", resched_runs);
	ktap_check(&t, resched_ran && resched_runs == RESCHED_RUNS,
		   "reschedules_itself");
	ktap_finish(&t);
	return 0;
}

static void __exit tasklet_demo_exit(void)
{
	int before = atomic_read(&demo.runs);
	bool sched, running;

	/*
	 * A tasklet that is still scheduled when the module goes away would
	 * run freed code.  tasklet_kill() does not drop a scheduled run: it
	 * waits until that run has happened, then until the callback is not
	 * running anywhere.  Schedule one last run to show it.
	 */
	tasklet_schedule(&demo.tasklet);
	tasklet_kill(&demo.tasklet);

	sched = test_bit(TASKLET_STATE_SCHED, &demo.tasklet.state);
	running = test_bit(TASKLET_STATE_RUN, &demo.tasklet.state);
	pr_info("teardown: runs=%d last_run_done=%d scheduled=%d running=%d\n",
		atomic_read(&demo.runs), atomic_read(&demo.runs) == before + 1,
		sched, running);
}

module_init(tasklet_demo_init);
module_exit(tasklet_demo_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("kmodlab");
MODULE_DESCRIPTION("A tasklet: tasklet_setup, from_tasklet, softirq context and tasklet_kill");
