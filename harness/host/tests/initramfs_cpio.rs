//! Checks the initramfs writer against an independent reader: the system's GNU cpio.
//!
//! These tests need `cpio` on PATH (Debian package `cpio`); they fail, rather than skip, without it,
//! so a missing tool cannot pass for a working writer.

use kmodlab::guest::initramfs::Writer;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

fn archive(build: impl FnOnce(&mut Writer<Vec<u8>>) -> anyhow::Result<()>) -> Vec<u8> {
    let mut w = Writer::new(Vec::new());
    build(&mut w).unwrap();
    w.finish().unwrap()
}

/// Runs cpio with the archive on stdin; returns (stdout, stderr) and insists on success.
fn cpio(args: &[&str], input: &[u8], dir: Option<&Path>) -> (String, String) {
    let mut cmd = Command::new("cpio");
    cmd.args(args)
        .env("TZ", "UTC")
        .env("LC_ALL", "C")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let mut child = cmd
        .spawn()
        .expect("running `cpio` (install GNU cpio, Debian package `cpio`)");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    // Write from a thread so a large listing cannot deadlock against a full stdin pipe.
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "cpio {args:?} failed: {stderr}");
    (stdout, stderr)
}

/// One line of `cpio -itvn`, split into its parts.
#[derive(Debug, PartialEq, Eq)]
struct Listed {
    perms: String,
    nlink: u32,
    owner: (u32, u32),
    /// The size, or "major,minor" for devices.
    size: String,
    date: String,
    name: String,
    target: Option<String>,
}

fn list(bytes: &[u8]) -> Vec<Listed> {
    let (stdout, stderr) = cpio(&["-itvn", "--quiet"], bytes, None);
    assert_eq!(stderr, "", "cpio warned");
    stdout
        .lines()
        .map(|line| {
            let t: Vec<&str> = line.split_whitespace().collect();
            let perms = t[0].to_string();
            let device = perms.starts_with('c') || perms.starts_with('b');
            let (size, rest) = if device {
                (format!("{}{}", t[4], t[5]), 6)
            } else {
                (t[4].to_string(), 5)
            };
            let date = t[rest..rest + 3].join(" ");
            let (name, target) = match &t[rest + 3..] {
                [name] => (name.to_string(), None),
                [name, "->", target] => (name.to_string(), Some(target.to_string())),
                other => panic!("unexpected listing tail {other:?} in {line:?}"),
            };
            Listed {
                perms,
                nlink: t[1].parse().unwrap(),
                owner: (t[2].parse().unwrap(), t[3].parse().unwrap()),
                size,
                date,
                name,
                target,
            }
        })
        .collect()
}

/// Whether we run as root: /proc/self belongs to the effective user.
fn is_root() -> bool {
    std::fs::metadata("/proc/self").unwrap().uid() == 0
}

fn sample(w: &mut Writer<Vec<u8>>, with_devices: bool) -> anyhow::Result<()> {
    if with_devices {
        w.base_layout()?;
        w.block_device("/dev/vda", 0o660, 254, 0)?;
    } else {
        w.dir("/proc", 0o555)?;
        w.dir("/tmp", 0o1777)?;
    }
    w.file("/init", 0o755, b"#!/bin/sh\necho hi\n")?;
    w.file("etc/motd", 0o644, b"welcome\n")?;
    w.file("etc/empty", 0o600, b"")?;
    w.file(
        "lib/modules/6.12.0/extra/demo.ko",
        0o644,
        &[0u8, 1, 2, 3, 255, 7],
    )?;
    // Claims a parent added just above: must not list it twice.
    w.dir("/lib/modules", 0o755)?;
    w.symlink("/bin/sh", "busybox")?;
    w.symlink("sbin/init", "../init")?;
    w.fifo("/run/agent.fifo", 0o620)?;
    w.socket("run/agent.sock", 0o755)?;
    w.dir("srv", 0o700)?;
    Ok(())
}

#[test]
fn cpio_lists_exactly_our_entries() {
    let bytes = archive(|w| sample(w, true));
    let got: Vec<(String, String, String, Option<String>)> = list(&bytes)
        .into_iter()
        .map(|l| {
            assert_eq!(l.owner, (0, 0), "{}", l.name);
            assert_eq!(l.date, "Jan 1 1970", "{}", l.name);
            let dir = l.perms.starts_with('d');
            assert_eq!(l.nlink, if dir { 2 } else { 1 }, "{}", l.name);
            (l.perms, l.size, l.name, l.target)
        })
        .collect();
    let e = |perms: &str, size: &str, name: &str, target: Option<&str>| {
        (
            perms.to_string(),
            size.to_string(),
            name.to_string(),
            target.map(String::from),
        )
    };
    let expected = vec![
        e("drwxr-xr-x", "0", "dev", None),
        e("crw-------", "5,1", "dev/console", None),
        e("crw-rw-rw-", "1,3", "dev/null", None),
        e("dr-xr-xr-x", "0", "proc", None),
        e("dr-xr-xr-x", "0", "sys", None),
        e("drwxrwxrwt", "0", "tmp", None),
        e("drwxr-xr-x", "0", "run", None),
        e("brw-rw----", "254,0", "dev/vda", None),
        e("-rwxr-xr-x", "18", "init", None),
        e("drwxr-xr-x", "0", "etc", None),
        e("-rw-r--r--", "8", "etc/motd", None),
        e("-rw-------", "0", "etc/empty", None),
        e("drwxr-xr-x", "0", "lib", None),
        e("drwxr-xr-x", "0", "lib/modules", None),
        e("drwxr-xr-x", "0", "lib/modules/6.12.0", None),
        e("drwxr-xr-x", "0", "lib/modules/6.12.0/extra", None),
        e("-rw-r--r--", "6", "lib/modules/6.12.0/extra/demo.ko", None),
        e("drwxr-xr-x", "0", "bin", None),
        e("lrwxrwxrwx", "7", "bin/sh", Some("busybox")),
        e("drwxr-xr-x", "0", "sbin", None),
        e("lrwxrwxrwx", "7", "sbin/init", Some("../init")),
        e("prw--w----", "0", "run/agent.fifo", None),
        e("srwxr-xr-x", "0", "run/agent.sock", None),
        e("drwx------", "0", "srv", None),
    ];
    assert_eq!(got, expected);

    // Without --quiet cpio reports only its block count: no other remark about the archive.
    let (_, stderr) = cpio(&["-it"], &bytes, None);
    assert!(
        stderr.trim_end().ends_with(" blocks") && stderr.lines().count() == 1,
        "{stderr:?}"
    );
}

#[test]
fn cpio_extracts_identical_contents_and_permissions() {
    // mknod needs root; as another user the archive leaves device nodes out.
    let root = is_root();
    let bytes = archive(|w| sample(w, root));
    let dir = tempfile::tempdir().unwrap();
    let (_, stderr) = cpio(
        &["-idm", "--no-absolute-filenames", "--quiet"],
        &bytes,
        Some(dir.path()),
    );
    assert_eq!(stderr, "");
    let at = |p: &str| dir.path().join(p);
    let mode = |p: &str| {
        std::fs::symlink_metadata(at(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };

    assert_eq!(std::fs::read(at("init")).unwrap(), b"#!/bin/sh\necho hi\n");
    assert_eq!(mode("init"), 0o755);
    // cpio -m restores the archived mtime (on files; creating children bumps a directory's),
    // which must be 0 for reproducible archives.
    for p in ["init", "etc/motd", "lib/modules/6.12.0/extra/demo.ko"] {
        assert_eq!(std::fs::metadata(at(p)).unwrap().mtime(), 0, "{p}");
    }
    assert_eq!(std::fs::read(at("etc/motd")).unwrap(), b"welcome\n");
    assert_eq!(mode("etc/motd"), 0o644);
    assert_eq!(std::fs::read(at("etc/empty")).unwrap(), b"");
    assert_eq!(mode("etc/empty"), 0o600);
    let ko = at("lib/modules/6.12.0/extra/demo.ko");
    assert_eq!(std::fs::read(ko).unwrap(), [0u8, 1, 2, 3, 255, 7]);
    assert_eq!(
        std::fs::read_link(at("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(
        std::fs::read_link(at("sbin/init")).unwrap(),
        Path::new("../init")
    );
    assert_eq!(
        std::fs::read(at("sbin/init")).unwrap(),
        b"#!/bin/sh\necho hi\n"
    );
    assert!(std::fs::symlink_metadata(at("run/agent.fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    assert_eq!(mode("run/agent.fifo"), 0o620);
    for (d, m) in [
        ("proc", 0o555),
        ("tmp", 0o1777),
        ("srv", 0o700),
        ("lib/modules", 0o755),
    ] {
        assert!(at(d).is_dir(), "{d}");
        assert_eq!(mode(d), m, "{d}");
    }
    let sock = std::fs::symlink_metadata(at("run/agent.sock")).unwrap();
    assert!(sock.file_type().is_socket());
    assert_eq!(mode("run/agent.sock"), 0o755);
    if root {
        let console = std::fs::metadata(at("dev/console")).unwrap();
        assert!(console.file_type().is_char_device());
        assert_eq!(console.rdev(), libc::makedev(5, 1));
        assert_eq!(mode("dev/console"), 0o600);
        let vda = std::fs::metadata(at("dev/vda")).unwrap();
        assert!(vda.file_type().is_block_device());
        assert_eq!(vda.rdev(), libc::makedev(254, 0));
        assert_eq!(mode("dev/null"), 0o666);
    }
}

#[test]
fn file_from_path_streams_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("agent");
    // Larger than any copy buffer and not a multiple of 4, so padding after streamed data is exercised.
    let content: Vec<u8> = (0..200_003u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&source, &content).unwrap();
    let bytes = archive(|w| {
        w.file_from_path("/init", 0o755, &source)?;
        w.file("after", 0o644, b"tail")
    });
    let listed = list(&bytes);
    assert_eq!(listed[0].size, "200003");
    let out = tempfile::tempdir().unwrap();
    cpio(&["-idm", "--quiet"], &bytes, Some(out.path()));
    assert!(std::fs::read(out.path().join("init")).unwrap() == content);
    assert_eq!(std::fs::read(out.path().join("after")).unwrap(), b"tail");
}

#[test]
fn same_input_gives_same_bytes_all_aligned() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("blob");
    std::fs::write(&source, b"odd-length!").unwrap();
    let build = || {
        archive(|w| {
            sample(w, true)?;
            w.file_from_path("data/blob", 0o644, &source)
        })
    };
    let first = build();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = build();
    assert!(first == second, "two builds differ");
    assert_eq!(first.len() % 4, 0);

    // Walk the headers by the format's rules (the kernel's own walk): each must start 4-aligned
    // with the magic, and the walk must end exactly at the end of the archive.
    let hex = |at: usize| {
        u32::from_str_radix(std::str::from_utf8(&first[at..at + 8]).unwrap(), 16).unwrap() as usize
    };
    let mut at = 0;
    let mut headers = 0;
    loop {
        assert_eq!(at % 4, 0);
        assert_eq!(&first[at..at + 6], b"070701", "no header at {at}");
        headers += 1;
        let (filesize, namesize) = (hex(at + 6 + 6 * 8), hex(at + 6 + 11 * 8));
        let name = &first[at + 110..at + 110 + namesize - 1];
        let data = (at + 110 + namesize + 3) & !3;
        at = (data + filesize + 3) & !3;
        if name == b"TRAILER!!!" {
            break;
        }
    }
    assert_eq!(at, first.len());
    assert_eq!(
        headers,
        list(&first).len() + 1,
        "cpio saw a different entry count"
    );
}

#[test]
fn errors_name_the_path() {
    let mut w = Writer::new(Vec::new());
    w.file("/etc/motd", 0o644, b"x").unwrap();
    let err = w.file("etc/motd", 0o600, b"y").unwrap_err().to_string();
    assert!(
        err.contains("etc/motd") && err.contains("duplicate"),
        "{err}"
    );
    let err = w.symlink("/etc", "x").unwrap_err().to_string();
    assert!(err.contains("/etc") && err.contains("duplicate"), "{err}");

    let err = w
        .file("/lib/../etc/shadow", 0o600, b"")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/lib/../etc/shadow") && err.contains(".."),
        "{err}"
    );

    let missing = Path::new("/nonexistent/kmodlab/agent");
    let err = format!(
        "{:#}",
        w.file_from_path("/init", 0o755, missing).unwrap_err()
    );
    assert!(
        err.contains("/init") && err.contains("/nonexistent/kmodlab/agent"),
        "{err}"
    );
    assert!(err.contains("No such file"), "{err}");

    // None of the refused entries left a trace.
    let names: Vec<String> = list(&w.finish().unwrap())
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(names, ["etc", "etc/motd"]);
}

/// A random tree: relative paths (1-4 components) with contents and permission bits.
fn tree() -> impl Strategy<Value = Vec<(Vec<String>, Vec<u8>, u32)>> {
    // A leading letter keeps '.' and '..' out; a few names repeat so paths share parents.
    let component = "[a-c][a-c0-9._-]{0,3}";
    let path = prop::collection::vec(component, 1..=4);
    let data = prop::collection::vec(any::<u8>(), 0..300);
    let mode = prop::sample::select(vec![0o644u32, 0o600, 0o755, 0o400, 0o4755, 0o1644]);
    prop::collection::vec((path, data, mode), 1..16)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn cpio_sees_exactly_the_random_tree(files in tree()) {
        let mut w = Writer::new(Vec::new());
        // What the archive should hold: files with contents and mode, and the directories above them.
        let mut expected_files: BTreeMap<String, (Vec<u8>, u32)> = BTreeMap::new();
        let mut expected_dirs: BTreeSet<String> = BTreeSet::new();
        for (parts, data, mode) in &files {
            let name = parts.join("/");
            let parents: Vec<String> = (1..parts.len()).map(|n| parts[..n].join("/")).collect();
            let clash = expected_files.contains_key(&name)
                || expected_dirs.contains(&name)
                || parents.iter().any(|p| expected_files.contains_key(p));
            let result = w.file(&format!("/{name}"), *mode, data);
            if clash {
                let err = result.unwrap_err().to_string();
                prop_assert!(err.contains(&name), "{}", err);
            } else {
                prop_assert!(result.is_ok(), "{:?}", result);
                expected_dirs.extend(parents);
                expected_files.insert(name, (data.clone(), *mode));
            }
        }
        let bytes = w.finish().unwrap();

        let listed = list(&bytes);
        let names: Vec<&str> = listed.iter().map(|l| l.name.as_str()).collect();
        let unique: BTreeSet<&str> = names.iter().copied().collect();
        prop_assert_eq!(unique.len(), names.len(), "an entry is listed twice");
        let wanted: BTreeSet<&str> =
            expected_files.keys().chain(expected_dirs.iter()).map(String::as_str).collect();
        prop_assert_eq!(&unique, &wanted);
        for (i, l) in listed.iter().enumerate() {
            let is_dir = expected_dirs.contains(&l.name);
            prop_assert_eq!(l.perms.starts_with('d'), is_dir, "{}", &l.name);
            // Parents come first, or the kernel could not create the entry.
            if let Some((parent, _)) = l.name.rsplit_once('/') {
                prop_assert!(names[..i].contains(&parent), "{} before its parent", &l.name);
            }
        }

        let dir = tempfile::tempdir().unwrap();
        cpio(&["-idm", "--no-absolute-filenames", "--quiet"], &bytes, Some(dir.path()));
        for (name, (data, mode)) in &expected_files {
            let path = dir.path().join(name);
            prop_assert_eq!(&std::fs::read(&path).unwrap(), data, "{}", name);
            let got = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
            prop_assert_eq!(got, *mode, "{}", name);
        }
        for name in &expected_dirs {
            prop_assert!(dir.path().join(name).is_dir(), "{}", name);
        }
    }
}

/// PID 1 for the boot check: prints what it finds in the unpacked archive, then ends the VM.
const BOOT_INIT_C: &str = r#"
#include <fcntl.h>
#include <stdio.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

int main(void)
{
	struct stat st;
	char buf[256];
	ssize_t n;
	int fd;

	printf("kmodlab-init-ok\n");
	if (stat("/dev/null", &st) == 0)
		printf("null: chr=%d %u:%u mode=%o\n", S_ISCHR(st.st_mode),
		       major(st.st_rdev), minor(st.st_rdev), st.st_mode & 07777);
	if (stat("/tmp", &st) == 0)
		printf("tmp: dir=%d mode=%o\n", S_ISDIR(st.st_mode), st.st_mode & 07777);
	n = readlink("/bin/sh", buf, sizeof(buf) - 1);
	if (n >= 0) {
		buf[n] = 0;
		printf("link: %s\n", buf);
	}
	fd = open("/etc/deep/msg", O_RDONLY);
	if (fd >= 0) {
		n = read(fd, buf, sizeof(buf) - 1);
		buf[n > 0 ? n : 0] = 0;
		printf("msg: %s", buf);
	}
	printf("kmodlab-init-done\n");
	fflush(stdout);
	/* Without ACPI this only halts; the host ends QEMU once it sees the line above. */
	reboot(RB_POWER_OFF);
	return 0;
}
"#;

/// The kernel itself unpacks our archive and runs a static /init from it.
#[test]
#[ignore = "boots QEMU (TCG); set KMODLAB_TEST_BZIMAGE to a kernel with initramfs and 8250 console"]
fn kernel_unpacks_the_archive_and_runs_init() {
    let Ok(kernel) = std::env::var("KMODLAB_TEST_BZIMAGE") else {
        panic!("set KMODLAB_TEST_BZIMAGE to a bzImage");
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("init.c"), BOOT_INIT_C).unwrap();
    let init = dir.path().join("init");
    let cc = Command::new("gcc")
        .args(["-static", "-Os", "-o"])
        .arg(&init)
        .arg(dir.path().join("init.c"))
        .status()
        .expect("running gcc (with static glibc, Debian libc6-dev)");
    assert!(cc.success());

    let image = dir.path().join("initramfs.cpio");
    let mut w = Writer::new(std::fs::File::create(&image).unwrap());
    w.base_layout().unwrap();
    w.file_from_path("/init", 0o755, &init).unwrap();
    w.symlink("/bin/sh", "/init").unwrap();
    w.file("/etc/deep/msg", 0o644, b"from the archive\n")
        .unwrap();
    w.finish().unwrap();

    let mut qemu = Command::new("qemu-system-x86_64")
        .args([
            "-M",
            "microvm",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
        ])
        .args(["-m", "256", "-serial", "stdio", "-no-reboot", "-kernel"])
        .arg(&kernel)
        .arg("-initrd")
        .arg(&image)
        .args(["-append", "console=ttyS0 panic=-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("running qemu-system-x86_64");
    // The host ends QEMU, on the last line or at the time limit: a halted guest never exits.
    let stdout = qemu.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut console = String::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap_or_default();
            console.push_str(line.trim_end_matches('\r'));
            console.push('\n');
            if line.contains("kmodlab-init-done") {
                let _ = tx.send(());
            }
        }
        console
    });
    let _ = rx.recv_timeout(std::time::Duration::from_secs(60));
    qemu.kill().unwrap();
    qemu.wait().unwrap();
    let console = reader.join().unwrap();
    for wanted in [
        "Run /init as init process",
        "kmodlab-init-ok\n",
        "null: chr=1 1:3 mode=666\n",
        "tmp: dir=1 mode=1777\n",
        "link: /init\n",
        "msg: from the archive\n",
        "kmodlab-init-done\n",
    ] {
        assert!(
            console.contains(wanted),
            "{wanted:?} missing from:\n{console}"
        );
    }
    assert!(!console.contains("Initramfs unpacking failed"), "{console}");
}
