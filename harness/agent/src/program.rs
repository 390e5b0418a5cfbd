//! Starting a test's user-space programs (module companions) and collecting what they print.
//!
//! Each program runs in its own process group with stdin from /dev/null and stdout and stderr on
//! one pipe, so its output arrives interleaved as it wrote it. The agent reads the pipe without
//! blocking while it keeps forwarding kernel records (see `Agent::run_program`), and kills the
//! group with SIGKILL when the program's time is up.

use std::collections::VecDeque;
use std::io::{self, ErrorKind, PipeReader, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};

use kmodlab_protocol::{ProgramRun, OUTPUT_HEAD, OUTPUT_TAIL};
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// Where the guest's companions live; first on the programs' PATH.
pub const BIN_DIR: &str = "/kmodlab/bin";

/// A program's output as the agent keeps it: the first `head_max` bytes and the last `tail_max`.
#[derive(Debug)]
pub struct Output {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    head_max: usize,
    tail_max: usize,
    /// Bytes that fell out between head and tail.
    dropped: u64,
}

impl Default for Output {
    fn default() -> Self {
        Output::with_limits(OUTPUT_HEAD, OUTPUT_TAIL)
    }
}

impl Output {
    pub fn with_limits(head_max: usize, tail_max: usize) -> Output {
        Output {
            head: Vec::new(),
            tail: VecDeque::new(),
            head_max,
            tail_max,
            dropped: 0,
        }
    }

    pub fn push(&mut self, mut bytes: &[u8]) {
        let room = self.head_max.saturating_sub(self.head.len());
        let (first, rest) = bytes.split_at(room.min(bytes.len()));
        self.head.extend_from_slice(first);
        bytes = rest;
        if bytes.is_empty() {
            return;
        }
        // Only the last `tail_max` bytes of this piece can survive.
        let skip = bytes.len().saturating_sub(self.tail_max);
        self.dropped += skip as u64;
        bytes = &bytes[skip..];
        let overflow = (self.tail.len() + bytes.len()).saturating_sub(self.tail_max);
        self.dropped += overflow as u64;
        self.tail.drain(..overflow.min(self.tail.len()));
        self.tail.extend(bytes);
    }

    /// Adds a line of the agent's own (e.g. why the program could not be started).
    pub fn note(&mut self, text: &str) {
        let needs_newline = self
            .tail
            .back()
            .or(self.head.last())
            .is_some_and(|&b| b != b'\n');
        let mut line = String::new();
        if needs_newline {
            line.push('\n');
        }
        line.push_str("[kmodlab-agent] ");
        line.push_str(text);
        line.push('\n');
        self.push(line.as_bytes());
    }

    /// The text sent to the host (invalid UTF-8 replaced), with a line where bytes were left out.
    pub fn into_text(self) -> String {
        let mut text = String::from_utf8_lossy(&self.head).into_owned();
        if self.dropped > 0 || !self.tail.is_empty() {
            if self.dropped > 0 {
                if !text.ends_with('\n') {
                    text.push('\n');
                }
                text.push_str(&format!(
                    "[kmodlab-agent] ... {} bytes of output left out (kept the first {} and the last {})\n",
                    self.dropped, self.head_max, self.tail_max
                ));
            }
            let tail: Vec<u8> = self.tail.into_iter().collect();
            text.push_str(&String::from_utf8_lossy(&tail));
        }
        text
    }
}

/// A started program.
pub struct Running {
    child: Child,
    /// The read end of its output pipe, non-blocking; `None` once it reached end of file.
    pipe: Option<PipeReader>,
    /// Readable when the program exits, if the kernel has pidfds.
    pidfd: Option<OwnedFd>,
    pub output: Output,
}

/// Starts `run` with its output on a pipe.
pub fn start(run: &ProgramRun) -> io::Result<Running> {
    let (reader, writer) = io::pipe()?;
    fcntl(reader.as_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(io::Error::from)?;
    let stderr = writer.try_clone()?;
    let child = {
        let mut command = Command::new(&run.path);
        command
            .args(&run.args)
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(stderr)
            .current_dir("/")
            .env("PATH", format!("{BIN_DIR}:/usr/sbin:/usr/bin:/sbin:/bin"))
            // Its own process group, so a timeout kills whatever it started too.
            .process_group(0);
        command.spawn()?
        // `command` drops here, closing our copies of the pipe's write end: the pipe reaches end
        // of file once the program (and anything it started) has closed its own.
    };
    let pidfd = crate::runner::pidfd_open(child.id() as libc::pid_t);
    Ok(Running {
        child,
        pipe: Some(reader),
        pidfd,
        output: Output::default(),
    })
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reads what the pipe holds now. Returns how many bytes it read.
    pub fn read_available(&mut self) -> usize {
        let mut total = 0;
        let mut buf = [0u8; 4096];
        while let Some(pipe) = self.pipe.as_mut() {
            match pipe.read(&mut buf) {
                Ok(0) => self.pipe = None,
                Ok(n) => {
                    self.output.push(&buf[..n]);
                    total += n;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => {
                    self.output.note(&format!("reading the output failed: {e}"));
                    self.pipe = None;
                }
            }
        }
        total
    }

    /// Whether the output pipe reached end of file.
    pub fn output_closed(&self) -> bool {
        self.pipe.is_none()
    }

    /// What to poll: the pipe while it is open, and the pidfd.
    pub fn wake_fds(&self) -> Vec<BorrowedFd<'_>> {
        let mut fds = Vec::with_capacity(2);
        if let Some(pipe) = self.pipe.as_ref() {
            fds.push(pipe.as_fd());
        }
        if let Some(pidfd) = self.pidfd.as_ref() {
            fds.push(pidfd.as_fd());
        }
        fds
    }

    pub fn has_pidfd(&self) -> bool {
        self.pidfd.is_some()
    }

    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// SIGKILL to the program's process group (and to the program itself, should the group be gone).
    pub fn kill(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.child.kill();
    }
}

/// How a program ended, as the event reports it: its exit code, or the name of the signal.
pub fn status_parts(status: ExitStatus) -> (Option<i32>, Option<String>) {
    match status.signal() {
        Some(signal) => (None, Some(crate::helper::signal_name(signal))),
        None => (status.code(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_output_is_kept_whole() {
        let mut out = Output::with_limits(10, 5);
        out.push(b"hello\n");
        assert_eq!(out.into_text(), "hello\n");
        let mut out = Output::with_limits(10, 5);
        out.push(b"0123456789ab");
        assert_eq!(out.into_text(), "0123456789ab");
    }

    #[test]
    fn long_output_keeps_its_head_and_tail_and_says_what_was_cut() {
        let mut out = Output::with_limits(4, 3);
        for chunk in [&b"ab"[..], b"cdef", b"ghij", b"k"] {
            out.push(chunk);
        }
        // head "abcd", tail "ijk", dropped "efgh".
        assert_eq!(
            out.into_text(),
            "abcd\n[kmodlab-agent] ... 4 bytes of output left out (kept the first 4 and the last 3)\nijk"
        );
        let mut out = Output::with_limits(2, 2);
        out.push(&[b'x'; 1000]);
        assert!(out.into_text().contains("996 bytes of output left out"));
    }

    #[test]
    fn notes_start_on_a_line_of_their_own() {
        let mut out = Output::default();
        out.push(b"partial");
        out.note("killed");
        assert_eq!(out.into_text(), "partial\n[kmodlab-agent] killed\n");
    }

    #[test]
    fn exit_codes_and_signals_are_told_apart() {
        assert_eq!(status_parts(ExitStatus::from_raw(3 << 8)), (Some(3), None));
        assert_eq!(
            status_parts(ExitStatus::from_raw(libc::SIGSEGV)),
            (None, Some("SIGSEGV".into()))
        );
    }
}
