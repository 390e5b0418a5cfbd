//! The run's VMs: one after another until every job has a verdict, a fresh one after a crash or
//! timeout, a boot that failed retried once, and the run's own time limit kept. A QEMU that
//! something outside the guest ended (a signal kmodlab did not send, QEMU's own crash) is not the
//! module's doing: the test it interrupted (or, between tests, the next one) runs again once in a
//! fresh VM, and gets an ERROR naming the cause only if that VM ends the same way.

use super::plan::Jobs;
use super::session::{self, Progress, Session};
use super::{folder, Isolation, RunEvent, Runner};
use crate::build::Products;
use crate::guest::accel::{self, ProbeBoot};
use crate::guest::image;
use crate::guest::vm::{self, Accelerator, Vm, VmConfig};
use crate::judge::records::TestRecord;
use crate::judge::verdict::{Outcome, Verdict};
use crate::kernel::Kernel;
use anyhow::Result;
use kmodlab_protocol::Plan;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Boots that may fail in a row (infrastructure, not the module) before the run gives up.
const BOOT_ATTEMPTS: u32 = 2;

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

/// What the run's VMs have been through so far.
#[derive(Default)]
struct Attempts {
    /// Tests not yet judged.
    pending: Vec<u32>,
    /// Boots that failed in a row.
    failed_boots: u32,
    /// Tests that an infrastructure failure already sent to a fresh VM once.
    retried: BTreeSet<u32>,
}

impl Runner<'_> {
    /// Runs every job; the number of VMs it took, and why it had to stop early when the machine
    /// could not boot a guest.
    pub(super) fn run_vms(
        &mut self,
        kernel: &Kernel,
        jobs: &Jobs,
        products: &Products,
    ) -> Result<(u32, Option<String>)> {
        let setup = VmSetup {
            kernel,
            accel: self.choose_accel(kernel)?,
            products,
            run_deadline: self.opts.run_timeout.map(|limit| self.started + limit),
        };
        let mut at = Attempts {
            pending: jobs.0.keys().copied().collect(),
            ..Attempts::default()
        };
        let mut vms = 0;
        while !at.pending.is_empty() {
            if setup
                .run_deadline
                .is_some_and(|deadline| Instant::now() >= deadline)
            {
                self.not_run(
                    std::mem::take(&mut at.pending),
                    jobs,
                    Outcome::Timeout,
                    "the run's time limit was reached before this test started",
                );
                break;
            }
            vms += 1;
            let label = format!("vm{vms}");
            let group = group(self.opts.isolation, &at.pending, jobs);
            let (session, console_log) = self.vm_session(&label, &setup, jobs, &group)?;
            if !session.booted {
                at.failed_boots += 1;
                if at.failed_boots >= BOOT_ATTEMPTS {
                    let cause = format!(
                        "the guest did not boot ({}), {BOOT_ATTEMPTS} times in a row; this is not the module's fault. \
                         Console: {}",
                        session.end,
                        console_log.display()
                    );
                    self.not_run(
                        std::mem::take(&mut at.pending),
                        jobs,
                        Outcome::Error,
                        &format!("not run: {cause}"),
                    );
                    return Ok((vms, Some(cause)));
                }
                self.tell(RunEvent::Notice(format!(
                    "{label}: guest did not boot ({}); retrying in a fresh VM",
                    session.end
                )));
                continue;
            }
            at.failed_boots = 0;
            self.take_session(&label, session, &mut at, jobs, setup.run_deadline);
        }
        Ok((vms, None))
    }

    /// KVM when it works (or as asked), else TCG; told to the listener.
    fn choose_accel(&mut self, kernel: &Kernel) -> Result<Accelerator> {
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

    /// Tests no VM will run: each gets `outcome` with `reason` (the run's time limit passed
    /// before they started; the machine could not boot a guest for them).
    fn not_run(&mut self, pending: Vec<u32>, jobs: &Jobs, outcome: Outcome, reason: &str) {
        for id in pending {
            if let Some(job) = jobs.get(id) {
                let verdict = Verdict::new(&job.module, &job.spec.name, outcome, reason);
                self.settle(id, verdict);
            }
        }
    }

    /// Boots one VM with the `group`'s plan and reads it to its end; the session and the VM's
    /// console log.
    fn vm_session(
        &mut self,
        label: &str,
        setup: &VmSetup,
        jobs: &Jobs,
        group: &[u32],
    ) -> Result<(Session, PathBuf)> {
        let plan = Plan {
            tests: group
                .iter()
                .filter_map(|id| jobs.get(*id))
                .map(|j| j.planned.clone())
                .collect(),
        };
        let initramfs = folder::initramfs_path(&self.run_dir, label);
        let initramfs_started = Instant::now();
        image::write_test_initramfs(
            &initramfs,
            &self.opts.agent,
            &plan,
            &setup.kernel.release,
            &setup.products.objects,
            &setup.products.programs,
        )?;
        self.timings.initramfs += initramfs_started.elapsed();
        let config = VmConfig {
            qemu: self.opts.qemu.clone(),
            kernel_image: setup.kernel.boot_image(),
            initramfs: initramfs.clone(),
            cmdline: vm::cmdline_for(setup.kernel, setup.accel, &setup.kernel.detector_args()),
            accel: setup.accel,
            memory_mb: self.opts.memory_mb,
            cpus: self.opts.cpus,
            dir: self.run_dir.clone(),
            label: label.to_string(),
        };
        let mut vm = Vm::start(&config)?;
        self.tell(RunEvent::VmStarted {
            label: label.to_string(),
        });
        let session = self.drive(&mut vm, jobs, setup.run_deadline);
        self.timings.vms += session
            .last_verdict
            .unwrap_or_else(Instant::now)
            .saturating_duration_since(vm.started);
        // The initramfs is rebuilt from the run's inputs at will; keep the run folder small.
        let _ = std::fs::remove_file(&initramfs);
        self.tell(RunEvent::VmEnded {
            label: label.to_string(),
            reason: session.end.clone(),
        });
        Ok((session, vm.logs.console.clone()))
    }

    /// One VM's session, told to the listener as it goes.
    fn drive(&mut self, vm: &mut Vm, jobs: &Jobs, run_deadline: Option<Instant>) -> Session {
        let label = vm.label.clone();
        let (listener, in_order) = (&mut *self.listener, &mut *self.in_order);
        session::drive(vm, jobs, run_deadline, &mut |progress| match progress {
            Progress::Booted { after } => listener(&RunEvent::VmBooted {
                label: label.clone(),
                after,
            }),
            Progress::TestStarted(test) => {
                if let Some(job) = jobs.get(test) {
                    listener(&RunEvent::TestStarted {
                        id: format!("{}/{}", job.module, job.spec.name),
                    });
                }
            }
            Progress::AgentError(text) => listener(&RunEvent::Notice(format!("{label}: {text}"))),
            Progress::Verdict(id, verdict) => in_order.emit(id, verdict, listener),
        })
    }

    /// Keeps a booted VM's verdicts. A VM that booted but ran nothing gives the next test an
    /// ERROR, so that the run cannot loop forever.
    fn take_session(
        &mut self,
        label: &str,
        mut session: Session,
        at: &mut Attempts,
        jobs: &Jobs,
        run_deadline: Option<Instant>,
    ) {
        let pending = &mut at.pending;
        let progressed = !session.verdicts.is_empty();
        for (id, verdict) in std::mem::take(&mut session.verdicts) {
            pending.retain(|p| *p != id);
            self.verdicts.insert(id, verdict);
        }
        if let Some(cause) = session.infrastructure.take() {
            self.infrastructure_failure(label, &cause, session.held.take(), at, jobs);
            return;
        }
        let out_of_time = run_deadline.is_some_and(|deadline| Instant::now() >= deadline);
        if progressed || out_of_time || pending.is_empty() {
            return;
        }
        let id = pending.remove(0);
        if let Some(job) = jobs.get(id) {
            let verdict = Verdict::new(
                &job.module,
                &job.spec.name,
                Outcome::Error,
                format!("the agent ran nothing: {}", session.end),
            );
            self.settle(id, verdict);
        }
    }
}

impl Runner<'_> {
    /// Something outside the guest ended the VM. The test it interrupted (or else the next one to
    /// run) answers for it: the first time it runs again in a fresh VM, the second time it gets
    /// its ERROR naming the cause, and the run goes on with the others.
    fn infrastructure_failure(
        &mut self,
        label: &str,
        cause: &str,
        held: Option<(u32, Verdict)>,
        at: &mut Attempts,
        jobs: &Jobs,
    ) {
        let Some(id) = held
            .as_ref()
            .map(|(id, _)| *id)
            .or_else(|| at.pending.first().copied())
        else {
            return;
        };
        let Some(job) = jobs.get(id) else {
            return;
        };
        let test = format!("{}/{}", job.module, job.spec.name);
        if at.retried.insert(id) {
            self.tell(RunEvent::Notice(format!(
                "{label}: {cause}; {test} runs again in a fresh VM"
            )));
            return;
        }
        at.pending.retain(|p| *p != id);
        let verdict = held
            .map(|(_, verdict)| verdict)
            .unwrap_or_else(|| Verdict::new(&job.module, &job.spec.name, Outcome::Error, cause));
        self.settle(id, session::held_twice(verdict, label));
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
