//! The one place that assembles QEMU command lines.
//!
//! Every guest is the same machine: microvm with no default devices and no display, the kernel and
//! initramfs given directly, `-no-reboot` so that a guest reboot (or a panic with `panic=-1`) ends
//! QEMU, and the console on the first UART over QEMU's stdio. What differs between a test VM and
//! the interactive shell is [`Wiring`]: whether a person types into the console, and whether the
//! agent has a channel of its own.

use crate::guest::vm::Accelerator;
use anyhow::{Context, Result};
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What boots: the machine's size, the kernel, its initramfs and its command line.
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

/// How the console (first UART, on QEMU's stdin and stdout) is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Console {
    /// Only read (and recorded); QEMU's stdin is closed.
    Recorded,
    /// Relayed both ways to a person's terminal. QEMU gets a process group of its own, so that
    /// the terminal's signals reach kmodlab, which decides.
    Interactive,
}

/// What differs between the guests kmodlab starts.
#[derive(Debug, Clone, Copy)]
pub struct Wiring<'a> {
    pub console: Console,
    /// The abstract unix socket QEMU connects the agent's UART (the second one) to, for a guest
    /// that runs the agent.
    pub agent_socket: Option<&'a str>,
}

/// QEMU's `-cpu` for the accelerator.
fn cpu_model(accel: Accelerator) -> &'static str {
    match accel {
        Accelerator::Kvm => "host",
        Accelerator::Tcg => "max",
    }
}

/// QEMU's arguments (without the program) for `boot` wired as `wiring` says.
pub fn args(boot: &Boot, wiring: &Wiring) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "-M",
        "microvm",
        "-accel",
        &boot.accel.to_string(),
        "-cpu",
        cpu_model(boot.accel),
        "-m",
        &boot.memory_mb.to_string(),
        "-smp",
        &boot.cpus.to_string(),
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    args.push("-kernel".into());
    args.push(boot.image.clone().into());
    args.push("-initrd".into());
    args.push(boot.initramfs.clone().into());
    args.extend(["-append", &boot.cmdline, "-serial", "stdio"].map(OsString::from));
    if let Some(socket) = wiring.agent_socket {
        // On microvm a second `-serial` gives a UART that fails with EIO; an explicit isa-serial
        // works (both tried on QEMU 7.2 here).
        args.extend(
            [
                "-chardev",
                &format!("socket,id=agent,path={socket},abstract=on"),
                "-device",
                "isa-serial,chardev=agent,index=1",
            ]
            .map(OsString::from),
        );
    }
    args
}

/// The command that starts QEMU for `boot`, with the console's stdin and stdout set as `wiring`
/// says. The caller sets stderr and spawns it (with [`crate::host::child::KillOnDrop`]).
pub fn command(boot: &Boot, wiring: &Wiring) -> Command {
    let mut command = Command::new(&boot.qemu);
    command.args(args(boot, wiring)).stdout(Stdio::piped());
    match wiring.console {
        Console::Recorded => {
            command.stdin(Stdio::null());
        }
        Console::Interactive => {
            command.stdin(Stdio::piped());
            // SAFETY: setpgid is async-signal-safe; between fork and exec it only moves QEMU into
            // a process group of its own.
            unsafe {
                command.pre_exec(|| {
                    if libc::setpgid(0, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
    }
    command
}

/// `command` as one line that can be pasted into a shell, for the record.
pub fn command_line(command: &Command) -> Result<String> {
    let args: Vec<String> = command
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let words =
        shlex::try_join(args.iter().map(String::as_str)).context("quoting QEMU's command line")?;
    Ok(format!(
        "{} {words}",
        Path::new(command.get_program()).display()
    ))
}

/// `qemu-system-x86_64 --version`'s first line, for cache keys and `doctor`.
pub fn version(qemu: &Path) -> Result<String> {
    let out = Command::new(qemu)
        .arg("--version")
        .output()
        .with_context(|| format!("running {} --version", qemu.display()))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::vm::default_cmdline;

    fn boot(cmdline: &str) -> Boot {
        Boot {
            qemu: "qemu-system-x86_64".into(),
            image: "/k/bzImage".into(),
            initramfs: "/r/initrd".into(),
            cmdline: cmdline.into(),
            accel: Accelerator::Tcg,
            memory_mb: 256,
            cpus: 2,
        }
    }

    fn joined(command: &Command) -> String {
        command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn the_agent_uart_is_an_isa_serial_on_a_socket() {
        let boot = boot(&default_cmdline(Accelerator::Kvm, "quiet"));
        let wiring = Wiring {
            console: Console::Recorded,
            agent_socket: Some("sock"),
        };
        let joined = joined(&command(&boot, &wiring));
        assert!(joined.contains("-chardev socket,id=agent,path=sock,abstract=on -device isa-serial,chardev=agent,index=1"));
        assert!(joined.contains("-accel tcg -cpu max"));
        assert!(joined.contains("-append console=ttyS0 loglevel=5 panic=-1 reboot=t quiet"));
    }

    #[test]
    fn the_qemu_command_has_the_console_on_stdio_and_ends_on_reboot() {
        let boot = Boot {
            image: "/k/vmlinux".into(),
            ..boot("console=ttyS0 reboot=t")
        };
        let wiring = Wiring {
            console: Console::Interactive,
            agent_socket: None,
        };
        let joined = joined(&command(&boot, &wiring));
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

    #[test]
    fn recorded_command_lines_survive_a_shell() {
        let mut command = Command::new("qemu-system-x86_64");
        let words = ["-append", "console=ttyS0 panic=-1", "it's"];
        command.args(words);
        let line = command_line(&command).expect("quoted");
        assert_eq!(
            line,
            r#"qemu-system-x86_64 -append 'console=ttyS0 panic=-1' "it's""#
        );
        // What matters: a shell splits the line back into the very same words.
        let split = shlex::split(&line).expect("a shell line");
        assert_eq!(split[0], "qemu-system-x86_64");
        assert_eq!(split[1..], words);
        let args = line.trim_start_matches("qemu-system-x86_64 ");
        let echoed = Command::new("sh")
            .arg("-c")
            .arg(format!("printf '%s\\n' {args}"))
            .output()
            .expect("sh");
        assert_eq!(
            String::from_utf8_lossy(&echoed.stdout),
            words.join("\n") + "\n"
        );
    }
}
