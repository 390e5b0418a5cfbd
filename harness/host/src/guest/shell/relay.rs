//! The console relay: QEMU's serial port on pipes, this terminal in raw mode, bytes copied both
//! ways until the exit key, QEMU's end, the guest's halt or a signal.

use super::terminal::{self, RawTerminal, SignalGuard};
use super::EXIT_KEY;
use crate::guest::qemu::{self, Boot, Console, Wiring};
use crate::host::child::KillOnDrop;
use anyhow::{anyhow, Context, Result};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why the session ended.
#[derive(Debug, Clone, Copy)]
pub(super) enum End {
    ExitKey,
    /// The kernel halted (a power-off without ACPI), which does not end QEMU by itself.
    Halted,
    Exited(ExitStatus),
    Signal(i32),
}

pub(super) struct Session {
    pub end: End,
    pub prompt_after: Option<Duration>,
    pub prompt_after_boot: Option<Duration>,
    pub panicked: bool,
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
pub(super) fn relay(boot: &Boot, stderr_log: &Path, started: Instant) -> Result<Session> {
    let stderr_file = std::fs::File::create(stderr_log)
        .with_context(|| format!("creating {}", stderr_log.display()))?;
    let signals = SignalGuard::install()?;
    let qemu_started = Instant::now();
    let wiring = Wiring::console_only(Console::Interactive);
    let mut qemu = KillOnDrop::spawn(qemu::command(boot, &wiring).stderr(Stdio::from(stderr_file)))
        .with_context(|| format!("starting {}", boot.qemu.display()))?;
    let to_guest = qemu
        .take_stdin()
        .ok_or_else(|| anyhow!("QEMU's console input is missing"))?;
    let from_guest = qemu
        .take_stdout()
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
    qemu: &mut KillOnDrop,
    mut to_guest: std::process::ChildStdin,
    seen: &Mutex<Seen>,
) -> Result<End> {
    let stdin = std::io::stdin();
    let mut stdin_open = true;
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        if let Some(sig) = terminal::take_stop_signal() {
            return Ok(End::Signal(sig));
        }
        if let Some(status) = qemu.try_wait().context("checking on QEMU")? {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
