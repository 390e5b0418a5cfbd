//! Choosing between KVM and TCG. On these machines /dev/kvm exists and nested KVM still fails
//! (FACTS.md), so "auto" trusts KVM only after a real, time-bounded boot worked, and remembers
//! the answer per host kernel and QEMU version.

use crate::guest::vm::{self, Accelerator};
use crate::host::cache::{self, KeyBuilder};
use anyhow::{Context, Result};
use std::path::Path;

#[derive(serde::Serialize, serde::Deserialize)]
struct ProbeResult {
    kvm_works: bool,
    detail: String,
}

/// Resolves `--accel auto`: the remembered answer, else `probe(Kvm)` once.
pub fn auto(
    qemu: &Path,
    probe: impl FnOnce(Accelerator) -> Result<bool>,
) -> Result<(Accelerator, String)> {
    if let Err(why) = kvm_device_usable() {
        return Ok((Accelerator::Tcg, format!("KVM unavailable: {why}")));
    }
    let host_release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let key = KeyBuilder::new()
        .part("host", &host_release)
        .part("qemu", vm::qemu_version(qemu)?)
        .finish();
    let path = cache::dir("probes")?.join(format!("kvm-{key}.json"));
    let remembered: Option<ProbeResult> = std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let result = match remembered {
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
