//! Provisions and builds the default kernel for real, timing each stage:
//! `cargo run -p kmodlab --example kernel_provision [--no-setup]`.
//!
//! Stages: setup::check() and setup::ensure(true); the Debian source into the cache; a configure
//! with an impossible fragment (must fail, naming the option); the build of base + rust; a second
//! ensure() (must run no make); cached().

use anyhow::{bail, Context, Result};
use kmodlab::host::setup;
use kmodlab::kernel::{self, KernelRequest, SourceSpec};
use std::path::PathBuf;
use std::time::Instant;

fn main() -> Result<()> {
    let configs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../kernel-configs");
    let configs = configs.canonicalize().context("finding kernel-configs/")?;

    let t = Instant::now();
    let missing = setup::check();
    println!(
        "setup::check(): {:.3} s, {} missing",
        t.elapsed().as_secs_f64(),
        missing.len()
    );
    for m in &missing {
        println!("  missing: {m}");
    }
    if !std::env::args().any(|a| a == "--no-setup") {
        let t = Instant::now();
        setup::ensure(true)?;
        println!("setup::ensure(true): {:.3} s", t.elapsed().as_secs_f64());
    }

    let t = Instant::now();
    let tree = kernel::provision_source(&SourceSpec::Debian)?;
    println!(
        "provision_source: {:.1} s -> {}",
        t.elapsed().as_secs_f64(),
        tree.display()
    );

    let scratch = tempfile::tempdir()?;
    let kunit = scratch.path().join("kunit.config");
    std::fs::write(
        &kunit,
        "# KUnit without RUNTIME_TESTING_MENU\nCONFIG_KUNIT=y\nCONFIG_LIST_KUNIT_TEST=y\n",
    )?;
    let impossible = KernelRequest {
        source: SourceSpec::Debian,
        fragments: vec![configs.join("base.config"), kunit],
        jobs: None,
    };
    let t = Instant::now();
    match kernel::configure(&impossible) {
        Ok(path) => bail!(
            "configure accepted an impossible fragment: {}",
            path.display()
        ),
        Err(e) => println!(
            "configure (impossible, {:.1} s) failed as it must:\n{e:#}",
            t.elapsed().as_secs_f64()
        ),
    }

    let req = KernelRequest {
        source: SourceSpec::Debian,
        fragments: vec![configs.join("base.config"), configs.join("rust.config")],
        jobs: None,
    };
    let t = Instant::now();
    let built = kernel::ensure(&req)?;
    println!("ensure (first): {:.1} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let again = kernel::ensure(&req)?;
    println!("ensure (cached): {:.3} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let cached = kernel::cached(&req)?.context("cached() found nothing after ensure()")?;
    println!("cached(): {:.3} s", t.elapsed().as_secs_f64());
    if again.key != built.key || cached.image != built.image {
        bail!("the cached kernel differs from the built one");
    }
    println!(
        "kernel {}: release {}, image {}, KDIR {}, CONFIG_RUST={:?}, MODULES={:?}",
        built.key,
        built.release,
        built.image.display(),
        built.build_dir.display(),
        built.option("CONFIG_RUST"),
        built.option("MODULES")
    );
    Ok(())
}
