//! What PID 1 does to the system: mounts, facts about the kernel, power-off.

use std::time::Duration;

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sys::reboot::{reboot, RebootMode};
use nix::sys::stat::Mode;
use nix::time::{clock_gettime, ClockId};

/// Mounts the pseudo file systems the agent needs. Returns one message per failure; the caller
/// reports them once the channel is open (which itself needs /dev).
pub fn mount_pseudo_filesystems() -> Vec<String> {
    let mut errors = Vec::new();
    for (fstype, target) in [("proc", "/proc"), ("sysfs", "/sys"), ("devtmpfs", "/dev")] {
        match nix::unistd::mkdir(target, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => errors.push(format!("mkdir {target}: {e}")),
        }
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
        match mount(Some(fstype), target, Some(fstype), flags, None::<&str>) {
            // EBUSY: already mounted (e.g. the kernel's devtmpfs automount).
            Ok(()) | Err(Errno::EBUSY) => {}
            Err(e) => errors.push(format!("mount {fstype} on {target}: {e}")),
        }
    }
    // debugfs holds kmemleak's file on the debug kernel; other kernels have no debugfs (ENODEV).
    let target = "/sys/kernel/debug";
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    match mount(
        Some("debugfs"),
        target,
        Some("debugfs"),
        flags,
        None::<&str>,
    ) {
        Ok(()) | Err(Errno::EBUSY) | Err(Errno::ENODEV) | Err(Errno::ENOENT) => {}
        Err(e) => errors.push(format!("mount debugfs on {target}: {e}")),
    }
    errors
}

/// The kernel's taint mask.
pub fn taint() -> Result<u64, String> {
    let text = std::fs::read_to_string("/proc/sys/kernel/tainted")
        .map_err(|e| format!("read taint: {e}"))?;
    parse_taint(&text)
}

fn parse_taint(text: &str) -> Result<u64, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("taint is not a number: {text:?}"))
}

pub fn kernel_release() -> String {
    match nix::sys::utsname::uname() {
        Ok(uts) => uts.release().to_string_lossy().into_owned(),
        Err(e) => format!("unknown ({e})"),
    }
}

/// Milliseconds since boot, suspend included.
pub fn uptime_ms() -> u64 {
    clock_gettime(ClockId::CLOCK_BOOTTIME)
        .map(|ts| {
            let ms = i128::from(ts.tv_sec()) * 1000 + i128::from(ts.tv_nsec()) / 1_000_000;
            u64::try_from(ms).unwrap_or(0)
        })
        .unwrap_or(0)
}

/// Powers the machine off. PID 1 must never exit (the kernel would panic), so if power-off
/// returns, sleep forever; the host ends the VM anyway once it has read `Done`.
pub fn power_off() -> ! {
    nix::unistd::sync();
    // Returns only on failure.
    let Err(e) = reboot(RebootMode::RB_POWER_OFF);
    eprintln!("kmodlab-agent: power-off failed: {e}");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taint_parses_with_newline() {
        assert_eq!(parse_taint("4096\n"), Ok(4096));
        assert_eq!(parse_taint("0"), Ok(0));
        assert!(parse_taint("").is_err());
        assert!(parse_taint("-1\n").is_err());
    }

    #[test]
    fn uptime_is_positive() {
        assert!(uptime_ms() > 0);
    }
}
