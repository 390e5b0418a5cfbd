//! The `test` pipeline: kernel, module builds, plan, VMs, verdicts, and the run folder that keeps it all.
//!
//! Every requested test gets exactly one verdict. A crash or timeout ends its VM; the tests after it
//! run in a fresh one. A guest that never reaches the agent is an infrastructure failure: it is retried
//! once in a fresh VM and never blamed on a module.
//!
//! The steps: [`plan`] chooses the tests and builds their modules, [`vms`] runs them in VMs (one
//! VM's session is [`session`]), and [`folder`] keeps it all in the run folder, which [`replay`]
//! judges again for `parse`.

pub mod folder;
pub mod parse;
mod plan;
pub mod replay;
mod restore;
pub use restore::source as snapshot_source;
pub mod session;
mod vms;

use crate::build::{self, module::ModuleBuild};
use crate::guest::accel::AccelChoice;
use crate::guest::vm::Accelerator;
use crate::judge::records::TestRecord;
use crate::judge::rules;
use crate::judge::verdict::Verdict;
use crate::kernel::KernelRequest;
use crate::spec::select::Selected;
use crate::spec::TestSpec;
use anyhow::Result;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How tests share VMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// A fresh VM for every test: no test's leftovers can reach another.
    Test,
    /// A fresh VM for every module folder.
    Module,
    /// One VM for the whole run, and a fresh one after any crash or timeout: each test is judged
    /// on its own log window and its own taint delta, its modules are unloaded before the next
    /// test, and a kernel that crashed or hung never judges another test.
    All,
}

impl Isolation {
    /// The isolation a run gets when none was asked for: a fresh kernel per test where that costs
    /// little, that is where VMs restore from a snapshot (ready in about 0.12 s under TCG, against
    /// 0.56 s for a boot) and the kernel does not hold each VM 5 s for kmemleak (the debug kernel:
    /// all 20 examples took 77 s with a VM per test against 17 s in one VM). Elsewhere one VM.
    pub fn cheapest_pristine(restores: bool, scans_for_leaks: bool) -> Isolation {
        if restores && !scans_for_leaks {
            Isolation::Test
        } else {
            Isolation::All
        }
    }
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub selection: Vec<Selected>,
    pub kernel: KernelRequest,
    pub agent: PathBuf,
    pub accel: AccelChoice,
    pub qemu: PathBuf,
    /// Where run folders go; default: the cache's `runs/`.
    pub runs_dir: Option<PathBuf>,
    /// Overrides every test's time limit.
    pub timeout: Option<Duration>,
    /// Limit for the whole run; tests not finished by then get TIMEOUT verdicts.
    pub run_timeout: Option<Duration>,
    /// `None`: [`Isolation::cheapest_pristine`].
    pub isolation: Option<Isolation>,
    /// VMs at most at once; fewer when the memory available does not fit them.
    pub jobs: u32,
    pub memory_mb: u32,
    pub cpus: u32,
    /// Start VMs by restoring a saved one (made once per kernel, agent and VM shape) instead of
    /// booting each.
    pub snapshots: bool,
}

impl RunOptions {
    /// The options `test` runs with when only what to run, on which kernel, is given: `--accel
    /// auto`, the tests' own limits, one VM shared until something crashes, one VM at a time,
    /// 256 MB and 2 CPUs. (The command line's `--jobs` defaults to [`default_jobs`].)
    pub fn new(
        selection: Vec<Selected>,
        kernel: KernelRequest,
        agent: PathBuf,
        qemu: PathBuf,
    ) -> RunOptions {
        RunOptions {
            selection,
            kernel,
            agent,
            accel: AccelChoice::Auto,
            qemu,
            runs_dir: None,
            timeout: None,
            run_timeout: None,
            isolation: None,
            jobs: 1,
            memory_mb: 256,
            cpus: 2,
            snapshots: true,
        }
    }
}

/// VMs to run at once when not told: the CPUs this process may use.
pub fn default_jobs() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX))
}

/// What the run reports as it goes; the display and report writers listen, the runner knows no UI.
#[derive(Debug, Clone)]
pub enum RunEvent {
    RunFolder(PathBuf),
    KernelReady {
        release: String,
        duration: Duration,
    },
    /// A module folder's build (or the check that it is current) begins.
    ModuleBuilding {
        module: String,
    },
    ModuleBuilt(ModuleBuild),
    Accelerator {
        accel: Accelerator,
        reason: String,
    },
    /// A VM started: booting, or `restored` from a snapshot.
    VmStarted {
        label: String,
        restored: bool,
    },
    /// The agent greeted the host: the guest is up. `after` counts from starting QEMU.
    VmBooted {
        label: String,
        after: Duration,
        restored: bool,
    },
    /// The agent began a test (`module/test`).
    TestStarted {
        id: String,
    },
    VmEnded {
        label: String,
        reason: String,
    },
    Verdict(Verdict),
    /// Something worth telling the user that is not a verdict (an agent error, a retried boot).
    Notice(String),
}

/// The finished run.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub run_dir: PathBuf,
    /// One per requested test, in the requested order.
    pub verdicts: Vec<Verdict>,
    pub vms: u32,
    /// Why the run could not run every test, when the fault was the machine's (a guest that never
    /// booted): the tests it could not run have ERROR verdicts saying so, and `test` exits 2.
    pub infrastructure: Option<String>,
    pub duration: Duration,
    pub timings: Timings,
}

/// Where a run's time went, for the benchmark (docs/PERFORMANCE.md).
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    /// Finding (or building) the kernel.
    pub kernel: Duration,
    /// All module builds (or the checks that they are current).
    pub builds: Duration,
    /// Writing initramfs archives.
    pub initramfs: Duration,
    /// From starting QEMU to its last verdict, summed over VMs.
    pub vms: Duration,
}

/// Runs the selection and judges every test.
pub fn run(opts: &RunOptions, listener: &mut dyn FnMut(&RunEvent)) -> Result<RunReport> {
    let mut in_order = InOrder::default();
    let result = run_in_order(opts, &mut in_order, listener);
    // A run that cannot go on (a build error in a later module, a guest that never boots) still
    // shows the verdicts it had, such as SKIPs held back for the tests requested before them.
    if result.is_err() {
        in_order.flush(listener);
    }
    result
}

fn run_in_order(
    opts: &RunOptions,
    in_order: &mut InOrder,
    listener: &mut dyn FnMut(&RunEvent),
) -> Result<RunReport> {
    let started = Instant::now();
    let run_dir = folder::create_run_dir(opts.runs_dir.as_deref())?;
    listener(&RunEvent::RunFolder(run_dir.clone()));
    let mut runner = Runner {
        opts,
        run_dir,
        started,
        timings: Timings::default(),
        verdicts: BTreeMap::new(),
        told_memory: false,
        in_order,
        listener,
    };
    let kernel = runner.kernel()?;
    let accel = runner.choose_accel(&kernel)?;
    // Saved (when missing) while the modules build, so that this run restores from it already.
    let snapshot = restore::prepare(opts, &kernel, accel);
    let (jobs, products) = runner.plan(&kernel)?;
    // What `parse` needs to judge this run folder again exactly as it was judged now.
    folder::save_plan(&runner.run_dir, &jobs.saved())?;
    // Joined even when no VM will run: a save cut off by the process's exit would leave its files.
    let snapshot = runner.take_snapshot(snapshot);
    let (vms, infrastructure) = if jobs.is_empty() {
        (0, None)
    } else {
        runner.run_vms(&kernel, accel, snapshot, &jobs, &products)?
    };
    let report = RunReport {
        run_dir: runner.run_dir,
        verdicts: runner.verdicts.into_values().collect(),
        vms,
        infrastructure,
        duration: started.elapsed(),
        timings: runner.timings,
    };
    folder::save_verdicts(&report.run_dir, &report.verdicts)?;
    Ok(report)
}

/// A run between its steps.
struct Runner<'a> {
    opts: &'a RunOptions,
    run_dir: PathBuf,
    started: Instant,
    timings: Timings,
    /// By test id: every requested test is numbered, skipped ones too.
    verdicts: BTreeMap<u32, Verdict>,
    /// Whether the run said that the memory available lowered `--jobs`.
    told_memory: bool,
    in_order: &'a mut InOrder,
    listener: &'a mut dyn FnMut(&RunEvent),
}

impl Runner<'_> {
    fn tell(&mut self, event: RunEvent) {
        (self.listener)(&event);
    }

    /// A test's final verdict: passed on (in order) and kept.
    fn settle(&mut self, id: u32, verdict: Verdict) {
        self.in_order.emit(id, &verdict, self.listener);
        self.verdicts.insert(id, verdict);
    }
}

/// One test of the run, with what the plan needs.
struct Job {
    module: String,
    spec: TestSpec,
    planned: kmodlab_protocol::PlannedTest,
    /// The build copy and the module folder it came from, to show the user's paths in reports.
    source_paths: Option<(PathBuf, PathBuf)>,
}

/// Judges a test's record, showing the module's own folder where the kernel printed the paths of
/// the copy it was built from (WARNING lines name source files).
pub(crate) fn judge_in_user_paths(
    module_name: &str,
    spec: &TestSpec,
    record: &TestRecord,
    source_paths: Option<&(PathBuf, PathBuf)>,
) -> Verdict {
    let mut verdict = rules::judge(module_name, spec, record);
    if let Some((copy, original)) = source_paths {
        verdict.map_text(|line| build::copy::relocate(line, copy, original));
    }
    verdict
}

/// Passes verdicts on in the order the tests were requested. A SKIP is known before any VM
/// starts, and would otherwise be printed ahead of the tests requested before it.
#[derive(Default)]
struct InOrder {
    /// The id of the next verdict to pass on.
    next: u32,
    held: BTreeMap<u32, Verdict>,
}

impl InOrder {
    fn emit(&mut self, id: u32, verdict: &Verdict, listener: &mut dyn FnMut(&RunEvent)) {
        // A verdict changed after it was told (a crash a later test's window showed to be this
        // test's leftover): told again at once.
        if id < self.next {
            listener(&RunEvent::Verdict(verdict.clone()));
            return;
        }
        self.held.insert(id, verdict.clone());
        while let Some(verdict) = self.held.remove(&self.next) {
            listener(&RunEvent::Verdict(verdict));
            self.next += 1;
        }
    }

    /// Passes on what is held, in order, without waiting for the gaps.
    fn flush(&mut self, listener: &mut dyn FnMut(&RunEvent)) {
        for (_, verdict) in std::mem::take(&mut self.held) {
            listener(&RunEvent::Verdict(verdict));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_kernel_per_test_by_default_only_where_it_is_cheap() {
        assert_eq!(Isolation::cheapest_pristine(true, false), Isolation::Test);
        // kmemleak holds each VM 5 s; booting each costs a boot.
        assert_eq!(Isolation::cheapest_pristine(true, true), Isolation::All);
        assert_eq!(Isolation::cheapest_pristine(false, false), Isolation::All);
    }

    #[test]
    fn verdicts_are_passed_on_in_the_requested_order() {
        let mut seen = Vec::new();
        let mut listener = |event: &RunEvent| {
            if let RunEvent::Verdict(v) = event {
                seen.push(v.test.clone());
            }
        };
        let mut in_order = InOrder::default();
        let verdict = |name: &str| Verdict::skipped("m", name, String::new());
        // A SKIP decided before the VM ran the tests requested ahead of it waits for them.
        in_order.emit(2, &verdict("c"), &mut listener);
        in_order.emit(0, &verdict("a"), &mut listener);
        in_order.emit(1, &verdict("b"), &mut listener);
        in_order.emit(3, &verdict("d"), &mut listener);
        // A run that stops early shows what it holds, in order.
        in_order.emit(6, &verdict("g"), &mut listener);
        in_order.emit(5, &verdict("f"), &mut listener);
        in_order.flush(&mut listener);
        // A verdict told again (changed by what a later test showed) is passed on at once.
        in_order.emit(0, &verdict("a changed"), &mut listener);
        assert_eq!(seen, ["a", "b", "c", "d", "f", "g", "a changed"]);
    }
}
