//! `initramfs` and `shell` for real: an archive built from a description boots the configured
//! kernel, and the interactive shell is driven through tmux like a person at a terminal.
//!
//! Every wait is bounded, and every process a test starts is killed on every path (drop guards),
//! so a broken guest fails the test instead of hanging it.

use clap::Parser;
use kmodlab::cli::{run_cli, Cli, EXIT_PASS};
use kmodlab::guest::qemu::Boot;
use kmodlab::guest::vm::{self, Accelerator};
use kmodlab_e2e::{context, root};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BUSYBOX: &str = "/bin/busybox";
const MARKER: &str = "kmodlab-initramfs-booted";

fn kernel() -> kmodlab::kernel::Kernel {
    let request = kmodlab::cli::kernel_request(&Default::default(), &context()).expect("request");
    kmodlab::kernel::ensure(&request).expect("kernel")
}

#[test]
fn an_initramfs_from_a_description_boots_the_configured_kernel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let init = dir.path().join("init.sh");
    std::fs::write(
        &init,
        format!(
            "#!/bin/sh\n\
             /bin/busybox mount -t proc proc /proc\n\
             echo \"{MARKER} $(/bin/busybox uname -r) $(/bin/busybox cat /proc/cmdline | /bin/busybox wc -c)\"\n\
             /bin/busybox reboot -f\n"
        ),
    )
    .expect("write init");
    let desc = dir.path().join("initramfs.list");
    std::fs::write(
        &desc,
        format!(
            "# boots, prints a marker, reboots (which ends QEMU: reboot=t, -no-reboot)\n\
             dir /dev 0755 0 0\n\
             nod /dev/console 0600 0 0 c 5 1\n\
             dir /proc 0555 0 0\n\
             dir /bin 0755 0 0\n\
             file /bin/busybox {BUSYBOX} 0755 0 0\n\
             slink /bin/sh busybox 0777 0 0\n\
             file /init init.sh 0755 0 0\n"
        ),
    )
    .expect("write description");
    let archive = dir.path().join("initramfs.cpio");
    let args = [
        "kmodlab",
        "initramfs",
        desc.to_str().expect("utf-8"),
        "-o",
        archive.to_str().expect("utf-8"),
    ];
    assert_eq!(
        run_cli(Cli::try_parse_from(args).expect("arguments"), &context()),
        EXIT_PASS
    );

    // Its entries, as kmodlab lists them and as GNU cpio does.
    let ours: Vec<String> = kmodlab::guest::initramfs::list(&archive)
        .expect("list")
        .into_iter()
        .map(|l| l.entry.name)
        .collect();
    let cpio = Command::new("cpio")
        .args(["-t", "--quiet", "-F"])
        .arg(&archive)
        .output()
        .expect("cpio (Debian package cpio)");
    assert!(cpio.status.success());
    let theirs: Vec<String> = String::from_utf8_lossy(&cpio.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(ours, theirs);
    assert_eq!(
        ours,
        [
            "dev",
            "dev/console",
            "proc",
            "bin",
            "bin/busybox",
            "bin/sh",
            "init"
        ]
    );

    let kernel = kernel();
    let boot = Boot {
        qemu: kmodlab::host::setup::require_tool("qemu-system-x86_64").expect("qemu"),
        image: kernel.boot_image(),
        initramfs: archive.clone(),
        cmdline: kmodlab::guest::vm::default_cmdline(Accelerator::Tcg, ""),
        accel: Accelerator::Tcg,
        memory_mb: 256,
        cpus: 1,
    };
    // run_bounded kills QEMU at the limit and on every path out; the guest must end it first.
    let run = vm::run_bounded(&boot, Duration::from_secs(60)).expect("boot");
    println!("booted and rebooted in {:?}", run.duration);
    assert!(
        run.exited_by_itself,
        "QEMU did not end by itself within 60 s:\n{}",
        run.console
    );
    let expected = format!("{MARKER} {} ", kernel.release);
    assert!(
        run.console.contains(&expected),
        "no {expected:?} on the console:\n{}",
        run.console
    );
    assert!(
        run.console.contains("reboot: Restarting system"),
        "{}",
        run.console
    );
}

/// A tmux server of our own (its own socket), killed with everything it ran when dropped.
struct Tmux {
    socket: String,
    /// Processes to kill if they are still there at the end (kmodlab, QEMU).
    pids: Vec<u32>,
}

const SESSION: &str = "kmodlab-shell";

impl Tmux {
    fn start(width: u16, height: u16) -> Tmux {
        let tmux = Tmux {
            socket: format!("kmodlab-e2e-{}", std::process::id()),
            pids: Vec::new(),
        };
        let out = tmux.run(&[
            "new-session",
            "-d",
            "-s",
            SESSION,
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            "env PS1='outer$ ' sh",
        ]);
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tmux
    }

    /// One tmux command, bounded by coreutils' `timeout`.
    fn run(&self, args: &[&str]) -> Output {
        Command::new("timeout")
            .arg("20")
            .args(["tmux", "-L", &self.socket])
            .args(args)
            .env("TERM", "xterm")
            .output()
            .expect("running tmux (Debian package tmux)")
    }

    /// Types `text` literally, then Enter.
    fn type_line(&self, text: &str) {
        assert!(self
            .run(&["send-keys", "-t", SESSION, "-l", text])
            .status
            .success());
        assert!(self
            .run(&["send-keys", "-t", SESSION, "Enter"])
            .status
            .success());
    }

    fn key(&self, key: &str) {
        assert!(self
            .run(&["send-keys", "-t", SESSION, key])
            .status
            .success());
    }

    /// The pane with its history, wrapped lines joined.
    fn screen(&self) -> String {
        let out = self.run(&["capture-pane", "-p", "-J", "-S", "-1000", "-t", SESSION]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the pane shows something `found` accepts; panics with the pane at the limit.
    fn wait_for<T>(&self, what: &str, limit: Duration, found: impl Fn(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + limit;
        loop {
            let screen = self.screen();
            if let Some(value) = found(&screen) {
                return value;
            }
            if Instant::now() > deadline {
                panic!("waited {limit:?} for {what}; the pane shows:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
        for pid in &self.pids {
            if alive(*pid) {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
    }
}

/// Whether a process exists and is not a zombie.
pub(crate) fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Children of `parent` whose command name starts with `prefix`.
pub(crate) fn children(parent: u32, prefix: &str) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some((head, rest))) = (stat.find('('), stat.rsplit_once(')')) else {
            continue;
        };
        let comm = &head[open + 1..];
        let ppid = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok());
        if ppid == Some(parent) && comm.starts_with(prefix) {
            found.push(pid);
        }
    }
    found
}

/// Builds the xtask binary (a no-op when `cargo xtask ci` runs these tests) within a bound.
pub(crate) fn xtask_binary() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut child: Child = Command::new(cargo)
        .args(["build", "--quiet", "--package", "xtask"])
        .current_dir(root())
        .stdin(Stdio::null())
        .spawn()
        .expect("cargo build");
    let deadline = Instant::now() + Duration::from_secs(900);
    let status = loop {
        if let Some(status) = child.try_wait().expect("cargo") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("building xtask took more than 15 minutes");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(status.success(), "cargo build --package xtask failed");
    // CARGO_TARGET_TMPDIR is <target>/tmp.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| root().join("target"));
    let binary = target.join("debug").join("xtask");
    assert!(binary.is_file(), "{} is missing", binary.display());
    binary
}

#[test]
fn the_shell_loads_a_module_at_a_prompt_and_leaves_nothing_behind() {
    // The kernel and the module build first, so the prompt's wait is about booting.
    let kernel = kernel();
    let xtask = xtask_binary();
    let mut tmux = Tmux::start(160, 50);
    let started = Instant::now();
    tmux.type_line(&format!(
        "sh -c 'echo shell-pid=$$; exec {} shell hello --no-setup'; echo shell-exit=$?",
        xtask.display()
    ));
    // Typed before the outer shell printed its prompt, the command shows above it and the output
    // follows the prompt on its line (`outer$ shell-pid=10105`, seen in CI).
    let pid: u32 = tmux.wait_for("the shell's pid", Duration::from_secs(20), |s| {
        s.lines().find_map(|l| {
            let (_, pid) = l.split_once("shell-pid=")?;
            pid.trim().parse().ok()
        })
    });
    tmux.pids.push(pid);
    tmux.wait_for(
        "the exit key in the banner",
        Duration::from_secs(300),
        |s| s.contains("Leave with Ctrl-]").then_some(()),
    );
    tmux.wait_for("the guest's prompt", Duration::from_secs(120), |s| {
        s.contains("root@kmodlab-guest:~# ").then_some(())
    });
    println!("prompt {:?} after the command was typed", started.elapsed());
    let qemus = children(pid, "qemu-system");
    assert_eq!(qemus.len(), 1, "one QEMU, a child of the shell command");
    tmux.pids.extend(&qemus);

    // Each command ends with an echo whose output differs from its typed form.
    let steps = [
        "modprobe hello",
        "lsmod",
        "dmesg | tail",
        "modinfo -F description hello",
    ];
    for (i, command) in steps.iter().enumerate() {
        tmux.type_line(&format!("{command}; echo step-{i}-$((40+2))"));
        let done = format!("step-{i}-42");
        tmux.wait_for(command, Duration::from_secs(30), |s| {
            s.lines().any(|l| l.trim() == done).then_some(())
        });
    }
    let screen = tmux.screen();
    assert!(
        screen.lines().any(|l| l.starts_with("hello ")),
        "lsmod shows hello:\n{screen}"
    );
    assert!(
        screen.contains("Hello, world!"),
        "dmesg shows the greeting:\n{screen}"
    );
    assert!(
        screen.contains("Greets a named visitor"),
        "modinfo reads modules.dep and the module:\n{screen}"
    );

    // Leave with the exit key.
    tmux.key("C-]");
    tmux.wait_for("the shell command to end", Duration::from_secs(20), |s| {
        s.lines()
            .any(|l| l.trim().ends_with("shell-exit=0"))
            .then_some(())
    });
    let screen = tmux.screen();
    assert!(
        screen.contains("kmodlab shell: left with Ctrl-], QEMU stopped"),
        "{screen}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while (alive(pid) || qemus.iter().any(|q| alive(*q))) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!alive(pid), "the shell command ended");
    for qemu in &qemus {
        assert!(!alive(*qemu), "QEMU {qemu} ended");
    }

    // The terminal is back in its normal mode: a line is echoed and read as a line.
    tmux.type_line("stty -a; echo term-$((6*7))");
    let stty = tmux.wait_for("the outer shell", Duration::from_secs(20), |s| {
        let at = s.rfind("term-42")?;
        Some(s[..at].to_string())
    });
    let settings = stty
        .rsplit("stty -a;")
        .next()
        .unwrap_or_default()
        .to_string();
    let flags: Vec<&str> = settings.split_whitespace().collect();
    for flag in ["icanon", "echo", "isig", "opost"] {
        assert!(flags.contains(&flag), "{flag:?} is set again:\n{settings}");
    }
    println!(
        "kernel {}: the whole session took {:?}",
        kernel.release,
        started.elapsed()
    );
}
