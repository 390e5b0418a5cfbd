//! Child processes that never outlive kmodlab: QEMU for a test VM or the shell, `zstd` behind an
//! archive being written.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus};

/// A child process that is killed and waited for when dropped, unless it was already waited for.
///
/// It is started with `PR_SET_PDEATHSIG`, so that even a SIGKILL of kmodlab (which runs no drop)
/// ends it. The kernel sends that signal when the *thread* that spawned the child ends, so start it
/// on the thread that owns it.
#[derive(Debug)]
pub struct KillOnDrop {
    child: Child,
    /// Set once the child has been waited for; a reaped child is never signalled again.
    status: Option<ExitStatus>,
}

impl KillOnDrop {
    /// Spawns `command`, asking the kernel to kill the child if this thread dies first.
    pub fn spawn(command: &mut Command) -> io::Result<KillOnDrop> {
        // SAFETY: prctl is async-signal-safe; between fork and exec it only asks the kernel to
        // SIGKILL the child when its parent goes away.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok(KillOnDrop {
            child: command.spawn()?,
            status: None,
        })
    }

    /// The child's stdin pipe, the first time it is asked for (if it was piped).
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.child.stdin.take()
    }

    /// The child's stdout pipe, the first time it is asked for (if it was piped).
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// The child's stderr pipe, the first time it is asked for (if it was piped).
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.child.stderr.take()
    }

    /// The child's exit status if it has ended, without blocking.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.child.try_wait()?;
        }
        Ok(self.status)
    }

    /// Waits for the child to end by itself.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        match self.status {
            Some(status) => Ok(status),
            None => {
                let status = self.child.wait()?;
                self.status = Some(status);
                Ok(status)
            }
        }
    }

    /// Ends the child now (if it is still running) and waits for it; its exit status, if known.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
        self.status
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    fn alive(pid: u32) -> bool {
        // A zombie (killed, not yet reaped) still has /proc/<pid>; only a reaped child is gone.
        std::path::Path::new(&format!("/proc/{pid}")).exists()
    }

    #[test]
    fn a_dropped_child_is_killed_and_reaped() {
        let child = KillOnDrop::spawn(Command::new("sleep").arg("600").stdin(Stdio::null()))
            .expect("sleep");
        let pid = child.child.id();
        assert!(alive(pid));
        drop(child);
        assert!(!alive(pid), "sleep {pid} outlived its guard");
    }

    #[test]
    fn a_child_that_ended_keeps_its_status() {
        let mut child = KillOnDrop::spawn(&mut Command::new("false")).expect("false");
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "false did not end");
            std::thread::sleep(Duration::from_millis(5));
        };
        assert!(!status.success());
        assert_eq!(child.stop(), Some(status));
        assert_eq!(child.wait().expect("wait"), status);
    }
}
