//! `cargo xtask bench`: where the time of a warm `cargo xtask test MODULE` goes, as medians of
//! several runs. The figures are recorded in docs/PERFORMANCE.md.

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
    for (name, mut times) in rows {
        times.sort();
        let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
        println!(
            "| {name} | {} | {} | {} |",
            ms(times[times.len() / 2]),
            ms(times[0]),
            ms(times[times.len() - 1])
        );
    }
    Ok(())
}
