//! What comes from outside the guest is never the module's doing: a QEMU killed or interrupted by
//! someone else is retried and then reported as an ERROR naming the cause, never a CRASH; a
//! Ctrl-C on kmodlab ends the run without verdicts blaming the module; and no other local process
//! can reach the agent's channel to speak for the agent.

use crate::shell::{alive, children, xtask_binary};
use kmodlab::judge::verdict::Outcome;
use kmodlab::run::{RunEvent, RunReport};
use kmodlab_e2e::{
    assert_outcome, fixture, root, run_listening, selection, try_run_listening, verdict,
};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The QEMUs this test process started for the run in `run_dir` (their command line names it).
fn qemus_of(run_dir: &Path) -> Vec<u32> {
    let dir = run_dir.display().to_string();
    children(std::process::id(), "qemu-system")
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(&dir))
        })
        .collect()
}

/// Sends `signal` (`-KILL`) to `target` (a pid, or `-PGID` for a process group).
fn signal(target: &str, signal: &str) {
    let status = Command::new("kill")
        .args([signal, "--", target])
        .status()
        .expect("kill (Debian package procps)");
    assert!(status.success(), "kill {signal} -- {target}");
}

/// A module whose test waits 1.5 s after loading, long enough to be interrupted from outside.
fn slow_module(dir: &Path) -> String {
    let module = dir.join("slow_settle");
    std::fs::create_dir(&module).expect("mkdir");
    std::fs::write(module.join("Kbuild"), "obj-m += slow_settle.o\n").expect("Kbuild");
    std::fs::write(
        module.join("slow_settle.c"),
        "#include <linux/module.h>\n\
         static int __init slow_settle_init(void) { pr_info(\"slow_settle: loaded\\n\"); return 0; }\n\
         static void __exit slow_settle_exit(void) { }\n\
         module_init(slow_settle_init);\nmodule_exit(slow_settle_exit);\n\
         MODULE_LICENSE(\"GPL\");\n",
    )
    .expect("source");
    std::fs::write(
        module.join("kmodlab.toml"),
        "[module]\nlanguage = \"c\"\n[[test]]\nname = \"settles\"\nsettle_ms = 1500\n\
         expect = ['slow_settle: loaded']\n",
    )
    .expect("spec");
    module.display().to_string()
}

/// Tells `on_event` each event with the run folder, once the run has told it.
fn with_run_dir(on_event: &mut dyn FnMut(&RunEvent, &Path)) -> impl FnMut(&RunEvent) + use<'_> {
    let mut run_dir = PathBuf::new();
    move |event| {
        if let RunEvent::RunFolder(dir) = event {
            run_dir = dir.clone();
        }
        on_event(event, &run_dir);
    }
}

/// Runs `modules` (paths), telling `on_event` each event with the run folder.
fn run(modules: &[&str], on_event: &mut dyn FnMut(&RunEvent, &Path)) -> RunReport {
    run_listening(
        selection(modules),
        &Default::default(),
        &mut with_run_dir(on_event),
    )
}

/// Kills every QEMU the run starts, `kills` of them, as soon as it starts (before the guest boots).
fn kill_before_boot(kills: u32) -> (anyhow::Result<RunReport>, Vec<String>, PathBuf) {
    let mut left = kills;
    let mut notices = Vec::new();
    let mut run_dir = PathBuf::new();
    let result = try_run_listening(
        selection(&["hello"]),
        &Default::default(),
        &mut with_run_dir(&mut |event, dir| {
            run_dir = dir.to_path_buf();
            match event {
                RunEvent::VmStarted { .. } if left > 0 => {
                    let qemus = qemus_of(dir);
                    assert_eq!(qemus.len(), 1, "{qemus:?}");
                    signal(&qemus[0].to_string(), "-KILL");
                    left -= 1;
                }
                RunEvent::Notice(text) => notices.push(text.clone()),
                _ => {}
            }
        }),
    );
    (result, notices, run_dir)
}

#[test]
fn a_qemu_killed_before_the_guest_boots_is_a_failed_boot_never_the_modules_fault() {
    let cause =
        "QEMU was killed by SIGKILL, not by kmodlab: an infrastructure failure, not the module's";
    // Once: the boot is tried again and the test runs.
    let (result, notices, _) = kill_before_boot(1);
    let report = result.expect("the run, after one failed boot");
    assert_outcome(verdict(&report, "hello/greets"), Outcome::Pass);
    assert_eq!(report.vms, 2);
    assert_eq!(
        notices,
        [format!(
            "vm1: guest did not boot ({cause}); retrying in a fresh VM"
        )]
    );
    // Twice: the run stops and says why, and the test still gets its one verdict: an ERROR
    // that blames the machine, never the module.
    let (result, _, run_dir) = kill_before_boot(2);
    let report = result.expect("two failed boots end the run with verdicts");
    let why = format!(
        "the guest did not boot ({cause}), 2 times in a row; this is not the module's fault."
    );
    let infrastructure = report
        .infrastructure
        .clone()
        .expect("the run says why it stopped");
    assert!(infrastructure.starts_with(&why), "{infrastructure}");
    let greets = verdict(&report, "hello/greets");
    assert_outcome(greets, Outcome::Error);
    assert!(
        greets.reason.starts_with(&format!("not run: {why}")),
        "{}",
        greets.reason
    );
    assert!(run_dir.join(kmodlab::run::folder::VERDICTS_FILE).exists());
    assert!(qemus_of(&run_dir).into_iter().all(|q| !alive(q)));
}

#[test]
fn a_qemu_killed_from_outside_is_retried_then_an_error_and_never_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let slow = slow_module(dir.path());
    let hang = fixture("init_hang");
    // init_hang's test is killed in both its VMs, slow_settle's in its first only.
    let mut kills: Vec<(&str, u32)> = vec![("init_hang/hangs", 2), ("slow_settle/settles", 1)];
    let mut notices = Vec::new();
    let mut run_dir = PathBuf::new();
    let report = run(&[&hang, &slow], &mut |event, dir| {
        run_dir = dir.to_path_buf();
        match event {
            RunEvent::TestStarted { id } => {
                if let Some((_, left)) = kills
                    .iter_mut()
                    .find(|(test, n)| *test == id.as_str() && *n > 0)
                {
                    let qemus = qemus_of(dir);
                    assert_eq!(qemus.len(), 1, "one QEMU runs {id}: {qemus:?}");
                    signal(&qemus[0].to_string(), "-KILL");
                    *left -= 1;
                }
            }
            RunEvent::Notice(text) => notices.push(text.clone()),
            _ => {}
        }
    });
    assert!(kills.iter().all(|(_, n)| *n == 0), "every kill happened");
    let cause =
        "QEMU was killed by SIGKILL, not by kmodlab: an infrastructure failure, not the module's";
    let hangs = verdict(&report, "init_hang/hangs");
    assert_outcome(hangs, Outcome::Error);
    assert_eq!(hangs.reason, cause);
    assert!(
        hangs.details[0].starts_with("retried once in a fresh VM"),
        "{:?}",
        hangs.details
    );
    // Killed once, it ran again and got its own verdict.
    assert_outcome(verdict(&report, "slow_settle/settles"), Outcome::Pass);
    assert!(report.verdicts.iter().all(|v| v.outcome != Outcome::Crash));
    let retried: Vec<&String> = notices
        .iter()
        .filter(|n| n.contains("runs again in a fresh VM"))
        .collect();
    assert_eq!(retried.len(), 2, "{notices:?}");
    assert!(retried.iter().all(|n| n.contains(cause)), "{notices:?}");
    // vm1 and vm2 ended during init_hang, vm3 during slow_settle, vm4 ran it to its end.
    assert_eq!(report.vms, 4);
    // `parse` judges the run folder again as the run judged it.
    let replayed = kmodlab::run::replay::run_folder(&run_dir).expect("parse the run folder");
    let story = |verdicts: &[kmodlab::judge::verdict::Verdict]| -> Vec<String> {
        verdicts
            .iter()
            .map(|v| {
                format!(
                    "{} {} {} {:?}",
                    v.id(),
                    v.outcome.label(),
                    v.reason,
                    v.details.first()
                )
            })
            .collect()
    };
    assert_eq!(story(&replayed.verdicts), story(&report.verdicts));
    let left: Vec<u32> = qemus_of(&run_dir)
        .into_iter()
        .filter(|p| alive(*p))
        .collect();
    assert!(left.is_empty(), "QEMU left behind: {left:?}");
}

/// A unix socket as /proc/net/unix lists it.
#[derive(Debug)]
struct UnixSocket {
    inode: String,
    listening: bool,
    connected: bool,
    path: Option<String>,
}

fn unix_sockets() -> Vec<UnixSocket> {
    let table = std::fs::read_to_string("/proc/net/unix").expect("/proc/net/unix");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = u32::from_str_radix(fields.get(3)?, 16).ok()?;
            Some(UnixSocket {
                // __SO_ACCEPTCON: the socket listens.
                listening: flags & 0x0001_0000 != 0,
                connected: *fields.get(5)? == "03",
                inode: fields.get(6)?.to_string(),
                path: fields.get(7).map(|p| p.to_string()),
            })
        })
        .collect()
}

/// The socket inodes process `pid` holds open.
fn socket_inodes(pid: u32) -> Vec<String> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return vec![];
    };
    fds.flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_string(),
            )
        })
        .collect()
}

/// What a stranger watching the machine during a run saw and managed.
#[derive(Debug, Default)]
struct Watched {
    /// Unix sockets that kmodlab (this process) or its QEMUs held: (who, socket).
    held: Vec<String>,
    /// Problems: a listening socket, a named one, a connection that succeeded.
    problems: Vec<String>,
    /// How many times QEMU's agent socket was seen connected with no name.
    agent_sockets_seen: usize,
}

/// Forged agent events claiming that test 0 loaded, waited and unloaded cleanly.
const FORGED: &str = concat!(
    r#"{"event":"hello","agent_version":"0.1.0","kernel_release":"6.12.0","uptime_ms":1,"tests":1}"#,
    "\n",
    r#"{"event":"test_started","test":0,"taint":0}"#,
    "\n",
    r#"{"event":"module_loaded","test":0,"module":"init_hang","result":{"status":"ok"},"duration_us":1}"#,
    "\n",
    r#"{"event":"test_finished","test":0,"taint":4096,"duration_us":3}"#,
    "\n",
    r#"{"event":"done"}"#,
    "\n"
);

/// Tries to speak for the agent: connects to `name` (abstract) and sends forged events.
fn forge(name: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    let mut stream = std::os::unix::net::UnixStream::connect_addr(&addr)?;
    stream.write_all(FORGED.as_bytes())
}

/// One look at the machine: every socket this process and the run's QEMUs hold, and a try at
/// every name kmodlab used to listen on (`kmodlab-<pid>-<n>-<nanos>`) for this process.
fn look(run_dir: &Path, watched: &mut Watched) {
    let sockets = unix_sockets();
    let ours = format!("kmodlab-{}-", std::process::id());
    let mut holders = vec![(std::process::id(), "kmodlab".to_string())];
    holders.extend(
        qemus_of(run_dir)
            .into_iter()
            .map(|q| (q, format!("QEMU {q}"))),
    );
    for (pid, who) in holders {
        let is_qemu = who.starts_with("QEMU");
        for inode in socket_inodes(pid) {
            let Some(socket) = sockets.iter().find(|s| s.inode == inode) else {
                continue;
            };
            watched.held.push(format!("{who}: {socket:?}"));
            if socket.listening || socket.path.is_some() {
                watched.problems.push(format!("{who} holds {socket:?}"));
            }
            if is_qemu && socket.connected && socket.path.is_none() {
                watched.agent_sockets_seen += 1;
            }
        }
    }
    // The old names carried this process's id; only those are tried, never another user's.
    for socket in &sockets {
        let Some(name) = socket.path.as_deref().and_then(|p| p.strip_prefix('@')) else {
            continue;
        };
        if name.starts_with(&ours) {
            match forge(name) {
                Ok(()) => watched
                    .problems
                    .push(format!("a stranger connected to @{name}")),
                Err(e) => watched.problems.push(format!("@{name} exists ({e})")),
            }
        }
    }
    match forge(&format!("{ours}0-0")) {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
        other => watched
            .problems
            .push(format!("the old-style name answered: {other:?}")),
    }
}

#[test]
fn no_socket_listens_for_the_agent_and_a_stranger_cannot_speak_for_it() {
    let hang = fixture("init_hang");
    let watched = Arc::new(Mutex::new(Watched::default()));
    let run_dir: Arc<Mutex<Option<PathBuf>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let stranger = {
        let (watched, run_dir, done) = (watched.clone(), run_dir.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let dir = run_dir.lock().expect("lock").clone();
                if let Some(dir) = dir {
                    look(&dir, &mut watched.lock().expect("lock"));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let report = run(&[&hang], &mut |event, dir| {
        if let RunEvent::RunFolder(_) = event {
            *run_dir.lock().expect("lock") = Some(dir.to_path_buf());
        }
    });
    done.store(true, Ordering::Relaxed);
    stranger.join().expect("the stranger's thread");
    let watched = watched.lock().expect("lock");
    assert!(watched.problems.is_empty(), "{:#?}", watched.problems);
    // The stranger did see the channel: QEMU's end of a connected pair, with no name.
    assert!(
        watched.agent_sockets_seen > 0,
        "QEMU's agent socket never seen: {:#?}",
        watched.held
    );
    // The verdict is the agent's, not the forged PASS.
    let hangs = verdict(&report, "init_hang/hangs");
    assert_outcome(hangs, Outcome::Timeout);
    assert_eq!(
        hangs.reason,
        "load: init_hang's init did not return within 3s"
    );
}

/// Runs `cargo xtask test init_hang hello` in a process group of its own, as a terminal runs a
/// command, and sends SIGINT to the whole group once a test runs (what Ctrl-C does). With
/// `ignored`, the command starts with SIGINT ignored, as a background job of a script does.
fn interrupt_run(ignored: bool) -> (std::process::ExitStatus, String, Vec<u32>) {
    let xtask = xtask_binary();
    let runs = tempfile::tempdir().expect("tempdir");
    let trap = if ignored { "trap '' INT; " } else { "" };
    let script = format!(
        "{trap}exec {} test {} hello --no-setup --runs-dir {}",
        xtask.display(),
        fixture("init_hang"),
        runs.path().display()
    );
    let mut child = Command::new("sh")
        .args(["-c", &script])
        .current_dir(root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("sh");
    let pid = child.id();
    let stdout = child.stdout.take().expect("stdout");
    let seen = Arc::new(Mutex::new(String::new()));
    let reader = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let mut seen = seen.lock().expect("lock");
                seen.push_str(&line);
                seen.push('\n');
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    let up = |seen: &str| seen.contains(" booted in ") || seen.contains(" restored in ");
    while !up(&seen.lock().expect("lock")) {
        assert!(Instant::now() < deadline, "no VM booted");
        assert!(
            alive(pid),
            "xtask ended early: {}",
            seen.lock().expect("lock")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // init_hang's load runs for 3 s after the boot.
    std::thread::sleep(Duration::from_millis(800));
    // init_hang and hello run side by side (`--jobs` defaults to the CPUs): one or two QEMUs.
    let qemus = children(pid, "qemu-system");
    assert!((1..=2).contains(&qemus.len()), "{qemus:?}");
    signal(&format!("-{pid}"), "-INT");
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("xtask did not end after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    reader.join().expect("reader");
    std::thread::sleep(Duration::from_millis(300));
    let left: Vec<u32> = qemus.into_iter().filter(|q| alive(*q)).collect();
    let output = seen.lock().expect("lock").clone();
    (status, output, left)
}

#[test]
fn ctrl_c_on_kmodlab_ends_the_run_without_blaming_the_module() {
    use std::os::unix::process::ExitStatusExt;
    // At a terminal: kmodlab ends at once, QEMU with it, and no verdict is given.
    let (status, output, left) = interrupt_run(false);
    println!("{output}");
    assert_eq!(status.signal(), Some(2), "{status:?}");
    assert!(left.is_empty(), "QEMU left behind: {left:?}");
    assert!(!output.contains("CRASH"), "{output}");
    // SIGINT ignored by kmodlab: QEMU, in a process group of its own, does not get it either,
    // and the run goes on to its real verdicts.
    let (status, output, left) = interrupt_run(true);
    println!("{output}");
    assert!(left.is_empty(), "QEMU left behind: {left:?}");
    assert!(!output.contains("CRASH"), "{output}");
    assert!(
        output.contains("TIMEOUT init_hang/hangs") && output.contains("PASS    hello/greets"),
        "{output}"
    );
    assert_eq!(status.code(), Some(kmodlab::cli::EXIT_FAIL));
}
