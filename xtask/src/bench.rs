//! `cargo xtask bench`: where the time of a warm `cargo xtask test MODULE` goes, as medians of
//! several runs; with `--examples` what running VMs side by side gives on all the examples; with
//! `--snapshots` what restoring VMs from a snapshot gives against booting them.
//! The figures are recorded in docs/PERFORMANCE.md.

use anyhow::Context as _;
use kmodlab::cli::Context;
use kmodlab::guest::snapshot::{self, Snapshot};
use kmodlab::guest::vm::Accelerator;
use kmodlab::kernel::{Kernel, KernelRequest};
use kmodlab::run::{self, Isolation, RunEvent, RunOptions, RunReport};
use kmodlab::spec::select::{self, Selected};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// What every benchmarked run shares: the kernel asked for, the agent and QEMU.
struct Setup {
    request: KernelRequest,
    agent: PathBuf,
    qemu: PathBuf,
}

impl Setup {
    fn new(root: &Path, ctx: &Context) -> anyhow::Result<Setup> {
        Ok(Setup {
            request: kmodlab::cli::kernel_request(&Default::default(), ctx)?,
            agent: kmodlab::build::agent::build_in_workspace(root)?,
            qemu: kmodlab::host::setup::require_tool("qemu-system-x86_64")?,
        })
    }

    /// The options of one benchmarked run; everything else as `test` has it by default.
    fn options(
        &self,
        selection: &[Selected],
        jobs: u32,
        isolation: Option<Isolation>,
        snapshots: bool,
    ) -> RunOptions {
        let mut options = RunOptions::new(
            selection.to_vec(),
            self.request.clone(),
            self.agent.clone(),
            self.qemu.clone(),
        );
        options.jobs = jobs;
        options.isolation = isolation;
        options.snapshots = snapshots;
        options
    }
}

pub fn bench(root: &Path, ctx: &Context, module: &str, runs: usize) -> anyhow::Result<()> {
    let setup = Setup::new(root, ctx)?;
    let kernel = kmodlab::kernel::ensure(&setup.request)?;
    let selection = select::select(&ctx.modules_dir, &[module.to_string()])?;
    let spec = &selection[0].spec;
    let options = setup.options(&selection, 1, None, true);

    let mut rows: Vec<(&str, Vec<Duration>)> = vec![
        ("kernel cache check", vec![]),
        ("module build, clean", vec![]),
        ("module build, up to date", vec![]),
        ("initramfs write", vec![]),
        ("QEMU start to verdict", vec![]),
        ("in-process run, total", vec![]),
        ("`cargo xtask test` wall", vec![]),
    ];
    for i in 0..runs {
        eprintln!("run {}/{runs}", i + 1);
        // A clean module build: drop the build copy so Kbuild compiles everything again.
        let copy = kmodlab::build::module::build(spec, &kernel)?.copy_dir;
        if let Some(copy_root) = copy.parent() {
            std::fs::remove_dir_all(copy_root)?;
        }
        let clean = kmodlab::build::module::build(spec, &kernel)?;
        rows[1].1.push(clean.duration);
        let warm = kmodlab::build::module::build(spec, &kernel)?;
        rows[2].1.push(warm.duration);

        let report = passing_run(&options, &mut |_| {})?;
        rows[0].1.push(report.timings.kernel);
        rows[3].1.push(report.timings.initramfs);
        rows[4].1.push(report.timings.vms);
        rows[5].1.push(report.duration);
        rows[6].1.push(xtask_test(root, &[module])?);
    }

    let title = format!("step ({module}, {runs} runs)");
    let rows: Vec<(&str, &[Duration])> = rows.iter().map(|(n, t)| (*n, &t[..])).collect();
    table(&title, &rows);
    Ok(())
}

/// Every example in one run, with one VM at a time and with as many as the machine has CPUs,
/// the two alternated so that the machine's drift falls on both alike; the ratio is taken run by
/// run.
pub fn bench_examples(root: &Path, ctx: &Context, runs: usize) -> anyhow::Result<()> {
    let setup = Setup::new(root, ctx)?;
    let selection = select::select(&ctx.modules_dir, &[])?;
    let parallel = run::default_jobs();
    let one = setup.options(&selection, 1, None, true);
    let many = setup.options(&selection, parallel, None, true);
    let tests = test_count(&selection);
    let (mut alone, mut side_by_side) = (vec![], vec![]);
    for i in 0..runs {
        eprintln!("examples, run {}/{runs}", i + 1);
        alone.push(timed_run(&one)?);
        side_by_side.push(timed_run(&many)?);
    }
    let jobs_n = format!("`--jobs {parallel}`");
    table(
        &format!("all examples ({tests} tests, {runs} runs each, alternated)"),
        &[("`--jobs 1`", &alone), (&jobs_n, &side_by_side)],
    );
    print_ratio(&format!("{jobs_n} / `--jobs 1`"), &side_by_side, &alone);
    Ok(())
}

/// Restoring VMs from a snapshot against booting them, every variant once in each run so that
/// the machine's drift falls on all alike; ratios are taken run by run.
pub fn bench_snapshots(root: &Path, ctx: &Context, runs: usize) -> anyhow::Result<()> {
    let setup = Setup::new(root, ctx)?;
    let kernel = kmodlab::kernel::ensure(&setup.request)?;
    if let Some(why) = snapshot::unsupported(&kernel) {
        anyhow::bail!("this kernel cannot be snapshotted: {why}");
    }
    let hello = select::select(&ctx.modules_dir, &["hello".to_string()])?;
    let all = select::select(&ctx.modules_dir, &[])?;
    let variants = Variants::new(&setup, &hello, &all);
    // Every module built and the cache's snapshot saved before anything is timed.
    let accel = warm_up(&variants.shared)?;
    let mut samples = Samples::default();
    for i in 0..runs {
        eprintln!("snapshots, run {}/{runs}", i + 1);
        samples.measure(root, &variants, &kernel, accel)?;
    }
    samples.print(test_count(&all), variants.parallel, runs);
    Ok(())
}

/// The runs `bench_snapshots` compares.
struct Variants {
    hello_boot: RunOptions,
    hello_restore: RunOptions,
    /// All the examples in one VM, restored.
    shared: RunOptions,
    /// All the examples, a fresh VM per test: restored, booted, and restored `parallel` at once.
    pristine_restore: RunOptions,
    pristine_boot: RunOptions,
    pristine_parallel: RunOptions,
    parallel: u32,
}

impl Variants {
    fn new(setup: &Setup, hello: &[Selected], all: &[Selected]) -> Variants {
        let parallel = run::default_jobs();
        Variants {
            hello_boot: setup.options(hello, 1, Some(Isolation::All), false),
            hello_restore: setup.options(hello, 1, Some(Isolation::All), true),
            shared: setup.options(all, 1, Some(Isolation::All), true),
            pristine_restore: setup.options(all, 1, Some(Isolation::Test), true),
            pristine_boot: setup.options(all, 1, Some(Isolation::Test), false),
            pristine_parallel: setup.options(all, parallel, Some(Isolation::Test), true),
            parallel,
        }
    }
}

/// `bench_snapshots`' measurements, one per run in each.
#[derive(Default)]
struct Samples {
    boot_ready: Vec<Duration>,
    restore_ready: Vec<Duration>,
    save_boot: Vec<Duration>,
    save: Vec<Duration>,
    shared: Vec<Duration>,
    pristine_restore: Vec<Duration>,
    pristine_boot: Vec<Duration>,
    pristine_parallel: Vec<Duration>,
    command_restore: Vec<Duration>,
    command_boot: Vec<Duration>,
}

impl Samples {
    fn measure(
        &mut self,
        root: &Path,
        v: &Variants,
        kernel: &Kernel,
        accel: Accelerator,
    ) -> anyhow::Result<()> {
        self.boot_ready.push(ready(&v.hello_boot, false)?);
        self.restore_ready.push(ready(&v.hello_restore, true)?);
        let made = scratch_snapshot(&v.hello_restore, kernel, accel)?;
        self.save_boot.push(made.boot);
        self.save.push(made.save);
        self.shared.push(timed_run(&v.shared)?);
        self.pristine_restore.push(timed_run(&v.pristine_restore)?);
        self.pristine_boot.push(timed_run(&v.pristine_boot)?);
        self.pristine_parallel
            .push(timed_run(&v.pristine_parallel)?);
        self.command_restore.push(xtask_test(root, &["hello"])?);
        self.command_boot
            .push(xtask_test(root, &["hello", "--no-snapshot"])?);
        Ok(())
    }

    fn print(&self, tests: usize, parallel: u32, runs: usize) {
        table(
            &format!("QEMU start to agent ready (`hello`, {runs} runs, alternated)"),
            &[("boot", &self.boot_ready), ("restore", &self.restore_ready)],
        );
        print_ratio("restore / boot", &self.restore_ready, &self.boot_ready);
        table(
            "saving a snapshot (scratch slot)",
            &[
                ("boot to the agent's wait", &self.save_boot),
                ("save", &self.save),
            ],
        );
        self.print_per_test(tests);
        let jobs_n = format!("`--jobs {parallel}`");
        table(
            &format!("all examples, a restored VM per test ({tests} tests)"),
            &[
                ("`--jobs 1`", &self.pristine_restore),
                (&jobs_n, &self.pristine_parallel),
            ],
        );
        print_ratio(
            &format!("{jobs_n} / `--jobs 1`"),
            &self.pristine_parallel,
            &self.pristine_restore,
        );
        table(
            "`cargo xtask test hello`, wall",
            &[
                ("default (restore)", &self.command_restore),
                ("`--no-snapshot`", &self.command_boot),
            ],
        );
        print_ratio(
            "default / `--no-snapshot`",
            &self.command_restore,
            &self.command_boot,
        );
    }

    fn print_per_test(&self, tests: usize) {
        let per_test = |runs: &[Duration]| -> Vec<Duration> {
            runs.iter().map(|d| d.div_f64(tests as f64)).collect()
        };
        let (shared, restore, boot) = (
            per_test(&self.shared),
            per_test(&self.pristine_restore),
            per_test(&self.pristine_boot),
        );
        table(
            &format!("per test, all examples ({tests} tests, `--jobs 1`)"),
            &[
                ("shared VM (`--isolate all`)", &shared),
                ("pristine, restored (`--isolate test`)", &restore),
                ("pristine, booted (`--isolate test --no-snapshot`)", &boot),
            ],
        );
        print_ratio("pristine restored / pristine booted", &restore, &boot);
        print_ratio("pristine restored / shared", &restore, &shared);
    }
}

/// A warm-up run that must pass; the accelerator it chose, which snapshots are keyed by.
fn warm_up(options: &RunOptions) -> anyhow::Result<Accelerator> {
    let mut accel = None;
    passing_run(options, &mut |event| {
        if let RunEvent::Accelerator { accel: chosen, .. } = event {
            accel = Some(*chosen);
        }
    })?;
    accel.context("the warm-up run named no accelerator")
}

/// A passing run's time from starting QEMU to the agent's hello, in a VM `restored` or booted as
/// asked: a restore that fell back to booting would time the wrong thing.
fn ready(options: &RunOptions, restored: bool) -> anyhow::Result<Duration> {
    let mut booted = vec![];
    passing_run(options, &mut |event| {
        if let RunEvent::VmBooted {
            after, restored, ..
        } = event
        {
            booted.push((*after, *restored));
        }
    })?;
    let found = booted.iter().find(|(_, r)| *r == restored);
    found
        .map(|(after, _)| *after)
        .with_context(|| format!("no VM with restored={restored} reached the agent: {booted:?}"))
}

/// A snapshot saved into a folder of its own, so that the cache's snapshot stays as it was. The
/// folder sits in the cache, so that the save writes to the disk the real one does.
fn scratch_snapshot(
    options: &RunOptions,
    kernel: &Kernel,
    accel: Accelerator,
) -> anyhow::Result<Snapshot> {
    let scratch = tempfile::tempdir_in(kmodlab::host::cache::dir("snapshots")?)?;
    let source = run::snapshot_source(options, kernel, accel)?;
    snapshot::make(scratch.path(), &source, &options.qemu)
}

/// One in-process run that must pass, timed.
fn timed_run(options: &RunOptions) -> anyhow::Result<Duration> {
    Ok(passing_run(options, &mut |_| {})?.duration)
}

/// One in-process run; an error unless every test passed.
fn passing_run(
    options: &RunOptions,
    listener: &mut dyn FnMut(&RunEvent),
) -> anyhow::Result<RunReport> {
    let report = run::run(options, listener)?;
    if let Some(v) = report.verdicts.iter().find(|v| v.outcome.is_failure()) {
        anyhow::bail!("{} did not pass: {}", v.id(), v.reason);
    }
    Ok(report)
}

/// The wall time of a whole `cargo xtask test ARGS` process, which must pass.
fn xtask_test(root: &Path, args: &[&str]) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(root)
        .args(["xtask", "test"])
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()?;
    if !status.success() {
        anyhow::bail!("`cargo xtask test {}` failed ({status})", args.join(" "));
    }
    Ok(started.elapsed())
}

fn test_count(selection: &[Selected]) -> usize {
    selection.iter().map(|m| m.spec.tests.len()).sum()
}

/// A markdown table of median, minimum and maximum, one row per series.
fn table(title: &str, rows: &[(&str, &[Duration])]) {
    println!();
    println!("| {title} | median | min | max |");
    println!("|---|---:|---:|---:|");
    for (name, times) in rows {
        print_row(name, times.to_vec());
    }
}

/// The median of the runs' ratios `numerator[i] / denominator[i]`.
fn print_ratio(label: &str, numerator: &[Duration], denominator: &[Duration]) {
    let mut ratios: Vec<f64> = numerator
        .iter()
        .zip(denominator)
        .map(|(n, d)| n.as_secs_f64() / d.as_secs_f64())
        .collect();
    ratios.sort_by(f64::total_cmp);
    println!(
        "\nratio {label}, median of the runs' ratios: {:.2}",
        ratios[ratios.len() / 2]
    );
}

/// A table row: median, minimum and maximum.
fn print_row(name: &str, mut times: Vec<Duration>) {
    times.sort();
    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
    println!(
        "| {name} | {} | {} | {} |",
        ms(times[times.len() / 2]),
        ms(times[0]),
        ms(times[times.len() - 1])
    );
}
