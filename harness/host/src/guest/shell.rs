//! `kmodlab shell`: the configured kernel with a busybox userland and an interactive console in
//! the terminal, the named modules ready for `modprobe`.
//!
//! The guest is busybox's `init` as `/init` with an inittab that mounts proc, sysfs and devtmpfs,
//! runs `mdev -s`, names the host `kmodlab-guest` and keeps a login shell on ttyS0. Modules sit in
//! `/lib/modules/<release>/extra/` with a `modules.dep` and `modules.alias` generated here from
//! each `.ko`'s `.modinfo` (`depends=`, `alias=`), which is what busybox's `modprobe` and
//! `modinfo` read.
//!
//! The console is relayed by kmodlab, not by QEMU: QEMU's serial port is on pipes, and kmodlab
//! puts the terminal in raw mode and copies bytes both ways, so every key (Ctrl-C, Ctrl-A, Ctrl-Z)
//! reaches the guest except the exit key, [`EXIT_KEY_NAME`]. Leaving always ends QEMU and restores
//! the terminal: on the exit key, when QEMU ends, on SIGINT/SIGTERM/SIGHUP, on errors (a drop
//! guard) and on panics (a panic hook, which also covers `panic = "abort"` builds). QEMU gets
//! `PR_SET_PDEATHSIG`, so even a SIGKILL of kmodlab leaves no QEMU behind.
//!
//! microvm has no ACPI, so a guest power-off only halts the CPU, and QEMU would run on. kmodlab
//! watches the console for the kernel's last words on a halt or power-off (`reboot: System
//! halted`, `reboot: Power off not available: System halted instead`, `reboot: Power down`) and
//! then ends QEMU itself, so `poweroff`, `halt` and `poweroff -f` end the session. (Wrapper
//! scripts would not do: Debian's static busybox runs its own applets before searching PATH.) A
//! reboot ends QEMU by itself: the kernel command line has `reboot=t` and QEMU `-no-reboot`.

use crate::build::{module, Products};
use crate::guest::accel::AccelChoice;
use crate::guest::initramfs::Writer;
use crate::guest::vm::{self, Accelerator};
use crate::kernel::{self, Kernel, KernelRequest};
use crate::spec::select::Selected;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

/// The byte that leaves the shell: Ctrl-], as in telnet and `virsh console`.
pub const EXIT_KEY: u8 = 0x1d;
pub const EXIT_KEY_NAME: &str = "Ctrl-]";
/// The guest's host name; the prompt shows it (`root@kmodlab-guest:~# `).
pub const GUEST_HOSTNAME: &str = "kmodlab-guest";
/// How long the accelerator probe may take before KVM counts as not working.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
const PROBE_MARKER: &str = "kmodlab-probe-ok";

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
    /// Extra kernel command-line words.
    pub append: String,
}

/// How to start one QEMU with its console (first UART) on stdin/stdout.
#[derive(Debug, Clone)]
pub struct Boot {
    pub qemu: PathBuf,
    pub image: PathBuf,
    pub initramfs: PathBuf,
    pub cmdline: String,
    pub accel: Accelerator,
    pub memory_mb: u32,
    pub cpus: u32,
}

/// The QEMU command for `boot`: microvm, no devices but the console on QEMU's stdio, and
/// `-no-reboot` so that a guest reboot (or a panic with `panic=-1`) ends QEMU. The child is
/// killed if the thread that starts it dies (`PR_SET_PDEATHSIG`) and gets its own process group,
/// so the terminal's signals reach kmodlab, which decides. The caller sets stdin/stdout/stderr.
pub fn qemu_command(boot: &Boot) -> Command {
    let cpu = vm::cpu_model(boot.accel);
    let mut command = Command::new(&boot.qemu);
    command
        .args([
            "-M",
            "microvm",
            "-accel",
            &boot.accel.to_string(),
            "-cpu",
            cpu,
        ])
        .args(["-m", &boot.memory_mb.to_string()])
        .args(["-smp", &boot.cpus.to_string()])
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ])
        .arg("-kernel")
        .arg(&boot.image)
        .arg("-initrd")
        .arg(&boot.initramfs)
        .args(["-append", &boot.cmdline, "-serial", "stdio"]);
    // SAFETY: prctl and setpgid are async-signal-safe; between fork and exec they only ask the
    // kernel to kill QEMU when we die and move it into a process group of its own.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
}

/// A child that is killed and waited for when dropped, unless it was already waited for.
struct Reaper {
    child: Child,
    done: Option<ExitStatus>,
}

impl Reaper {
    fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        if self.done.is_none() {
            self.done = self.child.try_wait().context("checking on QEMU")?;
        }
        Ok(self.done)
    }

    /// Ends the child now (if it is still running) and waits for it.
    fn stop(&mut self) {
        if self.done.is_none() {
            let _ = self.child.kill();
            self.done = self.child.wait().ok();
        }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One module file for the guest, with what `.modinfo` says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestModule {
    /// Module name as the kernel knows it (`-` taken as `_`).
    pub name: String,
    /// The `.ko` on the host.
    pub source: PathBuf,
    /// Path under `/lib/modules/<release>/`, e.g. `extra/hello.ko`.
    pub rel_path: String,
    /// Direct dependencies (`depends=`).
    pub depends: Vec<String>,
    /// `alias=` patterns.
    pub aliases: Vec<String>,
}

impl GuestModule {
    /// Reads a built module's `.modinfo`; `file_stem` is the `.ko`'s name without `.ko`.
    pub fn from_ko(file_stem: &str, source: &Path) -> Result<GuestModule> {
        let info = module::modinfo(source)?;
        let name = info
            .iter()
            .find(|(k, _)| k == "name")
            .map_or(file_stem, |(_, v)| v.as_str());
        let depends = info
            .iter()
            .filter(|(k, _)| k == "depends")
            .flat_map(|(_, v)| v.split(','))
            .filter(|d| !d.is_empty())
            .map(module_name)
            .collect();
        let aliases = info
            .iter()
            .filter(|(k, _)| k == "alias")
            .map(|(_, v)| v.clone())
            .collect();
        Ok(GuestModule {
            name: module_name(name),
            source: source.to_path_buf(),
            rel_path: format!("extra/{file_stem}.ko"),
            depends,
            aliases,
        })
    }
}

/// Module names treat `-` and `_` alike; the kernel and modprobe use `_`.
fn module_name(name: &str) -> String {
    name.trim().replace('-', "_")
}

/// `modules.dep` and `modules.alias` for `modules`, in the format depmod writes:
/// `extra/a.ko: extra/b.ko extra/c.ko` lists every module `a` needs, directly or not, such that
/// loading them from the last to the first is a valid order (what kmod's and busybox's modprobe
/// do). Returns the two files and a warning for each dependency that is not among `modules`.
pub fn module_indexes(modules: &[GuestModule]) -> Result<(String, String, Vec<String>)> {
    let by_name: BTreeMap<&str, &GuestModule> =
        modules.iter().map(|m| (m.name.as_str(), m)).collect();
    let mut warnings = Vec::new();
    for m in modules {
        for dep in &m.depends {
            if !by_name.contains_key(dep.as_str()) {
                warnings.push(format!(
                    "module {} depends on {dep}, which is not in the guest: `modprobe {}` will fail \
                     unless the kernel has {dep} built in",
                    m.name, m.name
                ));
            }
        }
    }
    let mut dep = String::new();
    for m in modules {
        // Dependencies first (post-order), then reversed: the nearest dependency comes first.
        let mut order: Vec<&str> = Vec::new();
        let mut visiting: Vec<&str> = Vec::new();
        visit(&m.name, &by_name, &mut order, &mut visiting)?;
        let deps: Vec<&str> = order
            .iter()
            .rev()
            .filter(|n| **n != m.name)
            .filter_map(|n| by_name.get(n).map(|d| d.rel_path.as_str()))
            .collect();
        dep.push_str(&format!("{}:", m.rel_path));
        for d in deps {
            dep.push(' ');
            dep.push_str(d);
        }
        dep.push('\n');
    }
    let mut alias = String::from("# Aliases extracted from modules themselves.\n");
    for m in modules {
        for a in &m.aliases {
            alias.push_str(&format!("alias {a} {}\n", m.name));
        }
    }
    Ok((dep, alias, warnings))
}

fn visit<'a>(
    name: &'a str,
    by_name: &BTreeMap<&'a str, &'a GuestModule>,
    order: &mut Vec<&'a str>,
    visiting: &mut Vec<&'a str>,
) -> Result<()> {
    if order.contains(&name) {
        return Ok(());
    }
    if visiting.contains(&name) {
        visiting.push(name);
        bail!(
            "the modules depend on each other in a cycle: {}",
            visiting.join(" -> ")
        );
    }
    visiting.push(name);
    if let Some(m) = by_name.get(name) {
        for dep in &m.depends {
            visit(dep, by_name, order, visiting)?;
        }
    }
    visiting.pop();
    order.push(name);
    Ok(())
}

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
    let (dep, alias, _) = module_indexes(spec.modules)?;
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
    use object::Object;
    let data = std::fs::read(busybox).with_context(|| format!("reading {}", busybox.display()))?;
    let elf = object::File::parse(&*data)
        .with_context(|| format!("{} is not an ELF program", busybox.display()))?;
    if elf.section_by_name(".interp").is_some() {
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

/// Builds the kernel and modules, boots the guest and relays the console until the exit key,
/// the guest's power-off or a signal. Returns the exit code.
pub fn run(opts: &ShellOptions) -> Result<i32> {
    let started = Instant::now();
    let kernel = kernel::ensure(&opts.kernel)?;
    eprintln!(
        "kernel  {} ready ({:.1}s)",
        kernel.release,
        started.elapsed().as_secs_f64()
    );
    let modules = build_modules(&opts.selection, &kernel)?;
    let (_, _, warnings) = module_indexes(&modules)?;
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
    let accel = choose_accel(opts, &kernel)?;

    let dir = tempfile::Builder::new()
        .prefix("kmodlab-shell-")
        .tempdir()
        .context("creating a folder for the shell's files")?;
    let initramfs = dir.path().join("initramfs.cpio");
    write_guest_initramfs(
        &initramfs,
        &GuestSpec {
            busybox: &opts.busybox,
            release: &kernel.release,
            modules: &modules,
            terminal_size: terminal_size(),
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
    let stderr_log = dir.path().join("qemu.stderr");
    let session = relay(&boot, &stderr_log, started)?;
    let qemu_messages = std::fs::read_to_string(&stderr_log).unwrap_or_default();
    let prompt = match (session.prompt_after, session.prompt_after_boot) {
        (Some(all), Some(boot)) => format!(
            "; the prompt came {:.1}s after the command started ({:.1}s after QEMU did)",
            all.as_secs_f64(),
            boot.as_secs_f64()
        ),
        _ => String::new(),
    };
    match session.end {
        End::ExitKey => {
            eprintln!("kmodlab shell: left with {EXIT_KEY_NAME}, QEMU stopped{prompt}");
            Ok(crate::cli::EXIT_PASS)
        }
        End::Halted => {
            eprintln!("kmodlab shell: the guest halted (powered off), QEMU stopped{prompt}");
            Ok(crate::cli::EXIT_PASS)
        }
        End::Signal(sig) => {
            eprintln!("kmodlab shell: stopped by signal {sig}, QEMU stopped{prompt}");
            Ok(128 + sig)
        }
        End::Exited(status) if !status.success() => {
            bail!(
                "QEMU failed ({status}){}",
                if qemu_messages.trim().is_empty() {
                    String::new()
                } else {
                    format!(":\n{}", qemu_messages.trim_end())
                }
            )
        }
        End::Exited(_) if session.panicked => {
            eprintln!("kmodlab shell: the guest kernel panicked (see above); QEMU ended{prompt}");
            Ok(crate::cli::EXIT_FAIL)
        }
        End::Exited(_) => {
            eprintln!("kmodlab shell: the guest rebooted, QEMU ended{prompt}");
            Ok(crate::cli::EXIT_PASS)
        }
    }
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

fn choose_accel(opts: &ShellOptions, kernel: &Kernel) -> Result<Accelerator> {
    Ok(match opts.accel {
        AccelChoice::Kvm => Accelerator::Kvm,
        AccelChoice::Tcg => Accelerator::Tcg,
        AccelChoice::Auto => {
            crate::guest::accel::auto(&opts.qemu, |accel| probe(opts, kernel, accel))?.0
        }
    })
}

/// Boots a busybox guest that prints a marker and reboots; true if that happened in time.
fn probe(opts: &ShellOptions, kernel: &Kernel, accel: Accelerator) -> Result<bool> {
    let dir = tempfile::tempdir().context("creating a folder for the probe")?;
    let initramfs = dir.path().join("probe.cpio");
    {
        let file = std::fs::File::create(&initramfs)
            .with_context(|| format!("creating {}", initramfs.display()))?;
        let mut w = Writer::new(std::io::BufWriter::new(file));
        w.base_layout()?;
        w.file_from_path("/bin/busybox", 0o755, &opts.busybox)?;
        w.symlink("/bin/sh", "busybox")?;
        let init = format!("#!/bin/sh\necho {PROBE_MARKER}\n/bin/busybox reboot -f\n");
        w.file("/init", 0o755, init.as_bytes())?;
        let mut out = w.finish()?;
        out.flush().context("writing the probe's initramfs")?;
    }
    let boot = Boot {
        qemu: opts.qemu.clone(),
        image: kernel.boot_image(),
        initramfs,
        cmdline: vm::cmdline_for(kernel, accel, ""),
        accel,
        memory_mb: opts.memory_mb,
        cpus: 1,
    };
    let output = run_bounded(&boot, PROBE_TIMEOUT)?;
    Ok(output.exited_by_itself && output.console.contains(PROBE_MARKER))
}

/// What [`run_bounded`] saw.
#[derive(Debug, Clone)]
pub struct BoundedRun {
    /// Everything on the console.
    pub console: String,
    /// True if QEMU ended before the time limit (and was not killed).
    pub exited_by_itself: bool,
    pub status: Option<ExitStatus>,
    pub duration: Duration,
}

/// Boots `boot` with stdin closed and waits at most `limit` for QEMU to end, killing it otherwise;
/// QEMU never outlives this call.
pub fn run_bounded(boot: &Boot, limit: Duration) -> Result<BoundedRun> {
    let started = Instant::now();
    let child = qemu_command(boot)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", boot.qemu.display()))?;
    let mut qemu = Reaper { child, done: None };
    let stdout = qemu.child.stdout.take();
    let stderr = qemu.child.stderr.take();
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let out = reader(stdout.map(|s| Box::new(s) as Box<dyn Read + Send>));
    let err = reader(stderr.map(|s| Box::new(s) as Box<dyn Read + Send>));
    let deadline = started + limit;
    let mut exited_by_itself = false;
    while Instant::now() < deadline {
        if qemu.try_wait()?.is_some() {
            exited_by_itself = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    qemu.stop();
    let mut console = out
        .join()
        .map_err(|_| anyhow!("the console reader panicked"))?;
    let messages = err
        .join()
        .map_err(|_| anyhow!("the QEMU message reader panicked"))?;
    if !messages.trim().is_empty() {
        console.push_str("\n--- QEMU's own messages ---\n");
        console.push_str(&messages);
    }
    Ok(BoundedRun {
        console,
        exited_by_itself,
        status: qemu.done,
        duration: started.elapsed(),
    })
}

/// Why the session ended.
#[derive(Debug, Clone, Copy)]
enum End {
    ExitKey,
    /// The kernel halted (a power-off without ACPI), which does not end QEMU by itself.
    Halted,
    Exited(ExitStatus),
    Signal(i32),
}

struct Session {
    end: End,
    prompt_after: Option<Duration>,
    prompt_after_boot: Option<Duration>,
    panicked: bool,
}

/// What the console output thread noticed.
#[derive(Default)]
struct Seen {
    prompt_at: Option<Instant>,
    panicked: bool,
    halted: bool,
    last_byte: u8,
    /// The end of the previous chunk, so that patterns split between reads are found.
    tail: Vec<u8>,
}

impl Seen {
    fn feed(&mut self, chunk: &[u8]) {
        const PROMPT: &[u8] = b"@kmodlab-guest:";
        const PANIC: &[u8] = b"Kernel panic - not syncing";
        // What kernel/reboot.c prints last before halting; the longest pattern sets `tail`.
        const HALTED: [&[u8]; 3] = [
            b"reboot: System halted",
            b"reboot: Power off not available",
            b"reboot: Power down",
        ];
        let mut window = std::mem::take(&mut self.tail);
        window.extend_from_slice(chunk);
        let has = |pattern: &[u8]| window.windows(pattern.len()).any(|w| w == pattern);
        if self.prompt_at.is_none() && has(PROMPT) {
            self.prompt_at = Some(Instant::now());
        }
        if has(PANIC) {
            self.panicked = true;
        }
        if HALTED.iter().any(|pattern| has(pattern)) {
            self.halted = true;
        }
        if let Some(last) = chunk.last() {
            self.last_byte = *last;
        }
        let longest = HALTED.iter().map(|p| p.len()).chain([PANIC.len()]).max();
        let keep = window.len().saturating_sub(longest.unwrap_or_default());
        self.tail = window.split_off(keep);
    }
}

/// Starts QEMU and relays the console between it and this terminal until the session ends.
fn relay(boot: &Boot, stderr_log: &Path, started: Instant) -> Result<Session> {
    let stderr_file = std::fs::File::create(stderr_log)
        .with_context(|| format!("creating {}", stderr_log.display()))?;
    let signals = SignalGuard::install()?;
    let qemu_started = Instant::now();
    let child = qemu_command(boot)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr_file))
        .spawn()
        .with_context(|| format!("starting {}", boot.qemu.display()))?;
    let mut qemu = Reaper { child, done: None };
    let to_guest = qemu
        .child
        .stdin
        .take()
        .ok_or_else(|| anyhow!("QEMU's console input is missing"))?;
    let from_guest = qemu
        .child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("QEMU's console output is missing"))?;
    // Input for a guest that stopped reading must not block the loop that watches the exit key.
    nix::fcntl::fcntl(
        &to_guest,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .context("configuring QEMU's console input")?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let output = spawn_output(from_guest, seen.clone())?;

    let raw = RawTerminal::enter()?;
    let end = input_loop(&mut qemu, to_guest, &seen);
    qemu.stop();
    // The output thread ends at EOF, right after QEMU; don't wait long for a straggler.
    let give_up = Instant::now() + Duration::from_secs(2);
    while !output.is_finished() && Instant::now() < give_up {
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(raw);
    drop(signals);
    let end = end?;
    let seen = seen.lock().map_err(|_| anyhow!("console state poisoned"))?;
    if seen.last_byte != b'\n' && seen.last_byte != 0 {
        eprintln!();
    }
    Ok(Session {
        end,
        prompt_after: seen.prompt_at.map(|t| t.duration_since(started)),
        prompt_after_boot: seen.prompt_at.map(|t| t.duration_since(qemu_started)),
        panicked: seen.panicked,
    })
}

fn spawn_output(
    mut from_guest: std::process::ChildStdout,
    seen: Arc<Mutex<Seen>>,
) -> Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("shell-console".into())
        .spawn(move || {
            let mut buf = [0u8; 4096];
            let mut stdout = std::io::stdout();
            loop {
                match from_guest.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if let Ok(mut seen) = seen.lock() {
                            seen.feed(&buf[..n]);
                        }
                        if stdout.write_all(&buf[..n]).is_err() || stdout.flush().is_err() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        })
        .context("starting the console relay")
}

/// Copies the terminal's input to the guest until the exit key, QEMU's end, or a signal.
fn input_loop(
    qemu: &mut Reaper,
    mut to_guest: std::process::ChildStdin,
    seen: &Mutex<Seen>,
) -> Result<End> {
    let stdin = std::io::stdin();
    let mut stdin_open = true;
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let sig = STOP_SIGNAL.swap(0, Ordering::SeqCst);
        if sig != 0 {
            return Ok(End::Signal(sig));
        }
        if let Some(status) = qemu.try_wait()? {
            return Ok(End::Exited(status));
        }
        if seen.lock().is_ok_and(|seen| seen.halted) {
            return Ok(End::Halted);
        }
        flush_pending(&mut to_guest, &mut pending)?;
        if !stdin_open {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        let mut fds = [nix::poll::PollFd::new(
            stdin.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        match nix::poll::poll(&mut fds, 50u16) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(anyhow!("waiting for terminal input: {e}")),
        }
        let n = match nix::unistd::read(stdin.as_fd(), &mut buf) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => continue,
            // A terminal that hung up reads as EIO; treat it like the end of input.
            Err(_) => 0,
        };
        if n == 0 {
            // Input ended (a pipe, or a terminal that went away): the guest runs on until it
            // powers off or a signal arrives.
            stdin_open = false;
            continue;
        }
        let input = &buf[..n];
        if let Some(at) = input.iter().position(|b| *b == EXIT_KEY) {
            pending.extend_from_slice(&input[..at]);
            let _ = flush_pending(&mut to_guest, &mut pending);
            return Ok(End::ExitKey);
        }
        pending.extend_from_slice(input);
        // A guest that stopped reading gets no more than this; the rest is dropped.
        const MAX_PENDING: usize = 1 << 20;
        if pending.len() > MAX_PENDING {
            let excess = pending.len() - MAX_PENDING;
            pending.drain(..excess);
        }
    }
}

/// Writes what QEMU takes now without blocking.
fn flush_pending(to_guest: &mut std::process::ChildStdin, pending: &mut Vec<u8>) -> Result<()> {
    while !pending.is_empty() {
        match to_guest.write(pending) {
            Ok(0) => break,
            Ok(n) => {
                pending.drain(..n);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // QEMU is gone; the loop notices it exited.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                pending.clear();
                break;
            }
            Err(e) => return Err(anyhow!("writing to QEMU's console: {e}")),
        }
    }
    Ok(())
}

/// The signal that asked the session to end (0: none yet).
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_stop_signal(sig: libc::c_int) {
    STOP_SIGNAL.store(sig, Ordering::SeqCst);
}

/// Turns SIGINT, SIGTERM, SIGHUP and SIGQUIT into a request to end the session (so that QEMU is
/// stopped and the terminal restored) and ignores SIGPIPE (a write to a QEMU that just died must
/// be an error, not our death with the terminal still raw) while it lives; restores the previous
/// handlers on drop.
struct SignalGuard {
    previous: Vec<(nix::sys::signal::Signal, nix::sys::signal::SigAction)>,
}

impl SignalGuard {
    fn install() -> Result<SignalGuard> {
        use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
        STOP_SIGNAL.store(0, Ordering::SeqCst);
        let action = SigAction::new(
            SigHandler::Handler(on_stop_signal),
            SaFlags::empty(),
            SigSet::empty(),
        );
        let mut guard = SignalGuard {
            previous: Vec::new(),
        };
        for signal in [
            Signal::SIGINT,
            Signal::SIGTERM,
            Signal::SIGHUP,
            Signal::SIGQUIT,
        ] {
            // SAFETY: the handler only stores into an atomic, which is async-signal-safe.
            let previous = unsafe { sigaction(signal, &action) }
                .with_context(|| format!("handling {signal}"))?;
            guard.previous.push((signal, previous));
        }
        let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
        // SAFETY: ignoring a signal installs no code at all.
        let previous =
            unsafe { sigaction(Signal::SIGPIPE, &ignore) }.context("ignoring SIGPIPE")?;
        guard.previous.push((Signal::SIGPIPE, previous));
        Ok(guard)
    }
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        for (signal, previous) in self.previous.drain(..) {
            // SAFETY: puts back the handler that was there before `install`.
            let _ = unsafe { nix::sys::signal::sigaction(signal, &previous) };
        }
    }
}

/// The terminal settings to restore, also reachable from the panic hook.
static SAVED_TERMIOS: Mutex<Option<libc::termios>> = Mutex::new(None);
static PANIC_HOOK: Once = Once::new();

/// The terminal on stdin in raw mode while it lives; restored on drop and on panic.
struct RawTerminal;

impl RawTerminal {
    /// `None` when stdin is not a terminal (then there is nothing to change or restore).
    fn enter() -> Result<Option<RawTerminal>> {
        // SAFETY: isatty only inspects the descriptor.
        if unsafe { libc::isatty(libc::STDIN_FILENO) } != 1 {
            return Ok(None);
        }
        let mut saved = std::mem::MaybeUninit::<libc::termios>::uninit();
        // SAFETY: tcgetattr fills the struct when it returns 0, and only then is it read.
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, saved.as_mut_ptr()) } != 0 {
            return Err(std::io::Error::last_os_error()).context("reading the terminal's settings");
        }
        // SAFETY: initialised by the successful tcgetattr above.
        let saved = unsafe { saved.assume_init() };
        PANIC_HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore_terminal();
                previous(info);
            }));
        });
        if let Ok(mut slot) = SAVED_TERMIOS.lock() {
            *slot = Some(saved);
        }
        let mut raw = saved;
        // SAFETY: cfmakeraw only edits the struct it is given.
        unsafe { libc::cfmakeraw(&mut raw) };
        // SAFETY: a valid termios for the terminal on stdin.
        if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &raw) } != 0 {
            let error = std::io::Error::last_os_error();
            restore_terminal();
            return Err(error).context("switching the terminal to raw mode");
        }
        Ok(Some(RawTerminal))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Puts back the saved terminal settings, once; safe to call from the panic hook.
fn restore_terminal() {
    let saved = match SAVED_TERMIOS.try_lock() {
        Ok(mut slot) => slot.take(),
        Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner().take(),
        Err(std::sync::TryLockError::WouldBlock) => None,
    };
    if let Some(saved) = saved {
        // SAFETY: the settings tcgetattr returned for this same terminal.
        unsafe {
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &saved);
        }
    }
}

/// Rows and columns of the terminal on stdout (or stdin), if there is one.
fn terminal_size() -> Option<(u16, u16)> {
    for fd in [libc::STDOUT_FILENO, libc::STDIN_FILENO] {
        let mut size = std::mem::MaybeUninit::<libc::winsize>::uninit();
        // SAFETY: TIOCGWINSZ fills a winsize when it returns 0, and only then is it read.
        if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, size.as_mut_ptr()) } == 0 {
            // SAFETY: initialised by the successful ioctl above.
            let size = unsafe { size.assume_init() };
            if size.ws_row > 0 && size.ws_col > 0 {
                return Some((size.ws_row, size.ws_col));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(name: &str, depends: &[&str]) -> GuestModule {
        GuestModule {
            name: name.into(),
            source: PathBuf::from(format!("/b/{name}.ko")),
            rel_path: format!("extra/{name}.ko"),
            depends: depends.iter().map(|d| d.to_string()).collect(),
            aliases: vec![],
        }
    }

    #[test]
    fn modules_dep_lists_every_dependency_nearest_first() {
        // a -> b -> c, a -> c, d alone; modprobe loads the list from the end.
        let mods = [
            module("a", &["b", "c"]),
            module("b", &["c"]),
            module("c", &[]),
            module("d", &[]),
        ];
        let (dep, alias, warnings) = module_indexes(&mods).unwrap();
        assert_eq!(
            dep,
            "extra/a.ko: extra/b.ko extra/c.ko\nextra/b.ko: extra/c.ko\nextra/c.ko:\nextra/d.ko:\n"
        );
        assert!(warnings.is_empty());
        assert_eq!(alias, "# Aliases extracted from modules themselves.\n");
    }

    #[test]
    fn missing_and_cyclic_dependencies_are_reported() {
        let (dep, _, warnings) = module_indexes(&[module("a", &["gone"])]).unwrap();
        assert_eq!(dep, "extra/a.ko:\n");
        assert!(warnings[0].contains("a depends on gone"), "{warnings:?}");
        let err = module_indexes(&[module("a", &["b"]), module("b", &["a"])])
            .unwrap_err()
            .to_string();
        assert!(err.contains("a -> b -> a"), "{err}");
    }

    #[test]
    fn aliases_name_the_module() {
        let mut m = module("snd_x", &[]);
        m.aliases = vec!["pci:v00001234d*".into(), "char-major-10-200".into()];
        let (_, alias, _) = module_indexes(&[m]).unwrap();
        assert!(alias.ends_with("alias pci:v00001234d* snd_x\nalias char-major-10-200 snd_x\n"));
    }

    #[test]
    fn the_seen_state_finds_patterns_split_between_reads() {
        let mut seen = Seen::default();
        seen.feed(b"Welcome\r\nroot@kmodlab-gu");
        assert!(seen.prompt_at.is_none());
        seen.feed(b"est:~# ");
        assert!(seen.prompt_at.is_some());
        seen.feed(b"Kernel pa");
        seen.feed(b"nic - not syncing: Fatal exception\r\n");
        assert!(seen.panicked);
        assert_eq!(seen.last_byte, b'\n');
        assert!(!seen.halted);
        seen.feed(b"[    3.340186] reboot: Power off not avai");
        seen.feed(b"lable: System halted instead\r\n");
        assert!(seen.halted);
    }

    #[test]
    fn the_qemu_command_has_the_console_on_stdio_and_ends_on_reboot() {
        let boot = Boot {
            qemu: "qemu-system-x86_64".into(),
            image: "/k/vmlinux".into(),
            initramfs: "/r/initrd".into(),
            cmdline: "console=ttyS0 reboot=t".into(),
            accel: Accelerator::Tcg,
            memory_mb: 256,
            cpus: 2,
        };
        let command = qemu_command(&boot);
        let args: Vec<String> = command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let joined = args.join(" ");
        assert!(
            joined.contains("-M microvm -accel tcg -cpu max"),
            "{joined}"
        );
        assert!(joined.contains("-no-reboot"), "{joined}");
        assert!(
            joined.ends_with("-append console=ttyS0 reboot=t -serial stdio"),
            "{joined}"
        );
    }
}
