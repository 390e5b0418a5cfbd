//! `--kernel-prebuilt`: Debian's prebuilt cloud kernel, fetched with `apt-get download` into the
//! cache, runs the C `hello` example to PASS (built against the unpacked headers, booted on
//! microvm), and `rust_hello` SKIPs because Debian's config has no CONFIG_RUST.

use kmodlab::cli::KernelOpts;
use kmodlab::judge::verdict::Outcome;
use kmodlab::spec::select;
use kmodlab_e2e::{assert_outcome, context, run_selection, verdict};

#[test]
fn hello_passes_and_rust_skips_on_the_prebuilt_kernel() {
    let ctx = context();
    let names = vec!["hello".to_string(), "rust_hello".to_string()];
    let selection = select::select(&ctx.modules_dir, &names)
        .unwrap_or_else(|e| panic!("selecting {names:?}: {e:#}"));
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
