//! Choosing between KVM and TCG. On these machines /dev/kvm exists and nested KVM still fails
//! (measured here: a guest under nested KVM died with "KVM internal error. Suberror: 1 / emulation
//! failure" in the kernel decompressor, or hung), so "auto" trusts KVM only after a real,
//! time-bounded boot worked, and remembers the answer per host kernel and QEMU version.

use crate::guest::image;
use crate::guest::qemu;
use crate::guest::vm::{self, Accelerator, Vm, VmConfig, VmEvent};
use crate::host::cache::{self, KeyBuilder};
use crate::kernel::Kernel;
use anyhow::{Context, Result};
use kmodlab_protocol::{Event, Plan};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a probe boot may take before KVM counts as not working.
const PROBE_LIMIT: Duration = Duration::from_secs(10);

/// A probe boot's answer, as remembered in the cache.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProbeResult {
    pub kvm_works: bool,
    pub detail: String,
}

/// Where the answer for this host kernel and this QEMU is remembered.
fn probe_record(qemu: &Path) -> Result<std::path::PathBuf> {
    let host_release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let key = KeyBuilder::new()
        .part("host", &host_release)
        .part("qemu", qemu::version(qemu)?)
        .finish();
    Ok(cache::dir("probes")?.join(format!("kvm-{key}.json")))
}

/// The remembered answer for this host kernel and QEMU, if a probe has run; `doctor` shows it.
pub fn remembered(qemu: &Path) -> Result<Option<ProbeResult>> {
    let path = probe_record(qemu)?;
    Ok(std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok()))
}

/// Resolves `--accel auto`: the remembered answer, else `probe(Kvm)` once.
pub fn auto(
    qemu: &Path,
    probe: impl FnOnce(Accelerator) -> Result<bool>,
) -> Result<(Accelerator, String)> {
    if let Err(why) = kvm_device_usable() {
        return Ok((Accelerator::Tcg, format!("KVM unavailable: {why}")));
    }
    let path = probe_record(qemu)?;
    let result = match remembered(qemu)? {
        Some(result) => result,
        None => {
            let kvm_works = probe(Accelerator::Kvm).unwrap_or(false);
            let detail = if kvm_works {
                "a probe boot under KVM worked".to_string()
            } else {
                "/dev/kvm is present but a probe boot under KVM failed (nested KVM?)".to_string()
            };
            let result = ProbeResult { kvm_works, detail };
            std::fs::write(&path, serde_json::to_vec(&result)?)
                .with_context(|| format!("writing {}", path.display()))?;
            result
        }
    };
    let accel = if result.kvm_works {
        Accelerator::Kvm
    } else {
        Accelerator::Tcg
    };
    Ok((
        accel,
        format!("{} (remembered in {})", result.detail, path.display()),
    ))
}

/// Whether /dev/kvm can be opened for reading and writing, and if not, why.
pub fn kvm_device_usable() -> Result<(), String> {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err("/dev/kvm does not exist".into()),
        Err(e) => Err(format!("/dev/kvm cannot be opened: {e}")),
    }
}

/// Which accelerator to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccelChoice {
    /// KVM if a probe boot has shown that it works on this machine, else TCG.
    Auto,
    Kvm,
    Tcg,
}

/// Resolves the user's choice to an accelerator and the reason for it, probing only for `auto`.
pub fn choose(
    choice: AccelChoice,
    qemu: &Path,
    probe: impl FnOnce(Accelerator) -> Result<bool>,
) -> Result<(Accelerator, String)> {
    Ok(match choice {
        AccelChoice::Tcg => (Accelerator::Tcg, "requested".to_string()),
        AccelChoice::Kvm => (Accelerator::Kvm, "requested".to_string()),
        AccelChoice::Auto => auto(qemu, probe)?,
    })
}

/// What a probe boot needs.
pub struct ProbeBoot<'a> {
    pub qemu: &'a Path,
    pub kernel: &'a Kernel,
    pub agent: &'a Path,
    /// Where the probe's initramfs and logs go.
    pub dir: &'a Path,
    pub memory_mb: u32,
    pub accel: Accelerator,
}

/// Boots the kernel with the agent and an empty plan on `accel`; true when the agent greets and
/// finishes within `PROBE_LIMIT`.
pub fn probe_boot(probe: &ProbeBoot) -> Result<bool> {
    let accel = probe.accel;
    let initramfs = probe.dir.join("probe.initramfs");
    image::write_test_initramfs(&initramfs, probe.agent, &Plan { tests: vec![] }, &[])?;
    let config = VmConfig {
        qemu: probe.qemu.to_path_buf(),
        kernel_image: probe.kernel.boot_image(),
        initramfs: initramfs.clone(),
        cmdline: vm::cmdline_for(probe.kernel, accel, &probe.kernel.detector_args()),
        accel,
        memory_mb: probe.memory_mb,
        cpus: 1,
        dir: probe.dir.to_path_buf(),
        label: format!("probe-{accel}"),
        restore: None,
    };
    let mut vm = Vm::start(&config)?;
    let deadline = Instant::now() + PROBE_LIMIT;
    let mut works = false;
    while let Some(event) = vm.next_event(deadline) {
        match event {
            VmEvent::Agent(Event::Done) => {
                works = true;
                break;
            }
            VmEvent::ConsoleClosed | VmEvent::ChannelError(_) => break,
            _ => {}
        }
    }
    vm.stop();
    let _ = std::fs::remove_file(&initramfs);
    Ok(works)
}
