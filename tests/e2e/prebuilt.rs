//! `--kernel-prebuilt`: Debian's prebuilt cloud kernel, fetched with `apt-get download` into the
//! cache, runs the C `hello` example to PASS (built against the unpacked headers, booted on
//! microvm), and `rust_hello` SKIPs because Debian's config has no CONFIG_RUST.

use kmodlab::cli::KernelOpts;
use kmodlab::run::{self, AccelChoice, RunOptions};
use kmodlab::verdict::Outcome;
use kmodlab_e2e::{agent, assert_outcome, context, verdict};

#[test]
fn hello_passes_and_rust_skips_on_the_prebuilt_kernel() {
    let ctx = context();
    let names = vec!["hello".to_string(), "rust_hello".to_string()];
    let selection = run::select(&ctx.modules_dir, &names)
        .unwrap_or_else(|e| panic!("selecting {names:?}: {e:#}"));
    let opts = KernelOpts {
        kernel_prebuilt: true,
        ..Default::default()
    };
    let kernel = kmodlab::cli::kernel_request(&opts, &ctx).unwrap_or_else(|e| panic!("{e:#}"));
    let qemu =
        kmodlab::setup::require_tool("qemu-system-x86_64").unwrap_or_else(|e| panic!("{e:#}"));
    let options = RunOptions {
        selection,
        kernel,
        agent: agent(),
        accel: AccelChoice::Auto,
        qemu,
        runs_dir: None,
        timeout: None,
        run_timeout: None,
        isolation: Default::default(),
        memory_mb: 256,
        cpus: 2,
    };
    let report = run::run(&options, &mut |_| {})
        .unwrap_or_else(|e| panic!("running {names:?} on the prebuilt kernel: {e:#}"));
    for v in &report.verdicts {
        println!("{} {} {}", v.outcome.label(), v.id(), v.reason);
    }
    println!("run folder: {}", report.run_dir.display());
    assert_outcome(verdict(&report, "hello/greets"), Outcome::Pass);
    let rust = verdict(&report, "rust_hello/tsc_advances");
    assert_outcome(rust, Outcome::Skip);
    assert!(
        rust.reason.contains("CONFIG_RUST") && rust.reason.contains("prebuilt"),
        "{}",
        rust.reason
    );
}
