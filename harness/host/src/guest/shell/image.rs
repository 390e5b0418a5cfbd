//! The shell guest's initramfs: busybox as `/init` with an inittab, a login shell on ttyS0, a
//! profile and a message of the day, and the modules with their index files.

use super::modules::{module_indexes, GuestModule};
use super::{EXIT_KEY_NAME, GUEST_HOSTNAME};
use crate::guest::initramfs::Writer;
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::Path;
use std::process::Command;

/// What the guest's files say, for [`write_guest_initramfs`].
#[derive(Debug, Clone)]
pub struct GuestSpec<'a> {
    pub busybox: &'a Path,
    pub release: &'a str,
    pub modules: &'a [GuestModule],
    /// Rows and columns of the host terminal, so that line editing in the guest wraps right.
    pub terminal_size: Option<(u16, u16)>,
}

/// Writes the shell guest's initramfs to `path`.
pub fn write_guest_initramfs(path: &Path, spec: &GuestSpec) -> Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = Writer::new(std::io::BufWriter::new(file));
    w.base_layout()?;
    for dir in [
        "/bin",
        "/sbin",
        "/usr",
        "/usr/bin",
        "/usr/sbin",
        "/etc",
        "/etc/init.d",
    ] {
        w.dir(dir, 0o755)?;
    }
    w.dir("/root", 0o700)?;
    w.file_from_path("/bin/busybox", 0o755, spec.busybox)?;
    w.symlink("/init", "/bin/busybox")?;
    for applet in busybox_applets(spec.busybox)? {
        if !w.contains(&applet) {
            w.symlink(&applet, "/bin/busybox")?;
        }
    }
    w.file("/etc/inittab", 0o644, INITTAB.as_bytes())?;
    w.file("/etc/init.d/rcS", 0o755, RCS.as_bytes())?;
    w.file("/etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n")?;
    w.file("/etc/group", 0o644, b"root:x:0:\n")?;
    w.file(
        "/etc/hostname",
        0o644,
        format!("{GUEST_HOSTNAME}\n").as_bytes(),
    )?;
    let mut profile = String::from(PROFILE);
    if let Some((rows, cols)) = spec.terminal_size {
        profile.push_str(&format!("stty rows {rows} cols {cols} 2>/dev/null\n"));
    }
    profile.push_str("cat /etc/motd\n");
    w.file("/etc/profile", 0o644, profile.as_bytes())?;
    w.file("/etc/motd", 0o644, motd(spec).as_bytes())?;

    let dir = format!("/lib/modules/{}", spec.release);
    w.dir(&format!("{dir}/extra"), 0o755)?;
    for m in spec.modules {
        w.file_from_path(&format!("{dir}/{}", m.rel_path), 0o644, &m.source)?;
    }
    let (dep, alias) = module_indexes(spec.release, spec.modules)?;
    w.file(&format!("{dir}/modules.dep"), 0o644, dep.as_bytes())?;
    w.file(&format!("{dir}/modules.alias"), 0o644, alias.as_bytes())?;
    let mut out = w.finish()?;
    out.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

const INITTAB: &str = "\
::sysinit:/etc/init.d/rcS
ttyS0::respawn:-/bin/sh
::ctrlaltdel:/sbin/reboot -f
::shutdown:/bin/sync
";

const RCS: &str = "\
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
hostname -F /etc/hostname
mdev -s
";

const PROFILE: &str = "\
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
export HOME=/root
export PS1='\\u@\\h:\\w\\$ '
cd \"$HOME\"
";

fn motd(spec: &GuestSpec) -> String {
    let names: Vec<&str> = spec.modules.iter().map(|m| m.name.as_str()).collect();
    let modules = if names.is_empty() {
        "No modules (name some: `kmodlab shell hello`).".to_string()
    } else {
        format!(
            "Modules in /lib/modules/{}/extra: {}. Try: modprobe {}; lsmod; dmesg | tail",
            spec.release,
            names.join(", "),
            names[0]
        )
    };
    format!(
        "kmodlab guest: Linux {} with busybox. {modules}\n\
         Leave with `poweroff` here, or {EXIT_KEY_NAME} on the host keyboard.\n",
        spec.release
    )
}

/// `busybox --list-full`: every applet's path, such as `sbin/modprobe`. Refuses a busybox that
/// needs shared libraries, which the guest does not have.
fn busybox_applets(busybox: &Path) -> Result<Vec<String>> {
    let is_static = crate::host::setup::is_static_elf(busybox)
        .with_context(|| format!("{} is not an ELF program", busybox.display()))?;
    if !is_static {
        bail!(
            "{} is dynamically linked, and the guest has no shared libraries; give a static \
             busybox (Debian package busybox-static: /bin/busybox)",
            busybox.display()
        );
    }
    let out = Command::new(busybox)
        .arg("--list-full")
        .output()
        .with_context(|| format!("running {} --list-full", busybox.display()))?;
    if !out.status.success() {
        bail!(
            "{} --list-full failed: {}",
            busybox.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.ends_with('/'))
        .map(str::to_string)
        .collect())
}
