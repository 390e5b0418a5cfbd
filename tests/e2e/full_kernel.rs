//! The `full` kernel profile (kernel-configs/full.config): a module that needs networking
//! (tests/fixtures/net_dummy registers a net_device) SKIPs on the default kernel with a reason that
//! names the option and the profile, and builds, loads and PASSes on `--kernel-config rust,full`.
//! A cold cache builds that kernel first (4-10 min on 2 cores, docs/PERFORMANCE.md).

use kmodlab::cli::KernelOpts;
use kmodlab::judge::verdict::Outcome;
use kmodlab_e2e::{assert_outcome, fixture, run_selection, selection, verdict};

const TEST: &str = "net_dummy/registers_a_net_device";

fn run(kernel: &KernelOpts) -> kmodlab::run::RunReport {
    run_selection(selection(&[fixture("net_dummy")]), kernel)
}

#[test]
fn a_module_that_needs_networking_skips_on_the_default_kernel_and_passes_on_full() {
    let report = run(&Default::default());
    let skipped = verdict(&report, TEST);
    assert_outcome(skipped, Outcome::Skip);
    assert!(
        skipped.reason.contains("CONFIG_NET") && skipped.reason.contains("--kernel-config full"),
        "{}",
        skipped.reason
    );

    let full = KernelOpts {
        kernel_config: vec!["rust".to_string(), "full".to_string()],
        ..Default::default()
    };
    assert_outcome(verdict(&run(&full), TEST), Outcome::Pass);
}
