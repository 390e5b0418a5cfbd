//! The helper process that makes the risky module syscalls.
//!
//! A module whose init (or exit) oopses kills the task that called `finit_module` (or
//! `delete_module`); in PID 1 that would panic the kernel and lose the report, and a call that never
//! returns would block the agent. So each call runs in a forked child that the agent waits for with
//! a time limit. The child exits 0 on success or with the errno as its exit code.
//!
//! Fork rather than re-executing the binary: under TCG an exec of the agent costs about 25-30 ms more
//! per call (measured), and the agent is single-threaded, so the forked child may do anything.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use kmodlab_protocol::OpResult;
use nix::errno::Errno;
use nix::kmod::{delete_module, finit_module, DeleteModuleFlags, ModuleInitFlags};
use nix::sys::signal::Signal;
use nix::unistd::{fork, ForkResult, Pid};

/// One syscall for the helper to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelperOp {
    Load { path: String, params: String },
    Unload { name: String },
}

impl HelperOp {
    /// Makes the syscall; the result is the helper's exit code.
    pub fn run(&self) -> i32 {
        let result = match self {
            HelperOp::Load { path, params } => load(path, params),
            HelperOp::Unload { name } => unload(name),
        };
        match result {
            Ok(()) => 0,
            Err(errno) => errno as i32,
        }
    }

    /// The helper's name in `ps` and, more usefully, in the `Comm:` field of an oops report.
    fn process_name(&self) -> &'static std::ffi::CStr {
        match self {
            HelperOp::Load { .. } => c"kmodlab-load",
            HelperOp::Unload { .. } => c"kmodlab-unload",
        }
    }

    /// Starts the helper process.
    pub fn spawn(&self) -> io::Result<Helper> {
        // SAFETY: the agent is single-threaded, so the child has no lock held by another thread.
        match unsafe { fork() } {
            Ok(ForkResult::Parent { child }) => Ok(Helper { pid: child }),
            Ok(ForkResult::Child) => {
                // A failed rename only costs a clearer oops report.
                let _ = nix::sys::prctl::set_name(self.process_name());
                let code = self.run();
                // SAFETY: _exit ends the process at once, without running the parent's exit handlers twice.
                unsafe { libc::_exit(code) }
            }
            Err(e) => Err(io::Error::from(e)),
        }
    }
}

fn load(path: &str, params: &str) -> Result<(), Errno> {
    let params = CString::new(params).map_err(|_| Errno::EINVAL)?;
    let file =
        File::open(path).map_err(|e| e.raw_os_error().map_or(Errno::EIO, Errno::from_raw))?;
    finit_module(&file, &params, ModuleInitFlags::empty())
}

fn unload(name: &str) -> Result<(), Errno> {
    let name = CString::new(name).map_err(|_| Errno::EINVAL)?;
    // O_NONBLOCK: fail at once with EWOULDBLOCK if the module is in use instead of waiting for it.
    delete_module(&name, DeleteModuleFlags::O_NONBLOCK)
}

/// A running helper process.
pub struct Helper {
    pid: Pid,
}

impl Helper {
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Whether the helper has exited, without reaping it: until it is reaped, its /proc entry
    /// (name, last CPU) stays readable for the records it printed.
    pub fn has_exited(&self) -> io::Result<bool> {
        // SAFETY: siginfo_t is plain data; all zeroes is a valid value, and waitid fills it in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is valid and writable for the duration of the call.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                self.pid.as_raw() as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: after a successful waitid, si_pid is set (0 when no child has changed state).
        Ok(unsafe { info.si_pid() } != 0)
    }

    /// How the helper ended, or `None` while it runs.
    pub fn try_wait(&self) -> io::Result<Option<ExitStatus>> {
        let mut status = 0;
        // Raw waitpid rather than nix's: nix rejects signal numbers it has no name for, and we
        // want to report whatever killed the helper.
        // SAFETY: `status` is a valid, writable int for the duration of the call.
        let pid = unsafe { libc::waitpid(self.pid.as_raw(), &mut status, libc::WNOHANG) };
        match pid {
            0 => Ok(None),
            p if p < 0 => Err(io::Error::last_os_error()),
            _ => Ok(Some(ExitStatus::from_raw(status))),
        }
    }
}

/// The result for a failed syscall with this errno.
pub fn failed(errno: i32) -> OpResult {
    let e = Errno::from_raw(errno);
    OpResult::Failed {
        errno,
        name: format!("{e:?}"),
        message: e.desc().to_string(),
    }
}

/// `SIGSEGV`, or `signal 40` for one nix has no name for.
pub fn signal_name(signal: i32) -> String {
    Signal::try_from(signal).map_or_else(|_| format!("signal {signal}"), |s| s.as_str().to_string())
}

/// Turns how the helper ended into the syscall's result.
pub fn outcome(status: ExitStatus) -> OpResult {
    if let Some(signal) = status.signal() {
        return OpResult::Died {
            signal: signal_name(signal),
        };
    }
    match status.code() {
        Some(0) => OpResult::Ok,
        Some(code) => failed(code),
        // waitpid without WUNTRACED reports only exits and deaths, so this cannot happen.
        None => OpResult::Died {
            signal: format!("unknown ({status:?})"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_names_and_descriptions() {
        assert_eq!(
            failed(2),
            OpResult::Failed {
                errno: 2,
                name: "ENOENT".into(),
                message: "No such file or directory".into()
            }
        );
        assert_eq!(
            failed(19),
            OpResult::Failed {
                errno: 19,
                name: "ENODEV".into(),
                message: "No such device".into()
            }
        );
        let OpResult::Failed { name, .. } = failed(libc::EEXIST) else {
            panic!()
        };
        assert_eq!(name, "EEXIST");
        // EWOULDBLOCK (a busy module's unload) and EAGAIN are one number; the name is EAGAIN.
        let OpResult::Failed { name, .. } = failed(libc::EWOULDBLOCK) else {
            panic!()
        };
        assert_eq!(name, "EAGAIN");
        let OpResult::Failed {
            errno,
            name,
            message,
        } = failed(200)
        else {
            panic!()
        };
        assert_eq!(
            (errno, name.as_str(), message.as_str()),
            (200, "UnknownErrno", "Unknown errno")
        );
    }

    #[test]
    fn exit_statuses_become_results() {
        // Raw wait statuses: exit code in bits 8-15, terminating signal in the low 7 bits.
        assert_eq!(outcome(ExitStatus::from_raw(0)), OpResult::Ok);
        assert_eq!(outcome(ExitStatus::from_raw(19 << 8)), failed(19));
        assert_eq!(
            outcome(ExitStatus::from_raw(libc::SIGSEGV)),
            OpResult::Died {
                signal: "SIGSEGV".into()
            }
        );
        assert_eq!(
            outcome(ExitStatus::from_raw(libc::SIGKILL)),
            OpResult::Died {
                signal: "SIGKILL".into()
            }
        );
        // With the core-dump bit set, and with a real-time signal nix has no name for.
        assert_eq!(
            outcome(ExitStatus::from_raw(0x80 | libc::SIGBUS)),
            OpResult::Died {
                signal: "SIGBUS".into()
            }
        );
        assert_eq!(
            outcome(ExitStatus::from_raw(40)),
            OpResult::Died {
                signal: "signal 40".into()
            }
        );
    }

    #[test]
    fn the_syscall_errno_becomes_the_exit_code() {
        let missing = HelperOp::Load {
            path: "/nonexistent/kmodlab/x.ko".into(),
            params: String::new(),
        };
        assert_eq!(missing.run(), libc::ENOENT);
        let bad_params = HelperOp::Load {
            path: "/dev/null".into(),
            params: "a\0b".into(),
        };
        assert_eq!(bad_params.run(), libc::EINVAL);
        let bad_name = HelperOp::Unload {
            name: "a\0b".into(),
        };
        assert_eq!(bad_name.run(), libc::EINVAL);
    }

    #[test]
    fn a_forked_helper_reports_its_exit_code() {
        let helper = HelperOp::Load {
            path: "/nonexistent/kmodlab/x.ko".into(),
            params: String::new(),
        }
        .spawn()
        .unwrap();
        let status = loop {
            if let Some(status) = helper.try_wait().unwrap() {
                break status;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        };
        assert_eq!(outcome(status), failed(libc::ENOENT));
        // Reaped: a second wait finds no such child.
        assert_eq!(
            helper.try_wait().unwrap_err().raw_os_error(),
            Some(libc::ECHILD)
        );
    }
}
