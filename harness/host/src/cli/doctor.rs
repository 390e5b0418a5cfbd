//! `doctor`: every host requirement, KVM, the kernel cache and disk space, each with its fix.

use crate::guest::accel::{self, ProbeResult};
use crate::host::setup::{self, Host};
use std::path::Path;

/// How one finding reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Something kmodlab needs is missing; `fix` says how to get it.
    Missing,
    /// Worth knowing, not blocking.
    Note,
}

#[derive(Debug, Clone)]
pub struct Finding {
    pub status: Status,
    pub what: String,
    pub detail: String,
    pub fix: Option<String>,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let label = match self.status {
            Status::Ok => "ok",
            Status::Missing => "MISSING",
            Status::Note => "note",
        };
        write!(f, "{label:<8} {}: {}", self.what, self.detail)?;
        if let Some(fix) = &self.fix {
            write!(f, "\n         fix: {fix}")?;
        }
        Ok(())
    }
}

/// Free space below which a kernel build may run out (source about 1.5 GB, a build about 1 GB more).
const LOW_DISK_BYTES: u64 = 5 << 30;

/// Examines `host` (the real one: [`Host::current`]) and kmodlab's cache.
pub fn diagnose(host: &Host) -> Vec<Finding> {
    let mut findings = Vec::new();
    for requirement in setup::REQUIREMENTS {
        let missing = setup::check_host(host, std::slice::from_ref(requirement));
        findings.push(match missing.into_iter().next() {
            None => Finding {
                status: Status::Ok,
                what: requirement.name.to_string(),
                detail: requirement.purpose.to_string(),
                fix: None,
            },
            Some(m) => Finding {
                status: Status::Missing,
                what: m.name.to_string(),
                detail: format!("{} ({})", m.detail, m.purpose),
                fix: Some(m.fix.command()),
            },
        });
    }
    let qemu = setup::find_in(&host.path, "qemu-system-x86_64");
    if let Some(qemu) = &qemu {
        let version = crate::guest::qemu::version(qemu).unwrap_or_else(|e| format!("{e:#}"));
        findings.push(note("QEMU version", version));
    }
    findings.push(kvm_finding(qemu.as_deref()));
    findings.extend(cache_findings());
    findings
}

fn note(what: &str, detail: String) -> Finding {
    Finding {
        status: Status::Note,
        what: what.into(),
        detail,
        fix: None,
    }
}

fn kvm_finding(qemu: Option<&Path>) -> Finding {
    let remembered = qemu.and_then(|qemu| accel::remembered(qemu).ok().flatten());
    match (accel::kvm_device_usable(), remembered) {
        (Err(why), _) => note("KVM", format!("not usable ({why}); QEMU runs under TCG, about 1 s per boot here")),
        (Ok(()), Some(ProbeResult { kvm_works: true, detail })) => note("KVM", format!("usable: {detail}")),
        (Ok(()), Some(ProbeResult { kvm_works: false, detail })) => note("KVM", format!("{detail}; QEMU runs under TCG")),
        (Ok(()), None) => note(
            "KVM",
            "/dev/kvm opens; the first `test` with --accel auto will try a short probe boot under KVM and remember \
             whether it works"
                .into(),
        ),
    }
}

fn cache_findings() -> Vec<Finding> {
    let root = match crate::host::cache::root() {
        Ok(root) => root,
        Err(e) => {
            return vec![Finding {
                status: Status::Missing,
                what: "cache".into(),
                detail: format!("{e:#}"),
                fix: Some("set KMODLAB_CACHE_DIR to a writable folder".into()),
            }]
        }
    };
    let mut findings = Vec::new();
    let mut kernels: Vec<String> = std::fs::read_dir(root.join("kernels"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let stamp = std::fs::read_to_string(e.path().join("stamp.json")).ok()?;
            let value: serde_json::Value = serde_json::from_str(&stamp).ok()?;
            let release = value.get("release")?.as_str()?.to_string();
            Some(format!("{} ({release})", e.file_name().to_string_lossy()))
        })
        .collect();
    kernels.sort();
    findings.push(note(
        "kernels built",
        if kernels.is_empty() {
            "none yet: the first `test` builds one (about 6 minutes on 2 cores)".into()
        } else {
            format!(
                "{} in {}: {}",
                kernels.len(),
                root.join("kernels").display(),
                kernels.join(", ")
            )
        },
    ));
    match free_bytes(&root) {
        Some(free) if free < LOW_DISK_BYTES => findings.push(Finding {
            status: Status::Missing,
            what: "disk space".into(),
            detail: format!(
                "{} free at {}; a kernel build needs about 3 GB",
                human_bytes(free),
                root.display()
            ),
            fix: Some("free space there, or point KMODLAB_CACHE_DIR at a larger disk".into()),
        }),
        Some(free) => findings.push(Finding {
            status: Status::Ok,
            what: "disk space".into(),
            detail: format!("{} free at {}", human_bytes(free), root.display()),
            fix: None,
        }),
        None => findings.push(note(
            "disk space",
            format!("could not be read at {}", root.display()),
        )),
    }
    findings
}

fn free_bytes(path: &Path) -> Option<u64> {
    let stat = nix::sys::statvfs::statvfs(path).ok()?;
    Some(stat.blocks_available() as u64 * stat.fragment_size() as u64)
}

fn human_bytes(bytes: u64) -> String {
    format!("{:.1} GB", bytes as f64 / f64::from(1u32 << 30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_without_qemu_is_told_which_package_to_install() {
        let empty = tempfile::tempdir().expect("tempdir");
        let host = Host {
            path: vec![empty.path().to_path_buf()],
            root: "/".into(),
            rust_sysroot: None,
        };
        let findings = diagnose(&host);
        let qemu = findings
            .iter()
            .find(|f| f.what == "QEMU")
            .expect("a QEMU finding");
        assert_eq!(qemu.status, Status::Missing);
        let text = qemu.to_string();
        assert!(
            text.contains("apt-get install") && text.contains("qemu-system-x86"),
            "{text}"
        );
        assert!(findings.iter().any(|f| f.what == "disk space"));
    }
}
