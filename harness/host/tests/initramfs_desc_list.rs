//! `kmodlab initramfs`: archives built from gen_init_cpio descriptions and from folders, and
//! `--list`, all checked against GNU cpio's own listing of the same bytes (`cpio -t`, `cpio -tvn`).
//!
//! These tests need `cpio`, `gzip`, `zstd` and the static busybox (`/bin/busybox`) that kmodlab's
//! setup installs; they fail, rather than skip, without them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

const BUSYBOX: &str = "/bin/busybox";

fn kmodlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kmodlab"))
        .args(args)
        .env("KMODLAB_TEST_BUSYBOX", BUSYBOX)
        .output()
        .expect("running kmodlab")
}

fn ok(args: &[&str]) -> String {
    let out = kmodlab(args);
    assert!(
        out.status.success(),
        "kmodlab {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Runs `program args` with `input` on stdin; insists on success.
fn pipe(program: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new(program)
        .args(args)
        .env("TZ", "UTC")
        .env("LC_ALL", "C")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("waiting");
    feeder.join().expect("feeder").expect("feeding");
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// One entry as both listings can say it: mode string, uid, gid, size or "maj,min", name, target.
type Row = (String, String, String, String, String, Option<String>);

/// Parses `cpio -tvn`: `MODE NLINK UID GID SIZE|MAJ, MIN MON DAY YEAR NAME [-> TARGET]`.
fn cpio_rows(listing: &str) -> Vec<Row> {
    listing
        .lines()
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let device = words[0].starts_with('c') || words[0].starts_with('b');
            let (size, rest) = if device {
                (format!("{}{}", words[4], words[5]), &words[9..])
            } else {
                (words[4].to_string(), &words[8..])
            };
            let text = rest.join(" ");
            let (name, target) = match text.split_once(" -> ") {
                Some((n, t)) => (n.to_string(), Some(t.to_string())),
                None => (text, None),
            };
            (
                words[0].to_string(),
                words[2].to_string(),
                words[3].to_string(),
                size,
                name,
                target,
            )
        })
        .collect()
}

/// Parses `kmodlab initramfs --list`: `MODE UID/GID SIZE|MAJ, MIN NAME [-> TARGET]`.
fn our_rows(listing: &str) -> Vec<Row> {
    listing
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let (uid, gid) = words[1].split_once('/').expect("uid/gid");
            let device = words[0].starts_with('c') || words[0].starts_with('b');
            let (size, rest) = if device {
                (format!("{}{}", words[2], words[3]), &words[4..])
            } else {
                (words[2].to_string(), &words[3..])
            };
            let text = rest.join(" ");
            let (name, target) = match text.split_once(" -> ") {
                Some((n, t)) => (n.to_string(), Some(t.to_string())),
                None => (text, None),
            };
            (
                words[0].to_string(),
                uid.to_string(),
                gid.to_string(),
                size,
                name,
                target,
            )
        })
        .collect()
}

/// Checks `--list` of `archive` against cpio's listing of `plain` (the archive decompressed).
fn assert_same_listing(archive: &Path, plain: &[u8]) -> usize {
    let ours = ok(&["initramfs", "--list", &archive.display().to_string()]);
    let names = String::from_utf8(pipe("cpio", &["-t", "--quiet"], plain)).expect("utf-8");
    let our_names: Vec<String> = our_rows(&ours).into_iter().map(|r| r.4).collect();
    let cpio_names: Vec<&str> = names.lines().collect();
    assert_eq!(our_names, cpio_names, "names, in order (cpio -t)");
    let verbose = String::from_utf8(pipe("cpio", &["-tvn", "--quiet"], plain)).expect("utf-8");
    let theirs = cpio_rows(&verbose);
    assert_eq!(our_rows(&ours), theirs, "cpio -tvn");
    theirs.len()
}

/// A busybox tree as a description: every applet a symlink, device nodes, a fifo, a socket,
/// hard links, a setuid file, an owner other than root.
fn busybox_description(dir: &Path) -> PathBuf {
    let applets = Command::new(BUSYBOX)
        .arg("--list-full")
        .output()
        .expect("running /bin/busybox (Debian package busybox-static)");
    assert!(applets.status.success());
    let script = dir.join("init.sh");
    std::fs::write(&script, "#!/bin/sh\nexec /bin/sh\n").expect("write");
    let mut text = String::from(
        "# a busybox userland\n\
         dir /dev 0755 0 0\n\
         nod /dev/console 0600 0 0 c 5 1\n\
         nod /dev/null 0666 0 0 c 1 3\n\
         nod /dev/vda 0660 0 6 b 254 0\n\
         dir /bin 0755 0 0\n\
         dir /sbin 0755 0 0\n\
         dir /usr 0755 0 0\n\
         dir /usr/bin 0755 0 0\n\
         dir /usr/sbin 0755 0 0\n\
         dir /tmp 1777 0 0\n\
         \n\
         file /bin/busybox ${KMODLAB_TEST_BUSYBOX} 0755 0 0\n\
         file /init init.sh 0755 0 0 /sbin/init.real\n\
         file /usr/bin/su-ish init.sh 4755 0 0\n\
         dir /home/user 0700 1000 1000\n\
         pipe /home/user/fifo 0600 1000 1000\n\
         sock /home/user/sock 0755 1000 1000\n",
    );
    // The list names busybox itself too (`bin/busybox`).
    for applet in String::from_utf8_lossy(&applets.stdout)
        .lines()
        .filter(|a| *a != "bin/busybox")
    {
        text.push_str(&format!("slink /{applet} /bin/busybox 0777 0 0\n"));
    }
    let desc = dir.join("busybox.list");
    std::fs::write(&desc, text).expect("write");
    desc
}

#[test]
fn a_busybox_description_lists_as_cpio_lists_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let desc = busybox_description(dir.path());
    let out = dir.path().join("busybox.cpio");
    let started = Instant::now();
    let said = ok(&[
        "initramfs",
        &desc.display().to_string(),
        "-o",
        &out.display().to_string(),
    ]);
    let took = started.elapsed();
    println!("built the busybox tree ({said:?}) in {took:?} (process included)");
    assert!(
        said.starts_with(&format!("wrote {}: ", out.display())),
        "{said}"
    );
    let plain = std::fs::read(&out).expect("read");
    let entries = assert_same_listing(&out, &plain);
    assert!(entries > 280, "{entries} entries");
    assert!(said.contains(&format!(": {entries} entries, ")), "{said}");

    let listing = ok(&["initramfs", "--list", &out.display().to_string()]);
    for expected in [
        "crw-------       0/0       5, 1 dev/console",
        "brw-rw----       0/6     254, 0 dev/vda",
        "drwxrwxrwt       0/0          0 tmp",
        "-rwsr-xr-x       0/0         23 usr/bin/su-ish",
        "drwx------ 1000/1000          0 home/user",
        "prw------- 1000/1000          0 home/user/fifo",
        "srwxr-xr-x 1000/1000          0 home/user/sock",
        "lrwxrwxrwx       0/0         12 sbin/modprobe -> /bin/busybox",
        // Hard links: the data goes with the last name.
        "-rwxr-xr-x       0/0          0 init",
        "-rwxr-xr-x       0/0         23 sbin/init.real",
    ] {
        assert!(
            listing.lines().any(|l| l == expected),
            "no line {expected:?} in:\n{listing}"
        );
    }

    // Compressed: the listing reads through gzip and zstd.
    for (how, decompress) in [("gzip", "gzip"), ("zstd", "zstd")] {
        let packed = dir.path().join(format!("busybox.cpio.{how}"));
        let started = Instant::now();
        ok(&[
            "initramfs",
            &desc.display().to_string(),
            "-o",
            &packed.display().to_string(),
            "--compress",
            how,
        ]);
        println!("built it with {how} in {:?}", started.elapsed());
        let bytes = std::fs::read(&packed).expect("read");
        assert!(
            bytes.len() < plain.len() * 3 / 4,
            "{how}: {} bytes",
            bytes.len()
        );
        let unpacked = pipe(decompress, &["-dc"], &bytes);
        assert_eq!(unpacked, plain, "{how} holds the same archive");
        assert_same_listing(&packed, &unpacked);
    }
}

#[test]
fn a_folder_packs_as_cpio_lists_it_and_a_cpio_archive_lists_as_cpio_does() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("etc/init.d")).expect("mkdir");
    std::fs::create_dir_all(tree.join("bin")).expect("mkdir");
    std::fs::copy(BUSYBOX, tree.join("bin/busybox")).expect("copy busybox");
    std::os::unix::fs::symlink("busybox", tree.join("bin/sh")).expect("symlink");
    std::fs::write(tree.join("etc/init.d/rcS"), "#!/bin/sh\nmount -a\n").expect("write");
    std::fs::set_permissions(
        tree.join("etc/init.d/rcS"),
        std::fs::Permissions::from_mode(0o750),
    )
    .expect("chmod");
    std::fs::hard_link(tree.join("etc/init.d/rcS"), tree.join("bin/rc")).expect("link");
    let fifo = Command::new("mkfifo")
        .arg(tree.join("etc/pipe"))
        .status()
        .expect("mkfifo");
    assert!(fifo.success());

    let out = dir.path().join("tree.cpio");
    let said = ok(&[
        "initramfs",
        &tree.display().to_string(),
        "-o",
        &out.display().to_string(),
    ]);
    assert!(said.contains(": 8 entries, "), "{said}");
    let plain = std::fs::read(&out).expect("read");
    assert_eq!(assert_same_listing(&out, &plain), 8);

    // GNU cpio's own newc archive of the same folder: our listing matches its listing.
    let names = Command::new("sh")
        .arg("-c")
        .arg("find . -mindepth 1 | LC_ALL=C sort")
        .current_dir(&tree)
        .output()
        .expect("find");
    let mut cpio = Command::new("cpio")
        .args(["-o", "-H", "newc", "--quiet"])
        .current_dir(&tree)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("cpio -o");
    cpio.stdin
        .take()
        .expect("stdin")
        .write_all(&names.stdout)
        .expect("names");
    let theirs = cpio.wait_with_output().expect("cpio -o");
    assert!(theirs.status.success());
    let foreign = dir.path().join("gnu.cpio");
    std::fs::write(&foreign, &theirs.stdout).expect("write");
    assert_eq!(assert_same_listing(&foreign, &theirs.stdout), 8);
}

#[test]
fn a_bad_description_names_the_file_line_and_field_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let desc = dir.path().join("bad.list");
    std::fs::write(
        &desc,
        "dir /dev 0755 0 0\nnod /dev/console 0600 0 0 x 5 1\ndir /tmp 01777 0\n",
    )
    .expect("write");
    let out = dir.path().join("bad.cpio");
    let result = kmodlab(&[
        "initramfs",
        &desc.display().to_string(),
        "-o",
        &out.display().to_string(),
    ]);
    assert_eq!(result.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&result.stderr);
    let file = desc.display().to_string();
    assert!(
        stderr.contains(&format!("{file}:2: field <dev_type>: `x` is neither"))
            && stderr.contains(&format!("{file}:3: missing field <gid>")),
        "{stderr}"
    );
    assert!(!out.exists());

    let result = kmodlab(&["initramfs", "--list", &desc.display().to_string()]);
    assert_eq!(result.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("neither a newc cpio archive"), "{stderr}");
    let result = kmodlab(&["initramfs", &desc.display().to_string()]);
    assert_eq!(result.status.code(), Some(2), "-o is required");
}
