//! `kmodlab shell`: the configured kernel with a busybox userland and an interactive console in
//! the terminal, the named modules ready for `modprobe`.
//!
//! The guest is busybox's `init` as `/init` with an inittab that mounts proc, sysfs and devtmpfs,
//! runs `mdev -s`, names the host `kmodlab-guest` and keeps a login shell on ttyS0. Modules sit in
//! `/lib/modules/<release>/extra/` with the `modules.dep` and `modules.alias` depmod writes for
//! them, which is what busybox's `modprobe` and `modinfo` read.
//!
//! The console is relayed by kmodlab, not by QEMU: QEMU's serial port is on pipes, and kmodlab
//! puts the terminal in raw mode and copies bytes both ways, so every key (Ctrl-C, Ctrl-A, Ctrl-Z)
//! reaches the guest except the exit key, [`EXIT_KEY_NAME`]. Leaving always ends QEMU and restores
//! the terminal: on the exit key, when QEMU ends, on SIGINT/SIGTERM/SIGHUP, on errors (a drop
//! guard) and on panics (a panic hook, which also covers `panic = "abort"` builds). QEMU gets
//! `PR_SET_PDEATHSIG` ([`crate::host::child::KillOnDrop`]), so even a SIGKILL of kmodlab leaves
//! no QEMU behind.
//!
//! microvm has no ACPI, so a guest power-off only halts the CPU, and QEMU would run on. kmodlab
//! watches the console for the kernel's last words on a halt or power-off (`reboot: System
//! halted`, `reboot: Power off not available: System halted instead`, `reboot: Power down`) and
//! then ends QEMU itself, so `poweroff`, `halt` and `poweroff -f` end the session. (Wrapper
//! scripts would not do: Debian's static busybox runs its own applets before searching PATH.) A
//! reboot ends QEMU by itself: the kernel command line has `reboot=t` and QEMU `-no-reboot`.

mod image;
mod modules;
mod relay;
mod terminal;

pub use image::{write_guest_initramfs, GuestSpec};
pub use modules::{missing_dependencies, module_indexes, GuestModule};

use crate::build::{module, Products};
use crate::guest::accel::{self, AccelChoice, ProbeBoot};
use crate::guest::qemu::Boot;
use crate::guest::vm::{self, Accelerator};
use crate::kernel::{self, Kernel, KernelRequest};
use crate::spec::select::Selected;
use anyhow::{bail, Context, Result};
use relay::{End, Session};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The byte that leaves the shell: Ctrl-], as in telnet and `virsh console`.
pub const EXIT_KEY: u8 = 0x1d;
pub const EXIT_KEY_NAME: &str = "Ctrl-]";
/// The guest's host name; the prompt shows it (`root@kmodlab-guest:~# `).
pub const GUEST_HOSTNAME: &str = "kmodlab-guest";

/// What `shell` needs.
#[derive(Debug, Clone)]
pub struct ShellOptions {
    pub kernel: KernelRequest,
    /// Module folders whose `.ko` files go into the guest.
    pub selection: Vec<Selected>,
    pub qemu: PathBuf,
    pub accel: AccelChoice,
    pub memory_mb: u32,
    pub cpus: u32,
    /// A static busybox for the guest (Debian's busybox-static: `/bin/busybox`).
    pub busybox: PathBuf,
    /// The guest agent, for the boot that tells whether KVM works (`accel` auto).
    pub agent: PathBuf,
    /// Extra kernel command-line words.
    pub append: String,
}

/// How a session ended, for the caller to turn into an exit code. A QEMU that failed is an error
/// instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShellEnd {
    /// The person pressed [`EXIT_KEY_NAME`].
    ExitKey,
    /// The guest halted or powered off.
    Halted,
    /// The guest rebooted, which ends QEMU.
    Rebooted,
    /// The guest kernel panicked, which ends QEMU.
    Panicked,
    /// kmodlab got this signal (SIGINT, SIGTERM, SIGHUP or SIGQUIT).
    Signal(i32),
}

/// Builds the kernel and modules, boots the guest and relays the console until the exit key,
/// the guest's power-off or a signal.
pub fn run(opts: &ShellOptions) -> Result<ShellEnd> {
    let started = Instant::now();
    let kernel = kernel::ensure(&opts.kernel)?;
    eprintln!(
        "kernel  {} ready ({:.1}s)",
        kernel.release,
        started.elapsed().as_secs_f64()
    );
    let modules = build_modules(&opts.selection, &kernel)?;
    for warning in missing_dependencies(&modules) {
        eprintln!("warning: {warning}");
    }
    let dir = tempfile::Builder::new()
        .prefix("kmodlab-shell-")
        .tempdir()
        .context("creating a folder for the shell's files")?;
    let (accel, _) = accel::choose(opts.accel, &opts.qemu, |accel| {
        accel::probe_boot(&ProbeBoot {
            qemu: &opts.qemu,
            kernel: &kernel,
            agent: &opts.agent,
            dir: dir.path(),
            memory_mb: opts.memory_mb,
            accel,
        })
    })?;

    let initramfs = dir.path().join("initramfs.cpio");
    write_guest_initramfs(
        &initramfs,
        &GuestSpec {
            busybox: &opts.busybox,
            release: &kernel.release,
            modules: &modules,
            terminal_size: terminal::terminal_size(),
        },
    )?;
    let boot = Boot {
        qemu: opts.qemu.clone(),
        image: kernel.boot_image(),
        initramfs,
        cmdline: vm::cmdline_for(&kernel, accel, &opts.append),
        accel,
        memory_mb: opts.memory_mb,
        cpus: opts.cpus,
    };
    print_banner(opts, &kernel, accel, &modules);
    let stderr_log = dir.path().join("qemu.stderr");
    let session = relay::relay(&boot, &stderr_log, started)?;
    session_end(&session, &stderr_log)
}

/// What the session is about to be, and how to leave it.
fn print_banner(opts: &ShellOptions, kernel: &Kernel, accel: Accelerator, modules: &[GuestModule]) {
    let names: Vec<&str> = modules.iter().map(|m| m.name.as_str()).collect();
    eprintln!(
        "kmodlab shell: Linux {} under {}, {} MB, {} CPUs; modules: {}",
        kernel.release,
        accel.to_string().to_uppercase(),
        opts.memory_mb,
        opts.cpus,
        if names.is_empty() {
            "none".to_string()
        } else {
            format!("{} (modprobe NAME, modinfo NAME)", names.join(", "))
        }
    );
    eprintln!(
        "Leave with {EXIT_KEY_NAME} (ends QEMU at once), or `poweroff` (or `reboot`) in the guest: \
         the guest halts and kmodlab ends QEMU."
    );
}

/// Says how the session ended and returns it; a QEMU that failed is an error with its messages.
fn session_end(session: &Session, stderr_log: &Path) -> Result<ShellEnd> {
    let prompt = match (session.prompt_after, session.prompt_after_boot) {
        (Some(all), Some(boot)) => format!(
            "; the prompt came {:.1}s after the command started ({:.1}s after QEMU did)",
            all.as_secs_f64(),
            boot.as_secs_f64()
        ),
        _ => String::new(),
    };
    let (end, how) = match session.end {
        End::ExitKey => (
            ShellEnd::ExitKey,
            format!("left with {EXIT_KEY_NAME}, QEMU stopped"),
        ),
        End::Halted => (
            ShellEnd::Halted,
            "the guest halted (powered off), QEMU stopped".to_string(),
        ),
        End::Signal(sig) => (
            ShellEnd::Signal(sig),
            format!("stopped by signal {sig}, QEMU stopped"),
        ),
        End::Exited(status) if !status.success() => {
            let qemu_messages = std::fs::read_to_string(stderr_log).unwrap_or_default();
            bail!(
                "QEMU failed ({status}){}",
                if qemu_messages.trim().is_empty() {
                    String::new()
                } else {
                    format!(":\n{}", qemu_messages.trim_end())
                }
            )
        }
        End::Exited(_) if session.panicked => (
            ShellEnd::Panicked,
            "the guest kernel panicked (see above); QEMU ended".to_string(),
        ),
        End::Exited(_) => (
            ShellEnd::Rebooted,
            "the guest rebooted, QEMU ended".to_string(),
        ),
    };
    eprintln!("kmodlab shell: {how}{prompt}");
    Ok(end)
}

/// Builds the selected module folders and reads each `.ko`'s modinfo.
fn build_modules(selection: &[Selected], kernel: &Kernel) -> Result<Vec<GuestModule>> {
    let mut modules: Vec<GuestModule> = Vec::new();
    let mut products = Products::default();
    for selected in selection {
        let spec = &selected.spec;
        let missing = kernel.lacks(&spec.requires);
        if !missing.is_empty() {
            eprintln!(
                "warning: module {} requires {}, which this kernel lacks; it may not build or load",
                spec.name,
                missing.join(", ")
            );
        }
        let build = module::build(spec, kernel)?;
        if build.reused {
            eprintln!("module  {} up to date", build.module);
        } else {
            eprintln!(
                "module  {} built ({:.1}s)",
                build.module,
                build.duration.as_secs_f64()
            );
        }
        if !build.warnings.trim().is_empty() {
            eprintln!("{}", build.warnings.trim_end());
        }
        for (name, path) in products.add(&build)? {
            modules.push(GuestModule::from_ko(&name, &path)?);
        }
    }
    Ok(modules)
}
