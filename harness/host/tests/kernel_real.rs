//! Real kernel provisioning against the Debian source: configuring takes seconds once the source is
//! unpacked (about 20 s the first time). The full build is covered by the end-to-end tests; its own
//! test here stays opt-in: `cargo test -p kmodlab --test kernel_real -- --ignored`.

use kmodlab::kernel::{self, KernelRequest, SourceSpec};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn configs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../kernel-configs")
        .canonicalize()
        .unwrap()
}

#[test]
fn an_option_that_cannot_survive_is_named_with_its_fragment_line_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let kunit = dir.path().join("kunit.config");
    std::fs::write(
        &kunit,
        "# no RUNTIME_TESTING_MENU\nCONFIG_KUNIT=y\nCONFIG_LIST_KUNIT_TEST=y\n",
    )
    .unwrap();
    let req = KernelRequest {
        source: SourceSpec::Debian,
        fragments: vec![configs().join("base.config"), kunit.clone()],
        jobs: None,
    };
    let err = format!("{:#}", kernel::configure(&req).unwrap_err());
    eprintln!("{err}");
    let line = format!(
        "CONFIG_LIST_KUNIT_TEST=y requested by {}:3 but the built config has it unset",
        kunit.display()
    );
    assert!(err.contains(&line), "{err}");
    assert!(
        err.contains("inside `if RUNTIME_TESTING_MENU [=n]`"),
        "{err}"
    );
    assert!(err.contains("depends on KUNIT [=y]"), "{err}");
    assert!(
        !err.contains("CONFIG_KUNIT=y requested"),
        "KUNIT itself survives: {err}"
    );
}

#[test]
#[ignore = "builds a kernel (about 5 to 15 minutes on 2 cores) unless it is cached"]
fn a_built_kernel_is_found_again_without_make() {
    let req = KernelRequest {
        source: SourceSpec::Debian,
        fragments: vec![configs().join("base.config"), configs().join("rust.config")],
        jobs: None,
    };
    let built = kernel::ensure(&req).unwrap();
    assert!(built.image.is_file());
    assert_eq!(built.option("RUST"), Some("y"));
    assert_eq!(built.key, kernel::key(&req).unwrap());

    let started = Instant::now();
    let again = kernel::ensure(&req).unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(again.image, built.image);
    let log = built.build_dir.parent().unwrap().join("build.log");
    let modified = std::fs::metadata(&log).unwrap().modified().unwrap();
    assert!(
        modified.elapsed().unwrap() > started.elapsed(),
        "the cached ensure() touched build.log"
    );
    assert_eq!(kernel::cached(&req).unwrap().unwrap().key, built.key);
}

#[test]
fn losing_rust_shows_why_and_what_rustavailable_says() {
    let dir = tempfile::tempdir().unwrap();
    let modversions = dir.path().join("modversions.config");
    std::fs::write(&modversions, "CONFIG_MODVERSIONS=y\n").unwrap();
    let req = KernelRequest {
        source: SourceSpec::Debian,
        fragments: vec![
            configs().join("base.config"),
            configs().join("rust.config"),
            modversions,
        ],
        jobs: None,
    };
    let err = format!("{:#}", kernel::configure(&req).unwrap_err());
    eprintln!("{err}");
    let rust = configs().join("rust.config");
    assert!(
        err.contains(&format!("CONFIG_RUST=y requested by {}:2", rust.display())),
        "{err}"
    );
    assert!(err.contains("depends on !MODVERSIONS [=y]"), "{err}");
    assert!(err.contains("`make rustavailable` says:"), "{err}");
}

#[test]
fn a_user_tree_configures_with_its_own_key() {
    // The cache's unpacked tree is clean (builds go to O=), so it serves as a user's tree.
    let tree = kernel::provision_source(&SourceSpec::Debian).unwrap();
    let fragments = vec![configs().join("base.config"), configs().join("rust.config")];
    let debian = KernelRequest {
        source: SourceSpec::Debian,
        fragments: fragments.clone(),
        jobs: None,
    };
    let user = KernelRequest {
        source: SourceSpec::Dir(tree),
        fragments,
        jobs: None,
    };
    assert_ne!(kernel::key(&user).unwrap(), kernel::key(&debian).unwrap());
    let config = std::fs::read_to_string(kernel::configure(&user).unwrap()).unwrap();
    assert!(config.lines().any(|l| l == "CONFIG_RUST=y"));
}
