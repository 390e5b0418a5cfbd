//! The kernel is built once per content key; asking again does no build.

use kmodlab_e2e::context;

#[test]
fn a_second_ensure_reuses_the_built_kernel() {
    let request = kmodlab::cli::kernel_request(&Default::default(), &context()).expect("request");
    let first = kmodlab::kernel::ensure(&request).expect("kernel");
    let stamp_before = std::fs::metadata(&first.image)
        .and_then(|m| m.modified())
        .expect("image time");
    let second = kmodlab::kernel::ensure(&request).expect("kernel again");
    assert_eq!(first.key, second.key);
    assert_eq!(
        std::fs::metadata(&second.image)
            .and_then(|m| m.modified())
            .expect("image time"),
        stamp_before
    );
    assert_eq!(
        second.option("CONFIG_RUST"),
        Some("y"),
        "the default kernel has Rust"
    );
    assert!(second.release.starts_with("6.12"), "{}", second.release);
}
