//! `cargo xtask bench`: where the time of a warm `cargo xtask test MODULE` goes, as medians of
//! several runs, and with `--examples` what running VMs side by side gives on all the examples.
//! The figures are recorded in docs/PERFORMANCE.md.

use kmodlab::cli::Context;
use kmodlab::run::{self, RunOptions};
use kmodlab::spec::select;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

pub fn bench(root: &Path, ctx: &Context, module: &str, runs: usize) -> anyhow::Result<()> {
    let request = kmodlab::cli::kernel_request(&Default::default(), ctx)?;
    let kernel = kmodlab::kernel::ensure(&request)?;
    let agent = kmodlab::build::agent::build_in_workspace(root)?;
    let selection = select::select(&ctx.modules_dir, &[module.to_string()])?;
    let spec = &selection[0].spec;
    let options = RunOptions::new(
        selection.clone(),
        request.clone(),
        agent,
        kmodlab::host::setup::require_tool("qemu-system-x86_64")?,
    );

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

        let report = run::run(&options, &mut |_| {})?;
        if report.verdicts.iter().any(|v| v.outcome.is_failure()) {
            anyhow::bail!("{module} did not pass; benchmark a passing module");
        }
        rows[0].1.push(report.timings.kernel);
        rows[3].1.push(report.timings.initramfs);
        rows[4].1.push(report.timings.vms);
        rows[5].1.push(report.duration);

        let started = Instant::now();
        let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .current_dir(root)
            .args(["xtask", "test", module])
            .stdout(std::process::Stdio::null())
            .status()?;
        if !status.success() {
            anyhow::bail!("`cargo xtask test {module}` failed ({status})");
        }
        rows[6].1.push(started.elapsed());
    }

    println!("| step ({module}, {runs} runs) | median | min | max |");
    println!("|---|---:|---:|---:|");
    for (name, times) in rows {
        print_row(name, times);
    }
    Ok(())
}

/// Every example in one run, with one VM at a time and with as many as the machine has CPUs,
/// the two alternated so that the machine's drift falls on both alike; the ratio is taken run by
/// run.
pub fn bench_examples(root: &Path, ctx: &Context, runs: usize) -> anyhow::Result<()> {
    let request = kmodlab::cli::kernel_request(&Default::default(), ctx)?;
    let agent = kmodlab::build::agent::build_in_workspace(root)?;
    let selection = select::select(&ctx.modules_dir, &[])?;
    let parallel = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let options = |jobs: u32| -> anyhow::Result<RunOptions> {
        let mut options = RunOptions::new(
            selection.clone(),
            request.clone(),
            agent.clone(),
            kmodlab::host::setup::require_tool("qemu-system-x86_64")?,
        );
        options.jobs = jobs;
        Ok(options)
    };
    let (one, many) = (options(1)?, options(parallel)?);
    let tests = selection.iter().map(|m| m.spec.tests.len()).sum::<usize>();
    let (mut alone, mut side_by_side, mut ratios) = (vec![], vec![], vec![]);
    for i in 0..runs {
        eprintln!("examples, run {}/{runs}", i + 1);
        let a = timed_run(&one)?;
        let b = timed_run(&many)?;
        ratios.push(b.as_secs_f64() / a.as_secs_f64());
        alone.push(a);
        side_by_side.push(b);
    }
    println!();
    println!("| all examples ({tests} tests, {runs} runs each, alternated) | median | min | max |");
    println!("|---|---:|---:|---:|");
    print_row("`--jobs 1`", alone);
    print_row(&format!("`--jobs {parallel}`"), side_by_side);
    ratios.sort_by(f64::total_cmp);
    println!(
        "\nratio `--jobs {parallel}` / `--jobs 1`, median of the runs' ratios: {:.2}",
        ratios[ratios.len() / 2]
    );
    Ok(())
}

/// One in-process run that must pass, timed.
fn timed_run(options: &RunOptions) -> anyhow::Result<Duration> {
    let report = run::run(options, &mut |_| {})?;
    if let Some(v) = report.verdicts.iter().find(|v| v.outcome.is_failure()) {
        anyhow::bail!("{} did not pass: {}", v.id(), v.reason);
    }
    Ok(report.duration)
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
