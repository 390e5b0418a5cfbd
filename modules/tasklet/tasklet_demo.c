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
 *	  on the CPU that scheduled it, whichever CPU that is: it is
 *	  scheduled once from each online CPU, via smp_call_function_single();
 *	- that scheduling it twice before it runs gives one run;
 *	- that it can schedule itself again from its own callback;
 *
 * exit schedules it one last time and calls tasklet_kill(), which waits
 * until that run is over, then prints a "teardown:" line the spec checks.
 *
 * Every run prints one "tasklet run N on CPU C" line, so a timeline of the
 * kernel log (kmodlab's --html report) shows where and when each ran.
 *
 * Tasklets are deprecated: new code should use a BH work queue (see the
 * bh_workqueue example) or a threaded interrupt handler.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/bottom_half.h>
#include <linux/completion.h>
#include <linux/cpu.h>
#include <linux/cpumask.h>
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
#define MAX_CPUS	8	/* CPUs the per-CPU phase tries; the guest has 2 */

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
	int run, cpu;

	if (d->magic != DEMO_MAGIC) {
		WRITE_ONCE(demo.bad_owner, true);
		return;
	}
	run = atomic_inc_return(&d->runs);
	/* A softirq cannot move to another CPU: smp_processor_id() is exact. */
	cpu = smp_processor_id();
	WRITE_ONCE(d->last_cpu, cpu);
	/*
	 * Softirq context: the kernel is serving a softirq (here
	 * TASKLET_SOFTIRQ), which in_interrupt() counts, and this is not
	 * task context, so the callback must not sleep.
	 */
	if (!(in_serving_softirq() && in_interrupt() && !in_hardirq() &&
	      !in_task()))
		WRITE_ONCE(d->bad_context, true);
	/* At most RESCHED_RUNS + MAX_CPUS + 3 runs: one line each is fine. */
	pr_info("tasklet run %d on CPU %d (in_softirq=%d)\n", run, cpu,
		!!in_softirq());

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

/*
 * Runs on the CPU smp_call_function_single() was asked for, in the
 * interrupt that delivered the request (or with interrupts off, when that
 * CPU is the caller's own).  The tasklet goes on that CPU's list.
 */
static void schedule_here(void *info)
{
	tasklet_schedule(&demo.tasklet);
}

/*
 * Schedule the tasklet from each online CPU in turn (at most MAX_CPUS)
 * and note where each run happened.  Returns how many CPUs were tried;
 * ran_on[i] is -1 if the run for cpus[i] did not come in time.
 */
static int schedule_from_each_cpu(int *cpus, int *ran_on)
{
	int cpu, n = 0;

	cpus_read_lock();	/* no CPU comes or goes while we walk them */
	for_each_online_cpu(cpu) {
		if (n == MAX_CPUS)
			break;
		cpus[n] = cpu;
		ran_on[n] = -1;
		reinit_completion(&demo.ran);
		if (!smp_call_function_single(cpu, schedule_here, NULL, 1) &&
		    wait_done(&demo.ran))
			ran_on[n] = READ_ONCE(demo.last_cpu);
		n++;
	}
	cpus_read_unlock();
	return n;
}

static int __init tasklet_demo_init(void)
{
	bool first_ran, double_ran, resched_ran, each_cpu_ok = true;
	int cpu, first_cpu, first_runs, double_runs, resched_runs;
	int cpus[MAX_CPUS], ran_on[MAX_CPUS], nr_cpus, i;
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

	/*
	 * 4. Schedule it from every CPU.  Each run should land on the CPU
	 *    that scheduled it: a tasklet never moves to another CPU.
	 */
	nr_cpus = schedule_from_each_cpu(cpus, ran_on);

	ktap_plan(&t, 7);
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
	for (i = 0; i < nr_cpus; i++) {
		ktap_diag("scheduled from CPU %d, ran on CPU %d", cpus[i],
			  ran_on[i]);
		each_cpu_ok &= ran_on[i] == cpus[i];
	}
	if (nr_cpus < 2)
		ktap_skip(&t, "runs_on_each_scheduling_cpu",
			  "only one CPU is online");
	else
		ktap_check(&t, each_cpu_ok, "runs_on_each_scheduling_cpu");
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
