//! Debian packages without root, for the kernel source and the prebuilt kernel: candidate versions
//! from apt's local lists (no network), `apt-get download` into a folder, and `dpkg-deb -x`.

use crate::host::progress::Step;
use crate::host::setup;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Each of `packages` with its candidate version, from apt's local lists; packages apt has no
/// candidate for are left out. When one is unknown, the lists are refreshed first if that can be
/// done (see [`setup::refresh_package_lists`]). `purpose` says why apt is needed, for when it is missing.
pub(super) fn candidates(packages: &[String], purpose: &str) -> Result<Vec<(String, String)>> {
    let found = query_candidates(packages, purpose)?;
    if found.len() < packages.len() && setup::refresh_package_lists()? {
        return query_candidates(packages, purpose);
    }
    Ok(found)
}

fn query_candidates(packages: &[String], purpose: &str) -> Result<Vec<(String, String)>> {
    let apt_cache = setup::require_tool("apt-cache").context(purpose.to_string())?;
    let out = Command::new(apt_cache)
        .arg("policy")
        .args(packages)
        .env("LC_ALL", "C")
        .stderr(Stdio::null())
        .output()
        .context("running apt-cache policy")?;
    Ok(parse_policy(&String::from_utf8_lossy(&out.stdout)))
}

/// The names of the packages apt's local lists know that match the extended regex `pattern`
/// (`apt-cache search --names-only`, no network).
pub(super) fn names_matching(pattern: &str, purpose: &str) -> Result<Vec<String>> {
    let apt_cache = setup::require_tool("apt-cache").context(purpose.to_string())?;
    let out = Command::new(apt_cache)
        .args(["search", "--names-only", pattern])
        .env("LC_ALL", "C")
        .stderr(Stdio::null())
        .output()
        .context("running apt-cache search")?;
    if !out.status.success() {
        bail!(
            "`apt-cache search --names-only {pattern}` failed ({})",
            out.status
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split(" - ").next())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .collect())
}

/// `apt-cache policy A B` → `[(A, candidate), ...]`, leaving out packages without a candidate.
fn parse_policy(text: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if !line.starts_with(' ') {
            current = line.strip_suffix(':').map(str::to_string);
        } else if let (Some(package), Some(version)) =
            (&current, line.trim().strip_prefix("Candidate:"))
        {
            let version = version.trim();
            if !version.is_empty() && version != "(none)" {
                found.push((package.clone(), version.to_string()));
            }
        }
    }
    found
}

/// `apt-get download ARGS` (packages, or `package=version`) into `dir`, which needs no root, shown
/// as a progress step named `label`. Returns the `.deb` files in `dir` and the step, for the caller
/// to finish with what it found. A failure fails the step, and its error starts with `what`.
pub(super) fn download(
    dir: &Path,
    args: &[String],
    label: &str,
    what: &str,
) -> Result<(Vec<PathBuf>, Step)> {
    let step = Step::start(label);
    let apt_get = setup::require_tool("apt-get")?;
    let fetch = || {
        Command::new(&apt_get)
            .arg("download")
            .args(args)
            .current_dir(dir)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .output()
            .context("running apt-get download")
    };
    let mut out = fetch()?;
    // Old lists can name a version the archive no longer serves: refresh them once and retry.
    if !out.status.success() && setup::refresh_package_lists()? {
        out = fetch()?;
    }
    if !out.status.success() {
        step.fail("apt-get download failed");
        bail!(
            "{what} failed ({}):\n{}\n{}If apt cannot find the {}, run `sudo apt-get update` first.",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr),
            if args.len() == 1 { "package" } else { "packages" }
        );
    }
    let debs = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    Ok((debs, step))
}

/// `dpkg-deb -x DEB INTO`: a package's files, without running its scripts.
pub(super) fn extract(deb: &Path, into: &Path) -> Result<()> {
    let dpkg_deb = setup::require_tool("dpkg-deb")?;
    let status = Command::new(&dpkg_deb)
        .arg("-x")
        .arg(deb)
        .arg(into)
        .stdin(Stdio::null())
        .status()
        .context("running dpkg-deb -x")?;
    if !status.success() {
        bail!(
            "`dpkg-deb -x {} {}` failed ({status})",
            deb.display(),
            into.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_gives_each_packages_candidate() {
        let text = "linux-image-x:\n  Installed: (none)\n  Candidate: 6.12.117-1~deb12u1\n  Version table:\n     6.12.117-1~deb12u1 500\nlinux-headers-y:\n  Installed: (none)\n  Candidate: (none)\n";
        assert_eq!(
            parse_policy(text),
            vec![(
                "linux-image-x".to_string(),
                "6.12.117-1~deb12u1".to_string()
            )]
        );
    }
}
