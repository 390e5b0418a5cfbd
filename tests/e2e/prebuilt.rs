//! `--kernel-prebuilt`: Debian's prebuilt cloud kernel, fetched with `apt-get download` into the
//! cache, runs the C `hello` example to PASS (built against the unpacked headers, booted on
//! microvm), and `rust_hello` SKIPs because Debian's config has no CONFIG_RUST.

use kmodlab::cli::KernelOpts;
use kmodlab::judge::verdict::Outcome;
use kmodlab_e2e::{assert_outcome, run_selection, selection, verdict};

#[test]
fn hello_passes_and_rust_skips_on_the_prebuilt_kernel() {
    let selection = selection(&["hello", "rust_hello"]);
    let kernel = KernelOpts {
        kernel_prebuilt: Some(None),
        ..Default::default()
    };
    let report = run_selection(selection, &kernel);
    assert_outcome(verdict(&report, "hello/greets"), Outcome::Pass);
    let rust = verdict(&report, "rust_hello/tsc_advances");
    assert_outcome(rust, Outcome::Skip);
    assert!(
        rust.reason.contains("CONFIG_RUST") && rust.reason.contains("prebuilt"),
        "{}",
        rust.reason
    );
}
