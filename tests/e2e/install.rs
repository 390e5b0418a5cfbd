//! One binary: `cargo install --path harness/host` into a fresh prefix gives a `kmodlab` that
//! carries its guest agent and every kernel config fragment, so that, alone in its folder and run
//! from a module folder outside this repository, it passes a test on the debug kernel
//! (`--kernel-config rust,debug`: a fragment the binary must carry, not read from kernel-configs/).
//!
//! The install builds in `target/install`, kept between runs, in the dev profile (what is checked is
//! what the binary carries, which the profile does not change): the test takes 7 s warm, and 2 min
//! 49 s cold on 2 cores shared with a kernel build (the dependencies, kmodlab and the agent).

use kmodlab_e2e::root;
use std::process::Command;

#[test]
fn an_installed_kmodlab_alone_in_its_folder_passes_a_module_elsewhere_on_the_debug_kernel() {
    let prefix = tempfile::tempdir().expect("tempdir");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root())
        .args(["install", "--offline", "--locked", "--debug", "--quiet"])
        .args(["--path", "harness/host", "--root"])
        .arg(prefix.path())
        .arg("--target-dir")
        .arg(root().join("target").join("install"))
        .status()
        .expect("running cargo install");
    assert!(status.success(), "cargo install failed: {status}");
    let bin = prefix.path().join("bin");
    let beside: Vec<_> = std::fs::read_dir(&bin)
        .expect("listing bin/")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        beside,
        ["kmodlab"],
        "nothing but kmodlab in {}",
        bin.display()
    );

    // A module folder outside the repository, with nothing of kmodlab's near it: `cd hello && kmodlab test`.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let module = elsewhere.path().join("hello");
    std::fs::create_dir(&module).expect("mkdir");
    for file in ["Kbuild", "hello.c", "kmodlab.toml"] {
        std::fs::copy(root().join("modules/hello").join(file), module.join(file))
            .unwrap_or_else(|e| panic!("copying {file}: {e}"));
    }
    let out = Command::new(bin.join("kmodlab"))
        .current_dir(&module)
        .args(["test", "--no-setup", "--kernel-config", "rust,debug"])
        .env_remove("KMODLAB_AGENT")
        .output()
        .expect("running the installed kmodlab");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("PASS    hello/greets") && stdout.contains("1 passed, 0 failed"),
        "{stdout}"
    );
}
