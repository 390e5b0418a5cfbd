//! `--kernel-prebuilt=ABI` pins the prebuilt kernel: pinning the ABI that bare `--kernel-prebuilt`
//! resolved (the newest 6.12 cloud kernel whose headers apt offers) gives that same kernel, from
//! the same cache folder, so the ABI is what the key records. (Pinning an older ABI is not tested
//! here: the archive drops old ones.)

use kmodlab::cli::KernelOpts;
use kmodlab_e2e::context;

fn prebuilt(abi: Option<String>) -> kmodlab::kernel::Kernel {
    let opts = KernelOpts {
        kernel_prebuilt: Some(abi),
        ..Default::default()
    };
    let request = kmodlab::cli::kernel_request(&opts, &context()).expect("request");
    kmodlab::kernel::ensure(&request).unwrap_or_else(|e| panic!("{e:#}"))
}

#[test]
fn pinning_the_resolved_abi_gives_the_same_kernel() {
    let newest = prebuilt(None);
    let abi = newest
        .release
        .strip_suffix("-cloud-amd64")
        .unwrap_or_else(|| panic!("release {}", newest.release))
        .to_string();
    assert!(abi.starts_with("6.12.") && abi.contains("+deb"), "{abi}");
    let pinned = prebuilt(Some(abi));
    assert_eq!(pinned.key, newest.key);
    assert_eq!(pinned.release, newest.release);
}
