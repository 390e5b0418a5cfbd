//! Boot once, restore many: a VM booted to its agent's wait for a payload, saved to a file in the
//! cache, and restored for every later VM of the same kernel, agent and VM shape.
//!
//! A slot of the cache (`snapshots/<kernel key>-<accel>-<memory>m-<cpus>c/`) holds one snapshot:
//! the agent-only initramfs it booted from, the saved state (`state-<crc>.bin`, QEMU's migration
//! stream) and `meta.json`, written last, which says what the state was saved from and its length
//! and CRC-32. A snapshot is used only when every part of what it was saved from is unchanged and
//! its file is whole; otherwise [`find`] says why, and the caller boots and saves a new one.
//!
//! Measured here (TCG, 256 MB guest, QEMU 7.2): the guest boots to its waiting agent in about
//! 0.5 s; saving it after `migrate-set-parameters max-bandwidth` (QEMU throttles migration to
//! 32 MiB/s by default) takes a fraction of a second; a restore answers in about 0.2 s.

use crate::guest::image;
use crate::guest::qemu::{self, Boot, Wiring};
use crate::guest::qmp::Qmp;
use crate::guest::vm::Accelerator;
use crate::host::child::KillOnDrop;
use crate::kernel::Kernel;
use anyhow::{anyhow, bail, Context, Result};
use kmodlab_protocol::Event;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, UNIX_EPOCH};

/// How long the snapshot's guest may take to reach its agent's wait (a KASAN kernel under TCG
/// boots in a few seconds).
const BOOT_LIMIT: Duration = Duration::from_secs(120);

/// How long saving may take.
const SAVE_LIMIT: Duration = Duration::from_secs(120);

/// What a VM is started from; a snapshot serves only the very same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub qemu_version: String,
    pub kernel_image: FileStamp,
    pub agent: FileStamp,
    pub cmdline: String,
    pub accel: Accelerator,
    pub memory_mb: u32,
    pub cpus: u32,
    /// QEMU's arguments for a restore, descriptors and file names aside: the machine and its
    /// devices, which must be the very same for a state to load.
    pub machine: Vec<String>,
}

impl Source {
    /// [`Source::machine`] for `boot` wired as a snapshot's VM is.
    pub fn machine_of(boot: &Boot) -> Result<Vec<String>> {
        let (_a, agent) = UnixStream::pair().context("creating a socket pair")?;
        let (_p, payload) = UnixStream::pair().context("creating a socket pair")?;
        let wiring = Wiring {
            payload_socket: Some(payload.as_fd()),
            ..Wiring::agent(agent.as_fd())
        };
        let mut words = qemu::args(boot, &wiring)
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned());
        let mut machine = Vec::new();
        while let Some(word) = words.next() {
            match word.as_str() {
                // Where the files are is not what they are (their stamps are compared).
                "-kernel" | "-initrd" => {
                    words.next();
                }
                _ => machine.push(match word.split_once(",fd=") {
                    Some((before, _)) => format!("{before},fd=N"),
                    None => word,
                }),
            }
        }
        Ok(machine)
    }
}

/// A file as it was: its path, length and modification time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    pub path: PathBuf,
    pub len: u64,
    pub modified_ns: u128,
}

impl FileStamp {
    pub fn of(path: &Path) -> Result<FileStamp> {
        let meta =
            std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
        let modified_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        Ok(FileStamp {
            path: path.to_path_buf(),
            len: meta.len(),
            modified_ns,
        })
    }
}

/// `meta.json`: what the state was saved from, and how to know it is whole.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    source: Source,
    /// The state's file name in the slot.
    state: String,
    state_len: u64,
    state_crc32: u32,
    /// The agent-only initramfs the guest booted from, in the slot; restores name it again.
    initramfs: String,
    boot_ms: u64,
    save_ms: u64,
}

/// A snapshot found whole, or just saved.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub state: PathBuf,
    pub initramfs: PathBuf,
    /// How long its guest took to reach the agent's wait, and saving it took.
    pub boot: Duration,
    pub save: Duration,
}

/// The cache folder for snapshots of `kernel` in this VM shape.
pub fn slot(kernel: &Kernel, accel: Accelerator, memory_mb: u32, cpus: u32) -> Result<PathBuf> {
    let dir = crate::host::cache::dir("snapshots")?
        .join(format!("{}-{accel}-{memory_mb}m-{cpus}c", kernel.key));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Why this kernel cannot be saved and restored, if it cannot: a restored agent takes its payload
/// from a virtio console port.
pub fn unsupported(kernel: &Kernel) -> Option<String> {
    if kernel.is_prebuilt() {
        return Some("Debian's prebuilt kernel has no virtio console built in".into());
    }
    (kernel.option("CONFIG_VIRTIO_CONSOLE") != Some("y"))
        .then(|| "the kernel lacks CONFIG_VIRTIO_CONSOLE=y and CONFIG_VIRTIO_MMIO=y".into())
}

/// The snapshot in `slot` if it serves `source` and its file is whole; else why not. A snapshot
/// found broken is removed, so that it is never tried again.
pub fn find(slot: &Path, source: &Source) -> Result<Snapshot, String> {
    let meta_path = slot.join("meta.json");
    let text = match std::fs::read_to_string(&meta_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err("no snapshot of this kernel and VM shape yet".into())
        }
        Err(e) => return Err(format!("{}: {e}", meta_path.display())),
    };
    let meta: Meta = match serde_json::from_str(&text) {
        Ok(meta) => meta,
        Err(e) => {
            remove(slot);
            return Err(format!("{} is unreadable ({e})", meta_path.display()));
        }
    };
    if let Some(change) = changed(&meta.source, source) {
        return Err(format!("{change} since the snapshot was saved"));
    }
    let state = slot.join(&meta.state);
    let initramfs = slot.join(&meta.initramfs);
    if let Err(why) = whole(&state, meta.state_len, meta.state_crc32) {
        remove(slot);
        return Err(format!("the snapshot {why}"));
    }
    if !initramfs.is_file() {
        remove(slot);
        return Err(format!("the snapshot's {} is missing", initramfs.display()));
    }
    Ok(Snapshot {
        state,
        initramfs,
        boot: Duration::from_millis(meta.boot_ms),
        save: Duration::from_millis(meta.save_ms),
    })
}

/// The first difference between what a snapshot was saved from and what is wanted now, in words.
fn changed(saved: &Source, now: &Source) -> Option<String> {
    if saved.qemu_version != now.qemu_version {
        return Some(format!(
            "QEMU changed ({} → {})",
            saved.qemu_version, now.qemu_version
        ));
    }
    if saved.kernel_image != now.kernel_image {
        return Some("the kernel image changed".into());
    }
    if saved.agent != now.agent {
        return Some("the agent changed".into());
    }
    if saved.cmdline != now.cmdline {
        return Some("the kernel command line changed".into());
    }
    if saved.accel != now.accel || saved.memory_mb != now.memory_mb || saved.cpus != now.cpus {
        return Some("the VM's shape changed".into());
    }
    (saved.machine != now.machine).then(|| "QEMU's machine or devices changed".into())
}

/// Whether `state` has the length and CRC-32 recorded for it.
fn whole(state: &Path, len: u64, crc: u32) -> Result<(), String> {
    let mut file = std::fs::File::open(state)
        .map_err(|e| format!("file {} cannot be read ({e})", state.display()))?;
    let actual = file.metadata().map(|m| m.len()).unwrap_or(0);
    if actual != len {
        return Err(format!(
            "file {} is truncated or overwritten ({actual} bytes, saved with {len})",
            state.display()
        ));
    }
    let found = crc32_of(&mut file).map_err(|e| format!("file {}: {e}", state.display()))?;
    if found != crc {
        return Err(format!(
            "file {} is corrupt (CRC-32 {found:08x}, saved with {crc:08x})",
            state.display()
        ));
    }
    Ok(())
}

fn crc32_of(input: &mut impl Read) -> std::io::Result<u32> {
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0; 1 << 20];
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher.finalize());
        }
        hasher.update(&buf[..n]);
    }
}

/// Forgets the snapshot in `slot` (best effort: the next run saves a new one).
pub fn remove(slot: &Path) {
    let _ = std::fs::remove_file(slot.join("meta.json"));
}

/// Boots `source`'s kernel with the agent alone, waits for the agent to wait, and saves the VM
/// into `slot`. QEMU's messages and the console go to `log` if it fails.
pub fn make(slot: &Path, source: &Source, qemu: &Path) -> Result<Snapshot> {
    let unique = format!("{}-{}", std::process::id(), unique_suffix());
    let initramfs_name = format!("initramfs-{unique}.cpio");
    let initramfs = slot.join(&initramfs_name);
    image::write_snapshot_initramfs(&initramfs, &source.agent.path)?;
    let state_tmp = slot.join(format!("state-{unique}.tmp"));
    let result = save(slot, source, qemu, &initramfs, &state_tmp);
    let (boot, save_took) = match result {
        Ok(times) => times,
        Err(e) => {
            let _ = std::fs::remove_file(&state_tmp);
            let _ = std::fs::remove_file(&initramfs);
            return Err(e);
        }
    };
    let mut file = std::fs::File::open(&state_tmp)
        .with_context(|| format!("reading {}", state_tmp.display()))?;
    let state_len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let state_crc32 =
        crc32_of(&mut file).with_context(|| format!("reading {}", state_tmp.display()))?;
    let state_name = format!("state-{unique}.bin");
    let state = slot.join(&state_name);
    std::fs::rename(&state_tmp, &state)
        .with_context(|| format!("renaming {} to {}", state_tmp.display(), state.display()))?;
    let meta = Meta {
        source: source.clone(),
        state: state_name,
        state_len,
        state_crc32,
        initramfs: initramfs_name,
        boot_ms: u64::try_from(boot.as_millis()).unwrap_or(u64::MAX),
        save_ms: u64::try_from(save_took.as_millis()).unwrap_or(u64::MAX),
    };
    let meta_tmp = slot.join(format!("meta-{unique}.tmp"));
    std::fs::write(&meta_tmp, serde_json::to_vec_pretty(&meta)?)
        .with_context(|| format!("writing {}", meta_tmp.display()))?;
    std::fs::rename(&meta_tmp, slot.join("meta.json"))
        .with_context(|| format!("writing {}", slot.join("meta.json").display()))?;
    sweep(slot, &meta);
    Ok(Snapshot {
        state,
        initramfs,
        boot,
        save: save_took,
    })
}

/// Removes the files of older snapshots in `slot`, except those `meta` names. Files of a run
/// restoring from them right now stay readable to it (open files outlive their names); a `cat`
/// that QEMU starts a moment later would fail, and that VM boot instead.
fn sweep(slot: &Path, meta: &Meta) {
    let Ok(entries) = std::fs::read_dir(slot) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        // Saving happens under the slot's lock, so no other process is between its state and its
        // `meta.json` now.
        let old = (name.starts_with("state-") || name.starts_with("initramfs-"))
            && name != meta.state
            && name != meta.initramfs;
        let stale_tmp = name.ends_with(".tmp")
            && entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(3600));
        if (old && !name.ends_with(".tmp")) || stale_tmp {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn unique_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Boots the guest, waits for its agent's `Waiting`, and migrates it into `state`; the boot's and
/// the save's durations.
fn save(
    slot: &Path,
    source: &Source,
    qemu: &Path,
    initramfs: &Path,
    state: &Path,
) -> Result<(Duration, Duration)> {
    let (agent, qemu_agent) = UnixStream::pair().context("creating the agent's socket pair")?;
    let (_payload, qemu_payload) =
        UnixStream::pair().context("creating the payload's socket pair")?;
    let (monitor, qemu_monitor) =
        UnixStream::pair().context("creating the monitor's socket pair")?;
    let boot = Boot {
        qemu: qemu.to_path_buf(),
        image: source.kernel_image.path.clone(),
        initramfs: initramfs.to_path_buf(),
        cmdline: source.cmdline.clone(),
        accel: source.accel,
        memory_mb: source.memory_mb,
        cpus: source.cpus,
    };
    let wiring = Wiring {
        payload_socket: Some(qemu_payload.as_fd()),
        monitor_socket: Some(qemu_monitor.as_fd()),
        ..Wiring::agent(qemu_agent.as_fd())
    };
    let messages = slot.join("save.log");
    let mut command = qemu::command(&boot, &wiring);
    let log = std::fs::File::create(&messages)
        .with_context(|| format!("creating {}", messages.display()))?;
    command.stderr(Stdio::from(log));
    let started = Instant::now();
    let mut child =
        KillOnDrop::spawn(&mut command).with_context(|| format!("starting {}", qemu.display()))?;
    drop((qemu_agent, qemu_payload, qemu_monitor));
    // The console must be read, or QEMU stops when its pipe fills; its tail explains a failure.
    let console = child
        .take_stdout()
        .ok_or_else(|| anyhow!("QEMU's console pipe is missing"))?;
    let console = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = BufReader::new(console).read_to_string(&mut text);
        text
    });
    let waited = wait_for_agent(agent);
    let boot_took = started.elapsed();
    let saved = waited.and_then(|()| {
        let save_started = Instant::now();
        migrate(monitor, state)?;
        Ok(save_started.elapsed())
    });
    child.stop();
    let console = console.join().unwrap_or_default();
    match saved {
        Ok(save_took) => Ok((boot_took, save_took)),
        Err(e) => {
            let tail: Vec<&str> = console.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            let qemu_said = std::fs::read_to_string(&messages).unwrap_or_default();
            Err(e.context(format!(
                "saving a snapshot: console's last lines:\n{}\nQEMU said: {}",
                tail.join("\n"),
                qemu_said.trim()
            )))
        }
    }
}

/// Reads the agent's events until it says it waits for a payload.
fn wait_for_agent(agent: UnixStream) -> Result<()> {
    let deadline = Instant::now() + BOOT_LIMIT;
    agent
        .set_read_timeout(Some(BOOT_LIMIT))
        .context("setting the agent channel's timeout")?;
    let mut lines = BufReader::new(agent);
    let mut line = String::new();
    loop {
        line.clear();
        let n = lines
            .read_line(&mut line)
            .context("the snapshot's guest did not reach its agent")?;
        if n == 0 {
            bail!("the snapshot's guest ended before its agent waited for a payload");
        }
        match Event::from_line(line.trim_end()) {
            Ok(Event::Waiting { .. }) => return Ok(()),
            Ok(Event::AgentError { context, message }) => {
                bail!("the snapshot's agent failed: {context}: {message}")
            }
            // After `Hello` an agent that could not wait says why (`AgentError`), then `Done`.
            Ok(Event::Done) => {
                bail!("the snapshot's agent ended without waiting for a payload")
            }
            _ => {}
        }
        if Instant::now() > deadline {
            bail!("the snapshot's agent did not wait within {BOOT_LIMIT:?}");
        }
    }
}

/// Saves the running guest into `state` through QEMU's monitor.
fn migrate(monitor: UnixStream, state: &Path) -> Result<()> {
    let mut qmp = Qmp::connect(monitor, Duration::from_secs(30))?;
    // QEMU limits migration to 32 MiB/s unless told otherwise.
    qmp.execute(
        "migrate-set-parameters",
        json!({ "max-bandwidth": 64u64 << 30 }),
    )?;
    let path = state.to_string_lossy();
    let quoted = shlex::try_quote(&path).context("quoting the snapshot's path")?;
    qmp.execute("migrate", json!({ "uri": format!("exec:cat > {quoted}") }))?;
    let deadline = Instant::now() + SAVE_LIMIT;
    loop {
        let status = qmp.execute("query-migrate", json!({}))?;
        match status.get("status").and_then(|s| s.as_str()) {
            Some("completed") => return Ok(()),
            Some(failed @ ("failed" | "cancelled")) => {
                let why = status
                    .get("error-desc")
                    .and_then(|s| s.as_str())
                    .unwrap_or("no reason given");
                bail!("QEMU's migration {failed}: {why}");
            }
            _ if Instant::now() > deadline => bail!("saving took over {SAVE_LIMIT:?}"),
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(dir: &Path) -> Source {
        let file = dir.join("f");
        std::fs::write(&file, b"x").unwrap();
        Source {
            qemu_version: "QEMU emulator version 7.2.22".into(),
            kernel_image: FileStamp::of(&file).unwrap(),
            agent: FileStamp::of(&file).unwrap(),
            cmdline: "console=ttyS0".into(),
            accel: Accelerator::Tcg,
            memory_mb: 256,
            cpus: 2,
            machine: vec!["-M".into(), "microvm,acpi=off".into()],
        }
    }

    fn saved(slot: &Path, source: &Source, state: &[u8]) {
        std::fs::write(slot.join("state-1.bin"), state).unwrap();
        std::fs::write(slot.join("initramfs-1.cpio"), b"cpio").unwrap();
        let meta = Meta {
            source: source.clone(),
            state: "state-1.bin".into(),
            state_len: state.len() as u64,
            state_crc32: crc32fast::hash(state),
            initramfs: "initramfs-1.cpio".into(),
            boot_ms: 500,
            save_ms: 300,
        };
        std::fs::write(slot.join("meta.json"), serde_json::to_vec(&meta).unwrap()).unwrap();
    }

    #[test]
    fn the_machine_leaves_out_descriptors_and_file_names() {
        let boot = Boot {
            qemu: "qemu-system-x86_64".into(),
            image: "/k/vmlinux".into(),
            initramfs: "/s/initramfs-1.cpio".into(),
            cmdline: "console=ttyS0".into(),
            accel: Accelerator::Tcg,
            memory_mb: 256,
            cpus: 2,
        };
        let machine = Source::machine_of(&boot).unwrap();
        let joined = machine.join(" ");
        assert!(
            joined.starts_with("-M microvm,acpi=off -accel tcg"),
            "{joined}"
        );
        assert!(joined.contains("socket,id=agent,fd=N"), "{joined}");
        assert!(joined.contains("socket,id=payload,fd=N"), "{joined}");
        assert!(
            !joined.contains("/k/") && !joined.contains("/s/"),
            "{joined}"
        );
        let other = Source::machine_of(&Boot {
            initramfs: "/s/initramfs-2.cpio".into(),
            ..boot
        })
        .unwrap();
        assert_eq!(machine, other);
    }

    #[test]
    fn a_whole_snapshot_of_the_same_source_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let source = source(dir.path());
        assert_eq!(
            find(dir.path(), &source).unwrap_err(),
            "no snapshot of this kernel and VM shape yet"
        );
        saved(dir.path(), &source, b"state");
        let found = find(dir.path(), &source).unwrap();
        assert_eq!(found.state, dir.path().join("state-1.bin"));
        assert_eq!(found.boot, Duration::from_millis(500));
    }

    #[test]
    fn a_changed_source_says_what_changed() {
        let dir = tempfile::tempdir().unwrap();
        let source = source(dir.path());
        saved(dir.path(), &source, b"state");
        let mut agent = source.clone();
        agent.agent.len = 2;
        assert_eq!(
            find(dir.path(), &agent).unwrap_err(),
            "the agent changed since the snapshot was saved"
        );
        let mut qemu = source.clone();
        qemu.qemu_version = "QEMU emulator version 8.2.2".into();
        assert!(find(dir.path(), &qemu).unwrap_err().starts_with(
            "QEMU changed (QEMU emulator version 7.2.22 → QEMU emulator version 8.2.2)"
        ));
        let mut kernel = source.clone();
        kernel.kernel_image.modified_ns += 1;
        assert!(find(dir.path(), &kernel)
            .unwrap_err()
            .starts_with("the kernel image changed"));
        let mut machine = source.clone();
        machine.machine[1] = "microvm".into();
        assert_eq!(
            find(dir.path(), &machine).unwrap_err(),
            "QEMU's machine or devices changed since the snapshot was saved"
        );
        // Still there for the source it serves.
        assert!(find(dir.path(), &source).is_ok());
    }

    #[test]
    fn a_truncated_or_corrupt_state_is_never_trusted_and_is_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let source = source(dir.path());
        saved(dir.path(), &source, b"state of the guest");
        std::fs::write(dir.path().join("state-1.bin"), b"state of").unwrap();
        let err = find(dir.path(), &source).unwrap_err();
        assert!(
            err.contains("is truncated or overwritten (8 bytes, saved with 18)"),
            "{err}"
        );
        assert_eq!(
            find(dir.path(), &source).unwrap_err(),
            "no snapshot of this kernel and VM shape yet"
        );
        saved(dir.path(), &source, b"state of the guest");
        std::fs::write(dir.path().join("state-1.bin"), b"state of the gues!").unwrap();
        let err = find(dir.path(), &source).unwrap_err();
        assert!(err.contains("is corrupt (CRC-32"), "{err}");
        assert!(!dir.path().join("meta.json").exists());
    }
}
