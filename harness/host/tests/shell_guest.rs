//! The `shell` guest's initramfs: busybox as init, a login shell on ttyS0, the modules with the
//! index files busybox's modprobe reads (written by depmod). Checked with kmodlab's reader and GNU
//! cpio.
//!
//! Needs the static busybox (`/bin/busybox`, Debian package busybox-static), `cpio`, gcc and depmod.

use kmodlab::guest::initramfs::list;
use kmodlab::guest::shell::{module_indexes, write_guest_initramfs, GuestModule, GuestSpec};
use std::path::Path;
use std::process::Command;

/// A relocatable object shaped enough like a module for depmod: its `.modinfo` (name, alias,
/// `depends=`), the symbol it exports (`__ksymtab_strings`) and calls to its dependencies' symbols.
fn module(dir: &Path, name: &str, depends: &[&str]) -> GuestModule {
    let externs: String = depends
        .iter()
        .map(|d| format!("extern void {d}_fn(void);\n"))
        .collect();
    let calls: String = depends.iter().map(|d| format!("{d}_fn();")).collect();
    let source = format!(
        "__attribute__((section(\".modinfo\"), used)) static const char info[] = \
         \"license=GPL\\0name={name}\\0alias={name}-alias\\0depends={}\";\n\
         __attribute__((section(\"__ksymtab_strings\"), used)) static const char ks[] = \"{name}_fn\";\n\
         void {name}_fn(void) {{}}\n{externs}void use_{name}(void) {{ {calls} }}\n",
        depends.join(",")
    );
    let c = dir.join(format!("{name}.c"));
    std::fs::write(&c, source).expect("write");
    let ko = dir.join(format!("{name}.ko"));
    let status = Command::new("gcc")
        .arg("-c")
        .arg(&c)
        .arg("-o")
        .arg(&ko)
        .status()
        .expect("gcc runs");
    assert!(status.success());
    GuestModule::from_ko(name, &ko).expect("modinfo")
}

#[test]
fn the_guest_has_busybox_init_a_console_shell_and_indexed_modules() {
    let dir = tempfile::tempdir().expect("tempdir");
    let modules = [
        module(dir.path(), "core_mod", &[]),
        module(dir.path(), "user_mod", &["core_mod"]),
    ];
    let archive = dir.path().join("guest.cpio");
    write_guest_initramfs(
        &archive,
        &GuestSpec {
            busybox: Path::new("/bin/busybox"),
            release: "6.12.117",
            modules: &modules,
            terminal_size: Some((40, 120)),
        },
    )
    .expect("guest initramfs");
    let bytes = std::fs::read(&archive).expect("read");
    let listed = list(&archive).expect("list");
    let find = |name: &str| {
        listed
            .iter()
            .find(|l| l.entry.name == name)
            .unwrap_or_else(|| panic!("no {name} in the guest"))
    };
    let text = |name: &str| String::from_utf8_lossy(find(name).entry.data_in(&bytes)).into_owned();
    assert_eq!(find("init").link_target.as_deref(), Some("/bin/busybox"));
    assert_eq!(
        find("sbin/modprobe").link_target.as_deref(),
        Some("/bin/busybox")
    );
    assert_eq!(find("bin/busybox").entry.mode_string(), "-rwxr-xr-x");
    assert_eq!(find("dev/console").entry.rdev, (5, 1));
    assert_eq!(find("root").entry.mode_string(), "drwx------");
    assert!(text("etc/inittab").contains("ttyS0::respawn:-/bin/sh"));
    let rcs = text("etc/init.d/rcS");
    for step in [
        "mount -t proc",
        "mount -t sysfs",
        "mount -t devtmpfs",
        "mdev -s",
        "hostname",
    ] {
        assert!(rcs.contains(step), "rcS lacks {step:?}:\n{rcs}");
    }
    assert_eq!(find("etc/init.d/rcS").entry.mode_string(), "-rwxr-xr-x");
    let profile = text("etc/profile");
    assert!(profile.contains("PS1='\\u@\\h:\\w\\$ '"), "{profile}");
    assert!(profile.contains("stty rows 40 cols 120"), "{profile}");
    assert_eq!(text("etc/hostname"), "kmodlab-guest\n");
    assert_eq!(
        text("lib/modules/6.12.117/modules.dep"),
        "extra/core_mod.ko:\nextra/user_mod.ko: extra/core_mod.ko\n"
    );
    assert!(text("lib/modules/6.12.117/modules.alias")
        .ends_with("alias core_mod-alias core_mod\nalias user_mod-alias user_mod\n"));
    assert_eq!(
        find("lib/modules/6.12.117/extra/user_mod.ko")
            .entry
            .data_in(&bytes),
        std::fs::read(dir.path().join("user_mod.ko")).expect("read")
    );

    // GNU cpio reads the same entries.
    let cpio = Command::new("cpio")
        .args(["-t", "--quiet", "-F"])
        .arg(&archive)
        .output()
        .expect("cpio (Debian package cpio)");
    assert!(cpio.status.success());
    let names: Vec<&str> = listed.iter().map(|l| l.entry.name.as_str()).collect();
    let theirs = String::from_utf8_lossy(&cpio.stdout);
    assert_eq!(names, theirs.lines().collect::<Vec<_>>());
}

#[test]
fn a_dynamically_linked_busybox_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("guest.cpio");
    // Any dynamically linked program stands in for a busybox built that way.
    let err = write_guest_initramfs(
        &archive,
        &GuestSpec {
            busybox: Path::new("/bin/ls"),
            release: "6.12.117",
            modules: &[],
            terminal_size: None,
        },
    )
    .expect_err("a dynamic busybox cannot run in the guest");
    assert!(format!("{err:#}").contains("dynamically linked"), "{err:#}");
}

#[test]
fn modules_dep_lists_every_dependency_nearest_first() {
    // a -> b -> c, a -> c, d alone; modprobe loads the list from the end.
    let dir = tempfile::tempdir().expect("tempdir");
    let mods = [
        module(dir.path(), "a", &["b", "c"]),
        module(dir.path(), "b", &["c"]),
        module(dir.path(), "c", &[]),
        module(dir.path(), "d", &[]),
    ];
    let (dep, alias) = module_indexes("6.12.117", &mods).expect("depmod");
    let mut lines: Vec<&str> = dep.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "extra/a.ko: extra/b.ko extra/c.ko",
            "extra/b.ko: extra/c.ko",
            "extra/c.ko:",
            "extra/d.ko:"
        ]
    );
    // Aliases name the module.
    assert!(alias.contains("alias a-alias a\n"), "{alias}");
    assert!(alias.contains("alias d-alias d\n"), "{alias}");
}
