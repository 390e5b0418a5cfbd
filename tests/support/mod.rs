//! What the end-to-end tests share: the repository's paths, the agent, the kernel, and a way to run
//! modules through the real pipeline (build, initramfs, QEMU, verdicts) and get the report back.

use kmodlab::cli::{AgentSource, Context};
use kmodlab::judge::verdict::{Outcome, Verdict};
use kmodlab::run::{self, Isolation, RunOptions, RunReport};
use kmodlab::spec::select;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The repository's root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The context `cargo xtask` uses.
pub fn context() -> Context {
    let root = root();
    Context {
        modules_dir: root.join("modules"),
        configs_dir: Some(root.join("kernel-configs")),
        agent: AgentSource::Workspace(root),
    }
}

/// Runs the command line as `kmodlab ARGS...` would, through the code path `cargo xtask` takes
/// (with this repository's modules, kernel configs and agent); its exit code.
pub fn kmodlab(args: &[&str]) -> i32 {
    kmodlab_in(&context(), args)
}

/// [`kmodlab`] with another context (say, another modules folder).
pub fn kmodlab_in(ctx: &Context, args: &[&str]) -> i32 {
    use clap::Parser;
    let all = std::iter::once("kmodlab").chain(args.iter().copied());
    kmodlab::cli::run_cli(
        kmodlab::cli::Cli::try_parse_from(all).expect("arguments parse"),
        ctx,
    )
}

/// A fixture module's folder.
pub fn fixture(name: &str) -> String {
    root()
        .join("tests")
        .join("fixtures")
        .join(name)
        .display()
        .to_string()
}

/// The agent, built once per test process.
pub fn agent() -> PathBuf {
    static AGENT: OnceLock<PathBuf> = OnceLock::new();
    AGENT
        .get_or_init(
            || match kmodlab::build::agent::build_in_workspace(&root()) {
                Ok(path) => path,
                Err(e) => panic!("building the agent: {e:#}"),
            },
        )
        .clone()
}

/// Runs modules (names under modules/, NAME/TEST, or fixture paths) on the default kernel, all
/// in one VM until something crashes (`--isolate all`): most tests here are about what a VM that
/// tests share does (a FAIL costs no VM, a crash ends it, a leftover is charged to its own test).
pub fn run_modules(names: &[&str]) -> RunReport {
    run_modules_isolated(names, Some(Isolation::All))
}

/// [`run_modules`] with `isolation` (`None`: as `test` decides by default).
pub fn run_modules_isolated(names: &[&str], isolation: Option<Isolation>) -> RunReport {
    let report = try_run_isolated(
        selection(names),
        &Default::default(),
        isolation,
        &mut |_| {},
    )
    .unwrap_or_else(|e| panic!("running {names:?}: {e:#}"));
    print_report(&report);
    report
}

/// Runs a selection on the kernel `kernel` describes, as `cargo xtask test` with those kernel
/// options does (`Default::default()`: the default kernel).
pub fn run_selection(
    selection: Vec<select::Selected>,
    kernel: &kmodlab::cli::KernelOpts,
) -> RunReport {
    run_listening(selection, kernel, &mut |_| {})
}

/// [`run_selection`], with `listener` told every event of the run as it happens.
pub fn run_listening(
    selection: Vec<select::Selected>,
    kernel: &kmodlab::cli::KernelOpts,
    listener: &mut dyn FnMut(&run::RunEvent),
) -> RunReport {
    let names: Vec<String> = selection.iter().map(|s| s.spec.name.clone()).collect();
    let report = try_run_listening(selection, kernel, listener)
        .unwrap_or_else(|e| panic!("running {names:?}: {e:#}"));
    print_report(&report);
    report
}

/// Prints a run's verdicts and its folder, for the test's output when it fails.
pub fn print_report(report: &RunReport) {
    for verdict in &report.verdicts {
        println!(
            "{} {} {}",
            verdict.outcome.label(),
            verdict.id(),
            verdict.reason
        );
    }
    println!(
        "run folder: {} ({} VMs)",
        report.run_dir.display(),
        report.vms
    );
}

/// [`run_listening`] for a run that may not happen: its error instead of a panic.
pub fn try_run_listening(
    selection: Vec<select::Selected>,
    kernel: &kmodlab::cli::KernelOpts,
    listener: &mut dyn FnMut(&run::RunEvent),
) -> anyhow::Result<RunReport> {
    try_run_isolated(selection, kernel, Some(Isolation::All), listener)
}

fn try_run_isolated(
    selection: Vec<select::Selected>,
    kernel: &kmodlab::cli::KernelOpts,
    isolation: Option<Isolation>,
    listener: &mut dyn FnMut(&run::RunEvent),
) -> anyhow::Result<RunReport> {
    let options = RunOptions {
        isolation,
        ..options_for(selection, kernel, agent())
    };
    run::run(&options, listener)
}

/// The options `test` has by default for `selection` on the kernel `kernel` describes, with
/// `agent`; a test changes what it is about.
pub fn options_for(
    selection: Vec<select::Selected>,
    kernel: &kmodlab::cli::KernelOpts,
    agent: PathBuf,
) -> RunOptions {
    let kernel =
        kmodlab::cli::kernel_request(kernel, &context()).unwrap_or_else(|e| panic!("{e:#}"));
    let qemu = kmodlab::host::setup::require_tool("qemu-system-x86_64")
        .unwrap_or_else(|e| panic!("{e:#}"));
    RunOptions::new(selection, kernel, agent, qemu)
}

/// The selection `names` make among the repository's modules, failing the test on a bad name.
pub fn selection<S: AsRef<str>>(names: &[S]) -> Vec<select::Selected> {
    let names: Vec<String> = names.iter().map(|n| n.as_ref().to_string()).collect();
    select::select(&context().modules_dir, &names)
        .unwrap_or_else(|e| panic!("selecting {names:?}: {e:#}"))
}

/// The verdict of `module/test`, failing the test with the whole report when it is missing.
pub fn verdict<'a>(report: &'a RunReport, id: &str) -> &'a Verdict {
    report
        .verdicts
        .iter()
        .find(|v| v.id() == id)
        .unwrap_or_else(|| {
            panic!(
                "no verdict for {id}; got {:?}",
                report.verdicts.iter().map(Verdict::id).collect::<Vec<_>>()
            )
        })
}

/// Asserts an outcome and shows the test's kernel log when it differs.
pub fn assert_outcome(verdict: &Verdict, expected: Outcome) {
    assert_eq!(
        verdict.outcome,
        expected,
        "{}: expected {}, got {} ({})\n{}\nkernel log:\n{}",
        verdict.id(),
        expected.label(),
        verdict.outcome.label(),
        verdict.reason,
        verdict.details.join("\n"),
        verdict.log.join("\n")
    );
}
