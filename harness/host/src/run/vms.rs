//! The run's VMs: up to `--jobs` at once, each worker one after another until its tests have a
//! verdict, a fresh one after a crash or timeout, a boot that failed retried once, and the run's own
//! time limit kept. A QEMU that something outside the guest ended (a signal kmodlab did not send,
//! QEMU's own crash) is not the module's doing: the test it interrupted (or, between tests, the next
//! one) runs again once in a fresh VM, and gets an ERROR naming the cause only if that VM ends the
//! same way.
//!
//! With `--isolate all` the tests are cut into contiguous groups of nearly equal size, one per
//! worker; with `module` or `test` the workers take the next group from a shared queue. Workers
//! tell the run's thread what happens through a channel, so the listener hears one event at a
//! time and verdicts still come out in the requested order.

use super::plan::Jobs;
use super::restore::Restorable;
use super::session::{self, EventSource, Progress, Session};
use super::{folder, Isolation, RunEvent, RunOptions, Runner};
use crate::build::Products;
use crate::guest::accel::{self, ProbeBoot};
use crate::guest::image;
use crate::guest::snapshot;
use crate::guest::vm::{self, Accelerator, QemuEnd, Restore, Vm, VmConfig, VmEvent, VmLogs};
use crate::judge::records::TestRecord;
use crate::judge::verdict::{Outcome, Verdict};
use crate::kernel::Kernel;
use anyhow::{anyhow, Result};
use kmodlab_protocol::Plan;
use std::collections::{BTreeSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Boots that may fail in a row (infrastructure, not the module) before the run gives up.
const BOOT_ATTEMPTS: u32 = 2;

/// What a QEMU process takes besides its guest's memory, in MiB, with room to spare: under TCG (QEMU
/// 7.2) a 256 MB guest running all 20 examples peaked at 119 MB resident (`ps -o rss`), guest pages
/// included; the guest may touch all of its memory, so that is counted in full besides this.
const QEMU_OVERHEAD_MB: u64 = 96;

/// The share of the memory available that the run's VMs may take.
const MEMORY_SHARE_PERCENT: u64 = 80;

/// How often a worker waiting for its VM looks whether the run was stopped.
const STOP_POLL: Duration = Duration::from_millis(100);

impl session::Judge for Jobs {
    fn limit(&self, test: u32) -> Duration {
        self.get(test)
            .map_or(Duration::from_secs(10), |job| job.host_limit())
    }

    fn judge(&self, record: &TestRecord) -> Option<Verdict> {
        let job = self.get(record.id)?;
        Some(super::judge_in_user_paths(
            &job.module,
            &job.spec,
            record,
            job.source_paths.as_ref(),
        ))
    }
}

/// What one VM's session needs besides the jobs.
struct VmSetup<'a> {
    kernel: &'a Kernel,
    accel: Accelerator,
    products: &'a Products,
    run_deadline: Option<Instant>,
}

/// What the run's VMs have been through so far, for one worker.
#[derive(Default)]
struct Attempts {
    /// Tests not yet judged.
    pending: Vec<u32>,
    /// Boots that failed in a row.
    failed_boots: u32,
    /// Tests that an infrastructure failure already sent to a fresh VM once.
    retried: BTreeSet<u32>,
}

/// What a worker tells the run's thread.
enum Message {
    Event(RunEvent),
    /// A verdict a session told as it went; kept when its session is taken.
    Told(u32, Verdict),
    /// A final verdict: told and kept.
    Settled(u32, Verdict),
    /// A verdict already told, kept now.
    Kept(u32, Verdict),
    Timings {
        initramfs: Duration,
        vms: Duration,
    },
}

/// What the workers share.
struct Shared<'a> {
    opts: &'a RunOptions,
    run_dir: &'a Path,
    setup: VmSetup<'a>,
    jobs: &'a Jobs,
    /// VMs started so far: the next VM's label is `vm` and one more.
    vms: AtomicU32,
    /// The groups no worker took yet (`--isolate module|test`).
    queue: Mutex<VecDeque<Vec<u32>>>,
    /// Set when a worker failed or panicked: the others end their VMs and stop.
    stop: AtomicBool,
    /// Why a worker had to stop early because the machine could not boot a guest.
    cause: Mutex<Option<String>>,
    /// The snapshot VMs restore; gone once a restore failed (every later VM boots).
    restorable: Mutex<Option<Restorable>>,
    /// How the run's tests share VMs, resolved.
    isolation: Isolation,
}

impl Shared<'_> {
    fn next_label(&self) -> String {
        format!("vm{}", self.vms.fetch_add(1, Ordering::SeqCst) + 1)
    }

    fn next_group(&self) -> Option<Vec<u32>> {
        self.queue.lock().ok()?.pop_front()
    }

    /// Every group still queued, as one list.
    fn take_queue(&self) -> Vec<u32> {
        self.queue
            .lock()
            .map(|mut queue| queue.drain(..).flatten().collect())
            .unwrap_or_default()
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn restorable(&self) -> Option<Restorable> {
        self.restorable.lock().ok()?.clone()
    }

    /// Stops restoring after a restore failed, and forgets the snapshot so that the next run
    /// saves a new one; true if this call did (so that one worker tells it).
    fn give_up_restoring(&self) -> bool {
        let Some(gone) = self.restorable.lock().ok().and_then(|mut r| r.take()) else {
            return false;
        };
        snapshot::remove(&gone.slot);
        true
    }
}

/// Sets the run's stop flag when its worker ends by a panic.
struct StopOnPanic<'a>(&'a AtomicBool);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

impl Runner<'_> {
    /// Runs every job; the number of VMs it took, and why it had to stop early when the machine
    /// could not boot a guest.
    pub(super) fn run_vms(
        &mut self,
        kernel: &Kernel,
        accel: Accelerator,
        restorable: Option<Restorable>,
        jobs: &Jobs,
        products: &Products,
    ) -> Result<(u32, Option<String>)> {
        let setup = VmSetup {
            kernel,
            accel,
            products,
            run_deadline: self.opts.run_timeout.map(|limit| self.started + limit),
        };
        let isolation = self.opts.isolation.unwrap_or_else(|| {
            Isolation::cheapest_pristine(
                restorable.is_some(),
                kernel.option("CONFIG_DEBUG_KMEMLEAK") == Some("y"),
            )
        });
        let pending: Vec<u32> = jobs.0.keys().copied().collect();
        let groups = match isolation {
            Isolation::All => split(&pending, self.workers_for(pending.len())),
            isolation => groups(isolation, &pending, jobs),
        };
        let workers = self.workers_for(groups.len());
        let (initial, queue): (Vec<Vec<u32>>, VecDeque<Vec<u32>>) = match isolation {
            Isolation::All => (groups, VecDeque::new()),
            _ => (vec![Vec::new(); workers], groups.into()),
        };
        let run_dir = self.run_dir.clone();
        let shared = Shared {
            opts: self.opts,
            run_dir: &run_dir,
            setup,
            jobs,
            vms: AtomicU32::new(0),
            queue: Mutex::new(queue),
            stop: AtomicBool::new(false),
            cause: Mutex::new(None),
            restorable: Mutex::new(restorable),
            isolation,
        };
        let (sender, receiver) = mpsc::channel();
        let results = std::thread::scope(|scope| {
            let handles: Vec<_> = initial
                .into_iter()
                .map(|pending| {
                    let (shared, out) = (&shared, sender.clone());
                    scope.spawn(move || {
                        let _guard = StopOnPanic(&shared.stop);
                        let mut worker = Worker {
                            shared,
                            out,
                            at: Attempts {
                                pending,
                                ..Attempts::default()
                            },
                        };
                        let result = worker.run();
                        if result.is_err() {
                            shared.stop.store(true, Ordering::SeqCst);
                        }
                        result
                    })
                })
                .collect();
            drop(sender);
            // Until every worker has ended (and dropped its sender).
            for message in receiver {
                // A run that failed keeps what it told; verdicts of VMs stopped for it are not told.
                if shared.stopped() && !matches!(message, Message::Event(_)) {
                    continue;
                }
                self.take(message);
            }
            handles
                .into_iter()
                .map(|handle| {
                    handle
                        .join()
                        .unwrap_or_else(|_| Err(anyhow!("a worker running VMs panicked")))
                })
                .collect::<Vec<_>>()
        });
        results.into_iter().collect::<Result<Vec<()>>>()?;
        let cause = shared.cause.lock().ok().and_then(|mut cause| cause.take());
        Ok((shared.vms.load(Ordering::SeqCst), cause))
    }

    /// How many workers to run for `groups` groups: `--jobs`, fewer if there are fewer groups or
    /// the memory available does not fit them (told once).
    fn workers_for(&mut self, groups: usize) -> usize {
        let asked = usize::try_from(self.opts.jobs.max(1)).unwrap_or(1);
        let wanted = asked.min(groups).max(1);
        let Some(available_kb) = mem_available_kb() else {
            return wanted;
        };
        let fit = vms_that_fit(available_kb, self.opts.memory_mb);
        if fit >= wanted {
            return wanted;
        }
        if !self.told_memory {
            self.told_memory = true;
            self.tell(RunEvent::Notice(memory_notice(fit, wanted, available_kb)));
        }
        fit
    }

    /// What a worker said, passed on.
    fn take(&mut self, message: Message) {
        match message {
            Message::Event(event) => self.tell(event),
            Message::Told(id, verdict) => self.in_order.emit(id, &verdict, self.listener),
            Message::Settled(id, verdict) => self.settle(id, verdict),
            Message::Kept(id, verdict) => {
                self.verdicts.insert(id, verdict);
            }
            Message::Timings { initramfs, vms } => {
                self.timings.initramfs += initramfs;
                self.timings.vms += vms;
            }
        }
    }

    /// KVM when it works (or as asked), else TCG; told to the listener.
    pub(super) fn choose_accel(&mut self, kernel: &Kernel) -> Result<Accelerator> {
        let opts = self.opts;
        let (accel, reason) = accel::choose(opts.accel, &opts.qemu, |accel| {
            accel::probe_boot(&ProbeBoot {
                qemu: &opts.qemu,
                kernel,
                agent: &opts.agent,
                dir: &self.run_dir,
                memory_mb: opts.memory_mb,
                accel,
            })
        })?;
        self.tell(RunEvent::Accelerator { accel, reason });
        Ok(accel)
    }
}

/// One thread's share of the run: its VMs, one after another.
struct Worker<'s> {
    shared: &'s Shared<'s>,
    out: Sender<Message>,
    at: Attempts,
}

impl Worker<'_> {
    fn send(&self, message: Message) {
        // The run's thread reads until every worker has ended; a send fails only if it panicked.
        let _ = self.out.send(message);
    }

    fn tell(&self, event: RunEvent) {
        self.send(Message::Event(event));
    }

    fn settle(&self, id: u32, verdict: Verdict) {
        self.send(Message::Settled(id, verdict));
    }

    /// Runs its group, then (`--isolate module|test`) the queue's groups, until none is left.
    fn run(&mut self) -> Result<()> {
        loop {
            if self.at.pending.is_empty() {
                match self.shared.next_group() {
                    Some(group) => self.at.pending = group,
                    None => return Ok(()),
                }
            }
            if !self.run_group()? {
                return Ok(());
            }
        }
    }

    /// Runs the pending tests in VMs until each has a verdict; false when the run must stop
    /// (out of time, no guest boots, or stopped), the tests left having their verdicts then.
    fn run_group(&mut self) -> Result<bool> {
        let (shared, jobs) = (self.shared, self.shared.jobs);
        while !self.at.pending.is_empty() {
            if shared.stopped() {
                return Ok(false);
            }
            if shared
                .setup
                .run_deadline
                .is_some_and(|deadline| Instant::now() >= deadline)
            {
                let mut left = std::mem::take(&mut self.at.pending);
                left.extend(shared.take_queue());
                self.not_run(
                    left,
                    Outcome::Timeout,
                    "the run's time limit was reached before this test started",
                );
                return Ok(false);
            }
            let label = shared.next_label();
            let group = group(shared.isolation, &self.at.pending, jobs);
            let restorable = shared.restorable();
            let restored = restorable.is_some();
            let (session, logs) = self.vm_session(&label, &group, restorable)?;
            if shared.stopped() {
                return Ok(false);
            }
            let signalled = session
                .infrastructure
                .as_deref()
                .is_some_and(QemuEnd::signalled);
            if !session.booted && restored && !signalled {
                // Ours, not the module's: the tests have not started. Later VMs boot; this one
                // counts as a boot that failed, as a QEMU killed before the guest greeted would.
                if shared.give_up_restoring() {
                    let said = logs
                        .qemu_said()
                        .map_or(String::new(), |m| format!("; QEMU said: {m}"));
                    self.tell(RunEvent::Notice(format!(
                        "{label}: restoring the snapshot failed ({}{said}); VMs boot instead, and the next run saves a new snapshot",
                        session.end
                    )));
                }
            }
            if !session.booted {
                self.at.failed_boots += 1;
                if self.at.failed_boots >= BOOT_ATTEMPTS {
                    let cause = format!(
                        "the guest did not boot ({}), {BOOT_ATTEMPTS} times in a row; this is not the module's fault. \
                         Console: {}",
                        session.end,
                        logs.console.display()
                    );
                    let mut left = std::mem::take(&mut self.at.pending);
                    left.extend(shared.take_queue());
                    self.not_run(left, Outcome::Error, &format!("not run: {cause}"));
                    if let Ok(mut first) = shared.cause.lock() {
                        first.get_or_insert(cause);
                    }
                    return Ok(false);
                }
                self.tell(RunEvent::Notice(format!(
                    "{label}: guest did not boot ({}); retrying in a fresh VM",
                    session.end
                )));
                continue;
            }
            self.at.failed_boots = 0;
            self.take_session(&label, session);
        }
        Ok(true)
    }

    /// Tests no VM will run: each gets `outcome` with `reason` (the run's time limit passed
    /// before they started; the machine could not boot a guest for them).
    fn not_run(&self, pending: Vec<u32>, outcome: Outcome, reason: &str) {
        for id in pending {
            if let Some(job) = self.shared.jobs.get(id) {
                let verdict = Verdict::new(&job.module, &job.spec.name, outcome, reason);
                self.settle(id, verdict);
            }
        }
    }

    /// Boots one VM with the `group`'s plan (or restores `restorable` and sends it the plan) and
    /// reads it to its end; the session and the VM's console log.
    fn vm_session(
        &self,
        label: &str,
        group: &[u32],
        restorable: Option<Restorable>,
    ) -> Result<(Session, VmLogs)> {
        let (shared, setup, jobs) = (self.shared, &self.shared.setup, self.shared.jobs);
        let plan = Plan {
            tests: group
                .iter()
                .filter_map(|id| jobs.get(*id))
                .map(|j| j.planned.clone())
                .collect(),
        };
        let initramfs_started = Instant::now();
        let files = image::guest_files(
            &plan,
            &setup.kernel.release,
            &setup.products.objects,
            &setup.products.programs,
        )?;
        let (initramfs, written, restore) = match restorable {
            Some(r) => {
                let restore = Restore {
                    state: r.snapshot.state,
                    plan,
                    files,
                };
                (r.snapshot.initramfs, None, Some(restore))
            }
            None => {
                let initramfs = folder::initramfs_path(shared.run_dir, label);
                image::write_test_initramfs(&initramfs, &shared.opts.agent, &plan, &files)?;
                (initramfs.clone(), Some(initramfs), None)
            }
        };
        let initramfs_took = initramfs_started.elapsed();
        let config = VmConfig {
            qemu: shared.opts.qemu.clone(),
            kernel_image: setup.kernel.boot_image(),
            initramfs,
            cmdline: vm::cmdline_for(setup.kernel, setup.accel, &setup.kernel.detector_args()),
            accel: setup.accel,
            memory_mb: shared.opts.memory_mb,
            cpus: shared.opts.cpus,
            dir: shared.run_dir.to_path_buf(),
            label: label.to_string(),
            restore,
        };
        let restored = config.restore.is_some();
        let mut vm = Vm::start(&config)?;
        self.tell(RunEvent::VmStarted {
            label: label.to_string(),
            restored,
        });
        let session = self.drive(&mut vm, restored);
        self.send(Message::Timings {
            initramfs: initramfs_took,
            vms: session
                .last_verdict
                .unwrap_or_else(Instant::now)
                .saturating_duration_since(vm.started),
        });
        // The initramfs is rebuilt from the run's inputs at will; keep the run folder small.
        if let Some(written) = written {
            let _ = std::fs::remove_file(written);
        }
        self.tell(RunEvent::VmEnded {
            label: label.to_string(),
            reason: session.end.clone(),
        });
        Ok((session, vm.logs.clone()))
    }

    /// One VM's session, told to the run's thread as it goes.
    fn drive(&self, vm: &mut Vm, restored: bool) -> Session {
        let label = vm.label.clone();
        let jobs = self.shared.jobs;
        let mut source = Stoppable {
            vm: vm as &mut dyn EventSource,
            stop: &self.shared.stop,
        };
        session::drive(
            &mut source,
            jobs,
            self.shared.setup.run_deadline,
            &mut |progress| match progress {
                Progress::Booted { after } => self.tell(RunEvent::VmBooted {
                    label: label.clone(),
                    after,
                    restored,
                }),
                Progress::TestStarted(test) => {
                    if let Some(job) = jobs.get(test) {
                        self.tell(RunEvent::TestStarted {
                            id: format!("{}/{}", job.module, job.spec.name),
                        });
                    }
                }
                Progress::AgentError(text) => {
                    self.tell(RunEvent::Notice(format!("{label}: {text}")))
                }
                Progress::Verdict(id, verdict) => self.send(Message::Told(id, verdict.clone())),
            },
        )
    }

    /// Keeps a booted VM's verdicts. A VM that booted but ran nothing gives the next test an
    /// ERROR, so that the run cannot loop forever.
    fn take_session(&mut self, label: &str, mut session: Session) {
        let progressed = !session.verdicts.is_empty();
        for (id, verdict) in std::mem::take(&mut session.verdicts) {
            self.at.pending.retain(|p| *p != id);
            self.send(Message::Kept(id, verdict));
        }
        if let Some(cause) = session.infrastructure.take() {
            self.infrastructure_failure(label, &cause, session.held.take());
            return;
        }
        let out_of_time = self
            .shared
            .setup
            .run_deadline
            .is_some_and(|deadline| Instant::now() >= deadline);
        if progressed || out_of_time || self.at.pending.is_empty() {
            return;
        }
        let id = self.at.pending.remove(0);
        if let Some(job) = self.shared.jobs.get(id) {
            let verdict = Verdict::new(
                &job.module,
                &job.spec.name,
                Outcome::Error,
                format!("the agent ran nothing: {}", session.end),
            );
            self.settle(id, verdict);
        }
    }

    /// Something outside the guest ended the VM. The test it interrupted (or else the next one to
    /// run) answers for it: the first time it runs again in a fresh VM, the second time it gets
    /// its ERROR naming the cause, and the run goes on with the others.
    fn infrastructure_failure(&mut self, label: &str, cause: &str, held: Option<(u32, Verdict)>) {
        let Some(id) = held
            .as_ref()
            .map(|(id, _)| *id)
            .or_else(|| self.at.pending.first().copied())
        else {
            return;
        };
        let Some(job) = self.shared.jobs.get(id) else {
            return;
        };
        let test = format!("{}/{}", job.module, job.spec.name);
        if self.at.retried.insert(id) {
            self.tell(RunEvent::Notice(format!(
                "{label}: {cause}; {test} runs again in a fresh VM"
            )));
            return;
        }
        self.at.pending.retain(|p| *p != id);
        let verdict = held
            .map(|(_, verdict)| verdict)
            .unwrap_or_else(|| Verdict::new(&job.module, &job.spec.name, Outcome::Error, cause));
        self.settle(id, session::held_twice(verdict, label));
    }
}

/// A VM whose events stop coming once the run is stopped (another worker failed): its session
/// ends at once and the VM with it.
struct Stoppable<'a, S: EventSource + ?Sized> {
    vm: &'a mut S,
    stop: &'a AtomicBool,
}

impl<S: EventSource + ?Sized> EventSource for Stoppable<'_, S> {
    fn next_event(&mut self, deadline: Instant) -> Option<VmEvent> {
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return None;
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            if let Some(event) = self.vm.next_event(deadline.min(now + STOP_POLL)) {
                return Some(event);
            }
        }
    }

    fn stop(&mut self) -> Vec<VmEvent> {
        self.vm.stop()
    }

    fn started(&self) -> Instant {
        self.vm.started()
    }

    fn now(&self) -> Instant {
        self.vm.now()
    }

    fn end(&mut self) -> Option<QemuEnd> {
        self.vm.end()
    }
}

/// The tests the next VM runs, by the run's isolation.
fn group(isolation: Isolation, pending: &[u32], jobs: &Jobs) -> Vec<u32> {
    let first = pending.first().copied();
    let module_of = |id: u32| jobs.get(id).map(|j| &j.module);
    match isolation {
        Isolation::All => pending.to_vec(),
        Isolation::Module => pending
            .iter()
            .copied()
            .filter(|id| module_of(*id) == first.and_then(module_of))
            .collect(),
        Isolation::Test => first.into_iter().collect(),
    }
}

/// The groups the workers take from the queue, in order: each test alone (`test`), or the tests
/// of one module folder (`module`); `all` makes one group of them all.
fn groups(isolation: Isolation, pending: &[u32], jobs: &Jobs) -> Vec<Vec<u32>> {
    let mut rest = pending.to_vec();
    let mut groups = Vec::new();
    while !rest.is_empty() {
        let next = group(isolation, &rest, jobs);
        if next.is_empty() {
            break;
        }
        rest.retain(|id| !next.contains(id));
        groups.push(next);
    }
    groups
}

/// `pending` cut into at most `parts` contiguous groups whose sizes differ by one at most, the
/// larger first; no group is empty.
fn split(pending: &[u32], parts: usize) -> Vec<Vec<u32>> {
    let parts = parts.clamp(1, pending.len().max(1));
    let (size, larger) = (pending.len() / parts, pending.len() % parts);
    let mut rest = pending;
    let mut groups = Vec::with_capacity(parts);
    for part in 0..parts {
        let (group, after) = rest.split_at(size + usize::from(part < larger));
        if !group.is_empty() {
            groups.push(group.to_vec());
        }
        rest = after;
    }
    groups
}

/// `MemAvailable` from /proc/meminfo, in KiB.
fn mem_available_kb() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    mem_available_in(&meminfo)
}

fn mem_available_in(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|line| {
        let value = line.strip_prefix("MemAvailable:")?;
        value.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// How many VMs of `memory_mb` (each with QEMU's own overhead) fit in the run's share of
/// `available_kb`; one at least, so that a run always runs.
fn vms_that_fit(available_kb: u64, memory_mb: u32) -> usize {
    let share_mb = available_kb / 1024 * MEMORY_SHARE_PERCENT / 100;
    let per_vm = u64::from(memory_mb) + QEMU_OVERHEAD_MB;
    usize::try_from(share_mb / per_vm)
        .unwrap_or(usize::MAX)
        .max(1)
}

/// What the run says when the memory available lowered the number of VMs.
fn memory_notice(fit: usize, wanted: usize, available_kb: u64) -> String {
    format!(
        "using {fit} VM{}, not {wanted}: {:.1} GiB of memory available",
        if fit == 1 { "" } else { "s" },
        available_kb as f64 / (1024.0 * 1024.0)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tests_are_split_into_contiguous_groups_balanced_by_count() {
        let ids: Vec<u32> = (0..7).collect();
        assert_eq!(split(&ids, 2), [vec![0, 1, 2, 3], vec![4, 5, 6]]);
        assert_eq!(split(&ids, 3), [vec![0, 1, 2], vec![3, 4], vec![5, 6]]);
        assert_eq!(split(&ids, 1), vec![ids.clone()]);
        // Fewer tests than workers: one group each, none empty.
        assert_eq!(split(&[4, 9], 4), [vec![4], vec![9]]);
        assert_eq!(split(&ids, 0), vec![ids.clone()]);
        assert!(split(&[], 3).iter().all(|g| !g.is_empty()));
    }

    #[test]
    fn memory_bounds_the_vms() {
        // 256 MB guests and QEMU's overhead: 352 MB each.
        let gib = 1024 * 1024;
        assert_eq!(vms_that_fit(23 * gib, 256), 53);
        assert_eq!(vms_that_fit(gib, 256), 2);
        // 80% of 1.1 GiB is 901 MB: two VMs of 352 MB, not three.
        assert_eq!(vms_that_fit(gib * 11 / 10, 256), 2);
        assert_eq!(vms_that_fit(gib * 2, 1024), 1);
        // Too little for even one: one anyway.
        assert_eq!(vms_that_fit(100 * 1024, 256), 1);
    }

    /// A VM that never says anything: it waits out every deadline.
    struct Silent(Instant);

    impl EventSource for Silent {
        fn next_event(&mut self, deadline: Instant) -> Option<VmEvent> {
            std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
            None
        }
        fn stop(&mut self) -> Vec<VmEvent> {
            Vec::new()
        }
        fn started(&self) -> Instant {
            self.0
        }
        fn now(&self) -> Instant {
            Instant::now()
        }
        fn end(&mut self) -> Option<QemuEnd> {
            None
        }
    }

    #[test]
    fn a_stopped_run_ends_a_waiting_session_at_once() {
        let stop = AtomicBool::new(false);
        let mut vm = Silent(Instant::now());
        let far = Instant::now() + Duration::from_secs(60);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                std::thread::sleep(Duration::from_millis(150));
                stop.store(true, Ordering::SeqCst);
            });
            let mut source = Stoppable {
                vm: &mut vm,
                stop: &stop,
            };
            let waited = Instant::now();
            assert!(source.next_event(far).is_none());
            assert!(
                waited.elapsed() < Duration::from_secs(2),
                "{:?}",
                waited.elapsed()
            );
        });
    }

    #[test]
    fn a_panicking_worker_stops_the_others() {
        let stop = AtomicBool::new(false);
        let panicked = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let _guard = StopOnPanic(&stop);
                    panic!("a worker's bug");
                })
                .join()
                .is_err()
        });
        assert!(panicked);
        assert!(stop.load(Ordering::SeqCst));
        // A worker that ends normally leaves the run going.
        let calm = AtomicBool::new(false);
        drop(StopOnPanic(&calm));
        assert!(!calm.load(Ordering::SeqCst));
    }

    #[test]
    fn fewer_vms_for_lack_of_memory_are_told_in_one_line() {
        let available_kb = 1024 * 1024 * 11 / 10;
        let fit = vms_that_fit(available_kb, 256);
        assert_eq!(
            memory_notice(fit, 4, available_kb),
            "using 2 VMs, not 4: 1.1 GiB of memory available"
        );
        assert_eq!(
            memory_notice(1, 2, 400 * 1024),
            "using 1 VM, not 2: 0.4 GiB of memory available"
        );
    }

    #[test]
    fn mem_available_is_read_from_meminfo() {
        let meminfo = "MemTotal:       24683324 kB\nMemFree:          271536 kB\n\
                       MemAvailable:   24121952 kB\nBuffers:            1220 kB\n";
        assert_eq!(mem_available_in(meminfo), Some(24_121_952));
        assert_eq!(mem_available_in("MemTotal: 1 kB\n"), None);
    }
}
