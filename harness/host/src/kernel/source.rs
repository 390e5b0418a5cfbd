//! Kernel sources: Debian's `linux-source-6.12` unpacked into the cache without root, or a tree the
//! user already has.

use super::{debian, lock, SourceSpec};
use crate::host::cache;
use crate::host::progress::Step;
use crate::host::setup;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The Debian package that carries the kernel source kmodlab builds by default.
pub const DEBIAN_PACKAGE: &str = "linux-source-6.12";

/// Where a system-wide install of the package puts its tarball.
const SYSTEM_TARBALL: &str = "/usr/src/linux-source-6.12.tar.xz";

/// What was provisioned, so later runs need neither apt nor dpkg.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    package: String,
    version: String,
    dir: PathBuf,
}

/// A kernel tree ready for `make O=...`, and what identifies it in cache keys.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub dir: PathBuf,
    pub identity: String,
}

fn record_path(sources: &Path) -> PathBuf {
    sources.join(format!("{DEBIAN_PACKAGE}.json"))
}

/// The provisioned Debian source, if there is one and its tree is still there.
fn recorded(sources: &Path) -> Result<Option<Source>> {
    let path = record_path(sources);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let record: Record =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    Ok(record.dir.join("Makefile").is_file().then(|| Source {
        identity: debian_identity(&record.version),
        dir: record.dir,
    }))
}

/// The prebuilt kernel is fetched by `kernel::prebuilt`; it has no source tree to build.
const NO_SOURCE: &str = "Debian's prebuilt kernel has no source tree to build";

fn debian_identity(version: &str) -> String {
    format!("debian:{DEBIAN_PACKAGE}={version}")
}

/// The identity `provision` would give, without provisioning: the recorded version, else the one
/// installed system-wide, else apt's candidate. Runs no network command.
pub(crate) fn identity(spec: &SourceSpec) -> Result<String> {
    match spec {
        SourceSpec::Dir(dir) => Ok(dir_source(dir)?.identity),
        SourceSpec::DebianPrebuilt { .. } => bail!(NO_SOURCE),
        SourceSpec::Debian => {
            if let Some(source) = recorded(&cache::dir("sources")?)? {
                return Ok(source.identity);
            }
            if let Some(version) = system_version()? {
                return Ok(debian_identity(&version));
            }
            Ok(debian_identity(&candidate_version()?))
        }
    }
}

/// The provisioned source, if it exists now; never provisions.
pub(crate) fn existing(spec: &SourceSpec) -> Result<Option<Source>> {
    match spec {
        SourceSpec::Dir(dir) => dir_source(dir).map(Some),
        SourceSpec::DebianPrebuilt { .. } => bail!(NO_SOURCE),
        SourceSpec::Debian => recorded(&cache::dir("sources")?),
    }
}

/// Makes the source tree exist and returns it.
pub(crate) fn provision(spec: &SourceSpec) -> Result<Source> {
    match spec {
        SourceSpec::Dir(dir) => dir_source(dir),
        SourceSpec::DebianPrebuilt { .. } => bail!(NO_SOURCE),
        SourceSpec::Debian => provision_debian(&cache::dir("sources")?, true),
    }
}

/// Unpacks the Debian source into `sources`: from the system-wide tarball when `use_system` and
/// the package is installed, else from `apt-get download`.
fn provision_debian(sources: &Path, use_system: bool) -> Result<Source> {
    if let Some(source) = recorded(sources)? {
        return Ok(source);
    }
    // Two kmodlab processes must not download and unpack 1.5 GB twice.
    let _lock = lock(
        &sources.join(format!("{DEBIAN_PACKAGE}.lock")),
        "unpacking the kernel source",
    )?;
    if let Some(source) = recorded(sources)? {
        return Ok(source);
    }

    remove_stale_unpacks(sources);
    let work = tempfile::Builder::new()
        .prefix(".unpack-")
        .tempdir_in(sources)
        .with_context(|| format!("creating a temporary folder in {}", sources.display()))?;
    let system = if use_system { system_version()? } else { None };
    let (tarball, version) = match system {
        Some(version) => (PathBuf::from(SYSTEM_TARBALL), version),
        None => download(work.path())?,
    };

    let tree_parent = work.path().join("tree");
    std::fs::create_dir_all(&tree_parent)
        .with_context(|| format!("creating {}", tree_parent.display()))?;
    untar(
        &tarball,
        &tree_parent,
        &format!("unpacking {DEBIAN_PACKAGE} {version}"),
    )?;
    let top = single_subdir(&tree_parent)?;

    let dest = sources.join(format!("{DEBIAN_PACKAGE}-{}", path_safe(&version)));
    if dest.exists() {
        // A tree from an earlier run that died between its rename and its record: renames are
        // atomic, so it is complete, but the fresh one is just as good and certainly complete.
        std::fs::remove_dir_all(&dest)
            .with_context(|| format!("removing the stale {}", dest.display()))?;
    }
    std::fs::rename(&top, &dest)
        .with_context(|| format!("moving the unpacked tree to {}", dest.display()))?;
    let record = Record {
        package: DEBIAN_PACKAGE.to_string(),
        version: version.clone(),
        dir: dest.clone(),
    };
    write_atomic(
        &record_path(sources),
        &serde_json::to_vec_pretty(&record).context("encoding the source record")?,
    )?;
    Ok(Source {
        identity: debian_identity(&version),
        dir: dest,
    })
}

/// Removes what a killed earlier run left half unpacked (signals skip the temporary folder's
/// cleanup); only called under the source lock, so none of them is still in use.
fn remove_stale_unpacks(sources: &Path) {
    let Ok(entries) = std::fs::read_dir(sources) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(".unpack-") {
            // Best effort: a leftover only costs disk space.
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The installed package's version when its tarball is on this machine.
fn system_version() -> Result<Option<String>> {
    if !Path::new(SYSTEM_TARBALL).is_file() {
        return Ok(None);
    }
    let Some(dpkg_query) = setup::find_tool("dpkg-query") else {
        return Ok(None);
    };
    let out = Command::new(dpkg_query)
        .args(["-W", "-f", "${Status}\t${Version}", DEBIAN_PACKAGE])
        .stderr(Stdio::null())
        .output()
        .context("running dpkg-query")?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(match text.split_once('\t') {
        Some((status, version)) if out.status.success() && status.ends_with(" installed") => {
            Some(version.trim().to_string())
        }
        _ => None,
    })
}

/// apt's candidate version, from its local lists (no network).
fn candidate_version() -> Result<String> {
    let candidates = debian::candidates(
        &[DEBIAN_PACKAGE.to_string()],
        "kmodlab provisions its default kernel source with apt; on a non-Debian host pass a kernel tree instead",
    )?;
    match candidates.into_iter().next() {
        Some((_, version)) => Ok(version),
        None => bail!(
            "apt does not know the package {DEBIAN_PACKAGE}: its package lists may be empty or old; run `sudo apt-get update` (Debian 12 carries it in bookworm-security and bookworm-updates), or pass a kernel tree of your own"
        ),
    }
}

/// `apt-get download` (no root needed) and `dpkg-deb -x`; returns the inner tarball and the version.
fn download(work: &Path) -> Result<(PathBuf, String)> {
    let downloads = work.join("deb");
    std::fs::create_dir_all(&downloads)
        .with_context(|| format!("creating {}", downloads.display()))?;
    let (debs, step) = debian::download(
        &downloads,
        &[DEBIAN_PACKAGE.to_string()],
        &format!("downloading {DEBIAN_PACKAGE}"),
        &format!("`apt-get download {DEBIAN_PACKAGE}`"),
    )?;
    let deb = debs
        .into_iter()
        .next()
        .with_context(|| format!("apt-get download left no .deb in {}", downloads.display()))?;
    let size = deb.metadata().map(|m| m.len()).unwrap_or(0);
    step.finish(&format!("{} ({} MB)", deb.display(), size / 1_000_000));

    let version = deb_version(&deb)?;
    let unpacked = work.join("deb-root");
    debian::extract(&deb, &unpacked)?;
    // The .deb is no longer needed once its contents are out; free 150 MB early.
    let _ = std::fs::remove_file(&deb);
    let tarball = unpacked.join(SYSTEM_TARBALL.trim_start_matches('/'));
    if !tarball.is_file() {
        bail!("the {DEBIAN_PACKAGE} package {version} has no {SYSTEM_TARBALL}");
    }
    Ok((tarball, version))
}

/// The package version a .deb holds (`dpkg-deb -f DEB Version`).
fn deb_version(deb: &Path) -> Result<String> {
    let dpkg_deb = setup::require_tool("dpkg-deb")?;
    let out = Command::new(&dpkg_deb)
        .args(["-f"])
        .arg(deb)
        .arg("Version")
        .output()
        .context("running dpkg-deb -f")?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || version.is_empty() {
        bail!("`dpkg-deb -f {} Version` gave no version", deb.display());
    }
    Ok(version)
}

/// Unpacks a tarball, counting files as progress (tar itself says nothing while it works).
fn untar(tarball: &Path, into: &Path, label: &str) -> Result<()> {
    setup::require_tool("xz").context("unpacking the kernel source")?;
    let tar = setup::require_tool("tar")?;
    let step = Step::start(label);
    let mut child = Command::new(tar)
        .arg("-xvJf")
        .arg(tarball)
        .arg("-C")
        .arg(into)
        .env("PATH", setup::build_env_path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting tar")?;
    let stderr = child.stderr.take();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut stderr) = stderr {
            let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        }
        text
    });
    let mut files = 0u64;
    if let Some(stdout) = child.stdout.take() {
        for _ in BufReader::new(stdout).split(b'\n') {
            files += 1;
            if files.is_multiple_of(500) {
                step.set_message(format!("{files} files"));
            }
        }
    }
    let status = child.wait().context("waiting for tar")?;
    let errors = errors.join().unwrap_or_default();
    if !status.success() {
        step.fail(&format!("tar exited with {status}"));
        bail!(
            "unpacking {} failed ({status}):\n{}",
            tarball.display(),
            errors.trim()
        );
    }
    step.finish(&format!("{files} files"));
    Ok(())
}

fn single_subdir(dir: &Path) -> Result<PathBuf> {
    let dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    match dirs.as_slice() {
        [one] if one.join("Makefile").is_file() => Ok(one.clone()),
        _ => bail!("the kernel source tarball did not unpack into one folder with a Makefile"),
    }
}

/// Characters kbuild and make accept in a path (no ':' from epochs, no '~').
fn path_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._+-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Writes a file so that readers see the old contents or the new, never a part.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("a file path without a folder")?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    std::io::Write::write_all(&mut tmp, bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// A user's kernel tree: it must be a kernel tree, and clean, because kbuild refuses `O=` builds
/// from a tree that has been configured in place.
fn dir_source(dir: &Path) -> Result<Source> {
    let dir = dir
        .canonicalize()
        .with_context(|| format!("the kernel tree {} does not exist", dir.display()))?;
    for needed in ["Makefile", "Kconfig", "scripts/kconfig/merge_config.sh"] {
        if !dir.join(needed).is_file() {
            bail!(
                "{} is not a kernel source tree: it has no {needed}",
                dir.display()
            );
        }
    }
    if dir.join(".config").exists() || dir.join("include/config").exists() {
        bail!(
            "the kernel tree {0} is not clean (it was configured or built in place); kmodlab builds it with O= into its cache, which kbuild refuses from such a tree. Run `make -C {0} mrproper` (it deletes {0}/.config: keep a copy if you need it)",
            dir.display()
        );
    }
    let makefile = std::fs::read_to_string(dir.join("Makefile"))
        .with_context(|| format!("reading {}/Makefile", dir.display()))?;
    let version = kernel_version(&makefile).with_context(|| {
        format!(
            "{}/Makefile does not state VERSION, PATCHLEVEL and SUBLEVEL",
            dir.display()
        )
    })?;
    let identity = format!("dir:{}:{version}", dir.display());
    Ok(Source { dir, identity })
}

/// What `make kernelversion` prints, read from the Makefile's head instead of running make.
pub(crate) fn kernel_version(makefile: &str) -> Option<String> {
    let field = |name: &str| {
        makefile.lines().take(20).find_map(|line| {
            let (key, value) = line.split_once('=')?;
            (key.trim() == name).then(|| value.trim().to_string())
        })
    };
    let (version, patchlevel) = (field("VERSION")?, field("PATCHLEVEL")?);
    let sublevel = field("SUBLEVEL")?;
    let extra = field("EXTRAVERSION").unwrap_or_default();
    Some(format!("{version}.{patchlevel}.{sublevel}{extra}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[ignore = "downloads 150 MB with apt-get and unpacks 1.4 GB"]
    fn the_debian_source_downloads_and_unpacks_without_the_system_tarball() {
        let sources = tempfile::tempdir().unwrap();
        let started = std::time::Instant::now();
        let source = provision_debian(sources.path(), false).unwrap();
        eprintln!(
            "download + unpack: {:.1} s",
            started.elapsed().as_secs_f64()
        );
        assert!(source.dir.join("Makefile").is_file());
        assert!(
            source
                .identity
                .starts_with("debian:linux-source-6.12=6.12."),
            "{}",
            source.identity
        );
        let left: Vec<_> = std::fs::read_dir(sources.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(
            left.len(),
            3,
            "only the tree, its record and the lock: {left:?}"
        );
        // The record makes the second call free of apt and tar.
        let started = std::time::Instant::now();
        assert_eq!(
            provision_debian(sources.path(), false).unwrap().dir,
            source.dir
        );
        assert!(started.elapsed().as_millis() < 100);
    }

    #[test]
    fn kernel_version_reads_the_makefile_head() {
        let makefile =
            "# SPDX\nVERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 117\nEXTRAVERSION = -rc1\nNAME = x\n";
        assert_eq!(kernel_version(makefile).as_deref(), Some("6.12.117-rc1"));
        assert_eq!(kernel_version("VERSION = 6\n"), None);
    }

    #[test]
    fn versions_become_safe_folder_names() {
        assert_eq!(path_safe("1:6.12.117-1~deb12u1"), "1_6.12.117-1_deb12u1");
    }

    #[test]
    fn a_configured_tree_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("scripts/kconfig")).unwrap();
        for file in [
            "Makefile",
            "Kconfig",
            "scripts/kconfig/merge_config.sh",
            ".config",
        ] {
            std::fs::write(
                dir.path().join(file),
                "VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 0\n",
            )
            .unwrap();
        }
        let err = dir_source(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("is not clean") && err.contains("mrproper"),
            "{err}"
        );
        std::fs::remove_file(dir.path().join(".config")).unwrap();
        let source = dir_source(dir.path()).unwrap();
        assert!(source.identity.ends_with(":6.1.0"), "{}", source.identity);
    }

    #[test]
    fn a_folder_that_is_no_kernel_tree_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = dir_source(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("is not a kernel source tree: it has no Makefile"),
            "{err}"
        );
    }
}
