//! The run's first steps: the kernel, then the tests the selection asks for, with their modules
//! built, or a SKIP when the kernel lacks what a module folder requires.

use super::folder::SavedTest;
use super::{Job, RunEvent, Runner};
use crate::build::partial::Failed;
use crate::build::{module, partial, Products};
use crate::guest::image;
use crate::judge::verdict::{Outcome, Verdict};
use crate::kernel::{self, fragments, Kernel};
use crate::spec::select::Selected;
use crate::spec::TestSpec;
use anyhow::Result;
use kmodlab_protocol::{ModuleLoad, PlannedTest, ProgramRun};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The agent allows each unload at least a second past the test's limit, so the host adds that
/// per module.
const UNLOAD_ALLOWANCE: Duration = Duration::from_secs(1);
/// What the host adds per program beyond its own limit: the agent waits up to a second for a
/// killed program to die, and its output (up to 64 KiB) crosses the serial line.
const PROGRAM_ALLOWANCE: Duration = Duration::from_secs(2);

/// The tests that run in VMs, by id.
#[derive(Default)]
pub(super) struct Jobs(pub(super) BTreeMap<u32, Job>);

impl Jobs {
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn get(&self, id: u32) -> Option<&Job> {
        self.0.get(&id)
    }

    /// The plan as the run folder keeps it.
    pub(super) fn saved(&self) -> Vec<SavedTest> {
        self.0
            .iter()
            .map(|(id, j)| SavedTest::new(*id, &j.module, &j.spec, j.source_paths.as_ref()))
            .collect()
    }
}

impl Job {
    /// How long the host waits for the test's `test_finished` (before the agent's grace): its
    /// limit for loading and waiting, each program's own limit, and the agent's allowance for
    /// each unload.
    pub(super) fn host_limit(&self) -> Duration {
        let programs: Duration = self
            .planned
            .run
            .iter()
            .map(|p| Duration::from_millis(p.timeout_ms) + PROGRAM_ALLOWANCE)
            .sum();
        let modules = self.planned.modules.len() as u32;
        let round = UNLOAD_ALLOWANCE * modules + self.spec.after_unload;
        let again = if self.planned.reload {
            self.spec.timeout + round
        } else {
            Duration::ZERO
        };
        self.spec.timeout + programs + round + again
    }
}

impl Runner<'_> {
    /// Finds (or builds) the kernel.
    pub(super) fn kernel(&mut self) -> Result<Kernel> {
        let started = Instant::now();
        let kernel = kernel::ensure(&self.opts.kernel)?;
        self.timings.kernel = started.elapsed();
        self.tell(RunEvent::KernelReady {
            release: kernel.release.clone(),
            duration: self.timings.kernel,
        });
        Ok(kernel)
    }

    /// Numbers every requested test in order: a SKIP for those whose folder needs what the
    /// kernel lacks, a job for the rest, with their modules built.
    pub(super) fn plan(&mut self, kernel: &Kernel) -> Result<(Jobs, Products)> {
        let mut jobs = Jobs::default();
        let mut products = Products::default();
        let mut next_id = 0u32;
        for selected in &self.opts.selection {
            let spec = &selected.spec;
            let tests = chosen_tests(selected);
            let missing = kernel.lacks(&spec.requires);
            if !missing.is_empty() {
                for test in tests {
                    let reason = fragments::skip_reason(kernel, &missing);
                    let verdict = Verdict::skipped(&spec.name, &test.name, reason);
                    self.settle(next_id, verdict);
                    next_id += 1;
                }
                continue;
            }
            self.tell(RunEvent::ModuleBuilding {
                module: spec.name.clone(),
            });
            let build_started = Instant::now();
            let build = module::build(spec, kernel)?;
            self.timings.builds += build_started.elapsed();
            products.add(&build)?;
            let source_paths = Some((build.copy_dir.clone(), spec.dir.clone()));
            let planned: Vec<Planned> = if spec.discovered {
                discovered_tests(selected, &build, kernel)
            } else {
                tests.into_iter().cloned().map(Planned::Run).collect()
            };
            self.tell(RunEvent::ModuleBuilt(build));
            for item in planned {
                let test = match item {
                    Planned::Run(test) => test,
                    Planned::Settled(verdict) => {
                        self.settle(next_id, verdict);
                        next_id += 1;
                        continue;
                    }
                };
                let timeout = self.opts.timeout.unwrap_or(test.timeout);
                let job = job(
                    next_id,
                    &spec.name,
                    &test,
                    timeout,
                    &kernel.release,
                    &source_paths,
                );
                jobs.0.insert(next_id, job);
                next_id += 1;
            }
        }
        Ok((jobs, products))
    }
}

/// The tests of a selected folder the selection names (all of them when it names none).
fn chosen_tests(selected: &Selected) -> Vec<&TestSpec> {
    selected
        .spec
        .tests
        .iter()
        .filter(|t| {
            selected
                .tests
                .as_ref()
                .is_none_or(|names| names.contains(&t.name))
        })
        .collect()
}

/// A requested test: one to run, or one whose verdict is known before any VM (the ERROR of a
/// module that did not build).
enum Planned {
    Run(TestSpec),
    Settled(Verdict),
}

/// A discovered module's test name: the kernel's name for it, with the file's when they differ
/// (`hello_1 (hello-1.ko)`).
fn discovered_test_name(stem: &str) -> String {
    let name = crate::spec::kernel_name(stem);
    if name == stem {
        name
    } else {
        format!("{name} ({stem}.ko)")
    }
}

/// One test per module of a folder without a spec, in Kbuild's order: load it with its
/// dependencies first (depmod's order), settle, unload; or its build failure. When the selection
/// names tests (`dir/hello_1`), only those.
fn discovered_tests(
    selected: &Selected,
    build: &module::ModuleBuild,
    kernel: &Kernel,
) -> Vec<Planned> {
    let stem = |rel: &str| rel.rsplit('/').next().unwrap_or(rel).to_string();
    let mut all: Vec<String> = build
        .objects
        .iter()
        .map(|(name, _)| name.clone())
        .chain(build.failed.iter().map(|f| stem(&f.module)))
        .collect();
    partial::kbuild_order(&selected.spec.dir, &mut all);
    let wanted = |s: &str| {
        selected.tests.as_ref().is_none_or(|names| {
            names.iter().any(|n| {
                *n == s || *n == crate::spec::kernel_name(s) || *n == discovered_test_name(s)
            })
        })
    };
    all.into_iter()
        .filter(|s| wanted(s))
        .map(|s| {
            let test = discovered_test_name(&s);
            if let Some(failed) = build.failed.iter().find(|f| stem(&f.module) == s) {
                let verdict = failed_verdict(&selected.spec.name, &test, failed, kernel);
                return Planned::Settled(verdict);
            }
            let load = build
                .load_orders
                .get(&s)
                .cloned()
                .unwrap_or_else(|| vec![s.clone()]);
            Planned::Run(TestSpec::load_and_unload(&test, load))
        })
        .collect()
}

/// The ERROR of a module that did not build: the compiler's or modpost's first line, or the
/// symbols it needs and what would provide them.
fn failed_verdict(module: &str, test: &str, failed: &Failed, kernel: &Kernel) -> Verdict {
    let reason = if failed.undefined.is_empty() {
        format!("build: {}", failed.first_error().unwrap_or("make failed"))
    } else {
        format!(
            "load: needs symbols the kernel lacks: {}",
            crate::kernel::symbols::explain(kernel, &failed.undefined)
        )
    };
    // make's own lines (which target it gave up on) say nothing the compiler's do not.
    let details = failed
        .lines
        .iter()
        .filter(|l| !l.starts_with("make["))
        .cloned()
        .collect();
    Verdict::new(module, test, Outcome::Error, reason)
        .with_details(details)
        .with_evidence()
}

/// One test as the agent's plan has it: its modules (the last with the test's parameters), its
/// programs, and its limit (`timeout`, which may be the command line's).
fn job(
    id: u32,
    module_name: &str,
    test: &TestSpec,
    timeout: Duration,
    release: &str,
    source_paths: &Option<(PathBuf, PathBuf)>,
) -> Job {
    let last = test.load.len().saturating_sub(1);
    let modules = test
        .load
        .iter()
        .enumerate()
        .map(|(i, name)| ModuleLoad {
            name: crate::spec::kernel_name(name),
            path: image::guest_module_path(release, name),
            params: if i == last {
                test.params.clone()
            } else {
                String::new()
            },
        })
        .collect();
    let spec = TestSpec {
        timeout,
        ..test.clone()
    };
    let run = test
        .run
        .iter()
        .map(|p| ProgramRun {
            name: p.program.clone(),
            path: crate::build::companion::guest_path(module_name, &p.program),
            args: p.args.clone(),
            timeout_ms: p.limit(&spec).as_millis() as u64,
        })
        .collect();
    let planned = PlannedTest {
        id,
        name: format!("{module_name}/{}", test.name),
        modules,
        ktap: test.ktap,
        settle_ms: test.settle.as_millis() as u64,
        timeout_ms: timeout.as_millis() as u64,
        run,
        after_unload_ms: test.after_unload.as_millis() as u64,
        reload: test.reload,
    };
    Job {
        module: module_name.to_string(),
        spec,
        planned,
        source_paths: source_paths.clone(),
    }
}
