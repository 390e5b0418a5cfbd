//! QEMU: start a guest, read its two channels, end it.
//!
//! The console (first UART) goes to QEMU's stdout and carries everything the kernel prints, crash
//! reports included; the agent channel (second UART) is one end of a connected unix socket pair,
//! inherited by QEMU, carrying the agent's JSON events. The host opens no socket with a name: no
//! other process can connect to the channel and speak for the agent. The command line comes from [`crate::guest::qemu`]. Starting a VM is one operation
//! ([`Vm::start`]): a boot, or a restore of a snapshot ([`Restore`]), whose agent is then sent its
//! plan and files over a third socket pair, a virtio console port.
//! The host always ends QEMU itself ([`Vm::stop`], or on drop); it never relies on the guest
//! powering off. [`run_bounded`] boots a guest without the agent (console only) to its end.

use crate::guest::image::{self, GuestFile};
use crate::guest::qemu::{self, Boot, Console, Wiring};
use crate::guest::qmp::Qmp;
use crate::host::child::KillOnDrop;
use anyhow::{anyhow, bail, Context, Result};
use kmodlab_protocol::{Event, Plan};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

/// Whether `error` came from QEMU's end of a socket going away.
fn qemu_gone(error: &anyhow::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionReset, UnexpectedEof};
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| matches!(e.kind(), BrokenPipe | ConnectionReset | UnexpectedEof))
    })
}

/// How long a restored VM may take to load its state and run.
const RESTORE_LIMIT: Duration = Duration::from_secs(30);

/// Which accelerator QEMU uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accelerator {
    Kvm,
    Tcg,
}

impl std::fmt::Display for Accelerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Accelerator::Kvm => "kvm",
            Accelerator::Tcg => "tcg",
        })
    }
}

/// Everything needed to start one guest.
#[derive(Debug, Clone)]
pub struct VmConfig {
    pub qemu: PathBuf,
    pub kernel_image: PathBuf,
    pub initramfs: PathBuf,
    pub cmdline: String,
    pub accel: Accelerator,
    pub memory_mb: u32,
    pub cpus: u32,
    /// Folder for this VM's files: `<label>.console.log`, `<label>.events.jsonl`, `<label>.qemu.txt`.
    pub dir: PathBuf,
    /// Short name used in file names and messages, e.g. `vm1`.
    pub label: String,
    /// Start from a snapshot instead of booting: `initramfs` is then the snapshot's.
    pub restore: Option<Restore>,
}

/// A VM that starts from a saved one: the state to load, and what its agent is sent once it runs.
#[derive(Debug, Clone)]
pub struct Restore {
    pub state: PathBuf,
    pub plan: Plan,
    pub files: Vec<GuestFile>,
}

impl VmConfig {
    /// What QEMU boots.
    pub fn boot(&self) -> Boot {
        Boot {
            qemu: self.qemu.clone(),
            image: self.kernel_image.clone(),
            initramfs: self.initramfs.clone(),
            cmdline: self.cmdline.clone(),
            accel: self.accel,
            memory_mb: self.memory_mb,
            cpus: self.cpus,
        }
    }
}

/// What a running guest produced, in arrival order per channel.
#[derive(Debug, Clone, PartialEq)]
pub enum VmEvent {
    /// One console line, without its line ending.
    Console(String),
    Agent(Event),
    /// A line on the agent channel that is not an event (kept for the record, never judged).
    AgentNoise(String),
    /// QEMU closed the console: it has exited or is exiting.
    ConsoleClosed,
    /// Reading the agent channel failed.
    ChannelError(String),
}

/// Under TCG the guest cannot calibrate its TSC against the emulated PIT (microvm has no HPET or
/// PM timer either), then spends ~0.3 s verifying the local APIC timer and another ~0.1 s in the
/// delay loop. The tuning skips all three: `noapictimer` (the PIT drives the ticks instead), the TSC
/// frequency given outright (under TCG the guest reads the host's TSC, so it is the host's), and
/// the loops-per-jiffy this calibration measures here. /init then starts after ~0.5 s of guest time
/// instead of ~0.8 s (docs/PERFORMANCE.md).
///
/// With a frequency, the scheduler clock reads the TSC, so kernel timestamps have microsecond
/// resolution (the HTML report's timeline needs them). `tsc=unstable` keeps the TSC from becoming
/// the clocksource: trusted, it would replace jiffies a second after boot, in the middle of the
/// first tests, with "Could not switch to high resolution mode" warnings in their logs. So ktime
/// keeps counting in ticks (4 ms), as the timer examples explain.
fn tcg_tuning(tsc_khz: Option<u64>) -> String {
    match tsc_khz {
        Some(khz) => format!("noapictimer tsc_early_khz={khz} tsc=unstable lpj={LPJ}"),
        None => format!("noapictimer tsc=unstable lpj={LPJ}"),
    }
}

/// Loops per jiffy, as the delay-loop calibration measures it in these guests.
const LPJ: u32 = 726528;

/// Debian's prebuilt cloud kernel on microvm under TCG hangs with its timer stuck at 0 after
/// "tsc: Marking TSC unstable due to could not calculate TSC khz", and with `noapictimer` its
/// timers stop after /init starts. Telling it the TSC frequency and trusting the TSC boots it in
/// about 4-5 s.
fn prebuilt_tcg_tuning(tsc_khz: Option<u64>) -> String {
    let khz = tsc_khz.unwrap_or(2_000_000);
    format!("tsc_early_khz={khz} tsc=reliable lpj={LPJ}")
}

/// The host's TSC frequency in kHz, as the guest under TCG sees it. In a virtual machine `cpu MHz`
/// in /proc/cpuinfo is the TSC frequency the hypervisor reports, and fixed. On bare metal it is
/// the current clock of a CPU that may scale its frequency, so there the TSC is measured instead
/// (10 ms, once per process), with /proc/cpuinfo as the fallback.
fn host_tsc() -> Option<u64> {
    static KHZ: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *KHZ.get_or_init(|| {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let reported = host_tsc_khz(&cpuinfo);
        if is_virtual_machine(&cpuinfo) && reported.is_some() {
            return reported;
        }
        measure_tsc_khz().or(reported)
    })
}

/// Whether the CPU flags say a hypervisor runs this machine.
fn is_virtual_machine(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == "flags").then(|| value.split_whitespace().any(|f| f == "hypervisor"))
        })
        .unwrap_or(false)
}

/// Counts TSC ticks over 10 ms of the monotonic clock.
#[cfg(target_arch = "x86_64")]
fn measure_tsc_khz() -> Option<u64> {
    use std::arch::x86_64::_rdtsc;
    let started = Instant::now();
    // SAFETY: rdtsc only reads the time-stamp counter; it has no memory effects.
    let first = unsafe { _rdtsc() };
    std::thread::sleep(Duration::from_millis(10));
    // SAFETY: as above.
    let last = unsafe { _rdtsc() };
    let elapsed = started.elapsed().as_secs_f64();
    let khz = last.checked_sub(first)? as f64 / elapsed / 1000.0;
    // Rounded to 10 kHz: the measurement is good to about one part in ten thousand.
    let khz = (khz / 10.0).round() as u64 * 10;
    (100_000..20_000_000).contains(&khz).then_some(khz)
}

#[cfg(not(target_arch = "x86_64"))]
fn measure_tsc_khz() -> Option<u64> {
    None
}

/// The first `cpu MHz` of /proc/cpuinfo in kHz: the TSC frequency on x86 hosts with a constant TSC.
fn host_tsc_khz(cpuinfo: &str) -> Option<u64> {
    let mhz: f64 = cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "cpu MHz").then(|| value.trim().parse().ok())?
    })?;
    (mhz >= 1.0).then(|| (mhz * 1000.0).round() as u64)
}

/// The kernel command line every guest of a kernel kmodlab built gets, plus the caller's words.
pub fn default_cmdline(accel: Accelerator, extra: &str) -> String {
    cmdline_with(accel, &tcg_tuning(host_tsc()), extra)
}

/// [`default_cmdline`] with the TCG tuning the kernel needs: `prebuilt_tcg_tuning` for Debian's
/// prebuilt kernel, the usual one for every kernel kmodlab builds.
pub fn cmdline_for(kernel: &crate::kernel::Kernel, accel: Accelerator, extra: &str) -> String {
    if kernel.is_prebuilt() {
        cmdline_with(accel, &prebuilt_tcg_tuning(host_tsc()), extra)
    } else {
        default_cmdline(accel, extra)
    }
}

fn cmdline_with(accel: Accelerator, tcg_tuning: &str, extra: &str) -> String {
    // loglevel=5 keeps KERN_INFO chatter off the slow emulated UART (the agent reads every record
    // from /dev/kmsg anyway) while warnings and crash reports still reach the console.
    // panic=-1 with -no-reboot makes a panicking guest end QEMU at once.
    // reboot=t: the guest has no ACPI and no keyboard controller to reset through, and other reboot
    // methods loop forever; a triple fault resets the CPU, which -no-reboot turns into QEMU's exit.
    let mut line = String::from("console=ttyS0 loglevel=5 panic=-1 reboot=t");
    if accel == Accelerator::Tcg {
        line.push(' ');
        line.push_str(tcg_tuning);
    }
    if !extra.trim().is_empty() {
        line.push(' ');
        line.push_str(extra.trim());
    }
    line
}

/// A running guest. Dropping it ends QEMU.
pub struct Vm {
    /// The host's end of a restored VM's payload port, open until the VM ends.
    _payload: Option<UnixStream>,
    child: KillOnDrop,
    events: Receiver<VmEvent>,
    pub label: String,
    pub started: Instant,
    pub logs: VmLogs,
}

/// The files a VM leaves in its folder, named for its label. The one place that names them: the
/// run folder's reader finds them through it too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmLogs {
    /// Everything the console printed.
    pub console: PathBuf,
    /// The agent's events, one JSON object a line.
    pub events: PathBuf,
    /// The QEMU command line, then QEMU's own messages.
    pub qemu: PathBuf,
}

impl VmLogs {
    /// How an events file's name ends, after the VM's label.
    pub const EVENTS_SUFFIX: &'static str = ".events.jsonl";

    /// QEMU's own last message (`load of migration failed: Invalid argument`), if it printed one.
    pub fn qemu_said(&self) -> Option<String> {
        let record = std::fs::read_to_string(&self.qemu).ok()?;
        let (_, messages) = record.split_once(QEMU_MESSAGES)?;
        messages
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("---"))
            .map(str::to_string)
    }

    pub fn named(dir: &Path, label: &str) -> VmLogs {
        VmLogs {
            console: dir.join(format!("{label}.console.log")),
            events: dir.join(format!("{label}{}", Self::EVENTS_SUFFIX)),
            qemu: dir.join(format!("{label}.qemu.txt")),
        }
    }
}

impl Vm {
    /// Starts QEMU and the threads that read its channels.
    pub fn start(cfg: &VmConfig) -> Result<Vm> {
        let (agent_channel, qemu_end) =
            UnixStream::pair().context("creating the agent channel's socket pair")?;
        let logs = VmLogs::named(&cfg.dir, &cfg.label);
        // A restored VM takes its payload on a port of its own, once its monitor says it runs.
        let (payload, qemu_payload, monitor, qemu_monitor) = match &cfg.restore {
            Some(_) => {
                let (ours, qemus) =
                    UnixStream::pair().context("creating the payload port's socket pair")?;
                let (monitor, qemu_monitor) =
                    UnixStream::pair().context("creating the monitor's socket pair")?;
                (Some(ours), Some(qemus), Some(monitor), Some(qemu_monitor))
            }
            None => (None, None, None, None),
        };

        let name = format!("kmodlab {}", logs.console.display());
        let wiring = Wiring {
            payload_socket: qemu_payload.as_ref().map(|s| s.as_fd()),
            monitor_socket: qemu_monitor.as_ref().map(|s| s.as_fd()),
            incoming: cfg.restore.as_ref().map(|r| r.state.as_path()),
            name: Some(&name),
            ..Wiring::agent(qemu_end.as_fd())
        };
        let mut command = qemu::command(&cfg.boot(), &wiring);
        command.stderr(Stdio::from(start_record(&logs.qemu, &command)?));
        let started = Instant::now();
        let mut child = KillOnDrop::spawn(&mut command)
            .with_context(|| format!("starting {}", cfg.qemu.display()))?;
        // QEMU has its copy; with ours closed, the channel ends when QEMU does.
        drop(qemu_end);
        drop((qemu_payload, qemu_monitor));
        let stdout = child
            .take_stdout()
            .ok_or_else(|| anyhow!("QEMU's console pipe is missing"))?;

        let (tx, rx) = mpsc::channel();
        spawn_console_reader(stdout, &logs.console, tx.clone())?;
        // QEMU drops what it has not read from a socket whose other end closed: ours stays open
        // as long as the VM.
        let payload_kept = match &payload {
            Some(stream) => Some(stream.try_clone().context("cloning the payload socket")?),
            None => None,
        };
        if let (Some(stream), Some(monitor), Some(restore)) =
            (payload, monitor, cfg.restore.clone())
        {
            spawn_payload_writer(monitor, stream, restore, tx.clone())?;
        }
        spawn_agent_reader(agent_channel, &logs.events, tx)?;
        Ok(Vm {
            _payload: payload_kept,
            child,
            events: rx,
            label: cfg.label.clone(),
            started,
            logs,
        })
    }

    /// The next event, or `None` once `deadline` has passed (or every channel has closed).
    pub fn next_event(&self, deadline: Instant) -> Option<VmEvent> {
        let wait = deadline.saturating_duration_since(Instant::now());
        // Timeout and "every reader has ended" both mean: nothing more before the deadline.
        self.events.recv_timeout(wait).ok()
    }

    /// How QEMU ended, once it closed the console by itself (the host did not stop it): waits a
    /// moment for its exit status, then reads it with QEMU's own messages. `None` if QEMU is still
    /// running after that moment.
    pub fn end(&mut self) -> Option<QemuEnd> {
        let give_up = Instant::now() + Duration::from_secs(3);
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < give_up => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => return None,
            }
        };
        let record = std::fs::read_to_string(&self.logs.qemu).unwrap_or_default();
        let messages = record
            .split_once(QEMU_MESSAGES)
            .map_or("", |(_, messages)| messages);
        let end = QemuEnd::of(status, messages);
        // Kept for `parse`, which judges the run folder again: the status is in no other file.
        // Failing to write it only costs `parse` this one fact.
        let _ = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.logs.qemu)
            .and_then(|mut file| writeln!(file, "{}", end.record()));
        Some(end)
    }

    /// Ends QEMU now and waits for it; every event still buffered can be drained afterwards.
    pub fn stop(&mut self) {
        self.child.stop();
    }

    /// Events that arrived but were not read yet (after [`Vm::stop`], what the channels flushed).
    pub fn drain(&self) -> Vec<VmEvent> {
        // The reader threads end at EOF, which follows QEMU's exit closely; give them a moment.
        let deadline = Instant::now() + Duration::from_millis(200);
        let mut out = Vec::new();
        while let Some(event) = self.next_event(deadline) {
            out.push(event);
        }
        out
    }
}

/// Sends a restored VM its payload once QEMU's monitor says the guest runs (what reaches its
/// devices before is lost). A failure is told as a channel error only while QEMU is still there:
/// when QEMU has gone, its own end says why.
fn spawn_payload_writer(
    monitor: UnixStream,
    mut stream: UnixStream,
    restore: Restore,
    tx: Sender<VmEvent>,
) -> Result<()> {
    std::thread::Builder::new()
        .name("payload".into())
        .spawn(move || {
            let Ok(mut qmp) = Qmp::connect(monitor, RESTORE_LIMIT) else {
                return;
            };
            let sent = qmp.wait_until_running(RESTORE_LIMIT).and_then(|running| {
                if !running {
                    bail!("the restored guest was not running after {RESTORE_LIMIT:?}");
                }
                // Blocks until the guest has read it all.
                image::write_payload(&mut stream, &restore.plan, &restore.files)
            });
            if let Err(e) = sent.map_err(|e| e.context("restoring the snapshot")) {
                if !qemu_gone(&e) {
                    let _ = tx.send(VmEvent::ChannelError(format!("{e:#}")));
                }
            }
        })
        .context("starting the payload writer")?;
    Ok(())
}

/// The line in `<label>.qemu.txt` after which QEMU's own messages (its stderr) follow.
const QEMU_MESSAGES: &str = "--- QEMU's own messages ---";

/// How a QEMU that the host did not stop ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QemuEnd {
    /// QEMU exited by itself, with status 0: the guest powered off, rebooted, or panicked
    /// (`panic=-1` with `-no-reboot`), or triple-faulted. Whatever the guest did, the test did.
    Guest,
    /// Something outside the guest ended QEMU, in these words: a signal kmodlab did not send,
    /// QEMU crashing, or QEMU failing with an error. Not the module's doing.
    Infrastructure(String),
}

impl QemuEnd {
    /// Reads QEMU's exit status and its own messages. QEMU catches SIGINT, SIGTERM and SIGHUP,
    /// says `terminating on signal N from pid P (name)` and exits with status 0, so the messages
    /// tell those apart from a guest that powered off; a signal it does not catch (SIGKILL, or
    /// its own SIGSEGV or SIGABRT) shows in the status. kmodlab itself only ever ends QEMU with
    /// SIGKILL, after it stopped reading it, so a status seen here was never kmodlab's doing.
    /// Whether an infrastructure cause [`QemuEnd::of`] gave is a signal from outside (or QEMU's
    /// own crash), not QEMU refusing to run: such an end says nothing of what QEMU was given.
    pub fn signalled(cause: &str) -> bool {
        [
            "QEMU crashed (",
            "QEMU was killed by ",
            "QEMU was ended by ",
        ]
        .iter()
        .any(|start| cause.starts_with(start))
    }

    pub fn of(status: std::process::ExitStatus, messages: &str) -> QemuEnd {
        use std::os::unix::process::ExitStatusExt;
        const NOT_OURS: &str = "an infrastructure failure, not the module's";
        if let Some(signal) = status.signal() {
            let name = signal_name(signal);
            return QemuEnd::Infrastructure(match signal {
                libc::SIGSEGV | libc::SIGABRT | libc::SIGBUS | libc::SIGILL | libc::SIGFPE => {
                    format!("QEMU crashed ({name}): {NOT_OURS}")
                }
                _ => format!("QEMU was killed by {name}, not by kmodlab: {NOT_OURS}"),
            });
        }
        if let Some((signal, from)) = terminated_by(messages) {
            return QemuEnd::Infrastructure(format!(
                "QEMU was ended by {}{from}, not by kmodlab: {NOT_OURS}",
                signal_name(signal)
            ));
        }
        match status.code() {
            Some(0) | None => QemuEnd::Guest,
            Some(code) => {
                let last = messages.lines().rev().find(|l| !l.trim().is_empty());
                let said = last.map_or(String::new(), |l| format!(" ({})", l.trim()));
                QemuEnd::Infrastructure(format!(
                    "QEMU failed with exit status {code}{said}: {NOT_OURS}"
                ))
            }
        }
    }
}

impl QemuEnd {
    const GUEST: &'static str = "--- QEMU ended by itself ---";
    const OUTSIDE: &'static str = "--- QEMU ended from outside the guest: ";

    /// The line `<label>.qemu.txt` keeps of it.
    fn record(&self) -> String {
        match self {
            QemuEnd::Guest => QemuEnd::GUEST.to_string(),
            QemuEnd::Infrastructure(cause) => format!("{}{cause} ---", QemuEnd::OUTSIDE),
        }
    }

    /// What a VM's `<label>.qemu.txt` kept of QEMU's end; `None` when the host ended QEMU (or
    /// the file predates this record).
    pub fn recorded(qemu_txt: &str) -> Option<QemuEnd> {
        qemu_txt.lines().rev().find_map(|line| {
            if line == QemuEnd::GUEST {
                return Some(QemuEnd::Guest);
            }
            let cause = line.strip_prefix(QemuEnd::OUTSIDE)?.strip_suffix(" ---")?;
            Some(QemuEnd::Infrastructure(cause.to_string()))
        })
    }
}

/// `SIGTERM` for 15; the number when the name is unknown.
fn signal_name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal)
        .map_or_else(|_| format!("signal {signal}"), |s| s.as_str().to_string())
}

/// From QEMU's `terminating on signal 15 from pid 4242 (kill)`: the signal, and ` from pid 4242
/// (kill)` (empty when QEMU did not learn the sender).
fn terminated_by(messages: &str) -> Option<(i32, String)> {
    messages.lines().find_map(|line| {
        let (_, rest) = line.split_once("terminating on signal ")?;
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let signal = rest[..digits].parse().ok()?;
        let from = rest[digits..].trim_end();
        let from = if from.is_empty() {
            String::new()
        } else {
            format!(" {}", from.trim_start())
        };
        Some((signal, from))
    })
}

/// Creates the VM's `<label>.qemu.txt`: the command line, then (as QEMU's stderr) its own messages.
fn start_record(path: &Path, command: &std::process::Command) -> Result<std::fs::File> {
    let mut record =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    writeln!(record, "{}", qemu::command_line(command)?)
        .and_then(|()| writeln!(record, "{QEMU_MESSAGES}"))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(record)
}

/// What [`run_bounded`] saw.
#[derive(Debug, Clone)]
pub struct BoundedRun {
    /// Everything on the console.
    pub console: String,
    /// True if QEMU ended before the time limit (and was not killed).
    pub exited_by_itself: bool,
    pub status: Option<std::process::ExitStatus>,
    pub duration: Duration,
}

/// Boots a guest that has only a console (no agent) with stdin closed and waits at most `limit`
/// for QEMU to end, killing it otherwise; QEMU never outlives this call.
pub fn run_bounded(boot: &Boot, limit: Duration) -> Result<BoundedRun> {
    let started = Instant::now();
    let wiring = Wiring::console_only(Console::Recorded);
    let mut qemu = KillOnDrop::spawn(qemu::command(boot, &wiring).stderr(Stdio::piped()))
        .with_context(|| format!("starting {}", boot.qemu.display()))?;
    let out = read_all_in_thread(qemu.take_stdout());
    let err = read_all_in_thread(qemu.take_stderr());
    let deadline = started + limit;
    let mut exited_by_itself = false;
    while Instant::now() < deadline {
        if qemu.try_wait().context("checking on QEMU")?.is_some() {
            exited_by_itself = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = qemu.stop();
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
        status,
        duration: started.elapsed(),
    })
}

/// Reads a pipe to its end on a thread of its own, so that no pipe fills up and stalls QEMU.
fn read_all_in_thread(
    pipe: Option<impl std::io::Read + Send + 'static>,
) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut text);
        }
        String::from_utf8_lossy(&text).into_owned()
    })
}

/// Creates `log` and starts the thread `name` that copies a channel into it.
fn spawn_reader(
    name: &str,
    log: &Path,
    read: impl FnOnce(std::fs::File) + Send + 'static,
) -> Result<()> {
    let file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || read(file))
        .with_context(|| format!("starting the thread {name}"))?;
    Ok(())
}

fn spawn_console_reader(
    stdout: std::process::ChildStdout,
    log: &Path,
    tx: Sender<VmEvent>,
) -> Result<()> {
    spawn_reader("vm-console", log, move |mut file| {
        // A read error ends the console like its end of file: QEMU is gone either way.
        let _ = for_each_line(stdout, &mut file, |line| {
            tx.send(VmEvent::Console(line)).is_ok()
        });
        let _ = tx.send(VmEvent::ConsoleClosed);
    })
}

fn spawn_agent_reader(channel: UnixStream, log: &Path, tx: Sender<VmEvent>) -> Result<()> {
    spawn_reader("vm-agent", log, move |mut file| {
        let read = for_each_line(channel, &mut file, |line| {
            if line.is_empty() {
                return true;
            }
            let event = match Event::from_line(&line) {
                Ok(event) => VmEvent::Agent(event),
                Err(_) => VmEvent::AgentNoise(line),
            };
            tx.send(event).is_ok()
        });
        if let Err(e) = read {
            let _ = tx.send(VmEvent::ChannelError(format!("agent channel: {e}")));
        }
    })
}

/// Copies every line of `source` to `log` as it came, and hands it to `take` without its line
/// ending, until end of file (or a read error, returned) or until `take` returns false.
fn for_each_line(
    source: impl std::io::Read,
    log: &mut std::fs::File,
    mut take: impl FnMut(String) -> bool,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(source);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => return Ok(()),
            Err(e) => return Err(e),
            Ok(_) => {
                let _ = log.write_all(&buf);
                let line = String::from_utf8_lossy(&buf)
                    .trim_end_matches(['\r', '\n'])
                    .to_string();
                if !take(line) {
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_tsc_frequency_comes_from_cpuinfo() {
        let cpuinfo = "processor\t: 0\nmodel name\t: Xeon\ncpu MHz\t\t: 2499.982\n";
        assert_eq!(host_tsc_khz(cpuinfo), Some(2_499_982));
        assert_eq!(host_tsc_khz("processor\t: 0\n"), None);
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_measured_tsc_frequency_is_plausible() {
        let khz = measure_tsc_khz().expect("a measurement");
        assert!((100_000..20_000_000).contains(&khz), "{khz}");
    }

    #[test]
    fn a_hypervisor_shows_in_the_cpu_flags() {
        let vm = "processor\t: 0\nflags\t\t: fpu vme tsc hypervisor lahf_lm\n";
        let metal = "processor\t: 0\nflags\t\t: fpu vme tsc constant_tsc\n";
        assert!(is_virtual_machine(vm));
        assert!(!is_virtual_machine(metal));
        assert!(!is_virtual_machine(""));
    }

    #[test]
    fn how_qemu_ended_tells_the_guest_from_the_infrastructure() {
        use std::os::unix::process::ExitStatusExt;
        let exited = |code: i32| std::process::ExitStatus::from_raw(code << 8);
        let killed = |signal: i32| std::process::ExitStatus::from_raw(signal);
        // The guest powered off, rebooted or panicked: QEMU exits 0, saying nothing.
        assert_eq!(QemuEnd::of(exited(0), ""), QemuEnd::Guest);
        let infrastructure = |end: QemuEnd| match end {
            QemuEnd::Infrastructure(why) => why,
            QemuEnd::Guest => panic!("read as the guest's end"),
        };
        assert_eq!(
            infrastructure(QemuEnd::of(killed(libc::SIGKILL), "")),
            "QEMU was killed by SIGKILL, not by kmodlab: an infrastructure failure, not the module's"
        );
        assert_eq!(
            infrastructure(QemuEnd::of(killed(libc::SIGSEGV), "")),
            "QEMU crashed (SIGSEGV): an infrastructure failure, not the module's"
        );
        // QEMU 7.2's own words when it catches SIGTERM or SIGINT; it then exits 0.
        let caught = "qemu-system-x86_64: terminating on signal 15 from pid 21167 (kill)\n";
        assert_eq!(
            infrastructure(QemuEnd::of(exited(0), caught)),
            "QEMU was ended by SIGTERM from pid 21167 (kill), not by kmodlab: \
             an infrastructure failure, not the module's"
        );
        assert_eq!(
            infrastructure(QemuEnd::of(exited(0), "qemu: terminating on signal 2\n")),
            "QEMU was ended by SIGINT, not by kmodlab: an infrastructure failure, not the module's"
        );
        let failed = "qemu-system-x86_64: warning: x\nqemu-system-x86_64: cannot set up guest memory 'pc.ram': Cannot allocate memory\n";
        assert_eq!(
            infrastructure(QemuEnd::of(exited(1), failed)),
            "QEMU failed with exit status 1 (qemu-system-x86_64: cannot set up guest memory \
             'pc.ram': Cannot allocate memory): an infrastructure failure, not the module's"
        );
        // A signal says nothing of what QEMU was given; a refusal (a state it cannot load) does.
        for signalled in [killed(libc::SIGKILL), killed(libc::SIGSEGV)] {
            assert!(QemuEnd::signalled(&infrastructure(QemuEnd::of(
                signalled, ""
            ))));
        }
        assert!(QemuEnd::signalled(&infrastructure(QemuEnd::of(
            exited(0),
            caught
        ))));
        let refused = "qemu-system-x86_64: load of migration failed: Invalid argument\n";
        assert!(!QemuEnd::signalled(&infrastructure(QemuEnd::of(
            exited(1),
            refused
        ))));
    }

    #[test]
    fn the_run_folder_keeps_how_qemu_ended() {
        let outside = QemuEnd::Infrastructure("QEMU crashed (SIGSEGV): not the module's".into());
        for end in [QemuEnd::Guest, outside] {
            let file = format!("qemu ...\n{QEMU_MESSAGES}\nwarning: x\n{}\n", end.record());
            assert_eq!(QemuEnd::recorded(&file), Some(end));
        }
        assert_eq!(
            QemuEnd::recorded(&format!("qemu ...\n{QEMU_MESSAGES}\n")),
            None
        );
    }

    #[test]
    fn the_tsc_frequency_is_given_when_the_host_knows_it() {
        assert_eq!(
            tcg_tuning(Some(2_499_982)),
            "noapictimer tsc_early_khz=2499982 tsc=unstable lpj=726528"
        );
        assert_eq!(tcg_tuning(None), "noapictimer tsc=unstable lpj=726528");
        assert!(!prebuilt_tcg_tuning(None).contains("noapictimer"));
    }
}
