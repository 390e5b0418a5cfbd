//! The agent channel: events as JSON lines on the second serial port.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use kmodlab_protocol::Event;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, ControlFlags, SetArg};

/// Where events go. Any `Write` works, which keeps the sending logic testable on the host.
pub struct Channel<W: Write> {
    out: W,
    /// Set after the first failed write, so the console gets one complaint, not thousands.
    broken: bool,
}

impl Channel<File> {
    /// Opens the serial port in raw mode, so bytes reach the host exactly as written.
    pub fn open_port(path: &str) -> Result<Channel<File>, String> {
        // O_NONBLOCK: a serial open can wait for carrier; O_NOCTTY: PID 1 must not adopt it as its tty.
        // Read access too: a snapshot-restored agent will take its plan over this same port.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| format!("open {path}: {e}"))?;
        let mut termios = tcgetattr(&file).map_err(|e| format!("tcgetattr {path}: {e}"))?;
        cfmakeraw(&mut termios);
        // Ignore modem lines so writes never wait for them.
        termios.control_flags.insert(ControlFlags::CLOCAL);
        tcsetattr(&file, SetArg::TCSANOW, &termios)
            .map_err(|e| format!("tcsetattr {path}: {e}"))?;
        // Writes must block (not fail with EAGAIN) when the UART's buffer is full.
        fcntl(&file, FcntlArg::F_SETFL(OFlag::empty()))
            .map_err(|e| format!("fcntl {path}: {e}"))?;
        Ok(Channel::new(file))
    }

    /// Waits until every byte written has left the UART: a power-off right after the last
    /// event would otherwise cut it off (a long `leak_scan` event was seen to end mid-line).
    pub fn drain(&mut self) {
        if let Err(e) = nix::sys::termios::tcdrain(&self.out) {
            eprintln!("kmodlab-agent: waiting for the agent channel to drain failed: {e}");
        }
    }
}

impl<W: Write> Channel<W> {
    pub fn new(out: W) -> Channel<W> {
        Channel { out, broken: false }
    }

    /// Sends one event as a line, written out at once so nothing waits in a buffer if the kernel dies.
    pub fn send(&mut self, event: &Event) {
        let mut line = event.to_line();
        line.push('\n');
        let result = self
            .out
            .write_all(line.as_bytes())
            .and_then(|()| self.out.flush());
        if let Err(e) = result {
            if !self.broken {
                self.broken = true;
                eprintln!("kmodlab-agent: writing to the agent channel failed: {e}");
            }
        }
    }

    /// Reports a failure of the agent itself.
    pub fn error(&mut self, context: &str, message: impl std::fmt::Display) {
        self.send(&Event::AgentError {
            context: context.to_string(),
            message: message.to_string(),
        });
    }

    #[cfg(test)]
    pub fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_is_one_parseable_line() {
        let mut channel = Channel::new(Vec::new());
        channel.send(&Event::TestStarted {
            test: 3,
            taint: 4096,
        });
        channel.error("read plan", "bad \"json\"\nsecond line");
        channel.send(&Event::Done);
        let text = String::from_utf8(channel.into_inner()).unwrap();
        let events: Vec<Event> = text.lines().map(|l| Event::from_line(l).unwrap()).collect();
        assert_eq!(
            events,
            [
                Event::TestStarted {
                    test: 3,
                    taint: 4096
                },
                Event::AgentError {
                    context: "read plan".into(),
                    message: "bad \"json\"\nsecond line".into()
                },
                Event::Done,
            ]
        );
        assert!(text.ends_with('\n'));
    }
}
