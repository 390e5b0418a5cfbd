//! chardev_rs: exercises /dev/kmodlab_chardev from user space, in Rust.
//!
//! The same checks as `chardev_test.c`. The ioctl numbers and `struct kmodlab_chardev_info` are not
//! written here: build.rs generates them with bindgen from `uapi/kmodlab_chardev.h`, the header the
//! module itself is compiled with, so a change there reaches this program at its next build.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

/// What bindgen generated from the UAPI header.
#[allow(non_camel_case_types, dead_code)]
mod uapi {
    include!(concat!(env!("OUT_DIR"), "/uapi.rs"));
}

use uapi::{
    kmodlab_chardev_info, KMODLAB_CHARDEV_CAPACITY, KMODLAB_CHARDEV_IOC_CLEAR,
    KMODLAB_CHARDEV_IOC_INFO, KMODLAB_CHARDEV_IOC_MAGIC, KMODLAB_CHARDEV_IOC_SET_UPPER,
};

/// Counts failed checks; each is printed with its line, and the program goes on.
struct Checks {
    failures: u32,
}

impl Checks {
    #[track_caller]
    fn check(&mut self, ok: bool, what: impl std::fmt::Display) {
        if !ok {
            println!(
                "FAILED: {what} (line {})",
                std::panic::Location::caller().line()
            );
            self.failures += 1;
        }
    }

    /// Checks that a call succeeded; `what` names it in the failure.
    #[track_caller]
    fn ok(&mut self, result: std::io::Result<()>, what: &str) {
        if let Err(e) = result {
            self.check(false, format!("{what}: {e}"));
        }
    }
}

/// `ioctl(2)` with a pointer argument (or none); the errno on failure.
fn ioctl<T>(file: &File, request: u32, arg: *mut T) -> std::io::Result<()> {
    // The request type is `int` in musl and `unsigned long` in glibc; the kernel takes 32 bits.
    // SAFETY: the device reads or writes at most size_of::<T>() bytes at `arg`, which points to a
    // live T (or is null for an ioctl that takes no argument).
    let ret = unsafe { libc::ioctl(file.as_raw_fd(), request as _, arg) };
    if ret == -1 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn info(file: &File, checks: &mut Checks) -> Option<kmodlab_chardev_info> {
    let mut info = kmodlab_chardev_info::default();
    match ioctl(file, KMODLAB_CHARDEV_IOC_INFO, &mut info) {
        Ok(()) => Some(info),
        Err(e) => {
            checks.check(false, format!("ioctl INFO: {e}"));
            None
        }
    }
}

fn errno_name(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EINVAL) => "EINVAL".into(),
        Some(libc::ENOTTY) => "ENOTTY".into(),
        _ => e.to_string(),
    }
}

fn main() {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/dev/kmodlab_chardev".to_string());
    println!(
        "ioctl numbers: CLEAR={KMODLAB_CHARDEV_IOC_CLEAR:#x} INFO={KMODLAB_CHARDEV_IOC_INFO:#x} \
         SET_UPPER={KMODLAB_CHARDEV_IOC_SET_UPPER:#x}"
    );
    let mut file = match OpenOptions::new().read(true).write(true).open(&path) {
        Ok(file) => file,
        Err(e) => {
            println!("FAILED: open {path}: {e}");
            std::process::exit(1);
        }
    };
    let mut checks = Checks { failures: 0 };
    let none = std::ptr::null_mut::<u8>();

    checks.ok(ioctl(&file, KMODLAB_CHARDEV_IOC_CLEAR, none), "ioctl CLEAR");

    let written = file.write(b"hello");
    checks.check(matches!(written, Ok(5)), format!("write: {written:?}"));
    println!("wrote {} bytes", written.as_ref().map_or(0, |n| *n));

    // Back to the start, then read until end of file (a read that returns 0), as cat does.
    let r = file.seek(SeekFrom::Start(0));
    checks.check(matches!(r, Ok(0)), format!("lseek: {r:?}"));
    let mut data = Vec::new();
    if let Err(e) = file.read_to_end(&mut data) {
        checks.check(false, format!("read: {e}"));
    }
    let text = String::from_utf8_lossy(&data).into_owned();
    println!("read back: {text}");
    checks.check(
        text == "hello",
        format!("read back `{text}`, wrote `hello`"),
    );

    if let Some(info) = info(&file, &mut checks) {
        println!(
            "info: size={} capacity={} upper={} opens={}",
            info.size, info.capacity, info.upper, info.opens
        );
        checks.check(
            info.size == 5
                && info.capacity == KMODLAB_CHARDEV_CAPACITY
                && info.upper == 0
                && info.opens >= 1,
            "info does not match what was done",
        );
    }

    let mut upper: u32 = 1;
    checks.ok(
        ioctl(&file, KMODLAB_CHARDEV_IOC_SET_UPPER, &mut upper),
        "ioctl SET_UPPER 1",
    );
    let mut buf = [0u8; 64];
    let n = file.read_at(&mut buf, 0).unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    println!("upper-cased: {text}");
    checks.check(text == "HELLO", format!("upper-cased read gave `{text}`"));
    upper = 0;
    checks.ok(
        ioctl(&file, KMODLAB_CHARDEV_IOC_SET_UPPER, &mut upper),
        "ioctl SET_UPPER 0",
    );

    upper = 2;
    match ioctl(&file, KMODLAB_CHARDEV_IOC_SET_UPPER, &mut upper) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            println!("SET_UPPER 2: {}", errno_name(&e))
        }
        other => checks.check(
            false,
            format!("ioctl SET_UPPER 2 should fail with EINVAL: {other:?}"),
        ),
    }

    // _IO(KMODLAB_CHARDEV_IOC_MAGIC, 0x7f): type in bits 8-15, number in bits 0-7, no size, no direction.
    let unknown = (KMODLAB_CHARDEV_IOC_MAGIC << 8) | 0x7f;
    match ioctl(&file, unknown, none) {
        Err(e) => {
            println!("unknown ioctl: {}", errno_name(&e));
            checks.check(
                e.raw_os_error() == Some(libc::ENOTTY),
                format!("an unknown ioctl should fail with ENOTTY: {e}"),
            );
        }
        Ok(()) => checks.check(false, "an unknown ioctl succeeded"),
    }

    checks.ok(ioctl(&file, KMODLAB_CHARDEV_IOC_CLEAR, none), "ioctl CLEAR");
    if let Some(info) = info(&file, &mut checks) {
        println!("after CLEAR: size={}", info.size);
        checks.check(info.size == 0, format!("CLEAR left {} bytes", info.size));
    }
    drop(file);

    if checks.failures > 0 {
        println!("{} checks failed", checks.failures);
        std::process::exit(1);
    }
    println!("all checks passed");
}
