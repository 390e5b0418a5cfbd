//! `kmodlab doctor` on a machine without the tools: exit 2, and each fix names its package.

use std::process::Command;

#[test]
fn doctor_names_the_package_for_a_missing_qemu() {
    let empty = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_kmodlab"))
        .arg("doctor")
        .env("PATH", empty.path())
        .env("HOME", empty.path())
        .env_remove("KMODLAB_CACHE_DIR")
        .env_remove("XDG_CACHE_HOME")
        .output()
        .expect("kmodlab runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    let qemu = text
        .lines()
        .position(|l| l.starts_with("MISSING  QEMU"))
        .unwrap_or_else(|| panic!("{text}"));
    let fix = text.lines().nth(qemu + 1).unwrap_or_default();
    assert!(
        fix.contains("fix: ") && fix.contains("qemu-system-x86"),
        "{fix}"
    );
}
