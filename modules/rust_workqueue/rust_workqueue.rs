// SPDX-License-Identifier: GPL-2.0

//! rust_workqueue: work items in Rust on Linux 6.12, and an unload that waits
//! for them.
//!
//! `Job` embeds a `Work` and is shared through an `Arc`; queueing it hands one
//! reference to the work queue, which gives it back to `Job::run`.  Eight jobs
//! go on the system queue and `init` waits until all have finished.  Two more
//! "lingering" jobs go on the system queue for long-running items and stay
//! blocked until the module is unloaded: `Drop` tells them to stop and waits
//! for them.
//!
//! 6.12's Rust work queue API can enqueue but cannot flush or cancel, so every
//! wait here is done by the module itself: a counter of unfinished jobs under
//! a `Mutex`, and a `CondVar` that the last job to finish notifies.  All waits
//! have a time limit.  See the README for what this can and cannot promise.

use core::sync::atomic::{AtomicU32, Ordering};
use kernel::prelude::*;
use kernel::sync::lock::{mutex::MutexBackend, Guard};
use kernel::sync::{new_condvar, new_mutex, Arc, CondVar, CondVarTimeoutResult, Mutex};
use kernel::task::Task;
use kernel::time::{msecs_to_jiffies, Jiffies, Ktime};
use kernel::workqueue::{self, impl_has_work, new_work, Work, WorkItem};

#[path = "../include/kmodlab_ktap.rs"]
mod ktap;

module! {
    type: RustWorkqueue,
    name: "rust_workqueue",
    author: "kmodlab",
    description: "Arc work items on the system work queues, waited for at init and at unload",
    license: "GPL",
}

/// Jobs that run once and finish at once, on `workqueue::system()`.
const QUICK_JOBS: u32 = 8;
/// Jobs that block until `Drop` stops them, on `workqueue::system_long()`.
const LINGERING_JOBS: u32 = 2;
/// The longest `init` and `Drop` wait for jobs to finish.
const WAIT_LIMIT_MS: u32 = 1000;
/// The longest a lingering job blocks if nobody stops it.
const LINGER_LIMIT_MS: u32 = 5000;

/// What the jobs share with the module.
#[pin_data]
struct Tracker {
    /// Jobs queued and not yet finished, plus the stop request; see `State`.
    #[pin]
    state: Mutex<State>,
    /// Notified when `outstanding` drops to zero.
    #[pin]
    idle: CondVar,
    /// Notified when `stopping` is set.
    #[pin]
    stop: CondVar,
    /// One bit per quick job that has run.
    ran_mask: AtomicU32,
    /// How many times any quick job ran.
    runs: AtomicU32,
    /// Runs in which the workqueue code itself said that this job was the
    /// work item being executed, on a task other than the one running `init`.
    runs_in_worker: AtomicU32,
    /// The address of the task that ran `init` (insmod), to compare with.
    loader: usize,
}

struct State {
    outstanding: u32,
    stopping: bool,
}

impl Tracker {
    fn new() -> Result<Arc<Tracker>> {
        Arc::pin_init(
            pin_init!(Tracker {
                state <- new_mutex!(State { outstanding: 0, stopping: false }, "Tracker::state"),
                idle <- new_condvar!("Tracker::idle"),
                stop <- new_condvar!("Tracker::stop"),
                ran_mask: AtomicU32::new(0),
                runs: AtomicU32::new(0),
                runs_in_worker: AtomicU32::new(0),
                loader: current_task(),
            }),
            GFP_KERNEL,
        )
    }

    /// Called by a job as its last step: one fewer outstanding, and the
    /// waiter in `init` or `Drop` is woken when none are left.
    fn finish_one(&self) {
        let mut state = self.state.lock();
        state.outstanding -= 1;
        if state.outstanding == 0 {
            self.idle.notify_all();
        }
    }

    /// Waits until no job is outstanding or `limit_ms` has passed.  `state`
    /// is the locked `self.state`: the wait releases it while asleep.
    /// Returns the number still outstanding and whether the limit ran out.
    fn wait_idle(&self, state: &mut Guard<'_, State, MutexBackend>, limit_ms: u32) -> (u32, bool) {
        let deadline = Ktime::ktime_get().to_ms() + i64::from(limit_ms);
        let mut timed_out = false;
        while state.outstanding > 0 {
            let left = deadline - Ktime::ktime_get().to_ms();
            if left <= 0 {
                timed_out = true;
                break;
            }
            match self
                .idle
                .wait_interruptible_timeout(state, ms_to_jiffies(left))
            {
                CondVarTimeoutResult::Woken { .. } => {}
                // The limit passed with nobody notifying.  The loop condition
                // is checked once more, but the wait counts as timed out.
                CondVarTimeoutResult::Timeout => timed_out = true,
                // A signal (someone killed insmod or rmmod) ends the wait early.
                CondVarTimeoutResult::Signal { .. } => {
                    timed_out = true;
                    break;
                }
            }
        }
        (state.outstanding, timed_out)
    }
}

fn ms_to_jiffies(ms: i64) -> Jiffies {
    msecs_to_jiffies(ms.clamp(1, i64::from(u32::MAX)) as u32)
}

/// The running task's address: enough to tell two tasks apart, without
/// reading any field of `struct task_struct`.
fn current_task() -> usize {
    core::ptr::from_ref::<Task>(current!()) as usize
}

/// Whether the workqueue code is executing `work` on this task right now.
///
/// C's `current_work()` returns the work item the current worker thread is
/// running, or NULL if the task is not a worker.  6.12 has no Rust wrapper
/// for it, so this calls the raw C binding.
fn executing(work: &Work<Job>) -> bool {
    // SAFETY: `current_work()` has no preconditions: it only looks at the
    // current task.
    let running = unsafe { kernel::bindings::current_work() };
    // `Work` is a transparent wrapper around the C `struct work_struct`,
    // so both have the same address.  Only addresses are compared.
    core::ptr::eq(running.cast_const().cast::<Work<Job>>(), work)
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Quick,
    Lingering,
}

/// A work item.  The `Work` field is the C `struct work_struct`; pin-init
/// sets it up in place, because the kernel links it into lists and it must
/// never move.
#[pin_data]
struct Job {
    id: u32,
    kind: Kind,
    tracker: Arc<Tracker>,
    #[pin]
    work: Work<Job>,
}

impl_has_work! {
    impl HasWork<Self> for Job { self.work }
}

impl Job {
    /// Allocates `count` jobs of one kind, numbered from 0.
    fn batch(kind: Kind, count: u32, tracker: &Arc<Tracker>) -> Result<KVec<Arc<Job>>> {
        let mut jobs = KVec::with_capacity(count as usize, GFP_KERNEL)?;
        for id in 0..count {
            let job = Arc::pin_init(
                pin_init!(Job {
                    id,
                    kind,
                    tracker: tracker.clone(),
                    work <- new_work!("Job::work"),
                }),
                GFP_KERNEL,
            )?;
            jobs.push(job, GFP_KERNEL)?;
        }
        Ok(jobs)
    }
}

impl WorkItem for Job {
    type Pointer = Arc<Job>;

    /// Runs on a worker thread.  `this` is the reference that `enqueue` gave
    /// to the queue; it is dropped when `run` returns.
    fn run(this: Arc<Job>) {
        let tracker = &this.tracker;
        match this.kind {
            Kind::Quick => {
                tracker.ran_mask.fetch_or(1 << this.id, Ordering::Relaxed);
                tracker.runs.fetch_add(1, Ordering::Relaxed);
                if executing(&this.work) && current_task() != tracker.loader {
                    tracker.runs_in_worker.fetch_add(1, Ordering::Relaxed);
                }
                // One line per run: the kernel log records which worker
                // thread printed it, and so the CPU (6.12's Rust has no
                // wrapper for smp_processor_id()).
                pr_info!("quick job {} ran\n", this.id);
            }
            Kind::Lingering => {
                pr_info!("lingering job {} waits for the unload\n", this.id);
                // Block until `Drop` sets `stopping`, or the limit passes.
                let deadline = Ktime::ktime_get().to_ms() + i64::from(LINGER_LIMIT_MS);
                let mut state = tracker.state.lock();
                while !state.stopping {
                    let left = deadline - Ktime::ktime_get().to_ms();
                    if left <= 0 {
                        break;
                    }
                    // Workers take no signals, so only a notify or the limit wakes this.
                    let _ = tracker
                        .stop
                        .wait_interruptible_timeout(&mut state, ms_to_jiffies(left));
                }
            }
        }
        // The last thing the job does with the module's data.
        tracker.finish_one();
    }
}

/// Queues one job and counts it as outstanding.  The caller holds the
/// state lock, so the job cannot report that it finished before it has been
/// counted: its `finish_one()` waits for the lock.
fn start(job: Arc<Job>, queue: &workqueue::Queue, state: &mut State) -> bool {
    match queue.enqueue(job) {
        Ok(()) => {
            state.outstanding += 1;
            true
        }
        // The item was already queued: `enqueue` hands our reference back,
        // and it is dropped here.
        Err(_job) => false,
    }
}

struct RustWorkqueue {
    tracker: Arc<Tracker>,
}

impl kernel::Module for RustWorkqueue {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        pr_info!("init: queueing {} jobs\n", QUICK_JOBS);
        let tracker = Tracker::new()?;

        // Allocate everything before queueing anything: an init that fails
        // after queueing would free the module's code under running jobs.
        let quick = Job::batch(Kind::Quick, QUICK_JOBS, &tracker)?;
        let lingering_jobs = Job::batch(Kind::Lingering, LINGERING_JOBS, &tracker)?;

        let started = Ktime::ktime_get();
        let mut queued = 0;
        // Queue with the lock held and keep holding it into the wait: no job
        // can finish (and notify) before init is listening.
        let mut state = tracker.state.lock();
        for job in quick {
            if start(job, workqueue::system(), &mut state) {
                queued += 1;
            }
        }
        let (left, timed_out) = tracker.wait_idle(&mut state, WAIT_LIMIT_MS);
        drop(state);
        let waited_us = (Ktime::ktime_get() - started).to_ns() / 1000;

        let mask = tracker.ran_mask.load(Ordering::Relaxed);
        let runs = tracker.runs.load(Ordering::Relaxed);
        let in_worker = tracker.runs_in_worker.load(Ordering::Relaxed);
        let all = (1u32 << QUICK_JOBS) - 1;

        let mut t = ktap::Ktap::plan(5);
        t.diag(format_args!(
            "queued={} outstanding={} waited={}us timed_out={} ran_mask={:#x} runs={} in_worker={}",
            queued, left, waited_us, timed_out, mask, runs, in_worker
        ));
        t.check(queued == QUICK_JOBS && mask == all, "every_job_ran");
        t.check(runs == QUICK_JOBS, "run_count_exact");
        t.check(in_worker == QUICK_JOBS, "ran_in_kworker");
        t.check(left == 0 && !timed_out, "woken_before_limit");

        // Two jobs that will still be running when the module is unloaded.
        let mut lingering = 0;
        {
            let mut state = tracker.state.lock();
            for job in lingering_jobs {
                if start(job, workqueue::system_long(), &mut state) {
                    lingering += 1;
                }
            }
        }
        t.check(lingering == LINGERING_JOBS, "lingering_jobs_queued");
        t.finish();

        Ok(RustWorkqueue { tracker })
    }
}

impl Drop for RustWorkqueue {
    fn drop(&mut self) {
        let started = Ktime::ktime_get();
        let mut state = self.tracker.state.lock();
        state.stopping = true;
        let in_flight = state.outstanding;
        self.tracker.stop.notify_all();
        let (left, timed_out) = self.tracker.wait_idle(&mut state, WAIT_LIMIT_MS);
        drop(state);
        let waited_us = (Ktime::ktime_get() - started).to_ns() / 1000;
        if left == 0 && !timed_out {
            pr_info!(
                "drop: stopped {} in-flight jobs, outstanding=0 after {}us\n",
                in_flight,
                waited_us
            );
        } else {
            pr_err!(
                "drop: wait gave up after {}us: outstanding={} timed_out={}\n",
                waited_us,
                left,
                timed_out
            );
            if left > 0 {
                // 6.12 offers nothing more: no flush, no cancel.  The
                // module's code is freed while these jobs may still run it.
                pr_err!("drop: unloading with {} jobs still running\n", left);
            }
        }
    }
}
