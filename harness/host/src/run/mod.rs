//! The `test` pipeline: kernel, module builds, plan, VMs, verdicts, and the run folder that keeps it all.
//!
//! Every requested test gets exactly one verdict. A crash or timeout ends its VM; the tests after it
//! run in a fresh one. A guest that never reaches the agent is an infrastructure failure: it is retried
//! once in a fresh VM and never blamed on a module.

pub mod folder;

use crate::build::module::{self, ModuleBuild};
use crate::build::Products;
use crate::guest::accel::{self, AccelChoice, ProbeBoot};
use crate::guest::image;
use crate::guest::vm::{self, Accelerator, Vm, VmConfig, VmEvent};
use crate::judge::oops;
use crate::judge::records::{Interruption, TestRecord};
use crate::judge::rules;
use crate::judge::verdict::{Outcome, Verdict};
use crate::kernel::{self, fragments, KernelRequest};
use crate::spec::select::Selected;
use crate::spec::TestSpec;
use anyhow::{bail, Context, Result};
use kmodlab_protocol::{Event, ModuleLoad, Plan, PlannedTest, ProgramRun};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a guest may take to boot and greet us before the boot counts as failed.
const BOOT_TIMEOUT: Duration = Duration::from_secs(20);
/// Extra time the host gives the agent beyond a test's own limit before it stops waiting; the agent
/// also allows each unload at least a second past the limit, so the host adds that per module.
const AGENT_GRACE: Duration = Duration::from_secs(2);
const UNLOAD_ALLOWANCE: Duration = Duration::from_secs(1);
/// Once a failure report starts during a test, the test has this long to finish (and the report to
/// be printed in full) before the host ends the VM: a detector's report (soft lockup, hung task)
/// means the test will not finish by itself, and its verdict should not wait for the time limit.
const REPORT_GRACE: Duration = Duration::from_secs(3);
/// What the host adds per program beyond its own limit: the agent waits up to a second for a
/// killed program to die, and its output (up to 64 KiB) crosses the serial line.
const PROGRAM_ALLOWANCE: Duration = Duration::from_secs(2);
/// Boots that may fail in a row (infrastructure, not the module) before the run gives up.
const BOOT_ATTEMPTS: u32 = 2;

/// How tests share VMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// A fresh VM for every test: slowest, for tests that may disturb each other without crashing.
    Test,
    /// A fresh VM for every module folder.
    Module,
    /// One VM for the whole run, and a fresh one after any crash or timeout. The default: each test
    /// is judged on its own log window and its own taint delta, its modules are unloaded before the
    /// next test, and a kernel that crashed or hung never judges another test.
    #[default]
    All,
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
    pub isolation: Isolation,
    pub memory_mb: u32,
    pub cpus: u32,
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
    VmStarted {
        label: String,
    },
    /// The agent greeted the host: the guest is up. `after` counts from starting QEMU.
    VmBooted {
        label: String,
        after: Duration,
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

/// One test of the run, with what the plan needs.
struct Job {
    module: String,
    spec: TestSpec,
    planned: PlannedTest,
    /// The build copy and the module folder it came from, to show the user's paths in reports.
    source_paths: Option<(PathBuf, PathBuf)>,
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
    let run_dir = create_run_dir(opts.runs_dir.as_deref())?;
    listener(&RunEvent::RunFolder(run_dir.clone()));

    let mut timings = Timings::default();
    let kernel_started = Instant::now();
    let kernel = kernel::ensure(&opts.kernel)?;
    timings.kernel = kernel_started.elapsed();
    listener(&RunEvent::KernelReady {
        release: kernel.release.clone(),
        duration: timings.kernel,
    });

    let mut verdicts: BTreeMap<u32, Verdict> = BTreeMap::new();
    let mut jobs: BTreeMap<u32, Job> = BTreeMap::new();
    let mut products = Products::default();
    let mut next_id = 0u32;
    for selected in &opts.selection {
        let spec = &selected.spec;
        let tests: Vec<&TestSpec> = spec
            .tests
            .iter()
            .filter(|t| {
                selected
                    .tests
                    .as_ref()
                    .is_none_or(|names| names.contains(&t.name))
            })
            .collect();
        let missing = kernel.lacks(&spec.requires);
        if !missing.is_empty() {
            for test in tests {
                let verdict = Verdict::skipped(
                    &spec.name,
                    &test.name,
                    fragments::skip_reason(&kernel, &missing),
                );
                in_order.emit(next_id, &verdict, listener);
                verdicts.insert(next_id, verdict);
                next_id += 1;
            }
            continue;
        }
        listener(&RunEvent::ModuleBuilding {
            module: spec.name.clone(),
        });
        let build_started = Instant::now();
        let build = module::build(spec, &kernel)?;
        timings.builds += build_started.elapsed();
        products.add(&build)?;
        let source_paths = Some((build.copy_dir.clone(), spec.dir.clone()));
        listener(&RunEvent::ModuleBuilt(build));
        for test in tests {
            let timeout = opts.timeout.unwrap_or(test.timeout);
            let last = test.load.len().saturating_sub(1);
            let modules = test
                .load
                .iter()
                .enumerate()
                .map(|(i, name)| ModuleLoad {
                    name: name.clone(),
                    path: image::guest_module_path(&kernel.release, name),
                    params: if i == last {
                        test.params.clone()
                    } else {
                        String::new()
                    },
                })
                .collect();
            let spec_for_run = TestSpec {
                timeout,
                ..test.clone()
            };
            let run = test
                .run
                .iter()
                .map(|p| ProgramRun {
                    name: p.program.clone(),
                    path: crate::build::companion::guest_path(&spec.name, &p.program),
                    args: p.args.clone(),
                    timeout_ms: p.limit(&spec_for_run).as_millis() as u64,
                })
                .collect();
            let planned = PlannedTest {
                id: next_id,
                name: format!("{}/{}", spec.name, test.name),
                modules,
                ktap: test.ktap,
                settle_ms: test.settle.as_millis() as u64,
                timeout_ms: timeout.as_millis() as u64,
                run,
            };
            jobs.insert(
                next_id,
                Job {
                    module: spec.name.clone(),
                    spec: spec_for_run,
                    planned,
                    source_paths: source_paths.clone(),
                },
            );
            next_id += 1;
        }
    }

    // What `parse` needs to judge this run folder again exactly as it was judged now.
    let saved: Vec<crate::run::folder::SavedTest> = jobs
        .iter()
        .map(|(id, j)| {
            crate::run::folder::SavedTest::new(*id, &j.module, &j.spec, j.source_paths.as_ref())
        })
        .collect();
    crate::run::folder::save_plan(&run_dir, &saved)?;

    let mut vms = 0;
    if !jobs.is_empty() {
        let (accel, reason) = accel::choose(opts.accel, &opts.qemu, |accel| {
            accel::probe_boot(&ProbeBoot {
                qemu: &opts.qemu,
                kernel: &kernel,
                agent: &opts.agent,
                dir: &run_dir,
                memory_mb: opts.memory_mb,
                accel,
            })
        })?;
        listener(&RunEvent::Accelerator { accel, reason });
        let mut pending: Vec<u32> = jobs.keys().copied().collect();
        let mut failed_boots = 0;
        let run_deadline = opts.run_timeout.map(|limit| started + limit);
        while let Some(&first) = pending.first() {
            if run_deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                for id in pending.drain(..) {
                    if let Some(job) = jobs.get(&id) {
                        let verdict = Verdict::new(
                            &job.module,
                            &job.spec.name,
                            Outcome::Timeout,
                            "the run's time limit was reached before this test started",
                        );
                        in_order.emit(id, &verdict, listener);
                        verdicts.insert(id, verdict);
                    }
                }
                break;
            }
            vms += 1;
            let label = format!("vm{vms}");
            let first_module = jobs.get(&first).map(|j| j.module.clone());
            let group: Vec<u32> = match opts.isolation {
                Isolation::All => pending.clone(),
                Isolation::Module => pending
                    .iter()
                    .copied()
                    .filter(|id| jobs.get(id).map(|j| &j.module) == first_module.as_ref())
                    .collect(),
                Isolation::Test => vec![first],
            };
            let plan = Plan {
                tests: group
                    .iter()
                    .filter_map(|id| jobs.get(id))
                    .map(|j| j.planned.clone())
                    .collect(),
            };
            let initramfs = run_dir.join(format!("{label}.initramfs"));
            let initramfs_started = Instant::now();
            image::write_test_initramfs(
                &initramfs,
                &opts.agent,
                &plan,
                &kernel.release,
                &products.objects,
                &products.programs,
            )?;
            timings.initramfs += initramfs_started.elapsed();
            let config = VmConfig {
                qemu: opts.qemu.clone(),
                kernel_image: kernel.boot_image(),
                initramfs: initramfs.clone(),
                cmdline: vm::cmdline_for(&kernel, accel, &kernel.detector_args()),
                accel,
                memory_mb: opts.memory_mb,
                cpus: opts.cpus,
                dir: run_dir.clone(),
                label: label.clone(),
            };
            let mut vm = Vm::start(&config)?;
            listener(&RunEvent::VmStarted {
                label: label.clone(),
            });
            let session = drive(&mut vm, &jobs, run_deadline, in_order, listener);
            timings.vms += session
                .last_verdict
                .unwrap_or_else(Instant::now)
                .saturating_duration_since(vm.started);
            // The initramfs is rebuilt from the run's inputs at will; keep the run folder small.
            let _ = std::fs::remove_file(&initramfs);
            listener(&RunEvent::VmEnded {
                label: label.clone(),
                reason: session.end.clone(),
            });
            if !session.booted {
                failed_boots += 1;
                if failed_boots >= BOOT_ATTEMPTS {
                    bail!(
                        "the guest did not boot ({}), {BOOT_ATTEMPTS} times in a row; this is not the module's fault. \
                         Console: {}",
                        session.end,
                        vm.console_log.display()
                    );
                }
                listener(&RunEvent::Notice(format!(
                    "{label}: guest did not boot ({}); retrying in a fresh VM",
                    session.end
                )));
                continue;
            }
            failed_boots = 0;
            let mut progressed = false;
            for (id, verdict) in session.verdicts {
                pending.retain(|p| *p != id);
                verdicts.insert(id, verdict);
                progressed = true;
            }
            let out_of_time = run_deadline.is_some_and(|deadline| Instant::now() >= deadline);
            if !progressed && !out_of_time {
                // The agent booted but ran nothing: give the next test a verdict rather than loop forever.
                if let Some(id) = pending.first().copied() {
                    pending.remove(0);
                    if let Some(job) = jobs.get(&id) {
                        let verdict = Verdict::new(
                            &job.module,
                            &job.spec.name,
                            Outcome::Error,
                            format!("the agent ran nothing: {}", session.end),
                        );
                        in_order.emit(id, &verdict, listener);
                        verdicts.insert(id, verdict);
                    }
                }
            }
        }
    }

    let report = RunReport {
        run_dir: run_dir.clone(),
        verdicts: verdicts.into_values().collect(),
        vms,
        duration: started.elapsed(),
        timings,
    };
    write_json(&run_dir.join("verdicts.json"), &report.verdicts)?;
    for verdict in &report.verdicts {
        if !verdict.log.is_empty() {
            let path = run_dir.join(format!("{}.{}.log", verdict.module, verdict.test));
            std::fs::write(&path, verdict.log.join("\n") + "\n")
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(report)
}

/// What one VM did.
struct Session {
    booted: bool,
    verdicts: Vec<(u32, Verdict)>,
    end: String,
    last_verdict: Option<Instant>,
}

/// Reads one VM's events until the agent is done, a test crashes or times out, or QEMU ends.
fn drive(
    vm: &mut Vm,
    jobs: &BTreeMap<u32, Job>,
    run_deadline: Option<Instant>,
    in_order: &mut InOrder,
    listener: &mut dyn FnMut(&RunEvent),
) -> Session {
    let mut session = Session {
        booted: false,
        verdicts: vec![],
        end: String::new(),
        last_verdict: None,
    };
    let mut current: Option<(TestRecord, Instant)> = None;
    // When the current test started, on the host's clock (its deadline can be moved).
    let mut current_started = Instant::now();
    let boot_deadline = vm.started + BOOT_TIMEOUT;
    let mut vm_ended = false;
    loop {
        let deadline = match &current {
            Some((_, deadline)) => *deadline,
            None if !session.booted => boot_deadline,
            // Between tests the agent moves on at once; silence this long means it is stuck.
            None => Instant::now() + AGENT_GRACE * 2,
        };
        let run_limited = run_deadline.is_some_and(|run| run < deadline);
        let deadline = run_deadline.map_or(deadline, |run| run.min(deadline));
        let Some(event) = vm.next_event(deadline) else {
            session.end = match (&current, session.booted) {
                _ if run_limited => "the run's time limit was reached".into(),
                (_, false) => format!("no word from the agent within {}s", BOOT_TIMEOUT.as_secs()),
                (Some(_), true) => "test time limit reached".into(),
                (None, true) => "the agent went silent between tests".into(),
            };
            if let Some((record, _)) = current.as_mut() {
                record.interrupted = Some(if run_limited {
                    Interruption::RunTimeLimit
                } else {
                    Interruption::HostTimeout
                });
            }
            if run_limited && !session.booted {
                // Not the guest's fault: the run simply has no time left.
                session.booted = true;
            }
            break;
        };
        match event {
            VmEvent::Console(line) => {
                if let Some((record, deadline)) = current.as_mut() {
                    if oops::is_marker(&line) {
                        *deadline = (*deadline).min(Instant::now() + REPORT_GRACE);
                    }
                    record.console.push(line);
                }
            }
            VmEvent::AgentNoise(_) => {}
            VmEvent::ConsoleClosed | VmEvent::ChannelError(_) => {
                session.end = match event {
                    VmEvent::ChannelError(e) => e,
                    _ => "QEMU exited".into(),
                };
                vm_ended = true;
                break;
            }
            VmEvent::Agent(event) => match event {
                Event::Hello { .. } => {
                    session.booted = true;
                    listener(&RunEvent::VmBooted {
                        label: vm.label.clone(),
                        after: vm.started.elapsed(),
                    });
                }
                Event::TestStarted { test, .. } => {
                    if let Some(job) = jobs.get(&test) {
                        listener(&RunEvent::TestStarted {
                            id: format!("{}/{}", job.module, job.spec.name),
                        });
                    }
                    let limit = jobs.get(&test).map_or(Duration::from_secs(10), host_limit);
                    let mut record = TestRecord::new(test);
                    record.apply(&event);
                    current_started = Instant::now();
                    current = Some((record, current_started + limit + AGENT_GRACE));
                }
                Event::TestFinished { .. } => {
                    if let Some((mut record, _)) = current.take() {
                        record.apply(&event);
                        let outcome = finish(record, jobs, &mut session, in_order, listener);
                        // A crashed or stuck kernel must not judge the next test: fresh VM.
                        if matches!(outcome, Some(Outcome::Crash | Outcome::Timeout)) {
                            session.end = "a test crashed or timed out".into();
                            break;
                        }
                    }
                }
                Event::Done => {
                    session.end = "the agent finished its plan".into();
                    break;
                }
                Event::AgentError { context, message } => {
                    listener(&RunEvent::Notice(format!(
                        "{}: agent error while {context}: {message}",
                        vm.label
                    )));
                }
                other => {
                    if let Some((record, deadline)) = current.as_mut() {
                        if let Event::Kmsg(kmsg) = &other {
                            if kmsg.lines().any(oops::is_marker) {
                                *deadline = (*deadline).min(Instant::now() + REPORT_GRACE);
                            }
                        }
                        record.apply(&other);
                    }
                }
            },
        }
    }
    vm.stop();
    // What the channels still held when QEMU ended belongs to the test that was running.
    for event in vm.drain() {
        if let Some((record, _)) = current.as_mut() {
            match event {
                VmEvent::Console(line) => record.console.push(line),
                VmEvent::Agent(e) => record.apply(&e),
                _ => {}
            }
        }
    }
    if let Some((mut record, _)) = current.take() {
        if !record.finished {
            // The agent never sent the test's duration: measure it on the host.
            record.duration = current_started.elapsed();
        }
        if record.interrupted.is_none() && !record.finished {
            record.interrupted = Some(if vm_ended {
                Interruption::VmEnded
            } else {
                Interruption::HostTimeout
            });
        }
        finish(record, jobs, &mut session, in_order, listener);
    }
    session
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

/// How long the host waits for a test's `test_finished` (plus [`AGENT_GRACE`]): its limit for
/// loading and waiting, each program's own limit, and the agent's allowance for each unload.
fn host_limit(job: &Job) -> Duration {
    let programs: Duration = job
        .planned
        .run
        .iter()
        .map(|p| Duration::from_millis(p.timeout_ms) + PROGRAM_ALLOWANCE)
        .sum();
    job.spec.timeout + programs + UNLOAD_ALLOWANCE * job.planned.modules.len() as u32
}

fn finish(
    record: TestRecord,
    jobs: &BTreeMap<u32, Job>,
    session: &mut Session,
    in_order: &mut InOrder,
    listener: &mut dyn FnMut(&RunEvent),
) -> Option<Outcome> {
    let job = jobs.get(&record.id)?;
    let mut verdict = rules::judge(&job.module, &job.spec, &record);
    if let Some((copy, original)) = &job.source_paths {
        verdict.map_text(|line| module::relocate(line, copy, original));
    }
    let outcome = verdict.outcome;
    in_order.emit(record.id, &verdict, listener);
    session.verdicts.push((record.id, verdict));
    session.last_verdict = Some(Instant::now());
    Some(outcome)
}

/// `runs/20261122-031500-4242`, plus a `latest` link beside it.
fn create_run_dir(runs_dir: Option<&Path>) -> Result<PathBuf> {
    let runs = match runs_dir {
        Some(dir) => dir.to_path_buf(),
        None => crate::host::cache::dir("runs")?,
    };
    std::fs::create_dir_all(&runs).with_context(|| format!("creating {}", runs.display()))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Several runs can start in the same second, even in one process (the end-to-end tests run in
    // parallel): create_dir, not create_dir_all, so a name already taken is noticed, never shared.
    let base = format!("{}-{}", utc_stamp(now), std::process::id());
    let mut dir = runs.join(&base);
    let mut attempt = 1;
    loop {
        match std::fs::create_dir(&dir) {
            Ok(()) => break,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 1000 => {
                attempt += 1;
                dir = runs.join(format!("{base}-{attempt}"));
            }
            Err(e) => {
                return Err(e).with_context(|| format!("creating the run folder {}", dir.display()))
            }
        }
    }
    let latest = runs.join("latest");
    let _ = std::fs::remove_file(&latest);
    let _ = std::os::unix::fs::symlink(dir.file_name().unwrap_or_default(), &latest);
    Ok(dir)
}

/// `YYYYMMDD-HHMMSS` in UTC for a Unix time (days-to-civil conversion, proleptic Gregorian).
fn utc_stamp(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).context("encoding JSON")?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(seen, ["a", "b", "c", "d", "f", "g"]);
    }

    #[test]
    fn runs_started_together_never_share_a_folder() {
        let runs = tempfile::tempdir().expect("tempdir");
        let folders: Vec<PathBuf> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| create_run_dir(Some(runs.path()))))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread").expect("run folder"))
                .collect()
        });
        let mut unique = folders.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), folders.len(), "{folders:?}");
    }

    #[test]
    fn run_folders_are_named_by_utc_time() {
        assert_eq!(utc_stamp(0), "19700101-000000");
        assert_eq!(utc_stamp(1_795_321_335), "20261122-042215");
        assert_eq!(utc_stamp(951_782_400), "20000229-000000");
    }
}
