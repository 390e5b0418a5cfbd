//! The one place that assembles QEMU command lines.
//!
//! Every guest is the same machine: microvm with no default devices and no display, the kernel and
//! initramfs given directly, `-no-reboot` so that a guest reboot (or a panic with `panic=-1`) ends
//! QEMU, and the console on the first UART over QEMU's stdio. What differs between a test VM and
//! the interactive shell is [`Wiring`]: whether a person types into the console, and whether the
//! agent has a channel of its own.
//!
//! Every QEMU gets a process group of its own: a Ctrl-C at the terminal (SIGINT to the foreground
//! group) reaches kmodlab alone, which decides what ends, instead of also ending QEMU behind its
//! back; `PR_SET_PDEATHSIG` ([`crate::host::child`]) still ends QEMU with kmodlab.

use crate::guest::vm::Accelerator;
use anyhow::{Context, Result};
use std::ffi::OsString;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
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
    /// Relayed both ways to a person's terminal.
    Interactive,
}

/// What differs between the guests kmodlab starts.
#[derive(Debug, Clone, Copy)]
pub struct Wiring<'a> {
    pub console: Console,
    /// For a guest that runs the agent: QEMU's end of a connected socket pair, which carries the
    /// agent's UART (the second one). QEMU inherits it already connected, so there is no name any
    /// other process could connect to first. It must stay open until QEMU is spawned.
    pub agent_socket: Option<BorrowedFd<'a>>,
    /// For a guest saved as a snapshot, or restored from one: QEMU's end of the socket pair that
    /// carries the virtio console port the agent takes its payload from
    /// ([`kmodlab_protocol::payload`]). A snapshot and its restored copies must have the same
    /// devices, so both have it.
    pub payload_socket: Option<BorrowedFd<'a>>,
    /// QEMU's end of a socket pair for its monitor (QMP), to save a snapshot through.
    pub monitor_socket: Option<BorrowedFd<'a>>,
    /// A saved VM to restore instead of booting.
    pub incoming: Option<&'a Path>,
    /// What `ps` shows the guest as (QEMU's `-name`): a run's VMs name its folder, so that any
    /// QEMU left behind can be traced to its run.
    pub name: Option<&'a str>,
}

impl Wiring<'_> {
    /// A guest with the agent on `agent_socket`, its console recorded, booted.
    pub fn agent(agent_socket: BorrowedFd<'_>) -> Wiring<'_> {
        Wiring {
            console: Console::Recorded,
            agent_socket: Some(agent_socket),
            payload_socket: None,
            monitor_socket: None,
            incoming: None,
            name: None,
        }
    }

    /// A guest with no agent: the shell, or a boot that only watches the console.
    pub fn console_only(console: Console) -> Wiring<'static> {
        Wiring {
            console,
            agent_socket: None,
            payload_socket: None,
            monitor_socket: None,
            incoming: None,
            name: None,
        }
    }

    /// The descriptors QEMU inherits.
    fn inherited(&self) -> Vec<RawFd> {
        [self.agent_socket, self.payload_socket, self.monitor_socket]
            .into_iter()
            .flatten()
            .map(|fd| fd.as_raw_fd())
            .collect()
    }
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
    // With ACPI on (its default), microvm describes virtio-mmio devices only in ACPI tables, which
    // kmodlab's kernels lack; with it off, it names them on the kernel command line
    // (`virtio_mmio.device=512@0xfeb00e00:12`, seen in the guest's /proc/cmdline).
    let machine = if wiring.payload_socket.is_some() {
        "microvm,acpi=off"
    } else {
        "microvm"
    };
    let mut args: Vec<OsString> = [
        "-M",
        machine,
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
        // works (both tried on QEMU 7.2 here). Without `server=on`, QEMU takes `fd=` as a socket
        // that is already connected and uses it as it is.
        args.extend(
            [
                "-chardev",
                &format!("socket,id=agent,fd={}", socket.as_raw_fd()),
                "-device",
                "isa-serial,chardev=agent,index=1",
            ]
            .map(OsString::from),
        );
    }
    if let Some(socket) = wiring.payload_socket {
        // microvm puts a virtio-mmio transport on the kernel command line for each virtio device.
        args.extend(
            [
                "-device",
                "virtio-serial-device",
                "-chardev",
                &format!("socket,id=payload,fd={}", socket.as_raw_fd()),
                "-device",
                &format!(
                    "virtserialport,chardev=payload,name={}",
                    kmodlab_protocol::payload::PORT_NAME
                ),
            ]
            .map(OsString::from),
        );
    }
    if let Some(socket) = wiring.monitor_socket {
        args.extend(
            [
                "-chardev",
                &format!("socket,id=monitor,fd={}", socket.as_raw_fd()),
                "-mon",
                "chardev=monitor,mode=control",
            ]
            .map(OsString::from),
        );
    }
    if let Some(name) = wiring.name {
        // A comma in the name is written twice, or QEMU takes it for the start of an option.
        args.extend(["-name".into(), name.replace(',', ",,").into()]);
    }
    if let Some(state) = wiring.incoming {
        let path = state.to_string_lossy();
        let quoted = shlex::try_quote(&path).map_or_else(|_| path.to_string(), |q| q.into_owned());
        args.push("-incoming".into());
        args.push(format!("exec:cat {quoted}").into());
    }
    args
}

/// The command that starts QEMU for `boot`, with the console's stdin and stdout set as `wiring`
/// says. The caller sets stderr and spawns it (with [`crate::host::child::KillOnDrop`]).
pub fn command(boot: &Boot, wiring: &Wiring) -> Command {
    let mut command = Command::new(&boot.qemu);
    command.args(args(boot, wiring)).stdout(Stdio::piped());
    command.stdin(match wiring.console {
        Console::Recorded => Stdio::null(),
        Console::Interactive => Stdio::piped(),
    });
    let inherited = wiring.inherited();
    // SAFETY: setpgid and fcntl are async-signal-safe; between fork and exec they only move QEMU
    // into a process group of its own and let it keep its sockets across exec. The sockets are
    // close-on-exec in kmodlab, so no other child (another VM started meanwhile, zstd) gets them.
    unsafe {
        command.pre_exec(move || {
            if libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            for &fd in &inherited {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
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
    use std::os::fd::AsFd;

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
    fn the_agent_uart_is_an_isa_serial_on_an_inherited_socket() {
        let boot = boot(&default_cmdline(Accelerator::Kvm, "quiet"));
        let (_host, qemu_end) = std::os::unix::net::UnixStream::pair().expect("socket pair");
        let wiring = Wiring::agent(qemu_end.as_fd());
        let joined = joined(&command(&boot, &wiring));
        let fd = qemu_end.as_raw_fd();
        assert!(
            joined.contains(&format!(
                "-chardev socket,id=agent,fd={fd} -device isa-serial,chardev=agent,index=1"
            )),
            "{joined}"
        );
        // No name anyone could connect to, and QEMU does not listen.
        for word in ["path=", "abstract", "server"] {
            assert!(!joined.contains(word), "{word} in {joined}");
        }
        assert!(joined.contains("-accel tcg -cpu max"));
        assert!(joined.contains("-append console=ttyS0 loglevel=5 panic=-1 reboot=t quiet"));
    }

    #[test]
    fn a_restore_has_the_snapshots_devices_and_reads_its_state_through_a_quoted_path() {
        let (_a, agent) = std::os::unix::net::UnixStream::pair().expect("socket pair");
        let (_p, payload) = std::os::unix::net::UnixStream::pair().expect("socket pair");
        let state = Path::new("/cache dir/state-1.bin");
        let wiring = Wiring {
            payload_socket: Some(payload.as_fd()),
            incoming: Some(state),
            ..Wiring::agent(agent.as_fd())
        };
        let args: Vec<String> = args(&boot("console=ttyS0"), &wiring)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let joined = args.join(" ");
        assert!(
            joined.contains(&format!(
                "-device virtio-serial-device -chardev socket,id=payload,fd={} -device virtserialport,chardev=payload,name=kmodlab.payload",
                payload.as_raw_fd()
            )),
            "{joined}"
        );
        assert_eq!(
            args[args.len() - 2..],
            ["-incoming", "exec:cat '/cache dir/state-1.bin'"]
        );
        assert!(!joined.contains("-mon"), "{joined}");
    }

    /// Stands in for QEMU: writes to the fd its `-chardev ...,fd=N` names, and says which process
    /// group it runs in and whether it inherited the host's end of the pair as well.
    const FAKE_QEMU: &str = r#"#!/bin/sh
for word in "$@"; do case "$word" in socket,*fd=*) fd=${word##*fd=};; esac; done
host_end_open=no
[ -e "/proc/self/fd/$HOST_END" ] && host_end_open=yes
echo "pgid=$(cut -d' ' -f5 /proc/self/stat) ppgid=$(cut -d' ' -f5 /proc/$PPID/stat) host_end=$host_end_open" >&"$fd"
"#;

    #[test]
    fn qemu_inherits_only_its_end_of_the_agent_socket_in_a_group_of_its_own() {
        use std::io::Read;
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = dir.path().join("qemu");
        std::fs::write(&fake, FAKE_QEMU).expect("write fake QEMU");
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let (mut host_end, qemu_end) = std::os::unix::net::UnixStream::pair().expect("pair");
        let boot = Boot {
            qemu: fake,
            ..boot("console=ttyS0")
        };
        let wiring = Wiring::agent(qemu_end.as_fd());
        let mut command = command(&boot, &wiring);
        command.env("HOST_END", host_end.as_raw_fd().to_string());
        let mut child = crate::host::child::KillOnDrop::spawn(&mut command).expect("spawn");
        drop(qemu_end);
        let mut said = String::new();
        // End of file once the child exits: the host holds no other copy of QEMU's end.
        host_end.read_to_string(&mut said).expect("read");
        assert!(child.wait().expect("wait").success());
        let words: Vec<&str> = said.split_whitespace().collect();
        let [pgid, parent_pgid, host] = words[..] else {
            panic!("{said:?}");
        };
        assert_ne!(
            pgid.trim_start_matches("pgid="),
            parent_pgid.trim_start_matches("ppgid="),
            "{said}"
        );
        assert_eq!(host, "host_end=no", "{said}");
    }

    #[test]
    fn the_qemu_command_has_the_console_on_stdio_and_ends_on_reboot() {
        let boot = Boot {
            image: "/k/vmlinux".into(),
            ..boot("console=ttyS0 reboot=t")
        };
        let wiring = Wiring::console_only(Console::Interactive);
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
