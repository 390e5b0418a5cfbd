// SPDX-License-Identifier: GPL-2.0

//! rust_sync: `Mutex`, `SpinLock` and `CondVar` shared by work items running
//! at the same time.
//!
//! Four workers add to two counters as fast as they can for a fixed time, one
//! counter behind a `SpinLock` and one behind a `Mutex`, and count their own
//! increments.  Every increment is a separate read and write of a plain
//! integer, so only the lock keeps increments from being lost: each shared
//! counter equals the sum of the workers' own counts only if the locks work.
//! `init` sleeps on a `CondVar` (with a time limit) until the last worker to
//! finish wakes it.

use core::sync::atomic::{AtomicU32, Ordering};
use kernel::prelude::*;
use kernel::sync::lock::{mutex::MutexBackend, Guard};
use kernel::sync::{
    new_condvar, new_mutex, new_spinlock, Arc, CondVar, CondVarTimeoutResult, Mutex, SpinLock,
};
use kernel::time::{msecs_to_jiffies, Ktime};
use kernel::workqueue::{self, impl_has_work, new_work, Work, WorkItem};

#[path = "../include/kmodlab_ktap.rs"]
mod ktap;

module! {
    type: RustSync,
    name: "rust_sync",
    author: "kmodlab",
    description: "Mutex, SpinLock and CondVar shared by concurrent work items",
    license: "GPL",
}

/// Work items started at once.
const WORKERS: u32 = 4;
/// How long each worker increments each counter.  A fixed time rather than a
/// fixed count keeps the test equally short on the debug kernel, where every
/// lock operation is much slower.
const PHASE_MS: i64 = 20;
/// The longest `init` waits for the workers.
const WAIT_LIMIT_MS: i64 = 2000;
/// The longest a worker waits for the others to start.
const BARRIER_LIMIT_MS: i64 = 500;

/// The data behind the mutex.
struct Tally {
    /// Incremented by every worker for `PHASE_MS`.
    count: u64,
    /// What the workers say they added to `count` and to `spin_count`.
    mutex_adds: u64,
    spin_adds: u64,
    /// Workers that have started (each waits for the mutex first).
    started: u32,
    /// Workers that have finished; the one that makes it `WORKERS` notifies.
    finished: u32,
}

#[pin_data]
struct Shared {
    /// May be held while sleeping; taken by workers and by `init`.
    #[pin]
    tally: Mutex<Tally>,
    /// Busy-waits instead of sleeping; held only for a few instructions.
    #[pin]
    spin_count: SpinLock<u64>,
    /// Workers wait here until all of them have started: a barrier, so that
    /// their loops overlap.
    #[pin]
    all_started: CondVar,
    /// `init` waits here (with `tally` locked) for `finished == WORKERS`.
    #[pin]
    all_done: CondVar,
    /// Workers inside the spinlock loop right now, and the most at once:
    /// shows whether they really ran in parallel.
    spinning: AtomicU32,
    max_spinning: AtomicU32,
}

#[pin_data]
struct Worker {
    shared: Arc<Shared>,
    #[pin]
    work: Work<Worker>,
}

impl_has_work! {
    impl HasWork<Self> for Worker { self.work }
}

impl WorkItem for Worker {
    type Pointer = Arc<Worker>;

    fn run(this: Arc<Worker>) {
        let shared = &this.shared;
        {
            // Blocks until init sleeps on `all_done`, which releases the
            // mutex: so no worker can finish before init is waiting.
            let mut tally = shared.tally.lock();
            tally.started += 1;
            if tally.started == WORKERS {
                shared.all_started.notify_all();
            }
            // The barrier: wait (a bounded time) for the others to start.
            let deadline = Ktime::ktime_get().to_ms() + BARRIER_LIMIT_MS;
            while tally.started < WORKERS {
                let left = deadline - Ktime::ktime_get().to_ms();
                if left <= 0 {
                    break;
                }
                // Work queue workers take no signals: only a notify or the
                // time limit ends this wait.
                let _ = shared
                    .all_started
                    .wait_interruptible_timeout(&mut tally, msecs_to_jiffies(left as u32));
            }
        }

        // Each increment below is a read, then a write.  Without the lock,
        // two CPUs could read the same value, and one increment would be lost.

        // Phase 1, the spinlock.  Nothing in this loop sleeps, and this
        // kernel does not preempt kernel code, so a worker inside the loop
        // keeps its CPU: two workers inside at once means two CPUs at once.
        let now = shared.spinning.fetch_add(1, Ordering::Relaxed) + 1;
        shared.max_spinning.fetch_max(now, Ordering::Relaxed);
        let mut spin_adds = 0;
        let end = Ktime::ktime_get().to_ms() + PHASE_MS;
        while Ktime::ktime_get().to_ms() < end {
            let mut count = shared.spin_count.lock();
            let seen = *count;
            *count = seen + 1;
            drop(count);
            spin_adds += 1;
        }
        shared.spinning.fetch_sub(1, Ordering::Relaxed);

        // Phase 2, the mutex.  A worker that finds it taken sleeps until the
        // holder unlocks it.
        let mut mutex_adds = 0;
        let end = Ktime::ktime_get().to_ms() + PHASE_MS;
        while Ktime::ktime_get().to_ms() < end {
            let mut tally = shared.tally.lock();
            let seen = tally.count;
            tally.count = seen + 1;
            drop(tally);
            mutex_adds += 1;
        }
        // One line per worker: the kernel log records which worker thread
        // printed it, and so roughly where it ran.
        pr_info!(
            "worker done: {} spinlock and {} mutex increments\n",
            spin_adds,
            mutex_adds
        );

        let mut tally = shared.tally.lock();
        tally.spin_adds += spin_adds;
        tally.mutex_adds += mutex_adds;
        tally.finished += 1;
        if tally.finished == WORKERS {
            shared.all_done.notify_all();
        }
    }
}

/// How a bounded wait for the workers ended.
struct WaitResult {
    /// Sleeps on the condition variable.
    waits: u32,
    timed_out: bool,
    signalled: bool,
}

impl Shared {
    /// Sleeps on `all_done` until `finished` reaches `target`, at most
    /// `limit_ms`.  `tally` is the locked mutex: the wait releases it while
    /// asleep and holds it again on return.
    fn wait_finished(
        &self,
        tally: &mut Guard<'_, Tally, MutexBackend>,
        target: u32,
        limit_ms: i64,
    ) -> WaitResult {
        let deadline = Ktime::ktime_get().to_ms() + limit_ms;
        let mut result = WaitResult {
            waits: 0,
            timed_out: false,
            signalled: false,
        };
        while tally.finished < target {
            let left = deadline - Ktime::ktime_get().to_ms();
            if left <= 0 {
                result.timed_out = true;
                break;
            }
            result.waits += 1;
            match self
                .all_done
                .wait_interruptible_timeout(tally, msecs_to_jiffies(left as u32))
            {
                CondVarTimeoutResult::Woken { .. } => {}
                CondVarTimeoutResult::Timeout => result.timed_out = true,
                CondVarTimeoutResult::Signal { .. } => {
                    result.signalled = true;
                    break;
                }
            }
        }
        result
    }
}

struct RustSync {
    shared: Arc<Shared>,
    queued: u32,
}

impl kernel::Module for RustSync {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        pr_info!("init: {} workers, {} ms per lock\n", WORKERS, PHASE_MS);
        let shared = Arc::pin_init(
            pin_init!(Shared {
                tally <- new_mutex!(
                    Tally {
                        count: 0,
                        mutex_adds: 0,
                        spin_adds: 0,
                        started: 0,
                        finished: 0,
                    },
                    "Shared::tally"
                ),
                spin_count <- new_spinlock!(0, "Shared::spin_count"),
                all_started <- new_condvar!("Shared::all_started"),
                all_done <- new_condvar!("Shared::all_done"),
                spinning: AtomicU32::new(0),
                max_spinning: AtomicU32::new(0),
            }),
            GFP_KERNEL,
        )?;

        // Allocate every worker before queueing any: an init that fails
        // after queueing would free the module's code under running workers.
        let mut workers = KVec::with_capacity(WORKERS as usize, GFP_KERNEL)?;
        for _ in 0..WORKERS {
            let handle = shared.clone();
            let worker = Arc::pin_init(
                pin_init!(Worker {
                    shared: handle,
                    work <- new_work!("Worker::work"),
                }),
                GFP_KERNEL,
            )?;
            workers.push(worker, GFP_KERNEL)?;
        }

        let started = Ktime::ktime_get();
        // Holding the mutex while queueing keeps every worker at its first
        // `lock()` until the wait below releases the mutex.
        let mut tally = shared.tally.lock();
        let mut queued = 0;
        for worker in workers {
            // The unbound queue runs items on any CPU, so they overlap.
            if workqueue::system_unbound().enqueue(worker).is_ok() {
                queued += 1;
            }
        }
        let wait = shared.wait_finished(&mut tally, queued, WAIT_LIMIT_MS);
        let (count, mutex_adds, spin_adds) = (tally.count, tally.mutex_adds, tally.spin_adds);
        let (finished, begun) = (tally.finished, tally.started);
        drop(tally);
        let spin_count = *shared.spin_count.lock();
        let elapsed_us = (Ktime::ktime_get() - started).to_ns() / 1000;

        let overlap = shared.max_spinning.load(Ordering::Relaxed);
        let mut t = ktap::Ktap::plan(5);
        t.diag(format_args!(
            "queued={} started={} finished={}",
            queued, begun, finished
        ));
        t.diag(format_args!(
            "spin_count={} spin_adds={} mutex_count={} mutex_adds={}",
            spin_count, spin_adds, count, mutex_adds
        ));
        t.diag(format_args!(
            "waits={} timed_out={} signalled={} max_spinning={} elapsed={}us",
            wait.waits, wait.timed_out, wait.signalled, overlap, elapsed_us
        ));
        t.check(
            queued == WORKERS && finished == WORKERS,
            "all_workers_finished",
        );
        t.check(
            spin_count == spin_adds && spin_adds > 0,
            "spinlock_total_exact",
        );
        t.check(count == mutex_adds && mutex_adds > 0, "mutex_total_exact");
        t.check(
            wait.waits >= 1 && !wait.timed_out && !wait.signalled,
            "woken_by_last_worker",
        );
        // Exact totals prove the locks only if workers really ran at once.
        // The scheduler decides that, so a run without overlap is a skip.
        if overlap >= 2 {
            t.check(true, "ran_in_parallel");
        } else {
            t.skip(
                "ran_in_parallel",
                "no two workers were in the spinlock loop at once",
            );
        }
        t.finish();

        Ok(RustSync { shared, queued })
    }
}

impl Drop for RustSync {
    fn drop(&mut self) {
        // Normally every worker finished during init.  If the wait there gave
        // up, give them one more bounded chance before the code goes away.
        let mut tally = self.shared.tally.lock();
        self.shared
            .wait_finished(&mut tally, self.queued, WAIT_LIMIT_MS);
        pr_info!(
            "unloaded: {} of {} workers finished\n",
            tally.finished,
            self.queued
        );
    }
}
