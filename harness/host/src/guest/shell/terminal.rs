//! This terminal during a shell session: raw mode (restored on every way out, panics included),
//! the signals that end the session, and the window size the guest is told.

use anyhow::{Context, Result};
use nix::sys::termios::{self, SetArg, Termios};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, Once};

/// The signal that asked the session to end (0: none yet).
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_stop_signal(sig: libc::c_int) {
    STOP_SIGNAL.store(sig, Ordering::SeqCst);
}

/// The signal that asked the session to end since the last call, if one did.
pub(super) fn take_stop_signal() -> Option<i32> {
    match STOP_SIGNAL.swap(0, Ordering::SeqCst) {
        0 => None,
        sig => Some(sig),
    }
}

/// Turns SIGINT, SIGTERM, SIGHUP and SIGQUIT into a request to end the session (so that QEMU is
/// stopped and the terminal restored) and ignores SIGPIPE (a write to a QEMU that just died must
/// be an error, not our death with the terminal still raw) while it lives; restores the previous
/// handlers on drop.
pub(super) struct SignalGuard {
    previous: Vec<(nix::sys::signal::Signal, nix::sys::signal::SigAction)>,
}

impl SignalGuard {
    pub(super) fn install() -> Result<SignalGuard> {
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
static SAVED_TERMIOS: Mutex<Option<Termios>> = Mutex::new(None);
static PANIC_HOOK: Once = Once::new();

/// The terminal on stdin in raw mode while it lives; restored on drop and on panic.
pub(super) struct RawTerminal;

impl RawTerminal {
    /// `None` when stdin is not a terminal (then there is nothing to change or restore).
    pub(super) fn enter() -> Result<Option<RawTerminal>> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Ok(None);
        }
        let saved = termios::tcgetattr(&stdin).context("reading the terminal's settings")?;
        PANIC_HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore_terminal();
                previous(info);
            }));
        });
        let mut raw = saved.clone();
        if let Ok(mut slot) = SAVED_TERMIOS.lock() {
            *slot = Some(saved);
        }
        termios::cfmakeraw(&mut raw);
        if let Err(error) = termios::tcsetattr(&stdin, SetArg::TCSANOW, &raw) {
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
        let _ = termios::tcsetattr(std::io::stdin(), SetArg::TCSANOW, &saved);
    }
}

/// Rows and columns of the terminal on stdout (or stdin), if there is one.
pub(super) fn terminal_size() -> Option<(u16, u16)> {
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
